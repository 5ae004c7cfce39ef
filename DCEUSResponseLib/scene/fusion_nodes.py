"""``fuse --scene``: the analysis' CEUS nodes placed in the patient beside the CT and the PET.

Nodes: the CT (HU) and the PET (SUVbw, Slicer's PET-Heat colour table) volumes in patient RAS; the
registration transform ("CEUS to patient", to-parent = the registration in RAS) with the CEUS nodes
of the registration panel under it; a translation "<panel> panel to <registration panel> panel" under
the registration holding the other panel's nodes (the panels of a dual display show one plane, shifted
by the panel offset); the clip's sequences and browser, the ROI segmentation (on the contrast panel),
the analysis' TIC and parameter tables and chart (from its files) and its maps (read back from
``maps/*.nrrd``); the CEUS landmarks (frame coordinates, under the registration) and the CT landmarks
(patient RAS) as markups point lists. The views of the fused scene (slice views on the
CEUS plane, volume rendering) are :mod:`DCEUSResponseLib.scene.fusion_views`.
"""
from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import numpy as np

from DCEUSResponseLib.ceus.tic import full_frame_on_contrast_panel
from DCEUSResponseLib.fusion.inputs import PANEL_BMODE, PANEL_CONTRAST
from DCEUSResponseLib.fusion.pipeline import Fusion
from DCEUSResponseLib.scene.application import create_headless_application
from DCEUSResponseLib.scene.bundle import save_scene_bundle
from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences
from DCEUSResponseLib.scene.fusion_views import add_fusion_views
from DCEUSResponseLib.scene.map_volumes import add_parameter_maps
from DCEUSResponseLib.scene.nodes import add_new_node, vtk_matrix
from DCEUSResponseLib.scene.segmentation import add_roi_segmentation
from DCEUSResponseLib.scene.tables import add_folder_results
from DCEUSResponseLib.scene.transforms import add_registration_node
from DCEUSResponseLib.spatial.registration import LPS_FROM_RAS

CT_NODE_NAME, PET_NODE_NAME = "CT", "PET SUVbw"
CEUS_LANDMARKS_NAME, CT_LANDMARKS_NAME = "CEUS landmarks", "CT landmarks"
PET_COLOUR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"  # vtkMRMLColorLogic's PET colour tables
GREY_COLOUR_NODE_ID = "vtkMRMLColorTableNodeGrey"
CT_WINDOW_HU = (400.0, 40.0)  # window, level: abdomen


def add_patient_volume(scene: Any, name: str, values: np.ndarray, ijk_to_lps: np.ndarray):
    """A scalar volume of ``values`` (slices, rows, columns) whose voxel (i, j, k) lies at ``ijk_to_lps``."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    volume = add_new_node(scene, "vtkMRMLScalarVolumeNode", name)
    display = add_new_node(scene, "vtkMRMLScalarVolumeDisplayNode", f"{name} display")
    volume.SetAndObserveDisplayNodeID(display.GetID())
    volume.SetIJKToRASMatrix(vtk_matrix(LPS_FROM_RAS @ np.asarray(ijk_to_lps, dtype=float)))
    slices, rows, columns = values.shape
    image = vtkImageData()
    image.SetDimensions(columns, rows, slices)
    data = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(data, deep=True))
    volume.SetAndObserveImageData(image)
    return volume


def _show(volume, window: float, level: float, colour_node_id: str | None = None) -> None:
    display = volume.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(window, level)
    # Without a colour node the slice layers show nothing: grey, as Slicer's Volumes logic sets it.
    display.SetAndObserveColorNodeID(colour_node_id or GREY_COLOUR_NODE_ID)


def _point_list(scene: Any, name: str, labels: list[str], points_ras: np.ndarray, colour: tuple[float, float, float]):
    node = add_new_node(scene, "vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    for label, point in zip(labels, points_ras):
        index = node.AddControlPoint(*map(float, point))
        node.SetNthControlPointLabel(index, label)
    node.GetDisplayNode().SetSelectedColor(*colour)
    return node


def _maps(analysis) -> SimpleNamespace | None:
    """The analysis' maps read back from ``maps/*.nrrd``, shaped as ``add_parameter_maps`` reads them."""
    import nrrd

    summary = analysis.results.get("maps")
    folder = os.path.join(analysis.folder, "maps")
    if not summary or not os.path.isdir(folder):
        return None
    values, status = {}, None
    for name in sorted(os.listdir(folder)):
        if name.endswith(".nrrd"):
            data, _ = nrrd.read(os.path.join(folder, name), index_order="C")
            if name == "status.nrrd":
                status = data
            else:
                values[name[:-5]] = data
    if status is None:
        return None
    return SimpleNamespace(values=values, status=status, model=summary.get("model", analysis.results.get("model")),
                           binning=int(summary.get("binning", 1)), origin_px=tuple(summary.get("origin_px", (0, 0))),
                           spacing_mm=tuple(summary["spacing_mm"]) if summary.get("spacing_mm") else None)


