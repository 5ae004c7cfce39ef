"""The views of a fused exam: the CEUS plane in CT / PET slice views and the patient in 3D.

After :func:`DCEUSResponseLib.scene.fusion_nodes.add_fusion_nodes`, :func:`add_fusion_views` sets up,
all in the Qt-free MRML layer (so ``fuse --scene`` writes it and the Slicer module calls the same):

* the *fused view* (slice view ``Red``): reformatted to the CEUS contrast panel's plane, CT
  background (abdomen window), PET foreground (SUVbw, PET colour table) at :data:`PET_OPACITY`, ROI
  outlines; the slab of ``fuse`` (slab reconstruction, mean), so what it shows is what ``fuse``
  measured (``fusion/ct_on_ceus.nrrd`` / ``suv_on_ceus.nrrd``);
* the *map view* (``Yellow``): the same plane with the contrast frame and the parametric map
  (:data:`MAP_PARAMETER`) at :data:`MAP_OPACITY`; the Sequences browser still plays the clip there
  (the proxy volumes are under the registration);
* the *3D view* (``1``): volume rendering of the PET and the CT with the package's transfer
  functions (``volume_rendering_presets.json``), and the CEUS plane as a model textured with the map
  (one quad per fitted map pixel, coloured as in the map view) and the contrast panel's outline;
* colour legends: SUV in the fused view, the map in the map view and on the plane in the 3D view;

Slice orientation: the view's x axis is the CEUS frame's column direction, its y axis the frame's
"up" (depth down on screen, as on the scanner), the normal x cross y. The view's pixel grid is the
contrast panel's pixel grid (dimensions = the panel's pixels, field of view = its size), until a
viewer resizes it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from DCEUSResponseLib.fusion.inputs import PANEL_CONTRAST
from DCEUSResponseLib.fusion.pipeline import Fusion
from DCEUSResponseLib.scene.nodes import (
    add_new_node,
    slice_view_nodes,
    three_d_view_node,
    volume_ijk_to_ras,
    vtk_matrix,
)
from DCEUSResponseLib.scene.segmentation import show_roi_outlines
from DCEUSResponseLib.spatial.registration import LPS_FROM_RAS
from DCEUSResponseLib.spatial.resample import slab_offsets_mm

FUSED_VIEW, MAP_VIEW, THREED_VIEW = "Red", "Yellow", "1"
PET_OPACITY = 0.45
MAP_OPACITY = 0.6
MAP_PARAMETER = "PE"
PRESETS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "volume_rendering_presets.json")
CT_PRESET, PET_PRESET = "CT liver", "PET SUV"
PLANE_MODEL_NAME, PLANE_OUTLINE_NAME = "CEUS plane map", "CEUS plane outline"
LANDMARK_TEXT_SCALE = 2.0
LEGEND_TITLE_FONT_SIZE, LEGEND_LABEL_FONT_SIZE, LEGEND_SIZE = 14, 12, (0.1, 0.4)
# PET colour tables reach white at half their range: an SUV window of twice the 99.9th percentile
# keeps the liver (the reference) dark red and the lesions yellow to white, as PET/CT readers show them.
SUV_WINDOW_PERCENTILE, SUV_WINDOW_FACTOR = 99.9, 2.0
VIEW_ATTRIBUTE = "DCEUS.FusionView"  # on the nodes made here: their role


@dataclass
class FusionViews:
    """The nodes :func:`add_fusion_views` made or set up, by role."""

    fused_slice: Any  # vtkMRMLSliceNode (Red)
    map_slice: Any  # vtkMRMLSliceNode (Yellow)
    view: Any  # vtkMRMLViewNode (1)
    volume_rendering: dict[str, Any] = field(default_factory=dict)  # "ct" / "pet": VR display nodes
    plane_model: Any | None = None
    plane_outline: Any | None = None
    legends: dict[str, Any] = field(default_factory=dict)  # "pet" / "map": colour legend display nodes


def ceus_plane_slice_to_ras(fusion: Fusion) -> np.ndarray:
    """SliceToRAS (4 x 4) of the contrast panel's plane with the panel's pixel grid as the view's.

    Columns: the frame's column direction, the frame's up (-row), their cross product (RAS); the
    origin is placed so that view pixel (x, y) of a view of the panel's size (:func:`_fit_to_panel`)
    is the centre of panel pixel (row = rows - 1 - y, column = x): Slicer puts view pixel 0 at
    -FOV / 2.
    """
    to_patient_ras = LPS_FROM_RAS @ fusion.panel_matrix(PANEL_CONTRAST)  # frame mm -> patient RAS
    rotation = to_patient_ras[:3, :3]
    x_axis, up = rotation[:, 0], -rotation[:, 1]
    grid = fusion.contrast_grid
    rows, columns = grid.shape
    dy, dx = grid.frame_spacing_mm
    first_row, first_column = grid.first_pixel
    centre_frame = np.array([(first_column + columns / 2.0) * dx, (first_row + rows / 2.0 - 1.0) * dy, 0.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = x_axis, up, np.cross(x_axis, up)
    matrix[:3, 3] = (to_patient_ras @ centre_frame)[:3]
    return matrix


def ceus_plane_normal_ras(fusion: Fusion) -> np.ndarray:
    """The CEUS plane's unit normal in patient RAS (the slice views' normal)."""
    return ceus_plane_slice_to_ras(fusion)[:3, 2]


def load_presets(path: str = PRESETS_PATH) -> dict[str, dict]:
    """The shipped transfer functions by name (``volume_rendering_presets.json``)."""
    with open(path, encoding="utf-8") as stream:
        presets = json.load(stream)
    return {name: value for name, value in presets.items() if isinstance(value, dict)}


def add_volume_property(scene: Any, name: str, preset: dict):
    """A ``vtkMRMLVolumePropertyNode`` named ``name`` built from one preset of the JSON file."""
    from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
    from vtkmodules.vtkRenderingCore import vtkColorTransferFunction

    node = add_new_node(scene, "vtkMRMLVolumePropertyNode", name)
    opacity, gradient, colour = vtkPiecewiseFunction(), vtkPiecewiseFunction(), vtkColorTransferFunction()
    for value, alpha in preset["scalar_opacity"]:
        opacity.AddPoint(float(value), float(alpha))
    for value, alpha in preset.get("gradient_opacity", [[0.0, 1.0], [1.0, 1.0]]):
        gradient.AddPoint(float(value), float(alpha))
    for value, red, green, blue in preset["colour"]:
        colour.AddRGBPoint(float(value), float(red), float(green), float(blue))
    node.SetScalarOpacity(opacity)
    node.SetGradientOpacity(gradient)
    node.SetColor(colour)
    volume_property = node.GetVolumeProperty()
    if preset.get("interpolation", "linear") == "linear":
        volume_property.SetInterpolationTypeToLinear()
    else:
        volume_property.SetInterpolationTypeToNearest()
    volume_property.SetShade(1 if preset.get("shade") else 0)
    volume_property.SetAmbient(float(preset.get("ambient", 0.3)))
    volume_property.SetDiffuse(float(preset.get("diffuse", 0.7)))
    volume_property.SetSpecular(float(preset.get("specular", 0.0)))
    volume_property.SetSpecularPower(float(preset.get("specular_power", 1.0)))
    node.SetAttribute(VIEW_ATTRIBUTE, f"preset:{name}")
    return node


def _fit_to_panel(slice_node: Any, fusion: Fusion, slab_mm: float) -> None:
    """Orient ``slice_node`` on the CEUS plane with the contrast panel's pixel grid and ``fuse``'s slab.

    The slab is ``fuse``'s exactly (:func:`~DCEUSResponseLib.spatial.resample.slab_offsets_mm`: the mean
    of N trilinear samples every 0.5 mm across the plane). Slicer's slice logic takes
    N = int(thickness / slice spacing) samples, spaced by slice spacing / oversampling times the
    view's z spacing (the field of view's z extent over one slice): hence a prescribed slice spacing
    of thickness / (N + 1/2), a z field of view of the thickness and an oversampling making the step
    thickness / (N - 1).
    """
    rows, columns = fusion.contrast_grid.shape
    dy, dx = fusion.contrast_grid.frame_spacing_mm
    slice_node.GetSliceToRAS().DeepCopy(vtk_matrix(ceus_plane_slice_to_ras(fusion)))
    slice_node.SetDimensions(int(columns), int(rows), 1)
    samples = len(slab_offsets_mm(slab_mm))
    slice_node.SetFieldOfView(columns * dx, rows * dy, slab_mm if samples > 1 else min(dx, dy))
    if samples > 1:
        spacing_mm = slab_mm / (samples + 0.5)
        slice_node.SetSliceSpacingModeToPrescribed()
        slice_node.SetPrescribedSliceSpacing(spacing_mm, spacing_mm, spacing_mm)
        slice_node.SetSlabReconstructionEnabled(True)
        slice_node.SetSlabReconstructionType(slice_node.GetSlabReconstructionTypeFromString("Mean"))
        slice_node.SetSlabReconstructionThickness(float(slab_mm))
        slice_node.SetSlabReconstructionOversamplingFactor(spacing_mm * (samples - 1))
    slice_node.UpdateMatrices()


def add_fusion_views(scene: Any, nodes: dict[str, Any], fusion: Fusion, volume_rendering_logic: Any = None,
                     presets: dict[str, dict] | None = None) -> FusionViews:
    """Set up the fused, map and 3D views of ``nodes`` (:func:`add_fusion_nodes`'s; see the module).

    ``volume_rendering_logic`` is Slicer's ``vtkSlicerVolumeRenderingLogic`` of the scene (the headless
    application's ``module_logic("VolumeRendering")``, ``slicer.modules.volumerendering.logic()`` in
    Slicer); without it the 3D view has no volume rendering.
    """
    presets = load_presets() if presets is None else presets
    fused, fused_composite = slice_view_nodes(scene, FUSED_VIEW)
    mapped, map_composite = slice_view_nodes(scene, MAP_VIEW)
    view = three_d_view_node(scene, THREED_VIEW)
    views = FusionViews(fused, mapped, view)
    for slice_node in (fused, mapped):
        _fit_to_panel(slice_node, fusion, fusion.slab_mm if slice_node is fused else 0.0)
    fused_composite.SetBackgroundVolumeID(nodes["ct"].GetID())
    if "pet" in nodes:
        _suv_window(nodes["pet"], fusion)
        fused_composite.SetForegroundVolumeID(nodes["pet"].GetID())
        fused_composite.SetForegroundOpacity(PET_OPACITY)
    map_composite.SetBackgroundVolumeID(nodes["clip"].contrast_volume.GetID())
    map_node = overlay_map_node(nodes.get("maps"))
    if map_node is not None:
        map_composite.SetForegroundVolumeID(map_node.GetID())
        map_composite.SetForegroundOpacity(MAP_OPACITY)
    for composite in (fused_composite, map_composite):
        composite.SetLabelVolumeID(None)
    _show_outlines(nodes.get("segmentation"), [fused, mapped, view])
    if volume_rendering_logic is not None:
        for role, preset in (("ct", CT_PRESET), ("pet", PET_PRESET)):
            if role in nodes:
                views.volume_rendering[role] = _volume_rendering(scene, volume_rendering_logic, nodes[role],
                                                                 preset, presets[preset], view)
    if map_node is not None:
        views.plane_model = _plane_model(scene, map_node, nodes, view)
    views.plane_outline = _plane_outline(scene, fusion, nodes, view)
    views.legends = _legends(nodes, map_node, views.plane_model, fused, mapped, view)
    _smaller_landmark_labels(nodes)
    return views


def _suv_window(pet: Any, fusion: Fusion) -> None:
    display = pet.GetDisplayNode()
    top = float(np.nanpercentile(fusion.suv, SUV_WINDOW_PERCENTILE)) if fusion.suv is not None else 0.0
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, SUV_WINDOW_FACTOR * top if top > 0 else 1.0)


def _smaller_landmark_labels(nodes: dict[str, Any]) -> None:
    # six labelled pairs crowd a 50 mm plane at Slicer's default text scale (3)
    for role in ("ceus_landmarks", "ct_landmarks"):
        if role in nodes:
            nodes[role].GetDisplayNode().SetTextScale(LANDMARK_TEXT_SCALE)


def overlay_map_node(maps: dict[str, Any] | None):
    """The map volume a view shows over the clip: :data:`MAP_PARAMETER`'s, else the first parameter's
    (never the status map), or None without maps."""
    maps = maps or {}
    if MAP_PARAMETER in maps:
        return maps[MAP_PARAMETER]
    return next((node for name, node in maps.items() if name != "status"), None)


def _show_outlines(segmentation: Any, views: list[Any]) -> None:
    if segmentation is None:
        return
    show_roi_outlines(segmentation)
    segmentation.GetDisplayNode().SetVisibility3D(False)  # in 3D the ROIs would hide the map on the plane


def _volume_rendering(scene: Any, logic: Any, volume: Any, name: str, preset: dict, view: Any):
    """A volume rendering display node of ``volume`` with the preset's volume property, in ``view``."""
    display = logic.CreateVolumeRenderingDisplayNode(None)  # the logic's default rendering method
    scene.AddNode(display)
    display.UnRegister(None)  # the scene holds it (Slicer's Python wrapping returns a new reference)
    display.SetName(f"{volume.GetName()} volume rendering")
    display.AddViewNodeID(view.GetID())
    volume.AddAndObserveDisplayNodeID(display.GetID())
    property_node = add_volume_property(scene, name, preset)
    display.SetAndObserveVolumePropertyNodeID(property_node.GetID())
    display.SetFollowVolumeDisplayNode(0)
    display.SetVisibility(1)
    return display


