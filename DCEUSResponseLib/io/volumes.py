"""Read one CT or PET series (a folder of DICOM files) into a :class:`Volume` in patient LPS mm.

Two storage forms are read:

* classic single-frame series (CT Image Storage, PET Image Storage): one file per slice, ordered
  along the slice normal (Image Orientation (Patient) row x column direction) by Image Position
  (Patient), so oblique acquisitions and shuffled file names are read right;
* multi-frame images with per-frame functional groups (Enhanced PET, Enhanced CT, the Legacy
  Converted Enhanced forms): one file, each frame's position, orientation, spacing and rescale
  taken from its Per-frame or the Shared Functional Groups.

Stored values are rescaled per slice (PET scanners give each slice its own Rescale Slope): CT to
Hounsfield units, PET to the series' Units (usually BQML, Bq/ml; SUV is :mod:`DCEUSResponseLib.pet.suv`).
Every geometry fault is an :class:`InputError` naming the folder. pydicom is imported inside the
functions (package rule).

Speed and memory: each file's header is parsed once, in a first pass that leaves native Pixel Data
on disk (pydicom's ``defer_size``; encapsulated, compressed Pixel Data stops the pass, as
``stop_before_pixels`` does). The second pass decodes the files on the process's thread budget
(:func:`DCEUSResponseLib.parallel.worker_threads`; file reads and numpy's rescale run without the
GIL) straight into a preallocated float32 array, so the peak is the volume plus one decoded file
per thread. A file that cannot be decoded is an :class:`InputError` naming it, the first in slice
order.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.parallel import worker_threads

MODALITIES = ("CT", "PT")
SERIES_SEPARATOR = "::"
GAP_FACTOR = 1.5  # a slice step above 1.5 x the median step is a missing slice (contract)
_ORIENTATION_TOLERANCE = 1e-4  # direction cosines written with ~6 digits
_SPACING_TOLERANCE_MM = 1e-3
_DUPLICATE_FRACTION = 1e-3  # two slices closer than 0.1 % of the median step are at one position
_SHEAR_FRACTION = 0.1  # in-plane drift of the slice origins tolerated, as a fraction of a pixel
_DEFER_BYTES = 1024  # values longer than this (native Pixel Data) stay on disk until decoded
_PIXEL_TAGS = (0x7FE00010, 0x7FE00009, 0x7FE00008)  # Pixel Data, Float and Double Float Pixel Data
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class Volume:
    """One CT or PET series on its voxel grid.

    ``values[k, j, i]`` is the voxel of slice ``k``, row ``j``, column ``i``: shape
    ``(slices, rows, columns)``, float32, HU for CT and the series' Units for PET (Bq/ml for BQML).
    ``ijk_to_lps`` maps ``(i, j, k, 1)`` (column, row, slice index: Slicer's IJK) to patient LPS mm;
    slice ``k`` increases along the slice normal (row direction x column direction).
    ``spacing_mm`` is ``(column, row, slice)`` spacing in mm, ``dims`` ``[columns, rows, slices]``
    (the contract's ``dims``). ``header`` is the first slice's pydicom Dataset without Pixel Data
    (every attribute SUV needs). ``acquisition_datetimes`` holds each slice's acquisition date and
    time as DICOM DT text (empty where the file has none), in slice order.
    """

    values: np.ndarray
    ijk_to_lps: np.ndarray
    spacing_mm: tuple[float, float, float]
    series_uid: str
    frame_of_reference_uid: str
    modality: str
    source: str
    header: Any = field(repr=False)
    series_description: str = ""
    sop_class_uid: str = ""
    acquisition_datetimes: tuple[str, ...] = ()

    @property
    def dims(self) -> list[int]:
        """``[columns, rows, slices]``, as the contract reports ``ct.dims`` and ``pet.dims``."""
        slices, rows, columns = self.values.shape
        return [int(columns), int(rows), int(slices)]

    @property
    def lps_to_ijk(self) -> np.ndarray:
        """The inverse of :attr:`ijk_to_lps` (LPS mm to continuous column, row, slice index)."""
        return np.linalg.inv(self.ijk_to_lps)


@dataclass
class _Slice:
    """What the first pass learns of one image (a file, or one frame of a multi-frame file)."""

    path: str
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    slope: float
    intercept: float
    acquisition: str
    dataset: Any = field(default=None, repr=False)  # the first pass's header, Pixel Data still on disk


def split_series_path(path: str | os.PathLike) -> tuple[str, str | None]:
    """``"FOLDER::SeriesInstanceUID"`` -> ``(FOLDER, UID)``; a plain folder -> ``(FOLDER, None)``."""
    text = os.fspath(path)
    if SERIES_SEPARATOR in text:
        folder, uid = text.rsplit(SERIES_SEPARATOR, 1)
        return folder, uid.strip() or None
    return text, None


def read_volume(path: str | os.PathLike, modality: str | None = None) -> Volume:
    """Read the one CT or PET series in ``path`` (a folder, or ``FOLDER::SeriesInstanceUID``).

    ``modality`` (``"CT"`` or ``"PT"``) makes a series of another modality an error. Files that are
    not DICOM images (DICOMDIR, notes) are skipped; sub-folders are searched too.

    Raises :class:`InputError` (naming the folder) for: a missing folder, no image series, several
    series without ``::UID`` (the message lists them), an unknown UID, a modality other than CT/PT
    (or than ``modality``), missing geometry (position, orientation, spacing, Frame of Reference),
    mixed orientations, sizes, spacings or Frames of Reference, two slices at one position, a
    single slice, and a gap larger than 1.5 x the median slice step.
    """
    folder, wanted_uid = split_series_path(path)
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, not {modality!r}")
    if not os.path.isdir(folder):
        raise InputError("is not a folder (a CT or PET series folder is expected)", folder)
    series = _scan_series(folder)
    uid = _choose_series(series, wanted_uid, folder)
    headers = series[uid]
    first = headers[0][1]
    found = str(getattr(first, "Modality", ""))
    if found not in MODALITIES:
        raise InputError(f"series {uid} is modality {found or 'unknown'}, not CT or PT", folder)
    if modality is not None and found != modality:
        raise InputError(f"series {uid} is {found}, not {modality} as expected here", folder)
    slices = _slices(headers, folder)
    slices, ijk_to_lps, spacing = _ordered_geometry(slices, folder)
    frame_of_reference = _frame_of_reference(headers, folder)
    values = _read_values(slices, folder)
    header = _full_header(headers[0][0])
    return Volume(values=values, ijk_to_lps=ijk_to_lps, spacing_mm=spacing, series_uid=uid,
                  frame_of_reference_uid=frame_of_reference, modality=found, source=os.path.abspath(folder),
                  header=header, series_description=str(getattr(first, "SeriesDescription", "")),
                  sop_class_uid=str(getattr(first, "SOPClassUID", "")),
                  acquisition_datetimes=tuple(s.acquisition for s in slices))


# --------------------------------------------------------------------------------------------
# first pass: headers


def _scan_series(folder: str) -> dict[str, list[tuple[str, Any]]]:
    """``{SeriesInstanceUID: [(path, header), ...]}`` of every DICOM image below ``folder``; each
    header is the whole data set with native Pixel Data left on disk (:func:`_read_header`)."""
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[tuple[str, Any]]] = {}
    for root, directories, names in os.walk(folder):
        directories.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                ds = _read_header(path)
            except (InvalidDicomError, OSError, ValueError, KeyError, EOFError):
                continue  # not a DICOM file: notes, thumbnails, a truncated copy
            if "SeriesInstanceUID" not in ds or "Rows" not in ds:
                continue  # DICOMDIR, structured reports, presentation states: no image
            series.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    return series


def _read_header(path: str) -> Any:
    """The file's data set, parsed once: values over ``_DEFER_BYTES`` (native Pixel Data) are read
    only when used; encapsulated (compressed) Pixel Data, which cannot be deferred, ends the parse."""
    from pydicom.filereader import read_partial

    def at_encapsulated_pixels(tag, vr, length) -> bool:
        return length == _UNDEFINED_LENGTH and tag in _PIXEL_TAGS  # called per element: cheap test first

    with open(path, "rb") as stream:
        return read_partial(stream, at_encapsulated_pixels, defer_size=_DEFER_BYTES)


def _choose_series(series: dict, wanted_uid: str | None, folder: str) -> str:
    if not series:
        raise InputError("holds no DICOM image series", folder)
    if wanted_uid is not None:
        if wanted_uid not in series:
            raise InputError(f"has no series {wanted_uid}; it holds: {_series_list(series)}", folder)
        return wanted_uid
    if len(series) > 1:
        raise InputError(f"holds {len(series)} series, give FOLDER{SERIES_SEPARATOR}SeriesInstanceUID "
                         f"for one of: {_series_list(series)}", folder)
    return next(iter(series))


def _series_list(series: dict) -> str:
    parts = []
    for uid, headers in sorted(series.items()):
        ds = headers[0][1]
        description = str(getattr(ds, "SeriesDescription", "")) or "no description"
        parts.append(f"{uid} ({getattr(ds, 'Modality', '?')}, {description!r}, {len(headers)} files)")
    return "; ".join(parts)


def _slices(headers: list[tuple[str, Any]], folder: str) -> list[_Slice]:
    """One :class:`_Slice` per image: a file of a classic series or a frame of a multi-frame file."""
    slices: list[_Slice] = []
    for path, ds in headers:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if frames > 1:
            slices.extend(_multiframe_slices(path, ds, folder))
        else:
            slices.append(_classic_slice(path, ds, folder))
    if len(slices) < 2:
        raise InputError("holds a single slice, not a volume", folder)
    return slices


def _classic_slice(path: str, ds: Any, folder: str) -> _Slice:
    name = os.path.basename(path)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if keyword not in ds or ds[keyword].value in (None, ""):
            raise InputError(f"missing geometry: {name} has no {keyword}", folder)
    return _Slice(path=path, frame=None, position=_vector(ds.ImagePositionPatient, 3, "ImagePositionPatient", name, folder),
                  orientation=_vector(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", name, folder),
                  pixel_spacing=tuple(_vector(ds.PixelSpacing, 2, "PixelSpacing", name, folder)),
                  shape=(int(ds.Rows), int(ds.Columns)),
                  slope=_number(getattr(ds, "RescaleSlope", None), 1.0),
                  intercept=_number(getattr(ds, "RescaleIntercept", None), 0.0),
                  acquisition=_acquisition_datetime(ds), dataset=ds)


def _multiframe_slices(path: str, ds: Any, folder: str) -> list[_Slice]:
    """Per-frame geometry and rescale of an enhanced (functional-group) multi-frame image."""
    name = os.path.basename(path)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per_frame = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if len(per_frame) != frames:
        raise InputError(f"missing geometry: {name} has {len(per_frame)} per-frame functional groups "
                         f"for {frames} frames", folder)
    slices = []
    for index, item in enumerate(per_frame):
        def group(sequence: str, keyword: str, item=item):
            for source in (item, shared):
                if source is not None and sequence in source and keyword in source[sequence][0]:
                    return source[sequence][0][keyword].value
            return None

        position = group("PlanePositionSequence", "ImagePositionPatient")
        orientation = group("PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = group("PixelMeasuresSequence", "PixelSpacing")
        for keyword, value in (("ImagePositionPatient", position), ("ImageOrientationPatient", orientation),
                               ("PixelSpacing", spacing)):
            if value in (None, ""):
                raise InputError(f"missing geometry: frame {index + 1} of {name} has no {keyword}", folder)
        acquisition = group("FrameContentSequence", "FrameAcquisitionDateTime")
        slices.append(_Slice(path=path, frame=index,
                             position=_vector(position, 3, "ImagePositionPatient", name, folder),
                             orientation=_vector(orientation, 6, "ImageOrientationPatient", name, folder),
                             pixel_spacing=tuple(_vector(spacing, 2, "PixelSpacing", name, folder)),
                             shape=(int(ds.Rows), int(ds.Columns)),
                             slope=_number(group("PixelValueTransformationSequence", "RescaleSlope"), 1.0),
                             intercept=_number(group("PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
                             acquisition=str(acquisition or ""), dataset=ds))
    return slices


def _frame_of_reference(headers: list[tuple[str, Any]], folder: str) -> str:
    uids = {str(getattr(ds, "FrameOfReferenceUID", "") or "") for _, ds in headers}
    if "" in uids:
        raise InputError("missing geometry: a slice has no Frame of Reference UID", folder)
    if len(uids) > 1:
        raise InputError(f"mixed Frames of Reference in one series: {', '.join(sorted(uids))}", folder)
    return uids.pop()


# --------------------------------------------------------------------------------------------
# geometry


def _ordered_geometry(slices: list[_Slice], folder: str) -> tuple[list[_Slice], np.ndarray, tuple]:
    """Slices sorted along the normal, the IJK -> LPS matrix and (column, row, slice) spacing."""
    orientation = slices[0].orientation
    for item in slices[1:]:
        if np.max(np.abs(item.orientation - orientation)) > _ORIENTATION_TOLERANCE:
            raise InputError(f"mixed orientations: {_where(item)} has Image Orientation "
                             f"{_text(item.orientation)}, the first slice {_text(orientation)}", folder)
        if item.shape != slices[0].shape:
            raise InputError(f"mixed sizes: {_where(item)} is {item.shape[0]} x {item.shape[1]}, "
                             f"the first slice {slices[0].shape[0]} x {slices[0].shape[1]}", folder)
        if np.max(np.abs(np.subtract(item.pixel_spacing, slices[0].pixel_spacing))) > _SPACING_TOLERANCE_MM:
            raise InputError(f"mixed pixel spacings: {_where(item)} has {_text(item.pixel_spacing)} mm, "
                             f"the first slice {_text(slices[0].pixel_spacing)} mm", folder)
    row_direction, column_direction = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row_direction) - 1) > 1e-3 or abs(np.linalg.norm(column_direction) - 1) > 1e-3 \
            or abs(float(row_direction @ column_direction)) > 1e-3:
        raise InputError(f"missing geometry: Image Orientation {_text(orientation)} is not two orthonormal "
                         f"directions", folder)
    normal = np.cross(row_direction, column_direction)
    heights = np.array([item.position @ normal for item in slices])
    order = np.argsort(heights, kind="stable")
    slices = [slices[k] for k in order]
    steps = np.diff(heights[order])
    median = float(np.median(steps))
    if median <= 0 or np.any(steps < _DUPLICATE_FRACTION * max(median, 1e-6)):
        k = int(np.argmin(steps))
        raise InputError(f"two slices at one position ({_where(slices[k])} and {_where(slices[k + 1])}): "
                         f"a dynamic, gated or multi-bed series is not one volume", folder)
    if np.any(steps > GAP_FACTOR * median):
        k = int(np.argmax(steps))
        raise InputError(f"gap of {steps[k]:.2f} mm between {_where(slices[k])} and {_where(slices[k + 1])} "
                         f"(median slice step {median:.2f} mm): a slice is missing", folder)
    row_mm, column_mm = slices[0].pixel_spacing  # DICOM Pixel Spacing is (between rows, between columns)
    in_plane = np.array([item.position - slices[0].position for item in slices])
    in_plane -= np.outer(in_plane @ normal, normal)
    shear = float(np.max(np.linalg.norm(in_plane, axis=1)))
    if shear > _SHEAR_FRACTION * min(row_mm, column_mm):
        # a gantry tilt: slice k is displaced in its plane, which an IJK -> LPS matrix with
        # orthogonal axes (Slicer's) cannot hold; placing such slices on the normal would misplace them
        raise InputError(f"slices are sheared by up to {shear:.2f} mm in their plane (a gantry tilt); "
                         f"resample the series onto an orthogonal grid first", folder)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = row_direction * column_mm
    ijk_to_lps[:3, 1] = column_direction * row_mm
    ijk_to_lps[:3, 2] = normal * median
    ijk_to_lps[:3, 3] = slices[0].position
    return slices, ijk_to_lps, (float(column_mm), float(row_mm), median)


# --------------------------------------------------------------------------------------------
# second pass: pixels


def _read_values(slices: list[_Slice], folder: str) -> np.ndarray:
    """Rescaled float32 values; each file (a slice, or a multi-frame image) is decoded by one task
    on ``worker_threads()`` threads, straight into its slices of the preallocated volume."""
    rows, columns = slices[0].shape
    values = np.empty((len(slices), rows, columns), dtype=np.float32)
    files: dict[str, list[int]] = {}
    for k, item in enumerate(slices):
        files.setdefault(item.path, []).append(k)
    tasks = list(files.values())

    def decode(indices: list[int]) -> None:
        _decode_file(slices, indices, values, folder)

    threads = min(worker_threads(), len(tasks))
    if threads == 1:
        for indices in tasks:
            decode(indices)
        return values
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        for _ in pool.map(decode, tasks):  # results in file order: the first failing file is the one reported
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return values


def _decode_file(slices: list[_Slice], indices: list[int], values: np.ndarray, folder: str) -> None:
    """Decode one file and write its slices ``indices`` (rows of ``values``), rescaled."""
    from pydicom.pixels import pixel_array

    first = slices[indices[0]]
    ds = first.dataset
    try:
        if ds is not None and "PixelData" in ds:
            # native Pixel Data, left on disk by the first pass: read from its offset, no second parse
            stored = pixel_array(ds)
            del ds.PixelData  # the stored values are not kept beside the volume
        else:
            stored = pixel_array(first.path)
    except Exception as error:  # pydicom raises many types for undecodable pixel data
        raise InputError(f"cannot decode the pixels of {_where(first)}: {error}", folder) from error
    rows, columns = values.shape[1:]
    for k in indices:
        item = slices[k]
        frame = stored if item.frame is None else stored[item.frame] if stored.ndim == 3 else None
        if frame is None or frame.shape != (rows, columns):
            shape = stored.shape if frame is None else frame.shape
            raise InputError(f"{_where(item)} holds {shape} pixels, not {rows} x {columns}", folder)
        np.multiply(frame, np.float32(item.slope), out=values[k], casting="unsafe")
        if item.intercept:
            values[k] += np.float32(item.intercept)


def _full_header(path: str) -> Any:
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True)


# --------------------------------------------------------------------------------------------
# small helpers


def _vector(value: Any, size: int, keyword: str, name: str, folder: str) -> np.ndarray:
    try:
        vector = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        vector = np.array([])
    if vector.size != size or not np.all(np.isfinite(vector)):
        raise InputError(f"missing geometry: {keyword} of {name} is not {size} numbers", folder)
    return vector


def _number(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    return float(value)


def _acquisition_datetime(ds: Any) -> str:
    if getattr(ds, "AcquisitionDateTime", None):
        return str(ds.AcquisitionDateTime)
    date, time = str(getattr(ds, "AcquisitionDate", "") or ""), str(getattr(ds, "AcquisitionTime", "") or "")
    return date + time if date and time else ""


def _where(item: _Slice) -> str:
    name = os.path.basename(item.path)
    return name if item.frame is None else f"frame {item.frame + 1} of {name}"


def _text(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"
