"""Read ultrasound cine clips from DICOM into a :class:`~DCEUSResponseLib.clip.Clip`.

Two storage forms are accepted:

* one Ultrasound Multi-frame Image Storage file (or any other multi-frame image, with a warning);
* a folder holding one series of single-frame Ultrasound Image Storage files, one per frame.

Every problem with the input is an :class:`~DCEUSResponseLib.errors.InputError` naming the file.
pydicom is imported inside the functions (package rule: only stdlib, numpy and scipy at module
top level).
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
    # Timing first: a clip without usable times is refused before the costly decoding.
    frame_times, timing_source, timing_warnings = _multiframe_times(ds, n_frames, frame_rate_hz, path)
    frames, photometric, palette = _decode_pixels(ds, path, n_frames)
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
        warnings=clip_warnings + timing_warnings + region_warnings,
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
        times = _times_from_vector(vector, n_frames, path)
        return times, "FrameTimeVector", _ignored_rate_warning(frame_rate_hz, "Frame Time Vector")
    if frame_time_ms is not None:
        return (
            _uniform_times(frame_time_ms[0] / 1000.0, n_frames, "Frame Time", path),
            "FrameTime",
            _ignored_rate_warning(frame_rate_hz, "Frame Time"),
        )
    return _fallback_times(ds, n_frames, frame_rate_hz, path)


def _fallback_times(
    ds: Any, n_frames: int, frame_rate_hz: float | None, path: str
) -> tuple[np.ndarray, str, list[str]]:
    """Frame times from ``--frame-rate`` or, failing that, from a display rate (an estimate)."""
    if frame_rate_hz is not None:
        return _uniform_times(1.0 / frame_rate_hz, n_frames, "--frame-rate", path), "--frame-rate", []
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
            return _uniform_times(1.0 / rate[0], n_frames, label, path), f"{keyword} (estimated)", [warning]
    raise InputError(
        "no frame timing (Frame Time Vector, Frame Time, Cine Rate or acquisition times); "
        "give the acquisition frame rate with --frame-rate",
        path,
    )


def _times_from_vector(vector_ms: np.ndarray, n_frames: int, path: str) -> np.ndarray:
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
    times = np.cumsum(vector_ms) / 1000.0
    return times - times[0]


def _uniform_times(interval_s: float, n_frames: int, label: str, path: str) -> np.ndarray:
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise InputError(
            f"{label} gives a frame interval of {interval_s * 1000:g} ms; it must be positive", path
        )
    return np.arange(n_frames, dtype=float) * interval_s


def _ignored_rate_warning(frame_rate_hz: float | None, label: str) -> list[str]:
    if frame_rate_hz is None:
        return []
    return [f"--frame-rate {frame_rate_hz:g} ignored: the file has exact timing ({label})"]


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
        ds = _read_dataset(file_path, skip_non_dicom=True)
        if ds is None:
            continue
        if "PixelData" not in ds:
            _raise_if_truncated(ds, file_path)
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

    series_uids = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in images})
    if len(series_uids) > 1:
        raise InputError(
            f"holds files of {len(series_uids)} different series; put one series per folder", folder
        )
    _check_same_geometry(images)

    ordered, times_by_file, time_label = _order_series(images)
    first_ds = ordered[0][1]
    frame_times, timing_source, timing_warnings = _series_times(
        first_ds, times_by_file, time_label, len(ordered), frame_rate_hz, folder, [p for p, _ in ordered]
    )
    frame_parts = []
    photometric, palette = "", None
    for file_path, ds in ordered:
        pixels, photometric, file_palette = _decode_pixels(ds, file_path, 1)
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
            return times, time_label, _ignored_rate_warning(frame_rate_hz, time_label)
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
        times = _uniform_times(frame_time_ms[0] / 1000.0, n_frames, "Frame Time", path)
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


def _read_dataset(path: str, *, skip_non_dicom: bool = False) -> Any | None:
    """The dataset in ``path``; ``None`` for a non-DICOM file when ``skip_non_dicom``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = _read_without_preamble(path)
            if ds is None:
                if skip_non_dicom:
                    return None
                raise InputError("not a DICOM file", path) from None
        except PermissionError:
            raise InputError("cannot be opened (permission denied)", path) from None
        except IsADirectoryError:
            raise InputError("is a folder, expected a file", path) from None
        except Exception as error:  # pydicom raises many types on damaged files
            problem = f"is damaged or truncated; it cannot be read as DICOM ({_one_line(error)})"
            raise InputError(problem, path) from None
    if any("End of file" in str(w.message) for w in caught):
        raise InputError("is truncated: the file ends inside the pixel data or another element", path)
    return ds


