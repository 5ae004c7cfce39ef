"""Write cine clips as real ultrasound DICOM files.

Used by the synthetic-study generator and by the tests, so the reader is exercised on files that
a conformance checker (dicom3tools ``dciodvfy``) accepts, not on hand-made approximations.

Two storage forms are written:

* :func:`write_ultrasound_multiframe`: one Ultrasound Multi-frame Image Storage file
  (SOP Class 1.2.840.10008.5.1.4.1.1.3.1) holding the whole clip.
* :func:`write_ultrasound_series`: one Ultrasound Image Storage file (1.2.840.10008.5.1.4.1.1.6.1)
  per frame, timed by Acquisition DateTime, as some scanners export cine loops.

pydicom and Pillow are imported inside the functions (package rule: only stdlib, numpy and scipy
at module top level).
"""
from __future__ import annotations

import datetime as _dt
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from DCEUSResponseLib.clip import UltrasoundRegion

US_MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

PHOTOMETRICS = ("MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
TRANSFER_SYNTAXES = {"explicit": EXPLICIT_VR_LITTLE_ENDIAN, "jpeg-baseline": JPEG_BASELINE}
MULTIFRAME_TIMINGS = ("vector", "frame-time", "cine-rate")
SERIES_TIMINGS = ("acquisition-datetime", "content-time", "none")

JPEG_QUALITY = 95
# Frame Time (one number) is only honest when the intervals are equal; scanners round to µs.
_UNIFORM_INTERVAL_TOLERANCE_S = 1e-6
_ACQUISITION_START_TIME = "120000"  # clock time of the first frame on the study date
_MANUFACTURER = "DCEUSResponse"
_MODEL_NAME = "Synthetic CEUS writer"
_IMPLEMENTATION_VERSION_NAME = "DCEUSR_010"


def write_ultrasound_multiframe(
    path: str | os.PathLike,
    frames: np.ndarray,
    frame_times_s: Sequence[float] | np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    palette: np.ndarray | None = None,
    transfer_syntax: str = "explicit",
    timing: str = "vector",
    regions: Sequence[UltrasoundRegion] = (),
    patient_id: str = "DEMO-001",
    patient_name: str = "Demo^Patient",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    study_date: str = "20260101",
    series_description: str = "CEUS",
    series_number: int = 1,
    contrast_agent: str | None = "SF6 microbubbles",
) -> str:
    """Write a clip as one Ultrasound Multi-frame Image Storage file and return its SOP Instance UID.

    Parameters
    ----------
    path:
        Output file.
    frames:
        ``(N, rows, columns)`` uint8 or uint16 grey levels (or palette indices, uint8), or
        ``(N, rows, columns, 3)`` uint8 RGB. Bits Stored is 8 for uint8 and 16 for uint16.
    frame_times_s:
        ``N`` strictly increasing acquisition times in seconds (any origin).
    photometric:
        How the pixels are stored: ``"MONOCHROME2"`` for grey frames; ``"RGB"``, ``"YBR_FULL"`` or
        ``"YBR_FULL_422"`` for RGB frames (converted to YCbCr, and for 4:2:2 chroma is averaged
        over horizontal pixel pairs and stored as ``Y1 Y2 Cb Cr``, so Columns must be even);
        ``"PALETTE COLOR"`` for uint8 index frames with ``palette``. With
        ``transfer_syntax="jpeg-baseline"`` colour frames are always stored as ``YBR_FULL_422``
        (JPEG 4:2:2 chroma subsampling, as scanners do) whatever colour value is given.
    palette:
        ``(256, 3)`` uint8 display colours for ``"PALETTE COLOR"``; written as 16-bit LUT entries.
    transfer_syntax:
        ``"explicit"`` (Explicit VR Little Endian, lossless) or ``"jpeg-baseline"``
        (1.2.840.10008.1.2.4.50, 8-bit only, Pillow quality 95, Lossy Image Compression set).
    timing:
        ``"vector"``: Frame Time Vector (ms, first entry 0); ``"frame-time"``: Frame Time (ms; the
        intervals must be uniform); ``"cine-rate"``: only Cine Rate and Recommended Display Frame
        Rate (frames/s, rounded to integers) with the Frame Increment Pointer on Cine Rate, for
        readers that must fall back to an estimated rate (see Notes).
    regions:
        Sequence of Ultrasound Regions to write (US Region Calibration module); a region's
        ``spacing_mm`` ``(row, column)`` in mm is written as Physical Delta Y/X in cm. A region
        without ``spacing_mm`` is written with Physical Units "none" and zero deltas.
    patient_id, patient_name, study_instance_uid, series_instance_uid, study_date,
    series_description, series_number:
        Identification; UIDs are generated when not given. ``study_date`` is ``YYYYMMDD``.
    contrast_agent:
        Contrast/Bolus Agent (the Contrast/Bolus module is required when contrast was used);
        ``None`` leaves the module out.

    Returns
    -------
    str
        The SOP Instance UID of the written file.

    Notes
    -----
    Conformance (dicom3tools ``dciodvfy``, see ``Testing/Python/test_dicom_conformance.py``):
    8-bit MONOCHROME2, RGB, PALETTE COLOR and both JPEG Baseline variants, with any timing,
    produce no errors and no warnings. Three encodings are written although the US Image module
    forbids them, because readers meet them in older files and the reader tests need them:

    * 16-bit MONOCHROME2 (the module allows only 8 bits for MONOCHROME2, RGB and YBR; 16 bits
      only for PALETTE COLOR, which this writer writes with 8-bit indices);
    * uncompressed ``YBR_FULL`` (written colour-by-plane as the older module required) and
      uncompressed ``YBR_FULL_422``: the current module requires RGB for uncompressed colour
      (``YBR_FULL_422`` is for JPEG lossy). dciodvfy also reports a wrong Pixel Data length for
      native ``YBR_FULL_422``, because it sizes it as three samples per pixel where the 4:2:2
      layout stores two.

    ``timing="cine-rate"`` passes dciodvfy (the Frame Time / Frame Time Vector conditions only
    apply when the Frame Increment Pointer names them), but Cine Rate is a display rate, so such a
    file is for reader tests, not for studies.
    """
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] < 2:
        raise ValueError("frames must be (N, rows, columns[, 3]) with N >= 2")
    times = _validated_times(frame_times_s, frames.shape[0])
    if timing not in MULTIFRAME_TIMINGS:
        raise ValueError(f"timing must be one of {MULTIFRAME_TIMINGS}, not {timing!r}")

    ds, pixel_value = _image_dataset(frames, photometric, palette, transfer_syntax, US_MULTIFRAME_SOP_CLASS)
    _add_identification(
        ds,
        patient_id=patient_id,
        patient_name=patient_name,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        study_date=study_date,
        series_description=series_description,
        series_number=series_number,
        instance_number=1,
    )
    start = _dt.datetime.strptime(study_date + _ACQUISITION_START_TIME, "%Y%m%d%H%M%S")
    ds.ContentDate = study_date
    ds.ContentTime = _ACQUISITION_START_TIME
    ds.AcquisitionDateTime = _format_dt(start)
    _add_contrast(ds, contrast_agent)
    _add_regions(ds, regions)

    ds.NumberOfFrames = str(frames.shape[0])
    intervals_ms = np.diff(times) * 1000.0
    if timing == "vector":
        ds.FrameTimeVector = [_ds_number(0.0)] + [_ds_number(v) for v in intervals_ms]
        ds.FrameIncrementPointer = 0x00181065
    elif timing == "frame-time":
        if np.ptp(np.diff(times)) > _UNIFORM_INTERVAL_TOLERANCE_S:
            raise ValueError("timing='frame-time' needs uniformly spaced frame times")
        ds.FrameTime = _ds_number(float(np.mean(intervals_ms)))
        ds.FrameIncrementPointer = 0x00181063
    else:
        rate = int(round(1000.0 / float(np.mean(intervals_ms))))
        ds.CineRate = str(rate)
        ds.RecommendedDisplayFrameRate = str(rate)
        # The pointer must name some attribute; Cine Rate is the one that describes the frames.
        ds.FrameIncrementPointer = 0x00180040

    ds.PixelData = pixel_value
    _save(ds, path, transfer_syntax)
    return str(ds.SOPInstanceUID)


