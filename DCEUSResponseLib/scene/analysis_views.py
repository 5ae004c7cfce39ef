"""The slice views an analysis scene (``analyze --scene``) opens on.

Red shows the contrast panel with the PE map over it (when the analysis has maps) and the ROI
outlines; Yellow the B-mode panel of a dual display, where ROIs are usually drawn. Both views are
turned to the panels' plane (the clip's frames lie in an axial plane) and fitted to their panel, so
that a radiologist opening the bundle sees the analysis, not Slicer's default views of a scene
(sagittal and coronal cuts through flat images, nothing selected). The ROIs stay as drawn (the
segmentation is also the bundle's ``--roi`` file): on the B-mode panel they show in Yellow.
"""
from __future__ import annotations

from typing import Any

from DCEUSResponseLib.scene.fusion_views import MAP_OPACITY, overlay_map_node
from DCEUSResponseLib.scene.nodes import slice_view_nodes
from DCEUSResponseLib.scene.segmentation import show_roi_outlines

CONTRAST_VIEW = "Red"
BMODE_VIEW = "Yellow"


def add_analysis_views(scene: Any, clip_nodes: Any, map_nodes: dict[str, Any] | None = None,
                       segmentation: Any = None) -> dict[str, Any]:
    """Point the Red (contrast panel, map over it) and Yellow (B-mode panel) slice views at the clip of
    ``clip_nodes`` (:func:`~DCEUSResponseLib.scene.clip_nodes.add_clip_sequences`'s), in the panels'
    plane and fitted to them; ROI outlines only (no fill) for ``segmentation``. Returns the slice
    nodes by view name."""
    import slicer

    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)  # "Axial" and the others, as Slicer has
    panels = {CONTRAST_VIEW: clip_nodes.contrast_volume}
    if clip_nodes.bmode_volume is not None:
        panels[BMODE_VIEW] = clip_nodes.bmode_volume
    overlay = overlay_map_node(map_nodes)
    slice_nodes = {}
    for view, volume in panels.items():
        slice_node, composite = slice_view_nodes(scene, view)
        slice_node.SetOrientation("Axial")
        composite.SetBackgroundVolumeID(volume.GetID())
        on_contrast = view == CONTRAST_VIEW and overlay is not None
        composite.SetForegroundVolumeID(overlay.GetID() if on_contrast else None)
        composite.SetForegroundOpacity(MAP_OPACITY if on_contrast else 0.0)
        composite.SetLabelVolumeID(None)
        _fit_to_volume(scene, slice_node, volume)
        slice_nodes[view] = slice_node
    if segmentation is not None:
        show_roi_outlines(segmentation)
    return slice_nodes


def _fit_to_volume(scene: Any, slice_node: Any, volume: Any) -> None:
    """Centre ``slice_node`` on ``volume`` with a field of view holding all of it, as Slicer's "fit to
    window" does (``vtkMRMLSliceLogic.FitSliceToVolume``), for a square view: Slicer keeps the height of
    the field of view when a view's widget sets its size, so the whole panel shows in any view at least
    as wide as it is tall."""
    import slicer

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetSliceNode(slice_node)
    width, height, _ = slice_node.GetDimensions()
    side = max(int(width), int(height))
    slice_node.SetDimensions(side, side, 1)
    logic.FitSliceToVolume(volume, side, side)
    logic.SetMRMLScene(None)
