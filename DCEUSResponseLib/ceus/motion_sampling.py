"""Using a measured breathing motion: ROIs that move with the anatomy, and frames moved back.

:func:`motion_compensated_tic` and :func:`shift_mask` carry an ROI drawn on the reference frame to
where the anatomy is in each frame (bilinear weights, no resampling of speckle);
:func:`sample_shifted` reads one frame at the displaced positions of a block of reference-grid
pixels (bilinear, a whole-pixel gather plus a fractional blend), which is how the parametric maps
bring every frame back onto the reference frame. The displacement convention is the one of
:mod:`.motion`: the content at reference pixel p is found at p + d in frame k.
"""
from __future__ import annotations

import numpy as np

from DCEUSResponseLib.errors import InputError

#: motion_compensated_tic: a frame whose moved ROI keeps less than this fraction inside the panel is NaN.
ROI_MIN_INSIDE_FRACTION = 0.5


def motion_compensated_tic(linear_panel: np.ndarray, panel_mask: np.ndarray,
                           displacement_px: np.ndarray, lookup: np.ndarray | None = None) -> np.ndarray:
    """Mean linear intensity (a.u.) per frame inside ``panel_mask`` moved along with the anatomy.

    ``linear_panel``: (N, rows, columns) linear echo power of the contrast panel, or, with ``lookup``
    (the linear intensity of every stored value), the panel's stored integer values: only the ROI's
    pixels are then linearised, never the whole panel (the same numbers); ``panel_mask``:
    (rows, columns) bool ROI on the reference frame; ``displacement_px``: (N, 2) (row, column)
    displacement of the anatomy per frame (:attr:`.motion.MotionEstimate.displacement_px`). Returns (N,)
    float64; NaN for frames where less than half the moved ROI lies inside the panel.

    The ROI is moved, not the frames: each ROI pixel p is carried to p + d with bilinear weights over
    the four pixels around it (:func:`shift_mask`), and the TIC value is the weighted mean of the
    frame's *original* pixel values. Inside the ROI the four weights landing on any pixel add up to
    exactly 1, so only the ROI's rim gets fractional (partial-volume) weights; no speckle intensity is
    interpolated or smoothed, as resampling every frame onto the reference grid would do (which also
    changes speckle statistics and costs a full-frame resampling per frame). The cost is proportional
    to the ROI's size: four gathers of its pixels per frame. Pixels moved outside the panel are
    dropped (their weight is not counted).
    """
    frames = np.asarray(linear_panel)
    mask = np.asarray(panel_mask, dtype=bool)
    shifts = np.asarray(displacement_px, dtype=np.float64)
    if frames.ndim != 3:
        raise InputError(f"linear panel must be (frames, rows, columns), got shape {frames.shape}")
    n_frames, rows, columns = frames.shape
    if mask.shape != (rows, columns):
        raise InputError(f"ROI mask is {mask.shape} but the panel is {rows} x {columns}")
    if shifts.shape != (n_frames, 2) or not np.all(np.isfinite(shifts)):
        raise InputError(f"displacement must be {n_frames} finite (row, column) pairs, got shape {shifts.shape}")
    roi_rows, roi_columns = np.nonzero(mask)
    n_pixels = roi_rows.size
    if n_pixels == 0:
        raise InputError("the ROI mask is empty")
    whole_rows = np.floor(shifts[:, 0]).astype(np.int64)
    whole_columns = np.floor(shifts[:, 1]).astype(np.int64)
    row_fraction = shifts[:, 0] - whole_rows
    column_fraction = shifts[:, 1] - whole_columns
    top, bottom = int(roi_rows.min()), int(roi_rows.max())
    left, right = int(roi_columns.min()), int(roi_columns.max())
    # A frame whose moved ROI lies inside is read through the block of rows top+dr .. bottom+dr+1 and
    # columns left+dc .. right+dc+1 (the ROI and its bilinear neighbours): in that block the ROI's
    # pixels sit at the same flat positions in every frame, so each frame is one 1-D gather per weight.
    box_columns = right - left + 2
    at_box = (roi_rows - top) * box_columns + (roi_columns - left)
    box_positions = {(step_row, step_column): at_box + (step_row * box_columns + step_column)
                     for step_row in (0, 1) for step_column in (0, 1)}
    tic = np.empty(n_frames)
    for k in range(n_frames):
        dr, dc = int(whole_rows[k]), int(whole_columns[k])
        fr, fc = float(row_fraction[k]), float(column_fraction[k])
        fully_inside = top + dr >= 0 and bottom + dr + 1 < rows and left + dc >= 0 and right + dc + 1 < columns
        if fully_inside:
            box = np.ascontiguousarray(frames[k, top + dr:bottom + dr + 2, left + dc:right + dc + 2]).reshape(-1)
        else:
            frame, row_offset, column_offset = _frame_values(frames[k], lookup, top + dr, bottom + dr + 2,
                                                             left + dc, right + dc + 2)
        total = 0.0
        weight_inside = 0.0
        for step_row, weight_row in ((0, 1.0 - fr), (1, fr)):
            if weight_row == 0.0:
                continue
            for step_column, weight_column in ((0, 1.0 - fc), (1, fc)):
                weight = weight_row * weight_column
                if weight == 0.0:
                    continue
                if fully_inside:
                    values = box.take(box_positions[step_row, step_column])
                    if lookup is not None:
                        values = lookup.take(values)
                    total += weight * float(values.sum(dtype=np.float64))
                    weight_inside += weight * n_pixels
                    continue
                r = roi_rows + (dr + step_row)
                c = roi_columns + (dc + step_column)
                inside = (r >= 0) & (r < rows) & (c >= 0) & (c < columns)
                total += weight * float(frame[r[inside] - row_offset, c[inside] - column_offset].sum(dtype=np.float64))
                weight_inside += weight * int(np.count_nonzero(inside))
        tic[k] = total / weight_inside if weight_inside >= ROI_MIN_INSIDE_FRACTION * n_pixels else np.nan
    return tic


