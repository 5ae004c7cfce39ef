"""A folder of single-frame ultrasound images read as one cine clip.

The files must be frames of one clip (one series, size, encoding and calibration; no copies); they
are ordered by Instance Number and timed by their acquisition clock, checked against the bounds of
:mod:`DCEUSResponseLib.io.timing`. Files that are not DICOM are left out with a warning naming them.
"""
from __future__ import annotations

import datetime as _dt
import os
from typing import Any

import numpy as np

from DCEUSResponseLib.clip import Clip
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_dataset import (
    clip_from_header,
    fallback_times,
    float_values,
    ignored_rate_warning,
    number_of_frames,
    pixel_spacing_mm,
    raise_if_truncated,
    read_dataset,
    sop_class_warnings,
    ultrasound_regions,
)
from DCEUSResponseLib.io.dicom_frames import check_decoded_size, check_pixel_data, decode_frames
from DCEUSResponseLib.io.timing import check_intervals, uniform_times


def folder_images(folder: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """The DICOM images in ``folder`` (path, dataset), and warnings naming the files left out."""
    names = sorted(name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise InputError("empty folder: no files to read", folder)
    images: list[tuple[str, Any]] = []
    non_dicom_names: list[str] = []
    non_image_names: list[str] = []
    folder_warnings: list[str] = []
    for name in names:
        file_path = os.path.join(folder, name)
        read = read_dataset(file_path, skip_non_dicom=True)
        if read is None:
            non_dicom_names.append(name)  # a note, a thumbnail, or a frame file damaged beyond recognition
            continue
        ds, read_warnings = read
        folder_warnings += [w for w in read_warnings if w not in folder_warnings]
        if "PixelData" not in ds:
            raise_if_truncated(ds, file_path)
            non_image_names.append(name)  # e.g. a DICOMDIR or a report next to the images
            continue
        images.append((file_path, ds))
    if not images:
        raise InputError("contains no DICOM image files", folder)
    for label, left_out in (("not DICOM", non_dicom_names), ("DICOM without pixel data", non_image_names)):
        if left_out:
            shown = ", ".join(left_out[:5]) + (", ..." if len(left_out) > 5 else "")
            folder_warnings.append(f"ignored {len(left_out)} file(s) that are {label}: {shown}")
    return images, folder_warnings


def series_instances(folder: str) -> list[tuple[str, Any]]:
    """The files of a folder's single-frame series in clip order (frame k is item k), as (path, dataset).

    The same files and order as reading the folder as a clip (the DICOM outputs reference each
    frame's instance); InputError as there, or when the folder holds a multi-frame file.
    """
    images, _ = folder_images(folder)
    if any(number_of_frames(ds, path) > 1 for path, ds in images):
        raise InputError("holds a multi-frame file, not a series of single-frame files", folder)
    return _order_series(images)[0]


def clip_from_series(folder: str, images: list[tuple[str, Any]], folder_warnings: list[str],
                     frame_rate_hz: float | None) -> Clip:
    """The clip of the single-frame ``images`` (path, dataset) of ``folder`` (see :func:`folder_images`)."""
    if len(images) == 1:
        raise InputError(
            "is the only image in its folder and holds a single frame; a cine clip needs at least 2 frames",
            images[0][0],
        )
    ordered, times_by_file, time_label = _order_series(images)
    _check_one_clip(ordered, folder)
    folder_warnings = folder_warnings + _instance_number_gaps(ordered)
    first_ds = ordered[0][1]
    frame_times, timing_source, timing_warnings = _series_times(
        first_ds, times_by_file, time_label, len(ordered), frame_rate_hz, folder, [p for p, _ in ordered]
    )
    check_decoded_size(len(ordered), int(first_ds.Rows), int(first_ds.Columns),
                       int(first_ds.get("SamplesPerPixel", 1) or 1), int(first_ds.BitsAllocated), folder)
    frame_parts = []
    photometric, palette = "", None
    for file_path, ds in ordered:
        check_pixel_data(ds, file_path, 1)
        pixels, photometric, file_palette, decode_warnings = decode_frames(ds, file_path, 1)
        folder_warnings += [w for w in decode_warnings if w not in folder_warnings]
        palette = file_palette if palette is None else palette  # one series, one palette
        frame_parts.append(pixels.reshape(pixels.shape[-3:] if photometric == "RGB" else pixels.shape[-2:]))
    frames = np.stack(frame_parts)
    return clip_from_header(first_ds, folder, frames, frame_times, photometric, palette, timing_source,
                            folder_warnings + sop_class_warnings(first_ds) + timing_warnings)


def _check_one_clip(ordered: list[tuple[str, Any]], folder: str) -> None:
    """The files are frames of one clip: one series, one image size and encoding, one calibration.

    Refuses with one line naming the folder and two files that differ (the odd one, then one of
    the majority), and a file that is a copy of another (the same SOP Instance UID).
    """
    def geometry(ds: Any) -> tuple:
        regions, _ = ultrasound_regions(ds, int(ds.Rows), int(ds.Columns))
        spacing = pixel_spacing_mm(ds, regions)
        return (tuple(round(v, 9) for v in spacing) if spacing else None,
                tuple((r.x0, r.y0, r.x1, r.y1) for r in regions))

    checks = [("series", lambda ds: str(ds.get("SeriesInstanceUID", "") or ""))]
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                    "BitsStored"):
        checks.append((keyword, lambda ds, k=keyword: str(ds.get(k, ""))))
    checks += [("pixel spacing (mm)", lambda ds: geometry(ds)[0]),
               ("ultrasound regions", lambda ds: geometry(ds)[1])]
    for label, key in checks:
        values = [key(ds) for _, ds in ordered]
        majority = max(set(values), key=lambda v: (values.count(v), -values.index(v)))
        odd = next((k for k, v in enumerate(values) if v != majority), None)
        if odd is None:
            continue
        odd_name = os.path.basename(ordered[odd][0])
        reference_name = os.path.basename(ordered[values.index(majority)][0])
        if label == "series":
            problem = (f"holds files of {len(set(values))} different series ({odd_name} and {reference_name}); "
                       "put one series per folder")
        else:
            problem = (f"{odd_name} and {reference_name} differ in {label} ({values[odd]} vs {majority}); "
                       "the frames of one clip share it")
        raise InputError(problem, folder)
    seen: dict[str, str] = {}
    for file_path, ds in ordered:
        uid = str(ds.get("SOPInstanceUID", "") or "")
        if uid and uid in seen:
            raise InputError(f"{os.path.basename(file_path)} and {seen[uid]} are the same image (SOP Instance UID "
                             f"{uid}); remove the copy", folder)
        seen[uid] = os.path.basename(file_path)


def _instance_number_gaps(ordered: list[tuple[str, Any]]) -> list[str]:
    """A warning when Instance Numbers skip values: a frame file is missing or was unreadable."""
    try:
        numbers = sorted({int(ds.InstanceNumber) for _, ds in ordered})
    except (AttributeError, TypeError, ValueError):
        return []
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers)) if numbers[-1] - numbers[0] < 10**6 else []
    if not missing:
        return []
    shown = ", ".join(str(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return [f"Instance Number(s) {shown} missing between {numbers[0]} and {numbers[-1]}: "
            "frame files are missing or unreadable, the clip has gaps"]


def _order_series(images: list[tuple[str, Any]]) -> tuple[list[tuple[str, Any]], list[float] | None, str]:
    """Sort by Instance Number (tie-break: frame time, then name); frame times if every file has one."""
    times_by_path: dict[str, float] = {}
    time_label = ""
    for keywords, label in (
        (("AcquisitionDateTime",), "AcquisitionDateTime"),
        (("AcquisitionDate", "AcquisitionTime"), "AcquisitionTime"),
        (("ContentDate", "ContentTime"), "ContentTime"),
    ):
        candidate = {p: _clock_seconds(ds, keywords) for p, ds in images}
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


def _series_times(
    first_ds: Any,
    clock_times: list[float] | None,
    time_label: str,
    n_frames: int,
    frame_rate_hz: float | None,
    folder: str,
    ordered_paths: list[str],
) -> tuple[np.ndarray, str, list[str]]:
    if clock_times is not None:
        times = np.asarray(clock_times, dtype=float)
        times -= times[0]
        steps = np.diff(times)
        if np.all(steps > 0):
            def between(k: int) -> str:
                return f"between {os.path.basename(ordered_paths[k])} and {os.path.basename(ordered_paths[k + 1])}"

            pauses = check_intervals(steps, f"frame times ({time_label})", folder, between)
            return times, time_label, pauses + ignored_rate_warning(frame_rate_hz, time_label)
        if np.any(steps < 0):
            k = int(np.flatnonzero(steps < 0)[0])
            raise InputError(
                f"frame times ({time_label}) go backwards in Instance Number order: "
                f"{os.path.basename(ordered_paths[k + 1])} is {-steps[k]:g} s before "
                f"{os.path.basename(ordered_paths[k])}",
                folder,
            )
        # Equal times: the clock is too coarse (e.g. whole seconds); another source may still do.
        try:
            fallback_times, source, fallback_warnings = _times_without_clock(
                first_ds, n_frames, frame_rate_hz, folder
            )
        except InputError:
            raise InputError(
                f"frame times ({time_label}) repeat between consecutive frames (zero interval); "
                "give the acquisition frame rate with --frame-rate",
                folder,
            ) from None
        note = f"{time_label} repeats between frames (too coarse); timing taken from {source}"
        return fallback_times, source, [note] + fallback_warnings
    return _times_without_clock(first_ds, n_frames, frame_rate_hz, folder)


def _times_without_clock(
    ds: Any, n_frames: int, frame_rate_hz: float | None, path: str
) -> tuple[np.ndarray, str, list[str]]:
    """Series timing from Frame Time (if a scanner wrote it), ``--frame-rate``, or a display rate."""
    frame_time_ms = float_values(ds, "FrameTime", path)
    if frame_time_ms is not None:
        times = uniform_times(frame_time_ms[0] / 1000.0, n_frames, "Frame Time", path)
        return times, "FrameTime", ignored_rate_warning(frame_rate_hz, "Frame Time")
    return fallback_times(ds, n_frames, frame_rate_hz, path)


def _clock_seconds(ds: Any, keywords: tuple[str, ...]) -> float | None:
    """Seconds since 1970 (naive clock) from a DT, or a DA + TM pair; ``None`` if absent/invalid."""
    from pydicom.valuerep import DA, DT, TM

    try:
        if len(keywords) == 1:
            text = str(ds.get(keywords[0], "") or "").strip()
            if not text:
                return None
            moment = DT(text)
            if moment.tzinfo is not None:
                moment = moment.astimezone(_dt.timezone.utc).replace(tzinfo=None)
            return (moment - _dt.datetime(1970, 1, 1)).total_seconds()
        date_text = str(ds.get(keywords[0], "") or "").strip()
        time_text = str(ds.get(keywords[1], "") or "").strip()
        if not time_text:
            return None
        day = DA(date_text) if date_text else _dt.date(1970, 1, 1)
        clock = TM(time_text)
        clock_time = _dt.time(clock.hour, clock.minute, clock.second, clock.microsecond)
        moment = _dt.datetime.combine(day, clock_time)
        return (moment - _dt.datetime(1970, 1, 1)).total_seconds()
    except (ValueError, TypeError, OverflowError):
        return None
