"""What ``fuse`` reads besides the CT and PET: the analysis folder, the CEUS panels, a 3D PET segmentation.

The analysis folder is an ``analyze`` output: ``results.json`` (``clip.source_path``, the panels, the
reference ROI, the maps' grid) and ``rois/<NAME>.png`` (each ROI on the full frame). The panels of a
dual display show one imaging plane twice: a point at full-frame pixel (r, c) of the B-mode panel is
the anatomy at (r + drow, c + dcol) of the contrast panel, (drow, dcol) =
:func:`DCEUSResponseLib.ceus.layout.mirror_offset`. Read only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from DCEUSResponseLib.ceus.layout import DisplayLayout, mirror_offset
from DCEUSResponseLib.clip import Clip, RoiMask, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.masks import read_roi_masks, roi_png_path

PANEL_CONTRAST, PANEL_BMODE = "contrast", "bmode"
_GRID_TOLERANCE_MM = 1e-3


@dataclass
class AnalysisInputs:
    """An analysis folder as ``fuse`` needs it: its results, the clip (read again), layout and ROIs."""

    folder: str
    results: dict
    clip: Clip
    layout: DisplayLayout
    rois: list[RoiMask]
    reference: str | None

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.clip.rows, self.clip.columns

    @property
    def spacing_mm(self) -> tuple[float, float]:
        """``(dy, dx)`` of the clip's frame geometry."""
        return self.clip.frame_spacing_mm

    def panel_offset_px(self) -> tuple[int, int]:
        """(drow, dcol) from the B-mode panel to the contrast panel; (0, 0) on a single display."""
        return mirror_offset(self.layout) if self.layout.bmode is not None else (0, 0)

    def panel_of(self, rows: np.ndarray, columns: np.ndarray) -> str | None:
        """The panel holding every pixel position given, or None when they are not all on one panel."""
        panels = [(PANEL_CONTRAST, self.layout.contrast)]
        if self.layout.bmode is not None:
            panels.append((PANEL_BMODE, self.layout.bmode))
        else:
            return PANEL_CONTRAST  # a single display: the whole frame is one picture of the plane
        for name, region in panels:
            inside = ((rows >= region.y0 - 0.5) & (rows <= region.y1 + 0.5) & (columns >= region.x0 - 0.5)
                      & (columns <= region.x1 + 0.5))
            if np.all(inside):
                return name
        return None

    def roi_panel(self, roi: RoiMask) -> str:
        """The panel an ROI was drawn on (``analyze`` refused ROIs across both panels)."""
        rows, columns = np.nonzero(roi.mask)
        return self.panel_of(rows, columns) or PANEL_CONTRAST


def read_analysis(folder: str | os.PathLike) -> AnalysisInputs:
    """Read an ``analyze`` output folder and its clip; one-line :class:`InputError` for what is missing."""
    from DCEUSResponseLib.ceus.pipeline import read_any_clip

    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise InputError("analysis folder not found", folder)
    results_path = os.path.join(folder, "results.json")
    if not os.path.isfile(results_path):
        raise InputError("no results.json: not an analyze output folder (or the analysis did not finish)", folder)
    try:
        with open(results_path, encoding="utf-8") as stream:
            results = json.load(stream)
        clip_info = results["clip"]
        roi_names = list(results["rois"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"unreadable results.json ({type(error).__name__}: {error})", results_path) from None
    source = clip_info.get("source_path")
    if not source:
        raise InputError("results.json has no clip.source_path: rerun analyze with this version", results_path)
    if not os.path.exists(source):
        raise InputError(f"the analysed clip is gone ({source}); fuse needs it for the previews and the scene",
                         results_path)
    spacing = clip_info.get("pixel_spacing_mm")
    times = np.asarray(clip_info.get("frame_times_s") or [0.0, 1.0], dtype=float)
    rate = 1.0 / float(np.median(np.diff(times))) if times.size > 1 and np.all(np.diff(times) > 0) else None
    clip = read_any_clip(source, frame_rate_hz=rate if clip_info.get("timing_source") == "--frame-rate" else None,
                         pixel_spacing_mm=tuple(spacing) if spacing else None)
    # What the analysis recorded, not what reading again says: its identifiers (only the linking
    # UIDs unless analyze kept the others: the fused scene must not add them) and its warnings (the
    # spacing passed back is the analysis' own, not an option the user gave now).
    recorded_uids = clip_info.get("uids") if isinstance(clip_info.get("uids"), dict) else {}
    clip.uids = {keyword: value for keyword, value in clip.uids.items() if keyword in recorded_uids}
    recorded_warnings = {str(w) for w in clip_info.get("warnings") or []}  # all of the analysis'
    clip.warnings = [w for w in clip.warnings if w in recorded_warnings]  # the reader's among them
    if (clip.rows, clip.columns) != (clip_info.get("rows"), clip_info.get("columns")):
        raise InputError(f"the clip is now {clip.rows} x {clip.columns} pixels, the analysis had "
                         f"{clip_info.get('rows')} x {clip_info.get('columns')}: not the analysed clip", source)
    layout = _layout(clip_info, spacing, results_path)
    specs = []
    for name in roi_names:
        path = os.path.join(folder, roi_png_path(name))
        if not os.path.isfile(path):
            raise InputError(f"ROI {name!r} has no {roi_png_path(name)}: rerun analyze with this version", folder)
        specs.append(f"{name}={path}")
    rois = read_roi_masks(specs, (clip.rows, clip.columns), clip.frame_spacing_mm)
    return AnalysisInputs(folder, results, clip, layout, rois, results.get("reference"))


def _layout(clip_info: dict, spacing: Any, where: str) -> DisplayLayout:
    def region(box: dict | None) -> UltrasoundRegion | None:
        if box is None:
            return None
        try:
            return UltrasoundRegion(int(box["x0"]), int(box["y0"]), int(box["x1"]), int(box["y1"]),
                                    tuple(spacing) if spacing else None)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"results.json clip region {box!r} is not x0, y0, x1, y1", where) from None

    contrast = region(clip_info.get("contrast_region"))
    if contrast is None:
        raise InputError("results.json has no clip.contrast_region", where)
    bmode = region(clip_info.get("bmode_region"))
    return DisplayLayout(clip_info.get("display") or ("dual" if bmode else "single"), contrast, bmode)