def _frame_values(frame: np.ndarray, lookup: np.ndarray | None, row_start: int, row_stop: int, column_start: int,
                  column_stop: int) -> tuple[np.ndarray, int, int]:
    """The frame's values where the moved ROI can land, and that block's (row, column) offset: the frame
    itself, or, with a lookup table, only the block (clipped to the frame) linearised once."""
    if lookup is None:
        return frame, 0, 0
    row_start, column_start = max(row_start, 0), max(column_start, 0)
    row_stop, column_stop = max(min(row_stop, frame.shape[0]), row_start), max(min(column_stop, frame.shape[1]),
                                                                               column_start)
    return lookup[frame[row_start:row_stop, column_start:column_stop]], row_start, column_start


def shift_mask(mask: np.ndarray, displacement_px) -> np.ndarray:
    """``mask`` moved by ``displacement_px`` (row, column) as float weights 0..1 (bilinear, sub-pixel).

    Each mask pixel p spreads its unit weight over the four pixels around p + d; weight moved outside
    the array is dropped. Useful to draw an ROI where it is in a given frame. The weights are the
    ones :func:`motion_compensated_tic` uses.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputError(f"a mask must be 2-D, got shape {mask.shape}")
    shift = np.asarray(displacement_px, dtype=np.float64).reshape(-1)
    if shift.shape != (2,) or not np.all(np.isfinite(shift)):
        raise InputError(f"a displacement is one finite (row, column) pair, got {displacement_px!r}")
    rows, columns = mask.shape
    roi_rows, roi_columns = np.nonzero(mask)
    whole = np.floor(shift).astype(np.int64)
    fraction = shift - whole
    weights = np.zeros(rows * columns)
    for step_row, weight_row in ((0, 1.0 - fraction[0]), (1, fraction[0])):
        for step_column, weight_column in ((0, 1.0 - fraction[1]), (1, fraction[1])):
            weight = weight_row * weight_column
            if weight == 0.0:
                continue
            r = roi_rows + whole[0] + step_row
            c = roi_columns + whole[1] + step_column
            inside = (r >= 0) & (r < rows) & (c >= 0) & (c < columns)
            weights += np.bincount(r[inside] * columns + c[inside], minlength=rows * columns) * weight
    return weights.reshape(rows, columns)


def sample_shifted(image: np.ndarray, top: int, left: int, rows: int, columns: int,
                   displacement_px) -> np.ndarray:
    """``image`` sampled at (r + d_row, c + d_column) for the block r in top..top+rows-1, c in
    left..left+columns-1 (pixels of ``image``), bilinear, positions outside clamped to the edge.

    The same values as ``scipy.ndimage.map_coordinates(image, ..., order=1, mode="nearest")`` on the
    shifted grid, but a pure translation needs no coordinate grid: two row gathers blended by the
    row fraction, then two column gathers blended by the column fraction (float32 out).
    """
    image = np.asarray(image)
    shift = np.asarray(displacement_px, dtype=np.float64).reshape(-1)
    if image.ndim != 2 or shift.shape != (2,) or not np.all(np.isfinite(shift)):
        raise InputError(f"sample_shifted needs a 2-D image and one finite (row, column) shift, "
                         f"got shapes {image.shape} and {shift.shape}")
    whole = np.floor(shift)
    row_fraction, column_fraction = np.float32(shift[0] - whole[0]), np.float32(shift[1] - whole[1])
    row_index = np.arange(top, top + rows) + int(whole[0])
    column_index = np.arange(left, left + columns) + int(whole[1])
    last_row, last_column = image.shape[0] - 1, image.shape[1] - 1
    upper = image[np.clip(row_index, 0, last_row)].astype(np.float32, copy=False)
    blended = upper if row_fraction == 0 else \
        upper + row_fraction * (image[np.clip(row_index + 1, 0, last_row)] - upper)
    first = np.clip(column_index, 0, last_column)
    out = blended[:, first]
    if column_fraction != 0:
        out += column_fraction * (blended[:, np.clip(column_index + 1, 0, last_column)] - out)
    return out