def _read_without_preamble(path: str) -> Any | None:
    """Old files may lack the 128-byte preamble; accept them only if they look like images."""
    import pydicom

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
    """Dataset with pixel data from one file, plus warnings about its SOP class."""
    ds = _read_dataset(path)
    if "PixelData" not in ds:
        _raise_if_truncated(ds, path)
        raise InputError(
            f"contains no pixel data ({_sop_class_name(ds)}); expected an ultrasound cine clip", path
        )
    return ds, _sop_class_warnings(ds)


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
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise InputError(f"Number of Frames is not a number ({ds.get('NumberOfFrames')!r})", path) from None


def _decode_pixels(ds: Any, path: str, n_frames: int) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Decoded frames, the photometric interpretation of the returned array, and the palette."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        if keyword not in ds:
            raise InputError(f"image attribute {keyword} is missing", path)
    if int(ds.get("PixelRepresentation", 0) or 0) != 0:
        raise InputError("signed pixel data (Pixel Representation 1) is not an ultrasound image", path)
    transfer_syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise InputError(f"transfer syntax {transfer_syntax.name} cannot be decoded", path) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise InputError(f"decoding {transfer_syntax.name} needs {missing}", path)
    if decoder.is_native:
        _check_native_length(ds, path, n_frames)
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")  # pydicom warns about oddities it then handles
            frames, meta = decoder.as_array(ds, as_rgb=True)
    except StopIteration:  # pydicom's frame generator ran out of encapsulated frames
        problem = f"pixel data is truncated: fewer frames than Number of Frames ({n_frames})"
        raise InputError(problem, path) from None
    except Exception as error:
        problem = f"pixel data cannot be decoded, truncated or corrupt? ({_one_line(error)})"
        raise InputError(problem, path) from None

    # pydicom converts YBR_FULL / YBR_FULL_422 to RGB itself (native and JPEG alike) and says so
    # in the returned metadata; convert only if it did not, so no conversion happens twice.
    photometric = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation)).strip()
    palette = None
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        from pydicom.pixels import convert_color_space

        frames = convert_color_space(frames, "YBR_FULL", "RGB")
        photometric = "RGB"
    elif photometric == "MONOCHROME1":
        # MONOCHROME1 shows low values bright; invert so that bright = high like MONOCHROME2.
        top = np.asarray((1 << int(ds.BitsStored)) - 1, dtype=frames.dtype)
        frames = top - np.minimum(frames, top)
        photometric = "MONOCHROME2"
    elif photometric == "PALETTE COLOR":
        palette = _palette_table(ds, path)
    elif photometric not in ("MONOCHROME2", "RGB"):
        raise InputError(f"photometric interpretation {photometric} is not supported", path)
    return frames, photometric, palette


def _check_native_length(ds: Any, path: str, n_frames: int) -> None:
    """Uncompressed pixel data must hold every frame (pydicom reads a cut file without error)."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits_allocated = int(ds.BitsAllocated)
    pixels = rows * columns * n_frames
    if str(ds.PhotometricInterpretation).strip() == "YBR_FULL_422":
        expected = pixels * 2 * (bits_allocated // 8)  # chroma halved horizontally: 2 values/pixel
    elif bits_allocated == 1:
        expected = (pixels * samples + 7) // 8
    else:
        expected = pixels * samples * ((bits_allocated + 7) // 8)
    found = len(ds.PixelData)
    if found < expected:
        raise InputError(
            f"pixel data is truncated: {found} bytes, {expected} expected for {n_frames} frame(s)", path
        )


def _palette_table(ds: Any, path: str) -> np.ndarray:
    """Display colour (0..255, float) of every stored value 0..2**BitsStored-1, shape (K, 3)."""
    from pydicom.pixels import apply_color_lut

    try:
        descriptor = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
        n_entries = descriptor[0] or 65536
        first_mapped, entry_bits = descriptor[1], descriptor[2]
        # Table indexed directly by stored value, so callers can write palette[frames];
        # values below the first mapped one take entry 0, above the last take the last entry.
        n_values = max(1 << int(ds.BitsStored), first_mapped + n_entries)
        values = np.arange(n_values, dtype=np.int64)
        index_dtype = np.uint16 if n_values > 256 else np.uint8
        colours = apply_color_lut(values.astype(index_dtype), ds)[..., :3].astype(float)
    except Exception as error:
        problem = f"PALETTE COLOR lookup table is missing or invalid ({_one_line(error)})"
        raise InputError(problem, path) from None
    if entry_bits not in (8, 16):
        raise InputError(f"palette entries of {entry_bits} bits are not supported (8 or 16)", path)
    return colours * (255.0 / ((1 << entry_bits) - 1))


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
                declared_bounds=(x0, y0, x1, y1) if clipped != (x0, y0, x1, y1) else None,
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


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
