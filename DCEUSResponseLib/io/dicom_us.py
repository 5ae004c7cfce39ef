"""Read ultrasound cine clips from DICOM into a :class:`~DCEUSResponseLib.clip.Clip`.

Two storage forms are accepted:

* one Ultrasound Multi-frame Image Storage file (or any other multi-frame image, with a warning);
* a folder holding one series of single-frame Ultrasound Image Storage files, one per frame.

Every problem with the input is an :class:`~DCEUSResponseLib.errors.InputError` naming the file:
timing outside the bounds of :mod:`DCEUSResponseLib.io.timing`, a header that does not describe
its pixel data (:mod:`DCEUSResponseLib.io.dicom_frames`), a folder whose files are not one clip.
pydicom's warnings while reading become clip warnings instead of reaching stderr. pydicom is
imported inside the functions (package rule: only stdlib, numpy and scipy at module top level).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from DCEUSResponseLib.clip import Clip
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_dataset import (
    ULTRASOUND_SOP_CLASSES,
    US_MULTIFRAME_SOP_CLASSES,
    US_SINGLE_FRAME_SOP_CLASSES,
    clip_from_header,
    fallback_times,
    float_values,
    ignored_rate_warning,
    is_multi,
    number_of_frames,
    read_image_dataset,
    sop_class_warnings,
)
from DCEUSResponseLib.io.dicom_frames import check_pixel_data, decode_frames
from DCEUSResponseLib.io.dicom_series import clip_from_series, folder_images
from DCEUSResponseLib.io.files import require_regular_file
from DCEUSResponseLib.io.timing import check_frame_rate, check_intervals, uniform_times

__all__ = ["read_clip", "ULTRASOUND_SOP_CLASSES", "US_MULTIFRAME_SOP_CLASSES", "US_SINGLE_FRAME_SOP_CLASSES"]

_FRAME_TIME_TAG = 0x00181063
_FRAME_TIME_VECTOR_TAG = 0x00181065



def read_clip(path: str | os.PathLike, frame_rate_hz: float | None = None) -> Clip:
    """Read a cine clip from a multi-frame DICOM file or a folder holding a single-frame series.

    Parameters
    ----------
    path:
        An Ultrasound Multi-frame Image Storage file, or a folder of Ultrasound Image Storage
        single-frame files of one series (non-DICOM files in it are ignored).
    frame_rate_hz:
        Acquisition frame rate in frames per second, used when the file carries no exact timing:
        it replaces a missing timing and also an estimate from Cine Rate / Recommended Display
        Frame Rate (display rates, which need not equal the acquisition rate). When the file has
        exact timing (Frame Time Vector, Frame Time, per-file acquisition times) the argument is
        ignored with a warning.

    Returns
    -------
    Clip
        Frames as stored (MONOCHROME1 inverted so bright = high; YBR converted to RGB; palette
        indices kept with ``Clip.palette``), frame times in seconds from the first frame,
        the 2D tissue ultrasound regions clipped to the image, pixel spacing in mm.

    Raises
    ------
    InputError
        Missing path, not a regular file, empty folder, not DICOM, damaged header, no pixel
        data, a single frame, pixel data longer or shorter than the header says, a clip over
        :data:`~DCEUSResponseLib.io.files.MAX_DECODED_BYTES`, unsupported encoding,
        stored values beyond Bits Stored, missing, non-increasing or incredible frame times
        (see :mod:`DCEUSResponseLib.io.timing`), a ``frame_rate_hz`` outside 1/60..1000, a
        folder of files that differ in series, size, encoding or calibration.
    """
    frame_rate_hz = check_frame_rate(frame_rate_hz)
    path_str = os.fspath(path)
    if not os.path.exists(path_str) and not os.path.islink(path_str):
        raise InputError("not found", path_str)
    if os.path.isdir(path_str):
        return _read_folder(path_str, frame_rate_hz)
    require_regular_file(path_str, "clip file")
    ds, dataset_warnings = read_image_dataset(path_str)
    n_frames = number_of_frames(ds, path_str)
    if n_frames < 2:
        raise InputError(
            "holds a single frame; a cine clip needs at least 2 frames "
            "(for a series of single-frame files give the folder)",
            path_str,
        )
    return _clip_from_multiframe(ds, path_str, n_frames, frame_rate_hz, dataset_warnings)


def _read_folder(folder: str, frame_rate_hz: float | None) -> Clip:
    """A folder holding one multi-frame file, or the single-frame files of one clip."""
    images, folder_warnings = folder_images(folder)
    multiframe = [(p, ds) for p, ds in images if number_of_frames(ds, p) > 1]
    if not multiframe:
        return clip_from_series(folder, images, folder_warnings, frame_rate_hz)
    if len(images) > 1:
        raise InputError(
            f"holds {len(multiframe)} multi-frame file(s) among {len(images)} images; "
            "give one multi-frame file, or a folder holding only one single-frame series",
            folder,
        )
    file_path, ds = multiframe[0]
    clip_warnings = folder_warnings + sop_class_warnings(ds)
    return _clip_from_multiframe(ds, file_path, number_of_frames(ds, file_path), frame_rate_hz, clip_warnings)


def _clip_from_multiframe(
    ds: Any, path: str, n_frames: int, frame_rate_hz: float | None, clip_warnings: list[str]
) -> Clip:
    # Sizes, then timing: a header that cannot describe its pixels, or a clip without usable times,
    # is refused before anything is sized from Number of Frames or decoded.
    check_pixel_data(ds, path, n_frames)
    frame_times, timing_source, timing_warnings = _multiframe_times(ds, n_frames, frame_rate_hz, path)
    frames, photometric, palette, decode_warnings = decode_frames(ds, path, n_frames)
    return clip_from_header(ds, path, frames, frame_times, photometric, palette, timing_source,
                            clip_warnings + decode_warnings + timing_warnings)


def _multiframe_times(
    ds: Any, n_frames: int, frame_rate_hz: float | None, path: str
) -> tuple[np.ndarray, str, list[str]]:
    """Frame times (s, first frame 0) from the Cine module, the argument, or an estimate."""
    vector = float_values(ds, "FrameTimeVector", path)
    frame_time_ms = float_values(ds, "FrameTime", path)
    pointer = ds.get("FrameIncrementPointer")
    pointer_tags = {int(tag) for tag in (pointer if is_multi(pointer) else [pointer])} if pointer else set()
    # When both are present the Frame Increment Pointer says which one describes the frames.
    prefer_frame_time = _FRAME_TIME_TAG in pointer_tags and _FRAME_TIME_VECTOR_TAG not in pointer_tags
    if vector is not None and not (prefer_frame_time and frame_time_ms is not None):
        times, pauses = _times_from_vector(vector, n_frames, path)
        return times, "FrameTimeVector", pauses + ignored_rate_warning(frame_rate_hz, "Frame Time Vector")
    if frame_time_ms is not None:
        return (
            uniform_times(frame_time_ms[0] / 1000.0, n_frames, "Frame Time", path),
            "FrameTime",
            ignored_rate_warning(frame_rate_hz, "Frame Time"),
        )
    return fallback_times(ds, n_frames, frame_rate_hz, path)


def _times_from_vector(vector_ms: np.ndarray, n_frames: int, path: str) -> tuple[np.ndarray, list[str]]:
    if vector_ms.size != n_frames:
        raise InputError(f"Frame Time Vector has {vector_ms.size} entries for {n_frames} frames", path)
    if not np.all(np.isfinite(vector_ms)):
        raise InputError("Frame Time Vector holds non-finite values", path)
    # Entry k is the time from frame k-1 to frame k; entry 0 (increment to the first frame)
    # only shifts the clock, so the frame intervals are entries 1..N-1.
    bad = np.flatnonzero(vector_ms[1:] <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        raise InputError(
            f"frame times are not increasing: Frame Time Vector entry {k + 1} is {vector_ms[k]:g} ms",
            path,
        )
    # Bounds before the sum, so absurd entries are named instead of overflowing to inf.
    pauses = check_intervals(vector_ms[1:] / 1000.0, "Frame Time Vector", path,
                             lambda k: f"(entry {k + 2}, {vector_ms[k + 1]:g} ms)")
    return np.concatenate([[0.0], np.cumsum(vector_ms[1:]) / 1000.0]), pauses
