"""One DICOM file as a dataset, and the header values the clip readers share.

Reading decodes every element at once (pydicom decodes them lazily, so a damaged element would
otherwise surface later as a crash) and turns pydicom's warnings into clip warnings. The helpers
read the ultrasound regions, pixel spacing, identifiers, SOP class and display-rate timing.
pydicom is imported inside the functions (package rule).
"""
from __future__ import annotations

import math
import warnings as _warnings
from typing import Any, Sequence

import numpy as np

from DCEUSResponseLib.clip import IDENTIFYING_KEYWORDS, LINKING_UID_KEYWORDS, Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_frames import library_warnings, one_line, quiet_uid
from DCEUSResponseLib.io.timing import uniform_times

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


def read_dataset(path: str, *, skip_non_dicom: bool = False) -> tuple[Any, list[str]] | None:
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


def read_image_dataset(path: str) -> tuple[Any, list[str]]:
    """Dataset with pixel data from one file, plus warnings about it (SOP class, pydicom's)."""
    ds, read_warnings = read_dataset(path)
    if "PixelData" not in ds:
        raise_if_truncated(ds, path)
        raise InputError(
            f"contains no pixel data ({_sop_class_name(ds)}); expected an ultrasound cine clip", path
        )
    return ds, read_warnings + sop_class_warnings(ds)


def raise_if_truncated(ds: Any, path: str) -> None:
    """An image whose Pixel Data tag is in the file but was not read was cut short."""
    if "Rows" not in ds:
        return
    with open(path, "rb") as handle:
        if _PIXEL_DATA_TAG_LITTLE_ENDIAN in handle.read():
            raise InputError("is truncated: its pixel data cannot be read completely", path)


def _sop_class_name(ds: Any) -> str:
    uid = str(ds.get("SOPClassUID", "") or "")
    if not uid:
        return "no SOP Class UID"
    checked = quiet_uid(uid)
    if not checked.is_valid:
        return f"invalid SOP Class UID {uid[:64]!r}: damaged or truncated?"
    name = checked.name
    return name if name != uid else f"SOP class {uid}"


def sop_class_warnings(ds: Any) -> list[str]:
    uid = str(ds.get("SOPClassUID", "") or "")
    if uid in ULTRASOUND_SOP_CLASSES:
        return []
    return [f"{_sop_class_name(ds)} is not an ultrasound image storage class; read as an image anyway"]


