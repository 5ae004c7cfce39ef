"""Regions of interest: reading masks, placing them on the contrast panel, sampling TICs.

Masks are 2D, in full-frame pixel coordinates of the reference frame (row, column), non-zero
inside. Accepted files: ``.png`` (any mode; the alpha channel if it is used, else any non-zero
channel), ``.npy``, ``.nrrd`` and Slicer segmentations ``.seg.nrrd`` (one ROI per segment).

A Slicer segmentation is placed on the frame through physical coordinates: the clip's *frame
geometry* puts pixel (row r, column c) at LPS (c * dx, r * dy, 0) mm, with (dy, dx) the clip's
pixel spacing (1 mm when the clip has no calibration). This is the geometry the DCEUSResponse
Slicer module gives the clip volume, so segments drawn on it in the Segment Editor land on the
right pixels.

Hostile files are refused from their headers, before any pixel is decoded: a mask whose size is
not the frame's (a 1.6 MB gzip NRRD may claim 40000 x 40000 pixels), a NRRD that points to a
detached data file elsewhere, NaN or infinite values, a file that is not a regular file.
"""
from __future__ import annotations

import os
import re
import unicodedata
from typing import Sequence

import numpy as np

from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.files import require_regular_file
from DCEUSResponseLib.spatial.frame import FrameGeometry

#: A segmentation may hold several layers and a few slices; more voxels than this many frames' worth
#: cannot be a 2D CEUS segmentation and are refused before reading.
MAX_SEGMENTATION_FRAMES = 64


#: Where an analysis folder keeps each ROI as used (``export/contract.py`` writes, ``fuse`` reads them).
ROI_FOLDER = "rois"


