"""ROIs on the clip: placing full-frame masks on the contrast panel and sampling their TICs."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from DCEUSResponseLib.ceus.layout import DisplayLayout
from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.errors import InputError


def place_on_contrast_panel(rois: Sequence[RoiMask], layout: DisplayLayout) -> list[RoiMask]:
    """Masks cropped to the contrast panel, those drawn on the B-mode panel mirrored onto it.

    Raises InputError for a mask that spans both panels or leaves the panel it was drawn on.
    """
    contrast_rows, contrast_cols = layout.contrast.slices
    placed = []
    for roi in rois:
        in_contrast = np.count_nonzero(roi.mask[contrast_rows, contrast_cols])
        in_bmode = 0
        if layout.bmode is not None:
            bmode_rows, bmode_cols = layout.bmode.slices
            in_bmode = np.count_nonzero(roi.mask[bmode_rows, bmode_cols])
        if in_contrast and in_bmode:
            raise InputError(f"ROI {roi.name!r} spans both the B-mode and the contrast panel of the dual "
                             "display; draw it on one panel", roi.source)
        if in_bmode:
            # Mirror: the same offset from the panel's corner, on the contrast panel.
            drawn = roi.mask[bmode_rows, bmode_cols]
            panel_mask = np.zeros((layout.contrast.rows, layout.contrast.columns), dtype=bool)
            rows = min(drawn.shape[0], panel_mask.shape[0])
            columns = min(drawn.shape[1], panel_mask.shape[1])
            panel_mask[:rows, :columns] = drawn[:rows, :columns]
            total = int(np.count_nonzero(panel_mask))
            panel = "B-mode"
        else:
            panel_mask = roi.mask[contrast_rows, contrast_cols]
            total = in_contrast
            panel = "contrast"
        if total != roi.pixels:
            raise InputError(f"ROI {roi.name!r} has {roi.pixels - total} of its {roi.pixels} pixels outside "
                             f"the {panel} panel (rows {_span(layout, panel, 0)}, columns "
                             f"{_span(layout, panel, 1)})", roi.source)
        placed.append(RoiMask(roi.name, np.ascontiguousarray(panel_mask), roi.source))
    return placed


def full_frame_on_contrast_panel(rois: Sequence[RoiMask], layout: DisplayLayout,
                                 frame_shape: tuple[int, int]) -> list[RoiMask]:
    """The ROIs as full-frame masks (``frame_shape`` rows, columns) where they are quantified: on the
    contrast panel, those drawn on the B-mode panel mirrored onto it (:func:`place_on_contrast_panel`)."""
    placed = []
    for roi in place_on_contrast_panel(rois, layout):
        mask = np.zeros(frame_shape, dtype=bool)
        mask[layout.contrast.slices] = roi.mask
        placed.append(RoiMask(roi.name, mask, roi.source))
    return placed


def _span(layout: DisplayLayout, panel: str, axis: int) -> str:
    region = layout.bmode if panel == "B-mode" else layout.contrast
    return f"{region.y0}-{region.y1}" if axis == 0 else f"{region.x0}-{region.x1}"


def time_intensity_curve(linear_panel: np.ndarray, panel_mask: np.ndarray) -> np.ndarray:
    """Mean linear intensity (a.u.) inside ``panel_mask`` for every frame of ``linear_panel`` (N, r, c)."""
    return linear_panel[:, panel_mask].mean(axis=1, dtype=np.float64)
