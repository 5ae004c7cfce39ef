"""Read ultrasound cine clips from DICOM into a :class:`~DCEUSResponseLib.clip.Clip`.

Two storage forms are accepted:

* one Ultrasound Multi-frame Image Storage file (or any other multi-frame image, with a warning);
* a folder holding one series of single-frame Ultrasound Image Storage files, one per frame.

Every problem with the input is an :class:`~DCEUSResponseLib.errors.InputError` naming the file.
The file and pixel decoding are :mod:`~DCEUSResponseLib.io.dicom_frames`, the frame times
:mod:`~DCEUSResponseLib.io.dicom_timing`; this module assembles the clip (frames, times, regions,
calibration, identifiers). pydicom is imported inside the functions (package rule).
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from DCEUSResponseLib.clip import IDENTIFYING_KEYWORDS, LINKING_UID_KEYWORDS, Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_frames import (
    decode_pixels,
    number_of_frames,
    raise_if_truncated,
    read_dataset,
    read_image_dataset,
    sop_class_warnings,
)
from DCEUSResponseLib.io.dicom_timing import clock_seconds, multiframe_times, series_times

TISSUE_REGION_DATA_TYPE = 1  # Region Data Type 1 = tissue (B-mode / contrast image)
SPATIAL_FORMAT_2D = 1  # Region Spatial Format 1 = 2D
PHYSICAL_UNITS_CM = 3
MM_PER_CM = 10.0


# --------------------------------------------------------------------------------------------
# public API


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
        Missing path, empty folder, not DICOM, no pixel data, a single frame, truncated pixel
        data, unsupported encoding, missing or non-increasing frame times, mixed series.
    """
    if frame_rate_hz is not None and not (math.isfinite(frame_rate_hz) and frame_rate_hz > 0):
        raise InputError(f"--frame-rate must be a positive number of frames per second, not {frame_rate_hz}")
    path_str = os.fspath(path)
    if not os.path.exists(path_str):
        raise InputError("not found", path_str)
    if os.path.isdir(path_str):
        return _read_series_folder(path_str, frame_rate_hz)
    ds, dataset_warnings = read_image_dataset(path_str)
    n_frames = number_of_frames(ds, path_str)
    if n_frames < 2:
        raise InputError(
            "holds a single frame; a cine clip needs at least 2 frames "
            "(for a series of single-frame files give the folder)",
            path_str,
        )
    return _clip_from_multiframe(ds, path_str, n_frames, frame_rate_hz, dataset_warnings)


# --------------------------------------------------------------------------------------------
# multi-frame file


def _clip_from_multiframe(
    ds: Any, path: str, n_frames: int, frame_rate_hz: float | None, clip_warnings: list[str]
) -> Clip:
    # Timing first: a clip without usable times is refused before the costly decoding.
    frame_times, timing_source, timing_warnings = multiframe_times(ds, n_frames, frame_rate_hz, path)
    frames, photometric, palette = decode_pixels(ds, path, n_frames)
    regions, region_warnings = ultrasound_regions(ds, frames.shape[1], frames.shape[2])
    return Clip(
        source=path,
        frames=frames,
        frame_times_s=frame_times,
        photometric=photometric,
        bits_stored=int(ds.BitsStored),
        palette=palette,
        pixel_spacing_mm=_pixel_spacing_mm(ds, regions),
        regions=regions,
        timing_source=timing_source,
        warnings=clip_warnings + timing_warnings + region_warnings,
        uids=_identifiers(ds),
    )


# --------------------------------------------------------------------------------------------
# single-frame series in a folder