def write_ultrasound_series(
    folder: str | os.PathLike,
    frames: np.ndarray,
    frame_times_s: Sequence[float] | np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    palette: np.ndarray | None = None,
    transfer_syntax: str = "explicit",
    timing: str = "acquisition-datetime",
    regions: Sequence[UltrasoundRegion] = (),
    patient_id: str = "DEMO-001",
    patient_name: str = "Demo^Patient",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    study_date: str = "20260101",
    series_description: str = "CEUS",
    series_number: int = 1,
    contrast_agent: str | None = "SF6 microbubbles",
) -> list[str]:
    """Write a clip as one Ultrasound Image Storage file per frame; return the SOP Instance UIDs.

    Files get Instance Number 1..N in frame order but file names that are NOT in frame order
    (a fixed shuffle), so a reader has to sort by the DICOM attributes rather than by name.

    Parameters are those of :func:`write_ultrasound_multiframe` except ``timing``:

    * ``"acquisition-datetime"`` (default): Acquisition DateTime ``YYYYMMDDHHMMSS.FFFFFF`` carries
      each frame time (µs resolution); Content Date/Time carry it too.
    * ``"content-time"``: only Content Date/Time carry the frame time (no Acquisition DateTime).
    * ``"none"``: no per-frame time at all (Content Date/Time empty), to test readers that need
      an explicit frame rate.

    ``"vector"`` and ``"frame-time"`` are accepted as synonyms of ``"acquisition-datetime"`` so
    callers can pass the same options to both writers; ``"cine-rate"`` is refused.

    Returns
    -------
    list[str]
        SOP Instance UIDs in frame order.
    """
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] < 2:
        raise ValueError("frames must be (N, rows, columns[, 3]) with N >= 2")
    times = _validated_times(frame_times_s, frames.shape[0])
    if timing in ("vector", "frame-time"):
        timing = "acquisition-datetime"
    if timing not in SERIES_TIMINGS:
        raise ValueError(f"timing must be one of {SERIES_TIMINGS}, not {timing!r}")
    from pydicom.uid import generate_uid

    os.makedirs(folder, exist_ok=True)
    study_instance_uid = study_instance_uid or generate_uid()
    series_instance_uid = series_instance_uid or generate_uid()
    start = _dt.datetime.strptime(study_date + _ACQUISITION_START_TIME, "%Y%m%d%H%M%S")
    n_frames = frames.shape[0]
    name_order = _shuffled_names(n_frames)

    sop_uids: list[str] = []
    for index in range(n_frames):
        ds, pixel_value = _image_dataset(
            frames[index : index + 1], photometric, palette, transfer_syntax, US_IMAGE_SOP_CLASS
        )
        _add_identification(
            ds,
            patient_id=patient_id,
            patient_name=patient_name,
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            study_date=study_date,
            series_description=series_description,
            series_number=series_number,
            instance_number=index + 1,
        )
        frame_clock = start + _dt.timedelta(seconds=float(times[index] - times[0]))
        if timing == "none":
            ds.ContentDate = None
            ds.ContentTime = None
        else:
            ds.ContentDate = frame_clock.strftime("%Y%m%d")
            ds.ContentTime = frame_clock.strftime("%H%M%S.%f")
        if timing == "acquisition-datetime":
            ds.AcquisitionDateTime = _format_dt(frame_clock)
        _add_contrast(ds, contrast_agent)
        _add_regions(ds, regions)
        ds.PixelData = pixel_value
        _save(ds, os.path.join(folder, name_order[index]), transfer_syntax)
        sop_uids.append(str(ds.SOPInstanceUID))
    return sop_uids