def _plane_model(scene: Any, map_node: Any, nodes: dict[str, Any], view: Any):
    """The map on the CEUS plane: one quad per finite map pixel (cell scalars, the map's colours)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkFiltersCore import vtkAssignAttribute

    image = map_node.GetImageData()
    columns, rows, _ = image.GetDimensions()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns)
    ijk_to_ras = volume_ijk_to_ras(map_node)
    j, i = np.mgrid[0:rows + 1, 0:columns + 1].astype(float) - 0.5  # pixel corners
    corners = np.stack([i.ravel(), j.ravel(), np.zeros(i.size), np.ones(i.size)])
    points = vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray((ijk_to_ras @ corners)[:3].T), deep=True))
    finite_rows, finite_columns = np.nonzero(np.isfinite(values))
    first = finite_rows * (columns + 1) + finite_columns
    quads = np.stack([np.full(first.size, 4), first, first + 1, first + columns + 2, first + columns + 1], axis=1)
    cells = vtkCellArray()
    cells.ImportLegacyFormat(numpy_support.numpy_to_vtkIdTypeArray(np.ascontiguousarray(quads.ravel()), deep=True))
    polydata = vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(values[finite_rows, finite_columns], np.float32),
                                         deep=True)
    parameter = map_node.GetAttribute("DCEUS.Parameter") or MAP_PARAMETER
    scalars.SetName(parameter)
    polydata.GetCellData().AddArray(scalars)
    model = add_new_node(scene, "vtkMRMLModelNode", PLANE_MODEL_NAME)
    model.SetAndObservePolyData(polydata)
    model.CreateDefaultDisplayNodes()
    model.SetAndObserveTransformNodeID(map_node.GetTransformNodeID())
    model.SetAttribute(VIEW_ATTRIBUTE, "plane")
    map_display = map_node.GetDisplayNode()
    display = model.GetDisplayNode()
    display.SetActiveScalar(parameter, vtkAssignAttribute.CELL_DATA)
    display.SetAndObserveColorNodeID(map_display.GetColorNodeID())
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    display.SetScalarRange(map_display.GetWindowLevelMin(), map_display.GetWindowLevelMax())
    display.SetScalarVisibility(True)
    display.SetBackfaceCulling(False)
    display.SetAmbient(1.0)  # the map's colours, unlit, as in the map view
    display.SetDiffuse(0.0)
    display.SetVisibility2D(False)
    display.AddViewNodeID(view.GetID())
    return model


def _plane_outline(scene: Any, fusion: Fusion, nodes: dict[str, Any], view: Any):
    """The contrast panel's border on the CEUS plane (a closed line, in the registration's space)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    grid = fusion.contrast_grid
    dy, dx = grid.frame_spacing_mm
    top, left = grid.first_pixel[0] - 0.5, grid.first_pixel[1] - 0.5
    bottom, right = top + grid.shape[0], left + grid.shape[1]
    # frame pixel (r, c) -> the CEUS nodes' RAS (-c dx, -r dy, 0)
    corners = np.array([[-c * dx, -r * dy, 0.0] for r, c in ((top, left), (top, right), (bottom, right),
                                                              (bottom, left))])
    points = vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(corners, deep=True))
    lines = vtkCellArray()
    lines.InsertNextCell(5)
    for index in (0, 1, 2, 3, 0):
        lines.InsertCellPoint(index)
    polydata = vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetLines(lines)
    model = add_new_node(scene, "vtkMRMLModelNode", PLANE_OUTLINE_NAME)
    model.SetAndObservePolyData(polydata)
    model.CreateDefaultDisplayNodes()
    model.SetAndObserveTransformNodeID(nodes["clip"].contrast_volume.GetTransformNodeID())
    model.SetAttribute(VIEW_ATTRIBUTE, "outline")
    display = model.GetDisplayNode()
    display.SetColor(0.2, 0.9, 1.0)
    display.SetLineWidth(3.0)
    display.SetVisibility2D(False)
    display.AddViewNodeID(view.GetID())
    return model