def _read_series_folder(folder: str, frame_rate_hz: float | None) -> Clip:
    names = sorted(name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise InputError("empty folder: no files to read", folder)
    images: list[tuple[str, Any]] = []
    non_image_names: list[str] = []
    folder_warnings: list[str] = []
    for name in names:
        file_path = os.path.join(folder, name)
        ds = read_dataset(file_path, skip_non_dicom=True)
        if ds is None:
            continue
        if "PixelData" not in ds:
            raise_if_truncated(ds, file_path)
            non_image_names.append(name)  # e.g. a DICOMDIR or a report next to the images
            continue
        images.append((file_path, ds))
    if not images:
        raise InputError("contains no DICOM image files", folder)
    if non_image_names:
        folder_warnings.append(
            f"ignored {len(non_image_names)} DICOM file(s) without pixel data: "
            + ", ".join(non_image_names[:5])
        )

    multiframe = [(p, ds) for p, ds in images if number_of_frames(ds, p) > 1]
    if multiframe:
        if len(images) == 1:
            file_path, ds = multiframe[0]
            n_frames = number_of_frames(ds, file_path)
            clip_warnings = folder_warnings + sop_class_warnings(ds)
            return _clip_from_multiframe(ds, file_path, n_frames, frame_rate_hz, clip_warnings)
        raise InputError(
            f"holds {len(multiframe)} multi-frame file(s) among {len(images)} images; "
            "give one multi-frame file, or a folder holding only one single-frame series",
            folder,
        )
    if len(images) == 1:
        raise InputError(
            "is the only image in its folder and holds a single frame; a cine clip needs at least 2 frames",
            images[0][0],
        )

    series_uids = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in images})
    if len(series_uids) > 1:
        raise InputError(
            f"holds files of {len(series_uids)} different series; put one series per folder", folder
        )
    _check_same_geometry(images)

    ordered, times_by_file, time_label = _order_series(images)
    first_ds = ordered[0][1]
    frame_times, timing_source, timing_warnings = series_times(
        first_ds, times_by_file, time_label, len(ordered), frame_rate_hz, folder, [p for p, _ in ordered]
    )
    frame_parts = []
    photometric, palette = "", None
    for file_path, ds in ordered:
        pixels, photometric, file_palette = decode_pixels(ds, file_path, 1)
        palette = file_palette if palette is None else palette  # one series, one palette
        frame_parts.append(pixels.reshape(pixels.shape[-3:] if photometric == "RGB" else pixels.shape[-2:]))
    frames = np.stack(frame_parts)
    regions, region_warnings = ultrasound_regions(first_ds, frames.shape[1], frames.shape[2])
    sop_warnings = sop_class_warnings(first_ds)
    return Clip(
        source=folder,
        frames=frames,
        frame_times_s=frame_times,
        photometric=photometric,
        bits_stored=int(first_ds.BitsStored),
        palette=palette,
        pixel_spacing_mm=_pixel_spacing_mm(first_ds, regions),
        regions=regions,
        timing_source=timing_source,
        warnings=folder_warnings + sop_warnings + timing_warnings + region_warnings,
        uids=_identifiers(first_ds),
    )


def _check_same_geometry(images: list[tuple[str, Any]]) -> None:
    """All frames of one clip must share size and pixel encoding."""
    keywords = (
        "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored"
    )
    reference_path, reference = images[0]
    expected = tuple(reference.get(k) for k in keywords)
    for file_path, ds in images[1:]:
        found = tuple(ds.get(k) for k in keywords)
        if found != expected:
            differing = [k for k, a, b in zip(keywords, expected, found) if a != b]
            raise InputError(
                f"{', '.join(differing)} differ from {os.path.basename(reference_path)} in the same folder",
                file_path,
            )


def _order_series(images: list[tuple[str, Any]]) -> tuple[list[tuple[str, Any]], list[float] | None, str]:
    """Sort by Instance Number (tie-break: frame time, then name); frame times if every file has one."""
    times_by_path: dict[str, float] = {}
    time_label = ""
    for keywords, label in (
        (("AcquisitionDateTime",), "AcquisitionDateTime"),
        (("AcquisitionDate", "AcquisitionTime"), "AcquisitionTime"),
        (("ContentDate", "ContentTime"), "ContentTime"),
    ):
        candidate = {p: clock_seconds(ds, keywords) for p, ds in images}
        if all(value is not None for value in candidate.values()):
            times_by_path = {p: float(v) for p, v in candidate.items() if v is not None}
            time_label = label
            break

    def instance_number(ds: Any) -> float | None:
        try:
            return float(ds.InstanceNumber)
        except (AttributeError, TypeError, ValueError):
            return None

    have_numbers = all(instance_number(ds) is not None for _, ds in images)

    def sort_key(item: tuple[str, Any]) -> tuple[float, float, str]:
        file_path, ds = item
        number = instance_number(ds) if have_numbers else 0.0
        return (number or 0.0, times_by_path.get(file_path, 0.0), os.path.basename(file_path))

    ordered = sorted(images, key=sort_key)
    times = [times_by_path[p] for p, _ in ordered] if times_by_path else None
    return ordered, times, time_label


