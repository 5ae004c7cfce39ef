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

import datetime as _dt
import math
import os
import warnings as _warnings
from typing import Any

import numpy as np

from DCEUSResponseLib.clip import Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_frames import (
    check_decoded_size,
    check_pixel_data,
    decode_frames,
    library_warnings,
    one_line,
)
from DCEUSResponseLib.io.files import require_regular_file
from DCEUSResponseLib.io.timing import check_frame_rate, check_intervals, uniform_times

US_MULTIFRAME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
}
US_SINGLE_FRAME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
}
ULTRASOUND_SOP_CLASSES = {**US_MULTIFRAME_SOP_CLASSES, **US_SINGLE_FRAME_SOP_CLASSES}

TISSUE_REGION_DATA_TYPE = 1  # Region Data Type 1 = tissue (B-mode / contrast image)
SPATIAL_FORMAT_2D = 1  # Region Spatial Format 1 = 2D
PHYSICAL_UNITS_CM = 3
MM_PER_CM = 10.0

_PIXEL_DATA_TAG_LITTLE_ENDIAN = b"\xe0\x7f\x10\x00"  # (7FE0,0010) as stored in the file
_FRAME_TIME_TAG = 0x00181063
_FRAME_TIME_VECTOR_TAG = 0x00181065


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
        return _read_series_folder(path_str, frame_rate_hz)
    require_regular_file(path_str, "clip file")
    ds, dataset_warnings = _read_image_dataset(path_str)
    n_frames = _number_of_frames(ds, path_str)
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
    # Sizes, then timing: a header that cannot describe its pixels, or a clip without usable times,
    # is refused before anything is sized from Number of Frames or decoded.
    check_pixel_data(ds, path, n_frames)
    frame_times, timing_source, timing_warnings = _multiframe_times(ds, n_frames, frame_rate_hz, path)
    frames, photometric, palette, decode_warnings = decode_frames(ds, path, n_frames)
    regions, region_warnings = _ultrasound_regions(ds, frames.shape[1], frames.shape[2])
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
        warnings=clip_warnings + decode_warnings + timing_warnings + region_warnings,
        uids=_identifiers(ds),
    )


def _multiframe_times(
    ds: Any, n_frames: int, frame_rate_hz: float | None, path: str
) -> tuple[np.ndarray, str, list[str]]:
    """Frame times (s, first frame 0) from the Cine module, the argument, or an estimate."""
    vector = _float_values(ds, "FrameTimeVector", path)
    frame_time_ms = _float_values(ds, "FrameTime", path)
    pointer = ds.get("FrameIncrementPointer")
    pointer_tags = {int(tag) for tag in (pointer if _is_multi(pointer) else [pointer])} if pointer else set()
    # When both are present the Frame Increment Pointer says which one describes the frames.
    prefer_frame_time = _FRAME_TIME_TAG in pointer_tags and _FRAME_TIME_VECTOR_TAG not in pointer_tags
    if vector is not None and not (prefer_frame_time and frame_time_ms is not None):
        times, pauses = _times_from_vector(vector, n_frames, path)
        return times, "FrameTimeVector", pauses + _ignored_rate_warning(frame_rate_hz, "Frame Time Vector")
    if frame_time_ms is not None:
        return (
            uniform_times(frame_time_ms[0] / 1000.0, n_frames, "Frame Time", path),
            "FrameTime",
            _ignored_rate_warning(frame_rate_hz, "Frame Time"),
        )
    return _fallback_times(ds, n_frames, frame_rate_hz, path)