def add_fusion_nodes(scene: Any, fusion: Fusion) -> dict[str, Any]:
    """Every node of the fused scene (see the module's docstring), by role."""
    analysis = fusion.analysis
    nodes: dict[str, Any] = {"ct": add_patient_volume(scene, CT_NODE_NAME, fusion.ct.values, fusion.ct.ijk_to_lps)}
    _show(nodes["ct"], *CT_WINDOW_HU)
    if fusion.suv is not None:
        nodes["pet"] = add_patient_volume(scene, PET_NODE_NAME, fusion.suv, fusion.pet_ijk_to_lps)
        top = float(np.nanpercentile(fusion.suv, 99.9))
        _show(nodes["pet"], top, top / 2.0, PET_COLOUR_NODE_ID if scene.GetNodeByID(PET_COLOUR_NODE_ID) else None)
    registration = add_registration_node(scene, fusion.registration.ceus_to_patient_lps)
    nodes["registration"] = registration
    other = PANEL_CONTRAST if fusion.registration_panel == PANEL_BMODE else PANEL_BMODE
    under = {fusion.registration_panel: registration}
    if analysis.layout.bmode is not None:
        shift = add_new_node(scene, "vtkMRMLLinearTransformNode",
                             f"{other} panel to {fusion.registration_panel} panel")
        drow, dcol = fusion.panel_shift_px(other)
        dy, dx = analysis.spacing_mm
        matrix = np.eye(4)
        matrix[0, 3], matrix[1, 3] = -dcol * dx, -drow * dy  # frame (x, y) mm -> RAS (-x, -y)
        shift.SetMatrixTransformToParent(vtk_matrix(matrix))
        shift.SetAndObserveTransformNodeID(registration.GetID())
        under[other] = nodes["panel_shift"] = shift
    else:
        under[other] = registration
    reference_frame = int((analysis.results.get("clip") or {}).get("reference_frame") or 0)
    clip_nodes = add_clip_sequences(scene, analysis.clip, analysis.layout, selected_frame=reference_frame)
    nodes["clip"] = clip_nodes
    clip_nodes.contrast_volume.SetAndObserveTransformNodeID(under[PANEL_CONTRAST].GetID())
    if clip_nodes.bmode_volume is not None:
        clip_nodes.bmode_volume.SetAndObserveTransformNodeID(under[PANEL_BMODE].GetID())
    # On the contrast panel, where they are quantified (mirrored from the B-mode panel when drawn there),
    # under its transform: every outline then lies where fuse measured it and over the maps.
    on_contrast = full_frame_on_contrast_panel(analysis.rois, analysis.layout,
                                               (analysis.clip.rows, analysis.clip.columns))
    segmentation = add_roi_segmentation(scene, on_contrast, analysis.clip, clip_nodes.contrast_volume)
    segmentation.SetAndObserveTransformNodeID(under[PANEL_CONTRAST].GetID())
    nodes["segmentation"] = segmentation
    # The analysis scene's tables and chart too (the contract: everything of the analysis scene).
    nodes["results"] = add_folder_results(scene, analysis.folder, analysis.results, segmentation_node=segmentation)
    maps = _maps(analysis)
    if maps is not None:
        nodes["maps"] = add_parameter_maps(scene, maps, frame_spacing_mm=analysis.spacing_mm)
        for node in nodes["maps"].values():
            node.SetAndObserveTransformNodeID(under[PANEL_CONTRAST].GetID())
    pairs = fusion.registration.landmarks
    if pairs:
        labels = [pair.label for pair in pairs]
        ceus_ras = np.array([pair.ceus_mm for pair in pairs]) * [-1.0, -1.0, 1.0]
        nodes["ceus_landmarks"] = _point_list(scene, CEUS_LANDMARKS_NAME, labels, ceus_ras, (0.0, 1.0, 1.0))
        nodes["ceus_landmarks"].SetAndObserveTransformNodeID(registration.GetID())
        ct_ras = np.array([pair.patient_mm for pair in pairs]) * [-1.0, -1.0, 1.0]
        nodes["ct_landmarks"] = _point_list(scene, CT_LANDMARKS_NAME, labels, ct_ras, (1.0, 0.0, 1.0))
    return nodes


def write_fusion_scene(fusion: Fusion, path: str, cache_dir: str | None = None) -> str:
    """Write the fused scene as a bundle at ``path`` (atomically); returns its absolute path."""
    path = os.path.abspath(path)
    with create_headless_application(cache_dir) as app:
        nodes = add_fusion_nodes(app.scene, fusion)
        add_fusion_views(app.scene, nodes, fusion, app.module_logic("VolumeRendering"))
        save_scene_bundle(app.scene, path)
    return path