def read_pet_segmentation(path: str | os.PathLike, pet_shape: tuple[int, int, int],
                          pet_ijk_to_lps: np.ndarray) -> dict[str, np.ndarray]:
    """Segments of a Slicer ``.seg.nrrd`` on the PET grid, as boolean arrays of ``pet_shape`` by name.

    The segmentation's voxels must be PET voxels: the same directions and spacing (within 1e-3 mm)
    and an origin on a PET voxel centre; a segmentation cropped to its segments' extent is placed at
    its offset. Any other grid is an :class:`InputError` naming the file.
    """
    import slicerio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("PET segmentation not found", path)
    try:
        segmentation = slicerio.read_segmentation(path)
    except Exception as error:  # slicerio and pynrrd raise their own types: all mean "unreadable"
        raise InputError(f"cannot read the Slicer segmentation: {' '.join(str(error).split())}", path) from None
    seg_ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    voxels = np.asarray(segmentation["voxels"])
    if voxels.ndim == 4:  # layers first (overlapping segments); each segment is read with segment_mask
        voxels = voxels[0]
    offset = np.linalg.solve(pet_ijk_to_lps, seg_ijk_to_lps[:, 3])[:3]
    same_axes = np.allclose(seg_ijk_to_lps[:3, :3], pet_ijk_to_lps[:3, :3], atol=_GRID_TOLERANCE_MM)
    if voxels.ndim != 3 or not same_axes or not np.allclose(offset, np.round(offset), atol=1e-3):
        pet_dims = list(pet_shape)[::-1]
        raise InputError(f"the segmentation's grid (size {list(voxels.shape)}, spacing "
                         f"{np.linalg.norm(seg_ijk_to_lps[:3, :3], axis=0).round(4).tolist()} mm) is not the PET grid "
                         f"(size {pet_dims}, spacing {np.linalg.norm(pet_ijk_to_lps[:3, :3], axis=0).round(4).tolist()}"
                         " mm): draw the segments on the PET", path)
    start = np.round(offset).astype(int)  # (i, j, k) of the segmentation's first voxel on the PET grid
    stop = start + np.asarray(voxels.shape)
    if np.any(start < 0) or np.any(stop > np.asarray(pet_shape)[::-1]):
        raise InputError("the segmentation reaches beyond the PET volume: not the PET grid", path)
    segments = {}
    for segment in segmentation.get("segments") or []:
        mask_ijk = np.asarray(slicerio.segment_mask(segmentation, segment)) != 0
        full = np.zeros(pet_shape, dtype=bool)
        full[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]] = mask_ijk.transpose(2, 1, 0)
        segments[str(segment.get("name") or segment.get("id"))] = full
    if not segments:
        raise InputError("the segmentation has no segments", path)
    return segments