def _fallback_times(
    ds: Any, n_frames: int, frame_rate_hz: float | None, path: str
) -> tuple[np.ndarray, str, list[str]]:
    """Frame times from ``--frame-rate`` or, failing that, from a display rate (an estimate)."""
    if frame_rate_hz is not None:
        return uniform_times(1.0 / frame_rate_hz, n_frames, "--frame-rate", path), "--frame-rate", []
    display_rates = (
        ("CineRate", "Cine Rate"),
        ("RecommendedDisplayFrameRate", "Recommended Display Frame Rate"),
    )
    for keyword, label in display_rates:
        rate = _float_values(ds, keyword, path)
        if rate is not None and rate[0] > 0:
            warning = (
                f"frame times estimated from {label} ({rate[0]:g} frames/s), a display rate that "
                "may differ from the acquisition rate; give --frame-rate if known"
            )
            times = uniform_times(1.0 / float(rate[0]), n_frames, label, path)
            return times, f"{keyword} (estimated)", [warning]
    raise InputError(
        "no frame timing (Frame Time Vector, Frame Time, Cine Rate or acquisition times); "
        "give the acquisition frame rate with --frame-rate",
        path,
    )


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


def _ignored_rate_warning(frame_rate_hz: float | None, label: str) -> list[str]:
    if frame_rate_hz is None:
        return []
    return [f"--frame-rate {frame_rate_hz:g} ignored: the file has exact timing ({label})"]


# --------------------------------------------------------------------------------------------
# single-frame series in a folder


def _read_series_folder(folder: str, frame_rate_hz: float | None) -> Clip:
    images, folder_warnings = _folder_images(folder)
    multiframe = [(p, ds) for p, ds in images if _number_of_frames(ds, p) > 1]
    if multiframe:
        if len(images) == 1:
            file_path, ds = multiframe[0]
            n_frames = _number_of_frames(ds, file_path)
            clip_warnings = folder_warnings + _sop_class_warnings(ds)
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

    ordered, times_by_file, time_label = _order_series(images)
    _check_one_clip(ordered, folder)
    folder_warnings += _instance_number_gaps(ordered)
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
    regions, region_warnings = _ultrasound_regions(first_ds, frames.shape[1], frames.shape[2])
    sop_warnings = _sop_class_warnings(first_ds)
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


def _folder_images(folder: str) -> tuple[list[tuple[str, Any]], list[str]]:
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
        read = _read_dataset(file_path, skip_non_dicom=True)
        if read is None:
            non_dicom_names.append(name)  # a note, a thumbnail, or a frame file damaged beyond recognition
            continue
        ds, read_warnings = read
        folder_warnings += [w for w in read_warnings if w not in folder_warnings]
        if "PixelData" not in ds:
            _raise_if_truncated(ds, file_path)
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


def _check_one_clip(ordered: list[tuple[str, Any]], folder: str) -> None:
    """The files are frames of one clip: one series, one image size and encoding, one calibration.

    Refuses with one line naming the folder and two files that differ (the odd one, then one of
    the majority), and a file that is a copy of another (the same SOP Instance UID).
    """
    def geometry(ds: Any) -> tuple:
        regions, _ = _ultrasound_regions(ds, int(ds.Rows), int(ds.Columns))
        spacing = _pixel_spacing_mm(ds, regions)
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
            return times, time_label, pauses + _ignored_rate_warning(frame_rate_hz, time_label)
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
    frame_time_ms = _float_values(ds, "FrameTime", path)
    if frame_time_ms is not None:
        times = uniform_times(frame_time_ms[0] / 1000.0, n_frames, "Frame Time", path)
        return times, "FrameTime", _ignored_rate_warning(frame_rate_hz, "Frame Time")
    return _fallback_times(ds, n_frames, frame_rate_hz, path)


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


# --------------------------------------------------------------------------------------------
# reading and decoding


