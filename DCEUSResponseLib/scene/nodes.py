"""Helpers shared by the scene rooms: names, colours, node creation and vtk matrices.

Where pixels lie (the frame geometry, panel and map grids) is :mod:`DCEUSResponseLib.spatial.frame`."""
from __future__ import annotations

from typing import Any

import numpy as np

PANEL_CONTRAST = "contrast"
PANEL_BMODE = "bmode"
TIME_INDEX_NAME = "time"
TIME_INDEX_UNIT = "s"
TIC_X_AXIS_TITLE = "time since injection [s]"
TIC_Y_AXIS_TITLE = "mean linear intensity [a.u.]"
# Segment and curve colours (RGB 0..1) when the caller gives none; the demo's ROI colours.
ROI_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.9, 0.3, 0.3), (0.3, 0.8, 0.3), (0.3, 0.5, 0.9), (0.9, 0.8, 0.2), (0.7, 0.3, 0.8),
)
# Slicer's default numeric index tolerance (s); tightened for clips with faster frames so that two
# frames never share an index value.
DEFAULT_INDEX_TOLERANCE_S = 1e-3
# Attributes every frame volume (and so the proxy volume showing it) carries, besides DICOM.*.
FRAME_ATTRIBUTES = ("DCEUS.Panel", "DCEUS.Display", "DCEUS.Source")
# The module logics a headless scene gets, by Slicer's module names.
MODULE_LOGIC_CLASSES = (
    ("Volumes", "vtkSlicerVolumesLogic"),
    ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("Sequences", "vtkSlicerSequencesLogic"),
    ("Tables", "vtkSlicerTablesLogic"),
    ("Plots", "vtkSlicerPlotsLogic"),
    ("Transforms", "vtkSlicerTransformLogic"),
    ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    ("Markups", "vtkSlicerMarkupsLogic"),  # fuse's landmark lists
    ("VolumeRendering", "vtkSlicerVolumeRenderingLogic"),  # the fused scene's 3D view
)



def add_new_node(scene, class_name: str, name: str):
    """``scene.AddNewNodeByClass``, registering the class first on a scene no module logic has set up."""
    if not scene.IsNodeClassRegistered(class_name):
        import slicer

        scene.RegisterNodeClass(getattr(slicer, class_name)())
    return scene.AddNewNodeByClass(class_name, name)


def vtk_matrix(array: np.ndarray):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def volume_ijk_to_ras(volume_node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return numpy_matrix(matrix)


def slice_view_nodes(scene: Any, layout_name: str):
    """The slice and slice composite nodes of view ``layout_name``: the application's when it has
    them, else made the way Slicer makes them (``vtkMRMLSliceLogic.AddSliceNode``)."""
    import slicer

    slice_node = node_by_layout_name(scene, "vtkMRMLSliceNode", layout_name)
    if slice_node is None:
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        slice_node = logic.AddSliceNode(layout_name)
        logic.SetMRMLScene(None)
    composite = node_by_layout_name(scene, "vtkMRMLSliceCompositeNode", layout_name)
    if composite is None:
        composite = add_new_node(scene, "vtkMRMLSliceCompositeNode", f"SliceComposite{layout_name}")
        composite.SetLayoutName(layout_name)
    return slice_node, composite


def node_by_layout_name(scene: Any, class_name: str, layout_name: str):
    """The first node of ``class_name`` whose layout name is ``layout_name`` (as Slicer's slice and view
    logics find theirs), or None."""
    for index in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(index, class_name)
        if node.GetLayoutName() == layout_name:
            return node
    return None


def three_d_view_node(scene: Any, layout_name: str):
    """The 3D view node ``layout_name``: the application's, else made as Slicer makes it."""
    import slicer

    view = node_by_layout_name(scene, "vtkMRMLViewNode", layout_name)
    if view is None:
        logic = slicer.vtkMRMLViewLogic()
        logic.SetMRMLScene(scene)
        view = logic.AddViewNode(layout_name)
        logic.SetMRMLScene(None)
    return view