# --------------------------------------------------------------------------------------------
# building blocks


def _validated_times(frame_times_s: Sequence[float] | np.ndarray, n_frames: int) -> np.ndarray:
    times = np.asarray(frame_times_s, dtype=float).ravel()
    if times.size != n_frames:
        raise ValueError(f"{times.size} frame times for {n_frames} frames")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise ValueError("frame times must be finite and strictly increasing")
    return times


def _shuffled_names(n_frames: int) -> list[str]:
    """File names for frames 0..N-1, deliberately not sorting in frame order."""
    permutation = np.random.default_rng(n_frames).permutation(n_frames)
    if n_frames > 1 and np.all(permutation == np.arange(n_frames)):
        permutation = np.roll(permutation, 1)
    return [f"US{int(k):05d}.dcm" for k in permutation]


def _image_dataset(
    frames: np.ndarray,
    photometric: str,
    palette: np.ndarray | None,
    transfer_syntax: str,
    sop_class_uid: str,
) -> tuple[Any, bytes]:
    """Dataset with the Image Pixel / US Image attributes and the encoded pixel data value."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, not {photometric!r}")
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {tuple(TRANSFER_SYNTAXES)}")
    is_colour = frames.ndim == 4
    if is_colour and (frames.shape[3] != 3 or frames.dtype != np.uint8):
        raise ValueError("colour frames must be (N, rows, columns, 3) uint8 RGB")
    if frames.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"frames must be uint8 or uint16, not {frames.dtype}")
    if is_colour != (photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")):
        raise ValueError(f"photometric {photometric!r} does not match frames of shape {frames.shape}")
    if photometric == "PALETTE COLOR":
        if frames.dtype != np.uint8 or palette is None:
            raise ValueError("PALETTE COLOR needs uint8 index frames and a (256, 3) uint8 palette")
        palette = np.asarray(palette)
        if palette.shape != (256, 3):
            raise ValueError("palette must be (256, 3)")
    bits = 8 * frames.dtype.itemsize
    is_jpeg = transfer_syntax == "jpeg-baseline"
    if is_jpeg and (bits != 8 or photometric == "PALETTE COLOR"):
        raise ValueError("JPEG Baseline stores 8-bit grey or colour frames only")

    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    # ORIGINAL\PRIMARY, anatomic region (US defined term), then the US image-mode bit mask:
    # 0001 = 2D imaging (PS3.3 C.8.5.6.1.1).
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.SamplesPerPixel = 3 if is_colour else 1
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if is_colour:
        # The US Image module wants YBR_FULL colour-by-plane, everything else colour-by-pixel.
        ds.PlanarConfiguration = 1 if photometric == "YBR_FULL" and not is_jpeg else 0

    if is_jpeg:
        stored_photometric = "YBR_FULL_422" if is_colour else "MONOCHROME2"
        encoded = [_jpeg_frame(frame) for frame in frames]
        from pydicom.encaps import encapsulate

        pixel_value = encapsulate(encoded, has_bot=True)
        raw_size = frames.size * frames.dtype.itemsize
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = _ds_number(raw_size / sum(len(f) for f in encoded))
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        stored_photometric = photometric
        pixel_value = _native_pixel_bytes(frames, photometric)
        ds.LossyImageCompression = "00"
    ds.PhotometricInterpretation = stored_photometric
    if photometric == "PALETTE COLOR":
        _add_palette(ds, palette)
    if len(pixel_value) % 2:
        pixel_value += b"\x00"
    return ds, pixel_value


def _native_pixel_bytes(frames: np.ndarray, photometric: str) -> bytes:
    """Uncompressed pixel data in the DICOM byte layout for ``photometric`` (little endian)."""
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        from pydicom.pixels import convert_color_space

        ybr = convert_color_space(frames, "RGB", "YBR_FULL")
        if photometric == "YBR_FULL":
            # colour-by-plane (Planar Configuration 1): per frame all Y, then all Cb, then all Cr
            return np.ascontiguousarray(ybr.transpose(0, 3, 1, 2)).tobytes()
        if frames.shape[2] % 2:
            raise ValueError("YBR_FULL_422 needs an even number of columns")
        # PS3.3 C.7.6.3.1.2 / PS3.5 8.2.1: each horizontal pixel pair is stored Y1 Y2 Cb Cr,
        # one chroma sample per pair; averaging the pair is the usual anti-aliased choice.
        pairs = ybr.reshape(ybr.shape[0], ybr.shape[1], ybr.shape[2] // 2, 2, 3).astype(np.uint16)
        packed = np.empty(pairs.shape[:3] + (4,), dtype=np.uint8)
        packed[..., 0] = pairs[..., 0, 0]
        packed[..., 1] = pairs[..., 1, 0]
        packed[..., 2] = (pairs[..., 0, 1] + pairs[..., 1, 1] + 1) // 2
        packed[..., 3] = (pairs[..., 0, 2] + pairs[..., 1, 2] + 1) // 2
        return packed.tobytes()
    return frames.astype(frames.dtype.newbyteorder("<"), copy=False).tobytes()


def _jpeg_frame(frame: np.ndarray) -> bytes:
    """One frame as a JPEG Baseline codestream (colour: YCbCr 4:2:2, as ultrasound scanners do)."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(frame))
    options: dict[str, Any] = {"quality": JPEG_QUALITY}
    if frame.ndim == 3:
        options["subsampling"] = "4:2:2"
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def _add_palette(ds: Any, palette: np.ndarray) -> None:
    """Palette Color Lookup Table module with 16-bit entries (PS3.3 C.7.6.3.1.5/6)."""
    from pydicom.uid import generate_uid

    # 8-bit colours scaled to the full 16-bit range (x * 257 maps 255 to 65535 exactly).
    lut16 = palette.astype(np.uint16) * np.uint16(257)
    descriptor = [256, 0, 16]
    ds.RedPaletteColorLookupTableDescriptor = descriptor
    ds.GreenPaletteColorLookupTableDescriptor = descriptor
    ds.BluePaletteColorLookupTableDescriptor = descriptor
    ds.PaletteColorLookupTableUID = generate_uid()
    ds.RedPaletteColorLookupTableData = lut16[:, 0].astype("<u2").tobytes()
    ds.GreenPaletteColorLookupTableData = lut16[:, 1].astype("<u2").tobytes()
    ds.BluePaletteColorLookupTableData = lut16[:, 2].astype("<u2").tobytes()