def _read_dataset(path: str, *, skip_non_dicom: bool = False) -> tuple[Any, list[str]] | None:
    """The dataset in ``path`` with every element decoded, and pydicom's warnings as clip warnings.

    ``None`` for a non-DICOM file when ``skip_non_dicom``. pydicom decodes elements when they are
    first used; decoding all of them here turns a damaged element (an unknown VR after a bit flip)
    into an InputError now, and keeps the warnings pydicom gives on the way out of stderr.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                ds = _read_without_preamble(path)
                if ds is None:
                    if skip_non_dicom:
                        return None
                    raise InputError("not a DICOM file", path) from None
            ds.walk(lambda dataset, element: None)
        except InputError:
            raise
        except PermissionError:
            raise InputError("cannot be opened (permission denied)", path) from None
        except IsADirectoryError:
            raise InputError("is a folder, expected a file", path) from None
        except Exception as error:  # pydicom raises many types on damaged files
            problem = f"is damaged or truncated; it cannot be read as DICOM ({one_line(error)})"
            raise InputError(problem, path) from None
    if any("End of file" in str(w.message) for w in caught):
        raise InputError("is truncated: the file ends inside the pixel data or another element", path)
    return ds, library_warnings(caught)


def _read_without_preamble(path: str) -> Any | None:
    """Old files may lack the 128-byte preamble; accept them only if they look like images.

    Such a file starts with an element of group 0002 (file meta) or 0008 (identification); any
    other start is not DICOM, which also keeps pydicom from parsing megabytes of zeros as elements.
    """
    import pydicom

    with open(path, "rb") as handle:
        group = int.from_bytes(handle.read(2), "little")
    if group not in (0x0002, 0x0008):
        return None
    try:
        ds = pydicom.dcmread(path, force=True)
        if "SOPClassUID" not in ds or "Rows" not in ds:
            return None
    except Exception:
        return None
    if "TransferSyntaxUID" not in ds.file_meta:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit = bool(getattr(ds, "original_encoding", (True, True))[0])
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def _read_image_dataset(path: str) -> tuple[Any, list[str]]:
    """Dataset with pixel data from one file, plus warnings about it (SOP class, pydicom's)."""
    ds, read_warnings = _read_dataset(path)
    if "PixelData" not in ds:
        _raise_if_truncated(ds, path)
        raise InputError(
            f"contains no pixel data ({_sop_class_name(ds)}); expected an ultrasound cine clip", path
        )
    return ds, read_warnings + _sop_class_warnings(ds)


def _raise_if_truncated(ds: Any, path: str) -> None:
    """An image whose Pixel Data tag is in the file but was not read was cut short."""
    if "Rows" not in ds:
        return
    with open(path, "rb") as handle:
        if _PIXEL_DATA_TAG_LITTLE_ENDIAN in handle.read():
            raise InputError("is truncated: its pixel data cannot be read completely", path)


def _sop_class_name(ds: Any) -> str:
    from pydicom.uid import UID

    uid = str(ds.get("SOPClassUID", "") or "")
    if not uid:
        return "no SOP Class UID"
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def _sop_class_warnings(ds: Any) -> list[str]:
    uid = str(ds.get("SOPClassUID", "") or "")
    if uid in ULTRASOUND_SOP_CLASSES:
        return []
    return [f"{_sop_class_name(ds)} is not an ultrasound image storage class; read as an image anyway"]


def _number_of_frames(ds: Any, path: str) -> int:
    value = ds.get("NumberOfFrames", 1)
    try:
        n_frames = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"Number of Frames is not a number ({str(value)[:40]!r})", path) from None
    if n_frames < 1:
        raise InputError(f"Number of Frames is {n_frames}", path)
    return n_frames


# --------------------------------------------------------------------------------------------
# geometry and identifiers


def _ultrasound_regions(ds: Any, rows: int, columns: int) -> tuple[list[UltrasoundRegion], list[str]]:
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
    keywords = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "StudyDate")
    return {k: str(ds.get(k)) for k in keywords if ds.get(k) not in (None, "")}


# --------------------------------------------------------------------------------------------
# small helpers


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _float_values(ds: Any, keyword: str, path: str) -> np.ndarray | None:
    """The numeric value(s) of ``keyword`` as a 1-D float array, ``None`` if absent or empty."""
    if keyword not in ds:
        return None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        values = np.asarray([float(v) for v in value] if _is_multi(value) else [float(value)], dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{keyword} is not numeric ({str(value)[:40]!r})", path) from None
    return values if values.size else None