# --------------------------------------------------------------------------------------------
# reading and decoding


# --------------------------------------------------------------------------------------------
# geometry and identifiers


def ultrasound_regions(ds: Any, rows: int, columns: int) -> tuple[list[UltrasoundRegion], list[str]]:
    """2D tissue regions (Region Data Type 1, Spatial Format 1) clipped to the image.

    Colour-flow, Doppler and other regions are skipped: intensities are only measured in
    tissue (B-mode / contrast) regions.
    """
    items = list(ds.get("SequenceOfUltrasoundRegions", []) or [])
    kept: list[UltrasoundRegion] = []
    notes: list[str] = []
    for number, item in enumerate(items, start=1):
        try:
            spatial_format = int(item.get("RegionSpatialFormat", 0))
            data_type = int(item.get("RegionDataType", 0))
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            notes.append(f"ultrasound region {number} has no valid location; ignored")
            continue
        if spatial_format != SPATIAL_FORMAT_2D or data_type != TISSUE_REGION_DATA_TYPE:
            continue
        label = f"ultrasound region {number} (x {x0}..{x1}, y {y0}..{y1})"
        if x1 < x0 or y1 < y0:
            notes.append(f"{label} has its corners swapped; ignored")
            continue
        if x0 > columns - 1 or y0 > rows - 1 or x1 < 0 or y1 < 0:
            notes.append(f"{label} lies entirely outside the {columns}x{rows} image; ignored")
            continue
        clipped = (max(x0, 0), max(y0, 0), min(x1, columns - 1), min(y1, rows - 1))
        if clipped != (x0, y0, x1, y1):
            notes.append(
                f"{label} extends outside the {columns}x{rows} image; clipped to "
                f"x {clipped[0]}..{clipped[2]}, y {clipped[1]}..{clipped[3]}"
            )
        kept.append(
            UltrasoundRegion(
                *clipped,
                spacing_mm=_region_spacing_mm(item),
                data_type=data_type,
                spatial_format=spatial_format,
            )
        )
    if items and not kept and not notes:
        notes.append(
            f"none of the {len(items)} ultrasound region(s) is a 2D tissue region; using the whole frame"
        )
    return kept, notes


def _region_spacing_mm(item: Any) -> tuple[float, float] | None:
    """(row, column) spacing in mm when both directions are calibrated in cm."""
    try:
        if int(item.get("PhysicalUnitsXDirection", 0)) != PHYSICAL_UNITS_CM:
            return None
        if int(item.get("PhysicalUnitsYDirection", 0)) != PHYSICAL_UNITS_CM:
            return None
        delta_x_cm, delta_y_cm = abs(float(item.PhysicalDeltaX)), abs(float(item.PhysicalDeltaY))
    except (AttributeError, TypeError, ValueError):
        return None
    if not (delta_x_cm > 0 and delta_y_cm > 0 and math.isfinite(delta_x_cm) and math.isfinite(delta_y_cm)):
        return None
    return (delta_y_cm * MM_PER_CM, delta_x_cm * MM_PER_CM)


def _pixel_spacing_mm(ds: Any, regions: list[UltrasoundRegion]) -> tuple[float, float] | None:
    for region in regions:
        if region.spacing_mm is not None:
            return region.spacing_mm
    spacing = ds.get("PixelSpacing")
    try:
        if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
            return (float(spacing[0]), float(spacing[1]))
    except (TypeError, ValueError):
        pass
    return None


def _identifiers(ds: Any) -> dict[str, str]:
    # Which of these reach the outputs is decided there (clip.shareable_uids).
    keywords = LINKING_UID_KEYWORDS + IDENTIFYING_KEYWORDS
    return {k: str(ds.get(k)) for k in keywords if ds.get(k) not in (None, "")}


# --------------------------------------------------------------------------------------------
# small helpers