def _add_identification(
    ds: Any,
    *,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str | None,
    series_instance_uid: str | None,
    study_date: str,
    series_description: str,
    series_number: int,
    instance_number: int,
) -> None:
    """Patient, General Study, General Series, General Equipment and General Image attributes."""
    from pydicom.uid import generate_uid

    texts = (patient_id, patient_name, series_description)
    if not all(text.isascii() for text in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyTime = _ACQUISITION_START_TIME
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = str(series_number)
    ds.SeriesDescription = series_description
    # An unpaired body part makes Laterality (Type 2C) not applicable, so it is left out.
    ds.BodyPartExamined = "ABDOMEN"
    ds.SeriesDate = study_date
    ds.SeriesTime = _ACQUISITION_START_TIME
    ds.Manufacturer = _MANUFACTURER
    ds.ManufacturerModelName = _MODEL_NAME
    ds.InstanceNumber = str(instance_number)
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"


def _add_contrast(ds: Any, contrast_agent: str | None) -> None:
    if contrast_agent is not None:
        ds.ContrastBolusAgent = contrast_agent


def _add_regions(ds: Any, regions: Sequence[UltrasoundRegion]) -> None:
    """US Region Calibration module; spacings go to the file in cm as the standard requires."""
    if not regions:
        return
    from pydicom.dataset import Dataset

    items = []
    for region in regions:
        item = Dataset()
        item.RegionSpatialFormat = int(region.spatial_format)
        item.RegionDataType = int(region.data_type)
        item.RegionFlags = 0
        item.RegionLocationMinX0 = int(region.x0)
        item.RegionLocationMinY0 = int(region.y0)
        item.RegionLocationMaxX1 = int(region.x1)
        item.RegionLocationMaxY1 = int(region.y1)
        if region.spacing_mm is not None:
            row_mm, column_mm = region.spacing_mm
            item.PhysicalUnitsXDirection = 3  # cm
            item.PhysicalUnitsYDirection = 3
            item.PhysicalDeltaX = float(column_mm) / 10.0
            item.PhysicalDeltaY = float(row_mm) / 10.0
        else:
            item.PhysicalUnitsXDirection = 0  # none
            item.PhysicalUnitsYDirection = 0
            item.PhysicalDeltaX = 0.0
            item.PhysicalDeltaY = 0.0
        items.append(item)
    ds.SequenceOfUltrasoundRegions = items


def _save(ds: Any, path: str | os.PathLike, transfer_syntax: str) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES[transfer_syntax])
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    if transfer_syntax == "jpeg-baseline":
        ds["PixelData"].VR = "OB"
    else:
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    ds.save_as(path, enforce_file_format=True)


def _format_dt(moment: _dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S.%f")


def _ds_number(value: float) -> str:
    """A Decimal String (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))
