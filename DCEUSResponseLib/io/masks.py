"""Regions of interest: reading masks, placing them on the contrast panel, sampling TICs.

Masks are 2D, in full-frame pixel coordinates of the reference frame (row, column), non-zero
inside. Accepted files: ``.png`` (any mode; the alpha channel if it is used, else any non-zero
channel), ``.npy``, ``.nrrd`` and Slicer segmentations ``.seg.nrrd`` (one ROI per segment).

A Slicer segmentation is placed on the frame through physical coordinates: the clip's *frame
geometry* puts pixel (row r, column c) at LPS (c * dx, r * dy, 0) mm, with (dy, dx) the clip's
pixel spacing (1 mm when the clip has no calibration). This is the geometry the DCEUSResponse
Slicer module gives the clip volume, so segments drawn on it in the Segment Editor land on the
right pixels.
"""
from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.errors import InputError


#: Where an analysis folder keeps each ROI as used (``export/contract.py`` writes, ``fuse`` reads them).
ROI_FOLDER = "rois"


def roi_png_path(name: str) -> str:
    """``rois/<NAME>.png``, relative to the analysis folder; characters a file name cannot hold become ``_``."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip() or "_"
    return f"{ROI_FOLDER}/{'_' + safe if safe in ('.', '..') else safe}.png"


def parse_roi_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH`` (the latter for segmentations, whose segments name themselves)."""
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec):
        return name.strip(), path
    return None, spec


def read_roi_masks(specs: Sequence[str], frame_shape: tuple[int, int],
                   spacing_mm: tuple[float, float] | None = None) -> list[RoiMask]:
    """Read every ``--roi`` spec into full-frame masks; names must be unique and masks non-empty."""
    rois: list[RoiMask] = []
    for spec in specs:
        name, path = parse_roi_spec(spec)
        if not os.path.isfile(path):
            raise InputError("ROI mask file not found", path)
        if path.lower().endswith(".seg.nrrd"):
            for segment_name, mask in _read_segmentation(path, frame_shape, spacing_mm):
                full_name = f"{name}{segment_name}" if name else segment_name
                rois.append(RoiMask(full_name, mask, path))
            continue
        if name is None:
            raise InputError("give the ROI a name: --roi NAME=MASK", path)
        mask = _read_mask_image(path)
        if mask.shape != tuple(frame_shape):
            raise InputError(f"mask is {mask.shape[0]} x {mask.shape[1]} pixels but the clip's frames are "
                             f"{frame_shape[0]} x {frame_shape[1]} (rows x columns)", path)
        rois.append(RoiMask(name, mask, path))
    seen: dict[str, str] = {}
    for roi in rois:
        if roi.name in seen:
            raise InputError(f"duplicate ROI name {roi.name!r} (also from {seen[roi.name]})", roi.source)
        seen[roi.name] = roi.source
        if roi.pixels == 0:
            raise InputError(f"ROI {roi.name!r} is empty (no non-zero pixel)", roi.source)
    return rois


def _read_mask_image(path: str) -> np.ndarray:
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            data = np.load(path, allow_pickle=False)
        elif lower.endswith(".nrrd"):
            import nrrd

            data, _ = nrrd.read(path, index_order="C")
        elif lower.endswith(".png"):
            from PIL import Image

            with Image.open(path) as image:
                data = _png_mask(image)
        else:
            raise InputError("unknown mask format (use .png, .npy, .nrrd or .seg.nrrd)", path)
    except InputError:
        raise
    except Exception as error:  # every reader has its own error types; all mean "unreadable"
        raise InputError(f"cannot read the mask: {' '.join(str(error).split())}", path) from None
    data = np.asarray(data)
    if data.ndim == 3 and 1 in data.shape:
        data = data.squeeze()
    if data.ndim != 2:
        raise InputError(f"a mask must be a 2D image, got an array of shape {data.shape}", path)
    return data != 0


def _png_mask(image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA"):
        array = np.asarray(image.convert("RGBA"))
        alpha = array[..., 3]
        if alpha.min() < 255:
            return alpha > 0
        return np.any(array[..., :3] != 0, axis=-1)
    if image.mode in ("1", "L", "I", "I;16", "F", "P"):
        return np.asarray(image) != 0 if image.mode != "P" else np.asarray(image.convert("L")) != 0
    return np.any(np.asarray(image.convert("RGB")) != 0, axis=-1)


def _read_segmentation(path: str, frame_shape: tuple[int, int],
                       spacing_mm: tuple[float, float] | None):
    import slicerio

    try:
        segmentation = slicerio.read_segmentation(path)
    except Exception as error:
        raise InputError(f"cannot read the Slicer segmentation: {' '.join(str(error).split())}", path) from None
    segments = segmentation.get("segments") or []
    if not segments:
        raise InputError("the segmentation has no segments", path)
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=np.float64)
    row_mm, col_mm = spacing_mm if spacing_mm else (1.0, 1.0)  # as Clip.frame_spacing_mm
    # frame (column, row) = LPS (x / dx, y / dy): compose with the segmentation's voxel-to-LPS matrix
    lps_to_frame = np.diag([1.0 / col_mm, 1.0 / row_mm, 1.0, 1.0])
    ijk_to_frame = lps_to_frame @ ijk_to_lps
    linear = ijk_to_frame[:2, :2]
    offset = ijk_to_frame[:2, 3]
    if not np.allclose(np.abs(linear), np.eye(2), atol=1e-3) or not np.allclose(offset, np.round(offset), atol=1e-2):
        raise InputError("the segmentation's grid is not the clip's pixel grid (spacing "
                         f"{np.abs(np.diag(ijk_to_lps))[:2].round(4).tolist()} mm vs the clip's "
                         f"{[col_mm, row_mm]} mm); draw it on the clip as loaded by DCEUSResponse", path)
    for segment in segments:
        mask_ijk = slicerio.segment_mask(segmentation, segment)
        if mask_ijk.ndim == 3:
            if mask_ijk.shape[2] != 1 and np.count_nonzero(mask_ijk.any(axis=(0, 1))) > 1:
                raise InputError(f"segment {segment.get('name')!r} spans several slices; "
                                 "a CEUS ROI is 2D", path)
            mask_ijk = mask_ijk.any(axis=2)
        i_index, j_index = np.nonzero(mask_ijk)
        ij = np.stack([i_index, j_index]).astype(np.float64)
        columns_rows = np.round(linear @ ij + offset[:, None]).astype(np.int64)
        columns, rows = columns_rows
        inside = (rows >= 0) & (rows < frame_shape[0]) & (columns >= 0) & (columns < frame_shape[1])
        if not np.all(inside):
            raise InputError(f"segment {segment.get('name')!r} lies partly outside the clip's "
                             f"{frame_shape[0]} x {frame_shape[1]} frame", path)
        mask = np.zeros(frame_shape, dtype=bool)
        mask[rows, columns] = True
        yield str(segment.get("name") or segment.get("id")), mask


