"""Helpers shared by the scene rooms: node creation, vtk matrices and the panel grid check."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from DCEUSResponseLib.errors import InputError

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions

    pass


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
# How far (pixels) a panel origin may sit from the pixel grid and still count as on it: only the
# round-off of saving spacing and origin as decimal text.
_GRID_TOLERANCE_PX = 1e-3
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
)



def panel_ijk_to_ras(x0: int, y0: int, spacing_mm: tuple[float, float]) -> np.ndarray:
    """4 x 4 IJK-to-RAS matrix (mm) of a panel whose top-left pixel is frame pixel (row y0, column x0).

    i runs along the frame's columns (RAS -x), j along its rows (RAS -y), k is the 1 mm thick plane z = 0.
    """
    dy, dx = spacing_mm
    return np.array([[-dx, 0.0, 0.0, -x0 * dx],
                     [0.0, -dy, 0.0, -y0 * dy],
                     [0.0, 0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


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


def grid_position(ijk_to_ras: np.ndarray, spacing_mm: tuple[float, float], what: str,
                   source: str) -> tuple[int, int]:
    """``(x0, y0)``: the frame pixel at IJK (0, 0, 0) of a grid that must be the frame's pixel grid."""
    dy, dx = spacing_mm
    expected = panel_ijk_to_ras(0, 0, spacing_mm)[:3, :2]
    linear = ijk_to_ras[:3, :2]
    if not np.allclose(linear, expected, rtol=1e-6, atol=1e-9 * max(dx, dy)):
        raise InputError(f"{what} is not on the clip's pixel grid (IJK-to-RAS columns "
                         f"{np.round(linear.T, 6).tolist()} mm, expected {np.round(expected.T, 6).tolist()} mm: "
                         "spacing (dx, dy) with i along RAS -x and j along RAS -y)", source)
    column = -ijk_to_ras[0, 3] / dx
    row = -ijk_to_ras[1, 3] / dy
    x0, y0 = int(round(column)), int(round(row))
    if abs(column - x0) > _GRID_TOLERANCE_PX or abs(row - y0) > _GRID_TOLERANCE_PX or abs(ijk_to_ras[2, 3]) > 1e-6:
        raise InputError(f"{what} is not on the clip's pixel grid: its first voxel is at frame pixel "
                         f"(row {row:.4f}, column {column:.4f}, plane z = {ijk_to_ras[2, 3]:.4g} mm)", source)
    return x0, y0


