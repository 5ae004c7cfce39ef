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
import os
from collections.abc import Sequence

import numpy as np

from DCEUSResponseLib.clip import UltrasoundRegion
from DCEUSResponseLib.synthetic.dicom_dataset import (
    ACQUISITION_START_TIME,
    add_contrast,
    add_identification,
    add_regions,
    ds_number,
    format_dt,
    image_dataset,
    save,
)

US_MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"

MULTIFRAME_TIMINGS = ("vector", "frame-time", "cine-rate")
SERIES_TIMINGS = ("acquisition-datetime", "content-time", "none")

# Frame Time (one number) is only honest when the intervals are equal; scanners round to µs.
_UNIFORM_INTERVAL_TOLERANCE_S = 1e-6


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

    ds, pixel_value = image_dataset(frames, photometric, palette, transfer_syntax, US_MULTIFRAME_SOP_CLASS)
    add_identification(
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
    start = _dt.datetime.strptime(study_date + ACQUISITION_START_TIME, "%Y%m%d%H%M%S")
    ds.ContentDate = study_date
    ds.ContentTime = ACQUISITION_START_TIME
    ds.AcquisitionDateTime = format_dt(start)
    add_contrast(ds, contrast_agent)
    add_regions(ds, regions)

    ds.NumberOfFrames = str(frames.shape[0])
    intervals_ms = np.diff(times) * 1000.0
    if timing == "vector":
        ds.FrameTimeVector = [ds_number(0.0)] + [ds_number(v) for v in intervals_ms]
        ds.FrameIncrementPointer = 0x00181065
    elif timing == "frame-time":
        if np.ptp(np.diff(times)) > _UNIFORM_INTERVAL_TOLERANCE_S:
            raise ValueError("timing='frame-time' needs uniformly spaced frame times")
        ds.FrameTime = ds_number(float(np.mean(intervals_ms)))
        ds.FrameIncrementPointer = 0x00181063
    else:
        rate = int(round(1000.0 / float(np.mean(intervals_ms))))
        ds.CineRate = str(rate)
        ds.RecommendedDisplayFrameRate = str(rate)
        # The pointer must name some attribute; Cine Rate is the one that describes the frames.
        ds.FrameIncrementPointer = 0x00180040

    ds.PixelData = pixel_value
    save(ds, path, transfer_syntax)
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
    start = _dt.datetime.strptime(study_date + ACQUISITION_START_TIME, "%Y%m%d%H%M%S")
    n_frames = frames.shape[0]
    name_order = _shuffled_names(n_frames)

    sop_uids: list[str] = []
    for index in range(n_frames):
        ds, pixel_value = image_dataset(
            frames[index : index + 1], photometric, palette, transfer_syntax, US_IMAGE_SOP_CLASS
        )
        add_identification(
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
            ds.AcquisitionDateTime = format_dt(frame_clock)
        add_contrast(ds, contrast_agent)
        add_regions(ds, regions)
        ds.PixelData = pixel_value
        save(ds, os.path.join(folder, name_order[index]), transfer_syntax)
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


