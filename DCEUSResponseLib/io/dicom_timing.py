"""Frame times of ultrasound clips from their DICOM attributes: a multi-frame file's Frame Time
Vector, Frame Time or Frame Increment Pointer, a single-frame series' acquisition clocks, and the
fallbacks (Cine Rate, Recommended Display Frame Rate, ``--frame-rate``) with the warnings they need.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from typing import Any

import numpy as np

from DCEUSResponseLib.errors import InputError

_FRAME_TIME_TAG = 0x00181063
_FRAME_TIME_VECTOR_TAG = 0x00181065


def multiframe_times(
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


def series_times(
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


def clock_seconds(ds: Any, keywords: tuple[str, ...]) -> float | None:
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


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