def _legends(nodes: dict[str, Any], map_node: Any, plane_model: Any, fused: Any, mapped: Any,
             view: Any) -> dict[str, Any]:
    """SUV in the fused view, the map in the map view and (on the plane model) in the 3D view.

    Slicer shows a volume's legend in a 3D view only where a slice showing the volume is visible
    there; the map on the plane is a model, whose legend follows the model's display."""
    import slicer

    scene = fused.GetScene()
    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):  # the Colors module registers it
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    legends = {}
    targets = []
    if "pet" in nodes:
        targets.append(("pet", nodes["pet"], "SUVbw (g/ml)", "%.0f", fused))
    if map_node is not None:
        unit = map_node.GetAttribute("DCEUS.Unit")
        title = f"{map_node.GetAttribute('DCEUS.Parameter')}" + (f" ({unit})" if unit else "")
        targets.append(("map", map_node, title, "%.3g", mapped))
        if plane_model is not None:
            targets.append(("plane", plane_model, title, "%.3g", view))
    for role, node, title, label_format, target in targets:
        legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(node)
        legend.SetTitleText(title)
        legend.SetLabelFormat(label_format)
        legend.AddViewNodeID(target.GetID())
        legend.SetAttribute(VIEW_ATTRIBUTE, f"legend:{role}")
        legend.GetTitleTextProperty().SetFontSize(LEGEND_TITLE_FONT_SIZE)
        legend.GetLabelTextProperty().SetFontSize(LEGEND_LABEL_FONT_SIZE)
        legend.SetSize(*LEGEND_SIZE)
        legends[role] = legend
    return legends


