"""The bounds of credible frame timing, shared by every clip reader and the analysis options.

A DCE-US clip is a continuous acquisition of at most a few minutes at 1 to 60 frames/s. Frame
intervals outside :data:`MIN_FRAME_INTERVAL_S` .. :data:`MAX_FRAME_INTERVAL_S` (1000 frames/s ..
one frame a minute) or a clip longer than :data:`MAX_CLIP_DURATION_S` come from a damaged header,
a unit slip (s for ms) or two acquisitions mixed in one folder, never from a bolus study: they are
refused with one line naming the file, before any array is sized from them. A pause well beyond
the usual interval is only warned about (a scanner may freeze for a while during a clip).
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from DCEUSResponseLib.errors import InputError

#: Shortest credible frame interval (s): 1000 frames/s.
MIN_FRAME_INTERVAL_S = 0.001
#: Longest credible frame interval (s): one frame a minute.
MAX_FRAME_INTERVAL_S = 60.0
#: Longest credible clip (s): 2 h.
MAX_CLIP_DURATION_S = 7200.0
#: A frame interval this many times the median one, and longer than PAUSE_WARNING_MIN_S, is warned about.
PAUSE_WARNING_FACTOR = 10.0
PAUSE_WARNING_MIN_S = 1.0

_BOUNDS = (f"a frame interval must lie between {MIN_FRAME_INTERVAL_S * 1000:g} ms and "
           f"{MAX_FRAME_INTERVAL_S:g} s")


def check_frame_rate(frame_rate_hz: float | None, option: str = "--frame-rate") -> float | None:
    """``frame_rate_hz`` as a float (None stays None); InputError unless 1/60 .. 1000 frames/s."""
    if frame_rate_hz is None:
        return None
    try:
        rate = float(frame_rate_hz)
    except (TypeError, ValueError):
        rate = math.nan
    lowest, highest = 1.0 / MAX_FRAME_INTERVAL_S, 1.0 / MIN_FRAME_INTERVAL_S
    if isinstance(frame_rate_hz, bool) or not (lowest <= rate <= highest):
        raise InputError(f"{option} must be a number of frames per second between {lowest:.4g} and "
                         f"{highest:g}, not {frame_rate_hz!r}")
    return rate


def uniform_times(interval_s: float, n_frames: int, label: str, path: str) -> np.ndarray:
    """``k * interval_s`` for k = 0..n_frames-1, once the interval and the clip length are credible."""
    if not (MIN_FRAME_INTERVAL_S <= interval_s <= MAX_FRAME_INTERVAL_S):  # NaN fails too
        raise InputError(f"{label} gives a frame interval of {_format_s(interval_s)}; {_BOUNDS}", path)
    _check_duration((n_frames - 1) * interval_s, label, path)
    return np.arange(n_frames, dtype=float) * interval_s


def check_intervals(intervals_s: np.ndarray, label: str, path: str,
                    describe: Callable[[int], str] | None = None) -> list[str]:
    """Refuse intervals (s) outside the bounds or a clip too long; warn about long pauses.

    ``describe(k)`` names interval k (between frames k and k+1) in messages, e.g. by file name.
    Returns the warnings.
    """
    describe = describe or (lambda k: f"between frames {k} and {k + 1}")
    intervals = np.asarray(intervals_s, dtype=float)
    bad = np.flatnonzero(~((intervals >= MIN_FRAME_INTERVAL_S) & (intervals <= MAX_FRAME_INTERVAL_S)))
    if bad.size:
        k = int(bad[0])
        raise InputError(f"{label} gives a frame interval of {_format_s(float(intervals[k]))} {describe(k)}; "
                         f"{_BOUNDS} (two acquisitions in one clip?)", path)
    _check_duration(float(np.sum(intervals)), label, path)
    if intervals.size < 3:
        return []
    typical = float(np.median(intervals))
    pauses = np.flatnonzero((intervals > PAUSE_WARNING_FACTOR * typical) & (intervals > PAUSE_WARNING_MIN_S))
    if not pauses.size:
        return []
    k = int(pauses[np.argmax(intervals[pauses])])
    return [f"{pauses.size} pause(s) in the acquisition, the longest {_format_s(float(intervals[k]))} "
            f"{describe(k)} (typical frame interval {_format_s(typical)}): was the scan frozen?"]


def check_times(times_s: np.ndarray, label: str, path: str) -> list[str]:
    """:func:`check_intervals` for frame times (s) that are already known to increase."""
    return check_intervals(np.diff(np.asarray(times_s, dtype=float)), label, path)


def _check_duration(duration_s: float, label: str, path: str | os.PathLike) -> None:
    if not duration_s <= MAX_CLIP_DURATION_S:
        raise InputError(f"{label} makes the clip last {_format_s(duration_s)}; a DCE-US clip lasts at most "
                         f"{MAX_CLIP_DURATION_S / 3600:g} h", path)


def _format_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return f"{seconds} s"
    if abs(seconds) < 1.0:
        return f"{seconds * 1000:.4g} ms"
    if abs(seconds) >= 7200.0:
        return f"{seconds / 3600:.4g} h"
    return f"{seconds:.4g} s"