def number_of_frames(ds: Any, path: str) -> int:
    value = ds.get("NumberOfFrames", 1)
    try:
        n_frames = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"Number of Frames is not a number ({str(value)[:40]!r})", path) from None
    if n_frames < 1:
        raise InputError(f"Number of Frames is {n_frames}", path)
    return n_frames


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
        spacing_mm, calibration_note = _region_spacing_mm(item, label)
        if calibration_note:
            notes.append(calibration_note)
        kept.append(
            UltrasoundRegion(
                *clipped,
                spacing_mm=spacing_mm,
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


#: Plausible pixel sizes of an ultrasound image (mm): a calibration outside is a damaged or wrong
#: header (a Physical Delta of 1e300 cm, a Pixel Spacing in metres), ignored with a warning.
PLAUSIBLE_PIXEL_MM = (1e-3, 10.0)


def _region_spacing_mm(item: Any, label: str) -> tuple[tuple[float, float] | None, str | None]:
    """(row, column) spacing in mm when both directions are calibrated in cm, else None; and a note
    when the region states a calibration that cannot be used."""
    try:
        units = (int(item.get("PhysicalUnitsXDirection", 0)), int(item.get("PhysicalUnitsYDirection", 0)))
    except (TypeError, ValueError):
        return None, f"{label} has unreadable Physical Units; no pixel spacing from it (--pixel-spacing gives one)"
    if units == (0, 0):
        return None, None  # no calibration stated
    if units != (PHYSICAL_UNITS_CM, PHYSICAL_UNITS_CM):
        return None, (f"{label} is calibrated in Physical Units {units[0]} x {units[1]}, not cm (3); "
                      "no pixel spacing from it (--pixel-spacing gives one)")
    try:
        delta_x_cm, delta_y_cm = abs(float(item.PhysicalDeltaX)), abs(float(item.PhysicalDeltaY))
    except (AttributeError, TypeError, ValueError):
        return None, f"{label} is calibrated in cm but has no valid Physical Delta X / Y; no pixel spacing from it (--pixel-spacing gives one)"
    spacing = (delta_y_cm * MM_PER_CM, delta_x_cm * MM_PER_CM)
    problem = _implausible_spacing(spacing)
    if problem:
        return None, f"{label}: Physical Delta Y x X {problem}; no pixel spacing from it (--pixel-spacing gives one)"
    return spacing, None


def _implausible_spacing(spacing_mm: Sequence[float]) -> str | None:
    low, high = PLAUSIBLE_PIXEL_MM
    if all(math.isfinite(v) and low <= v <= high for v in spacing_mm):
        return None
    shown = " x ".join(f"{v:.4g}" for v in spacing_mm)
    return f"{shown} mm per pixel is not a plausible ultrasound pixel size ({low:g} to {high:g} mm)"


def pixel_spacing_mm(ds: Any, regions: list[UltrasoundRegion]) -> tuple[float, float] | None:
    """The first calibrated tissue region's spacing, else a usable Pixel Spacing, else None."""
    return _pixel_spacing(ds, regions)[0]


def _pixel_spacing(ds: Any, regions: list[UltrasoundRegion]) -> tuple[tuple[float, float] | None, list[str]]:
    for region in regions:
        if region.spacing_mm is not None:
            return region.spacing_mm, []
    spacing = ds.get("PixelSpacing")
    if spacing is None:
        return None, []
    try:
        values = tuple(float(v) for v in (spacing if not isinstance(spacing, (str, bytes)) else [spacing]))
    except (TypeError, ValueError):
        values = ()
    if len(values) != 2:
        return None, [f"Pixel Spacing {str(spacing)[:40]!r} is not two numbers (row, column); ignored (--pixel-spacing gives one)"]
    problem = _implausible_spacing(values)
    if problem:
        return None, [f"Pixel Spacing {problem}; ignored (--pixel-spacing gives one)"]
    return values, []


def clip_from_header(ds: Any, source: str, frames: np.ndarray, frame_times_s: np.ndarray, photometric: str,
                     palette: np.ndarray | None, timing_source: str, warnings: list[str]) -> Clip:
    """A :class:`Clip` of decoded ``frames`` with the geometry, bit depth and linking UIDs of the header
    ``ds`` (of the file, or of a series' first file); the regions' warnings follow ``warnings``."""
    regions, region_warnings = ultrasound_regions(ds, frames.shape[1], frames.shape[2])
    spacing_mm, spacing_warnings = _pixel_spacing(ds, regions)
    return Clip(
        source=source,
        frames=frames,
        frame_times_s=frame_times_s,
        photometric=photometric,
        bits_stored=int(ds.BitsStored),
        palette=palette,
        pixel_spacing_mm=spacing_mm,
        regions=regions,
        timing_source=timing_source,
        warnings=warnings + region_warnings + spacing_warnings,
        uids=identifiers(ds),
        lossy=is_lossy(ds),
    )


# Transfer syntaxes whose encoding loses information (PS3.5 Table A-1), by pydicom's names: JPEG
# Baseline and Extended, JPEG-LS near-lossless, JPEG 2000 and HTJ2K in their lossy forms, MPEG, HEVC.
_LOSSY_TRANSFER_SYNTAX_NAMES = (
    "JPEGBaseline8Bit", "JPEGExtended12Bit", "JPEGLSNearLossless", "JPEG2000", "JPEG2000MC", "HTJ2K",
    "MPEG2MPML", "MPEG2MPMLF", "MPEG2MPHL", "MPEG2MPHLF", "MPEG4HP41", "MPEG4HP41F", "MPEG4HP41BD",
    "MPEG4HP41BDF", "MPEG4HP422D", "MPEG4HP422DF", "MPEG4HP423D", "MPEG4HP423DF", "MPEG4HP42STEREO",
    "MPEG4HP42STEREOF", "HEVCMP51", "HEVCM10P51",
)


def is_lossy(ds: Any) -> bool:
    """Whether the pixels were lossily compressed: by the transfer syntax, or before (Lossy Image
    Compression "01", which an uncompressed copy of a JPEG image keeps)."""
    import pydicom.uid

    lossy = {str(getattr(pydicom.uid, name)) for name in _LOSSY_TRANSFER_SYNTAX_NAMES if hasattr(pydicom.uid, name)}
    file_meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(file_meta.get("TransferSyntaxUID", "")) if file_meta is not None else ""
    return transfer_syntax in lossy or str(ds.get("LossyImageCompression", "")).strip() == "01"


def identifiers(ds: Any) -> dict[str, str]:
    # Which of these reach the outputs is decided there (clip.shareable_uids).
    keywords = LINKING_UID_KEYWORDS + IDENTIFYING_KEYWORDS
    return {k: str(ds.get(k)) for k in keywords if ds.get(k) not in (None, "")}


def fallback_times(
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
        rate = float_values(ds, keyword, path)
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


def ignored_rate_warning(frame_rate_hz: float | None, label: str) -> list[str]:
    if frame_rate_hz is None:
        return []
    return [f"--frame-rate {frame_rate_hz:g} ignored: the file has exact timing ({label})"]


def is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def float_values(ds: Any, keyword: str, path: str) -> np.ndarray | None:
    """The numeric value(s) of ``keyword`` as a 1-D float array, ``None`` if absent or empty."""
    if keyword not in ds:
        return None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        values = np.asarray([float(v) for v in value] if is_multi(value) else [float(value)], dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{keyword} is not numeric ({str(value)[:40]!r})", path) from None
    return values if values.size else None