#: Views of "Place pair" (Slicer's side-by-side layout): the CEUS frame on the left, the CT on the right.
CEUS_PLACEMENT_VIEW, CT_PLACEMENT_VIEW = "Red", "Yellow"


def placement_views(scene: Any, ceus_volume: Any, ct_volume: Any, pet_volume: Any = None) -> dict[str, str]:
    """Show a landmark pair's two sides for clicking: ``ceus_volume`` (the clip's frame on the panel the
    points are read on) in the left view, in its own plane wherever its transform puts it; the CT (with
    the PET over it at :data:`PET_OPACITY`) axial in the right view. Returns {view name: what it shows}.
    The module switches to the side-by-side layout and fits the views (Qt); this is the scene's part."""
    ceus_slice, ceus_composite = slice_view_nodes(scene, CEUS_PLACEMENT_VIEW)
    ceus_composite.SetBackgroundVolumeID(ceus_volume.GetID())
    ceus_composite.SetForegroundVolumeID(None)
    ceus_slice.RotateToVolumePlane(ceus_volume)
    ct_slice, ct_composite = slice_view_nodes(scene, CT_PLACEMENT_VIEW)
    ct_composite.SetBackgroundVolumeID(ct_volume.GetID())
    ct_composite.SetForegroundVolumeID(pet_volume.GetID() if pet_volume is not None else None)
    ct_composite.SetForegroundOpacity(PET_OPACITY if pet_volume is not None else 0.0)
    ct_slice.SetOrientation("Axial")
    return {CEUS_PLACEMENT_VIEW: "CEUS", CT_PLACEMENT_VIEW: "CT"}