def roi_png_path(name: str) -> str:
    """``rois/<NAME>.png``, relative to the analysis folder; characters a file name cannot hold become ``_``."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip() or "_"
    return f"{ROI_FOLDER}/{'_' + safe if safe in ('.', '..') else safe}.png"


def check_roi_names(rois: Sequence[RoiMask]) -> None:
    """One-line :class:`InputError` for two ROIs of one name, or whose ``rois/<NAME>.png`` would be one
    file (names differing only in case, for macOS and Windows, or in characters a file name cannot hold):
    the second mask would replace the first, which ``fuse`` and the DICOM writers read back."""
    seen: dict[str, str] = {}
    files: dict[str, str] = {}  # ROI file name, normalised and lower case -> ROI name
    for roi in rois:
        if roi.name in seen:
            raise InputError(f"duplicate ROI name {roi.name!r} (also from {seen[roi.name]})", roi.source)
        seen[roi.name] = roi.source
        # macOS compares names case-insensitively after Unicode normalisation, Windows by upper case:
        # NFC and lower() catch both without calling Maß and MASS one file.
        file_key = unicodedata.normalize("NFC", roi_png_path(roi.name)).lower()
        if file_key in files:
            raise InputError(f"ROI names {files[file_key]!r} and {roi.name!r} would share the file "
                             f"{roi_png_path(roi.name)} (they differ only in case or in characters a file name "
                             "cannot hold): rename one", roi.source)
        files[file_key] = roi.name


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
        require_regular_file(path, "ROI mask file")
        if path.lower().endswith(".seg.nrrd"):
            for segment_name, mask in _read_segmentation(path, frame_shape, spacing_mm):
                full_name = f"{name}{segment_name}" if name else segment_name
                rois.append(RoiMask(full_name, mask, path))
            continue
        if name is None:
            raise InputError("give the ROI a name: --roi NAME=MASK", path)
        rois.append(RoiMask(name, _read_mask_image(path, tuple(frame_shape)), path))
    check_roi_names(rois)
    for roi in rois:
        if roi.pixels == 0:
            raise InputError(f"ROI {roi.name!r} is empty (no non-zero pixel)", roi.source)
    return rois


def _read_mask_image(path: str, frame_shape: tuple[int, int]) -> np.ndarray:
    """The boolean mask in ``path``, its size checked against ``frame_shape`` before decoding."""
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            data = _read_npy(path, frame_shape)
        elif lower.endswith(".nrrd"):
            import nrrd

            _check_shape(_nrrd_header_shape(path), frame_shape, path)
            data, _ = nrrd.read(path, index_order="C")
        elif lower.endswith(".png"):
            import warnings

            from PIL import Image

            with warnings.catch_warnings():
                # Pillow warns of a "decompression bomb" from the size alone; the size is checked here.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
            with image:
                _check_shape((image.height, image.width), frame_shape, path)
                data = _png_mask(image)
        else:
            raise InputError("unknown mask format (use .png, .npy, .nrrd or .seg.nrrd)", path)
    except InputError:
        raise
    except Exception as error:  # every reader has its own error types; all mean "unreadable"
        raise InputError(f"cannot read the mask: {' '.join(str(error).split())}", path) from None
    data = np.asarray(data)
    _check_shape(data.shape, frame_shape, path)
    if data.dtype.kind not in "biuf":
        raise InputError(f"a mask holds numbers, not values of type {data.dtype}", path)
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise InputError("the mask holds NaN or infinite values; a mask is 0 outside the ROI and non-zero inside",
                         path)
    return data.reshape(frame_shape) != 0


def _check_shape(shape: tuple[int, ...], frame_shape: tuple[int, int], path: str) -> None:
    """A mask is one frame: (rows, columns), possibly with axes of length 1 around it."""
    plane = tuple(int(n) for n in shape if int(n) != 1) if len(shape) > 2 else tuple(int(n) for n in shape)
    if len(plane) != 2:
        raise InputError(f"a mask must be a 2D image, got an array of shape {tuple(int(n) for n in shape)}", path)
    if plane != tuple(frame_shape):
        raise InputError(f"mask is {plane[0]} x {plane[1]} pixels but the clip's frames are "
                         f"{frame_shape[0]} x {frame_shape[1]} (rows x columns)", path)


def _read_npy(path: str, frame_shape: tuple[int, int]) -> np.ndarray:
    """An ``.npy`` array, its header (shape, type, data length) checked before the data is read."""
    with open(path, "rb") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
        _check_shape(shape, frame_shape, path)
        if dtype.hasobject:
            raise InputError("the mask holds Python objects, not numbers", path)
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if os.fstat(stream.fileno()).st_size - stream.tell() < expected:
            raise InputError("the .npy file is truncated: it holds less data than its header says", path)
    return np.load(path, allow_pickle=False)


def _nrrd_header_shape(path: str) -> tuple[int, ...]:
    """Array shape (C order) from a NRRD header, which must keep its data in the same file."""
    import nrrd

    header = nrrd.read_header(path)
    if "data file" in header or "datafile" in header:
        raise InputError("the NRRD header points to a detached data file; only NRRD files holding their own "
                         "data (.nrrd, .seg.nrrd) are read", path)
    return tuple(int(n) for n in reversed(list(header["sizes"])))


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
        shape = _nrrd_header_shape(path)
        if int(np.prod(shape, dtype=np.int64)) > MAX_SEGMENTATION_FRAMES * frame_shape[0] * frame_shape[1]:
            raise InputError(f"the segmentation is {' x '.join(map(str, shape))} voxels, far more than a segmentation "
                             f"of the clip's {frame_shape[0]} x {frame_shape[1]} frame can be", path)
        segmentation = slicerio.read_segmentation(path)
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"cannot read the Slicer segmentation: {' '.join(str(error).split())}", path) from None
    segments = segmentation.get("segments") or []
    if not segments:
        raise InputError("the segmentation has no segments", path)
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=np.float64)
    geometry = FrameGeometry.from_spacing(spacing_mm)
    row_mm, col_mm = geometry.spacing_mm
    ijk_to_frame = geometry.lps_to_pixel_matrix() @ ijk_to_lps  # voxel -> frame (column, row)
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


