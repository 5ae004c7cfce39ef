"""Frame quality control: frames that must not enter a time-intensity curve.

A free-breathing liver CEUS clip contains frames that do not show the perfusion of the ROIs:

- ``"duplicate"``: the scanner or the video grabber repeated a frame; the repeat carries the
  previous frame's content at a later time. The first occurrence is kept, repeats are excluded.
- ``"flash"``: a destruction flash (high mechanical index): the contrast panel blooms to near
  saturation for one or a few frames, and the bubbles are destroyed, so the contrast intensity drops
  abruptly afterwards.
- ``"dropout"``: the probe lost contact for one or a few frames: the image collapses to (near)
  black, on both panels of a dual display.
- ``"out_of_plane"``: the anatomy left the imaging plane (breathing, probe movement): the frame's
  match score (with the reference frame, or with its neighbouring frames) collapses while its
  neighbours' scores do not (needs a :class:`MotionEstimate`).

Every test compares a frame with its *own neighbours* on both sides, so slow, physiological changes
never count: the pre-arrival baseline is dark, but so are its neighbours; the wash-in brightens the
contrast panel over several seconds, but the frames after the wash-in are as bright as it, unlike
the frames after a flash. Per-frame measures are panel means in gray levels (0..255, the
log-compressed display domain), where every threshold reads as a fixed number of dB for a given
dynamic range. Each frame gets one reason, the first of flash, dropout, duplicate, out_of_plane.
"""
from __future__ import annotations

import re
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from DCEUSResponseLib.ceus.motion import MotionEstimate
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.parallel import worker_threads

REASONS = ("flash", "dropout", "duplicate", "out_of_plane")

#: Frames on each side of a frame that form its neighbourhood: short enough to follow a wash-in,
#: long enough that its median ignores up to 3 other bad frames, so runs of up to 4 are found.
NEIGHBOUR_FRAMES = 8
#: A side with fewer usable neighbours than this cannot vouch for a frame (clip ends, after a flash).
MIN_NEIGHBOURS = 2

#: Duplicate: the mean absolute gray-level difference from the previous frame is at most this...
DUPLICATE_MAX_MEAN_DIFFERENCE_GRAY = 0.5
#: ... and at most this fraction of the median frame-to-frame difference of its neighbours (JPEG
#: re-encoding of a repeat stays far below 0.1 of what speckle and noise change between real frames).
DUPLICATE_MAX_RELATIVE_DIFFERENCE = 0.1
#: A panel whose spatial standard deviation is below this (gray) is blank (e.g. a black pre-arrival
#: contrast panel) and cannot tell a repeat from a new frame.
DUPLICATE_MIN_CONTENT_STD_GRAY = 1.0

#: Flash: gray levels at or above this count as saturated...
FLASH_SATURATED_GRAY = 250.0
#: ... a flash frame has at least this fraction of its contrast panel saturated (a clean bolus peak
#: saturates a few isolated speckle maxima, far below 1 %)...
FLASH_MIN_SATURATED_FRACTION = 0.2
#: ... its mean gray level exceeds the neighbours' median before AND after it by this much (40 gray
#: = 8 to 9 dB at 50 to 60 dB dynamic range; a wash-in is not followed by darker frames)...
FLASH_MIN_JUMP_GRAY = 40.0
#: ... and it lasts at most this long (a bolus peak that saturates lasts many seconds).
FLASH_MAX_DURATION_S = 2.0

#: Dropout: the frame's mean gray level is at most this fraction of its neighbours' median on both
#: sides (loss of contact leaves electronic noise only, a few gray levels)...
DROPOUT_MAX_LEVEL_FRACTION = 0.5
#: ... and at least this many gray levels below it (2 to 3 dB of panel mean at 40 to 60 dB; the mean
#: of a dark panel fluctuates by about 1 gray, so a dark baseline never drops that far).
DROPOUT_MIN_DROP_GRAY = 12.0
#: On a dual display both panels must collapse, except that a contrast panel darker than
#: DROPOUT_MIN_DROP_GRAY (before the bolus arrives) cannot; it then only must not be brighter than
#: its neighbours by more than this (gray).
DROPOUT_DARK_PANEL_TOLERANCE_GRAY = 5.0

#: Out of plane: the motion score dips below the median score of the neighbours before and after
#: the frame by more than this many robust standard deviations of such dips over the clip...
OUT_OF_PLANE_MAD_FACTOR = 6.0
#: ... and by at least this much (an absolute floor, so a very steady clip's tiny spread does not
#: turn a trivial dip into an exclusion).
OUT_OF_PLANE_MIN_DROP = 0.2
#: Neighbourhood of the out-of-plane test (frames each side): the score's slow changes with the
#: contrast phase (contrast panel) are followed, single bad frames are not.
OUT_OF_PLANE_NEIGHBOUR_FRAMES = 15


@dataclass(frozen=True)
class ExcludedFrame:
    """A frame kept out of the fits: ``frame`` index, ``reason`` (one of :data:`REASONS`, or
    ``"user"`` for frames excluded on request) and a one-line ``detail`` with the numbers."""

    frame: int
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"frame": int(self.frame), "reason": self.reason, "detail": self.detail}


@dataclass
class _PanelStats:
    mean: np.ndarray  # mean gray level per frame
    std: np.ndarray  # spatial standard deviation per frame
    difference: np.ndarray  # mean |gray - previous frame's gray|; NaN for frame 0
    saturated: np.ndarray  # fraction of pixels >= FLASH_SATURATED_GRAY


def detect_bad_frames(contrast_gray: np.ndarray, times_s: np.ndarray, *, bmode_gray: np.ndarray | None = None,
                      motion: MotionEstimate | None = None, notes: list[str] | None = None) -> list[ExcludedFrame]:
    """Find dropout, out-of-plane, duplicate and flash frames of a clip.

    ``contrast_gray``: (N, rows, columns) gray levels 0..255 of the contrast panel; ``times_s``: (N,)
    frame times in s; ``bmode_gray``: the B-mode panel of a dual display (same N), or None;
    ``motion``: the clip's :class:`MotionEstimate` (enables the out-of-plane test), or None.
    Returns the excluded frames in frame order, one entry per frame (module docstring for the
    tests and the order of reasons). Runs of up to 4 consecutive bad frames of one kind are found;
    frames at the very start or end of the clip (fewer than 2 neighbours on a side) are not judged
    by the dropout and out-of-plane tests. Raises InputError for arrays of the wrong shape.
    ``notes``, when given, receives a warning per longer run of frames stepped down and back up
    (:func:`_dimmed_runs`: warned about, not excluded).
    """
    contrast = np.asarray(contrast_gray)
    if contrast.ndim != 3 or contrast.shape[0] < 1:
        raise InputError(f"frame quality control needs (frames, rows, columns) gray levels, got shape {contrast.shape}")
    n_frames = contrast.shape[0]
    times = np.asarray(times_s, dtype=np.float64)
    if times.shape != (n_frames,):
        raise InputError(f"{times.size} frame times for {n_frames} frames")
    bmode = None if bmode_gray is None else np.asarray(bmode_gray)
    if bmode is not None and (bmode.ndim != 3 or bmode.shape[0] != n_frames):
        raise InputError(f"the B-mode panel must be ({n_frames}, rows, columns) gray levels, got shape {bmode.shape}")
    if motion is not None and motion.n_frames != n_frames:
        raise InputError(f"the motion estimate has {motion.n_frames} frames, the clip {n_frames}")

    contrast_stats = _panel_stats(contrast)
    bmode_stats = None if bmode is None else _panel_stats(bmode)
    found: dict[int, ExcludedFrame] = {}
    flash_runs = _find_flashes(contrast_stats, times, found)
    segment = np.zeros(n_frames, dtype=np.int64)
    for _, last in flash_runs:
        segment[last + 1:] += 1  # after a flash the bubbles are gone: a new, darker clip begins
    _find_dropouts(contrast_stats, bmode_stats, segment, found)
    _find_duplicates(contrast_stats, bmode_stats, found)
    if motion is not None:
        _find_out_of_plane(motion, segment, found)
    if notes is not None:
        notes.extend(_dimmed_runs(contrast_stats.mean, times, segment, found))
    return [found[k] for k in sorted(found)]


#: A dimming: the contrast panel's mean steps down between two frames by at least this (gray; 15 gray
#: = 3 dB at 50 dB) and 8 x the clip's median frame-to-frame change...
DIMMING_MIN_STEP_GRAY = 15.0
DIMMING_MIN_STEP_NOISE = 8.0
#: ... and back up by 0.5 to 2 x as much within this long; perfusion changes are never such steps
#: down and up (a wash-in may step up at a low frame rate, but nothing steps down before it).
DIMMING_MAX_SECONDS = 60.0
_DIMMING_SIDE_FRAMES = 3


def _dimmed_runs(mean: np.ndarray, times: np.ndarray, segment: np.ndarray,
                 found: dict[int, ExcludedFrame]) -> list[str]:
    """Warnings for runs of frames longer than the dropout test sees, whose contrast panel stepped
    down and back up (a gain change, the probe's pressure or contact): their TIC values are low, and
    which frames they are is for the user to judge (``--exclude-frames``)."""
    usable = np.array([k not in found for k in range(mean.size)])
    frames = np.flatnonzero(usable)
    if frames.size < 4 * _DIMMING_SIDE_FRAMES:
        return []
    values = mean[frames]
    steps = np.diff(values)
    same_segment = segment[frames[1:]] == segment[frames[:-1]]
    threshold = max(DIMMING_MIN_STEP_GRAY, DIMMING_MIN_STEP_NOISE * float(np.median(np.abs(steps))))
    m = _DIMMING_SIDE_FRAMES
    # The medians of the m frames before and after each step large enough to be one (taken once: the
    # step test and the pairing below both use them).
    candidates = np.flatnonzero((np.abs(steps) >= threshold) & same_segment)
    before_step = {int(i): float(np.median(values[max(0, i + 1 - m):i + 1])) for i in candidates}
    after_step = {int(i): float(np.median(values[i + 1:i + 1 + m])) for i in candidates}

    def sustained(i: int, sign: float) -> bool:
        """The step into frames[i + 1] holds: m frames on each side differ by most of it."""
        return sign * (after_step[i] - before_step[i]) >= 0.7 * threshold

    downs = [int(i) for i in candidates if steps[i] <= -threshold and sustained(int(i), -1.0)]
    ups = [int(i) for i in candidates if steps[i] >= threshold and sustained(int(i), 1.0)]
    notes, last_end = [], -1
    for i in downs:
        if i <= last_end:
            continue
        for j in ups:
            if j <= i or times[frames[j]] - times[frames[i]] > DIMMING_MAX_SECONDS:
                continue
            if segment[frames[j]] != segment[frames[i]] or not 0.5 <= steps[j] / -steps[i] <= 2.0:
                continue
            # Below the line between the frames before and after (the curve may rise meanwhile, a
            # dimming during the wash-in) by about the steps.
            before, after = before_step[i], after_step[j]
            inside = np.arange(i + 1, j + 1)
            line = before + (after - before) * (inside - i) / (j + 1 - i)
            depth = -float(np.median(values[inside] - line))
            if depth < 0.25 * (steps[j] - steps[i]):
                continue
            first, last = int(frames[i + 1]), int(frames[j])
            notes.append(f"frames {first}-{last} ({times[first]:.1f}-{times[last]:.1f} s) are about {depth:.0f} "
                         "gray levels darker than the frames around them, stepped down and back up between two "
                         "frames (a gain change, the probe's pressure or contact?): their TIC values are low; if "
                         f"so, exclude them with --exclude-frames {first}-{last}")
            last_end = j
            break
    return notes


def _panel_stats(panel: np.ndarray) -> _PanelStats:
    if panel.dtype == np.uint8:
        return _panel_stats_8bit(panel)
    n_frames = panel.shape[0]
    mean = np.empty(n_frames)
    std = np.empty(n_frames)
    difference = np.full(n_frames, np.nan)
    saturated = np.empty(n_frames)
    previous = None
    for k in range(n_frames):  # one frame at a time: a long clip as float64 would not fit in memory
        frame = np.asarray(panel[k], dtype=np.float64)
        mean[k] = frame.mean()
        std[k] = frame.std()
        saturated[k] = np.count_nonzero(frame >= FLASH_SATURATED_GRAY) / frame.size
        if previous is not None:
            difference[k] = np.abs(frame - previous).mean()
        previous = frame
    return _PanelStats(mean, std, difference, saturated)


def _panel_stats_8bit(panel: np.ndarray) -> _PanelStats:
    """:func:`_panel_stats` of 8-bit frames from exact integer sums per frame (of the gray levels, their
    squares, the saturated pixels and the gray differences to the previous frame): the numbers of the
    float64 path to its rounding, without a float copy of any frame, on all cores (numpy's integer
    reductions release the GIL; per-frame histograms, ``np.bincount``, held it: 1.9 s of a 1,500-frame
    800 x 600 clip's analysis on one core)."""
    n_frames = panel.shape[0]
    size = panel[0].size
    sums = np.zeros(n_frames, dtype=np.uint64)
    squares = np.zeros(n_frames, dtype=np.uint64)
    saturated = np.zeros(n_frames, dtype=np.int64)
    differences = np.zeros(n_frames, dtype=np.uint64)

    def frame_sums(frames: range) -> None:
        for k in frames:
            frame = panel[k]
            sums[k] = frame.sum(dtype=np.uint64)
            squares[k] = np.square(frame, dtype=np.uint16).sum(dtype=np.uint64)
            saturated[k] = np.count_nonzero(frame >= FLASH_SATURATED_GRAY)
            if k > 0:
                spread = np.maximum(frame, panel[k - 1])
                spread -= np.minimum(frame, panel[k - 1])  # |frame - previous| without leaving uint8
                differences[k] = spread.sum(dtype=np.uint64)

    threads = max(1, min(worker_threads(), n_frames // 8))
    bounds = np.linspace(0, n_frames, threads + 1).astype(int)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(frame_sums, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]):
            pass
    mean = sums / size
    # size^2 x variance = size x sum of squares - sum^2, exact in Python's integers (never negative)
    spread_squared = [size * int(q) - int(t) * int(t) for q, t in zip(squares, sums)]
    std = np.sqrt(np.asarray(spread_squared, dtype=np.float64)) / size
    difference = differences / size
    difference[0] = np.nan
    return _PanelStats(mean, std, difference, saturated / size)


def _side_medians(values: np.ndarray, usable: np.ndarray, segment: np.ndarray, k: int,
                  width: int) -> tuple[float | None, float | None]:
    """Median of the nearest ``width`` usable frames before and after frame k in its segment,
    looking no farther than 3 ``width`` frames away (None for a side with too few of them)."""
    medians = []
    for step in (-1, 1):
        picked = []
        i = k + step
        while 0 <= i < values.size and abs(i - k) <= 3 * width and len(picked) < width:
            if segment[i] != segment[k]:
                break
            if usable[i]:
                picked.append(float(values[i]))
            i += step
        # statistics.median: the same value as numpy's for these few numbers, without its overhead
        # (this runs for every frame, side and score).
        medians.append(float(statistics.median(picked)) if len(picked) >= MIN_NEIGHBOURS else None)
    return medians[0], medians[1]


def _find_flashes(stats: _PanelStats, times: np.ndarray, found: dict[int, ExcludedFrame]) -> list[tuple[int, int]]:
    """Runs of near-saturated contrast frames much brighter than the frames before and after them."""
    candidate = stats.saturated >= FLASH_MIN_SATURATED_FRACTION
    usable = ~candidate
    everything = np.zeros(candidate.size, dtype=np.int64)
    runs = []
    for first, last in _runs(candidate):
        if times[last] - times[first] > FLASH_MAX_DURATION_S:
            continue
        level = float(stats.mean[first:last + 1].mean())
        before, _ = _side_medians(stats.mean, usable, everything, first, NEIGHBOUR_FRAMES)
        _, after = _side_medians(stats.mean, usable, everything, last, NEIGHBOUR_FRAMES)
        if before is None and after is None:
            continue
        if any(side is not None and level - side < FLASH_MIN_JUMP_GRAY for side in (before, after)):
            continue
        runs.append((first, last))
        for k in range(first, last + 1):
            found[k] = ExcludedFrame(k, "flash", (
                f"contrast panel {100 * stats.saturated[k]:.0f} % saturated, mean gray {stats.mean[k]:.0f} vs "
                f"{_describe(before)} before and {_describe(after)} after"))
    return runs


def _find_dropouts(contrast: _PanelStats, bmode: _PanelStats | None, segment: np.ndarray,
                   found: dict[int, ExcludedFrame]) -> None:
    """Frames whose image collapses far below their neighbours on both sides (both panels).

    The deciding panel (B-mode on a dual display, else contrast) must fall to DROPOUT_MAX_LEVEL_FRACTION
    of its neighbours and by DROPOUT_MIN_DROP_GRAY; the contrast panel of a dual display must fall
    to that fraction too, unless it is still dark (before arrival) and merely stays dark.
    """
    n_frames = contrast.mean.size
    usable = np.ones(n_frames, dtype=bool)
    usable[list(found)] = False
    panels = [("B-mode", bmode), ("contrast", contrast)] if bmode is not None else [("contrast", contrast)]
    for k in range(n_frames):
        if k in found:
            continue
        evidence = []
        for index, (name, stats) in enumerate(panels):
            before, after = _side_medians(stats.mean, usable, segment, k, NEIGHBOUR_FRAMES)
            if before is None or after is None:
                break
            reference = min(before, after)
            level = stats.mean[k]
            collapsed = level <= DROPOUT_MAX_LEVEL_FRACTION * reference
            if index == 0:
                collapsed = collapsed and reference - level >= DROPOUT_MIN_DROP_GRAY
            elif reference < DROPOUT_MIN_DROP_GRAY:
                # The contrast panel of a dual display is still dark (pre-arrival): it has nothing
                # to lose, so the B-mode panel decides alone, provided the contrast did not brighten.
                collapsed = collapsed or level <= reference + DROPOUT_DARK_PANEL_TOLERANCE_GRAY
            if not collapsed:
                break
            evidence.append(f"{name} mean gray {level:.0f} vs {before:.0f} before and {after:.0f} after")
        else:
            found[k] = ExcludedFrame(k, "dropout", "image collapsed: " + "; ".join(evidence))


def _find_duplicates(contrast: _PanelStats, bmode: _PanelStats | None, found: dict[int, ExcludedFrame]) -> None:
    """Frames (nearly) identical to the previous frame on every panel that has content.

    "Nearly" is relative to how much the neighbouring frames change from one to the next: a nearly
    black pre-arrival panel changes by a fraction of a gray level between real frames.
    """
    panels = [("contrast", contrast)] + ([("B-mode", bmode)] if bmode is not None else [])
    n_frames = contrast.mean.size
    for k in range(1, n_frames):
        if k in found:
            continue
        judged = []
        for name, stats in panels:
            if min(stats.std[k], stats.std[k - 1]) < DUPLICATE_MIN_CONTENT_STD_GRAY:
                continue
            around = np.r_[stats.difference[max(1, k - NEIGHBOUR_FRAMES):k],
                           stats.difference[k + 1:k + 1 + NEIGHBOUR_FRAMES]]
            typical = float(np.median(around)) if around.size else 0.0
            tolerance = min(DUPLICATE_MAX_MEAN_DIFFERENCE_GRAY, DUPLICATE_MAX_RELATIVE_DIFFERENCE * typical)
            judged.append((name, stats.difference[k], tolerance))
        if judged and all(difference <= tolerance for _, difference, tolerance in judged):
            detail = ", ".join(f"{name} mean |difference| {difference:.3g} gray" for name, difference, _ in judged)
            found[k] = ExcludedFrame(k, "duplicate", f"repeat of frame {k - 1}: {detail}")


def _find_out_of_plane(motion: MotionEstimate, segment: np.ndarray, found: dict[int, ExcludedFrame]) -> None:
    """Frames whose match collapses while their neighbours' does not.

    Two match scores are tested, each against its own neighbourhood and spread: the score with the
    reference frame, and (when available) the neighbour score, which does not vary with the contrast
    phase and so catches single frames from another plane on a contrast panel too. Neighbours are
    taken within the frame's flash segment: after a flash the contrast panel loses its structure,
    and its scores with it, for a physical reason that is not out-of-plane motion.
    """
    n_frames = motion.n_frames
    usable = np.ones(n_frames, dtype=bool)
    if motion.reliable is not None:
        usable &= np.asarray(motion.reliable, dtype=bool)
    usable[list(found)] = False
    series = [("match score with the reference frame", np.asarray(motion.score, dtype=np.float64))]
    if motion.neighbour_score is not None:
        series.append(("match score with the neighbouring frames",
                       np.asarray(motion.neighbour_score, dtype=np.float64)))
    for label, score in series:
        considered = usable & np.isfinite(score)
        if label.endswith("reference frame"):
            considered[motion.reference_frame] = False  # 1 by definition
        dips = np.full(n_frames, np.nan)
        for k in np.flatnonzero(np.isfinite(score)):
            before, after = _side_medians(score, considered, segment, k, OUT_OF_PLANE_NEIGHBOUR_FRAMES)
            if before is not None and after is not None:
                dips[k] = min(before, after) - score[k]
        typical = dips[considered & np.isfinite(dips)]
        if typical.size < 2 * MIN_NEIGHBOURS:
            continue
        spread = 1.4826 * float(np.median(np.abs(typical - np.median(typical))))
        threshold = max(OUT_OF_PLANE_MAD_FACTOR * spread, OUT_OF_PLANE_MIN_DROP)
        for k in np.flatnonzero(dips > threshold):
            k = int(k)
            if k in found or k == motion.reference_frame:
                continue
            found[k] = ExcludedFrame(k, "out_of_plane", (
                f"{label} {score[k]:.2f}, {dips[k]:.2f} below its neighbours' (threshold {threshold:.2f})"))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True."""
    runs = []
    start = None
    for k, flag in enumerate(flags):
        if flag and start is None:
            start = k
        elif not flag and start is not None:
            runs.append((start, k - 1))
            start = None
    if start is not None:
        runs.append((start, len(flags) - 1))
    return runs


def _describe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


# ----------------------------------------------------------------------------------------------
# Frames excluded by the user, and the resulting selection


# ASCII digits only (\d also matches other scripts' digits); more than 9 digits is no frame of a clip.
_RANGE_ITEM = re.compile(r"([0-9]{1,9})(?:\s*-\s*([0-9]{1,9}))?")


def parse_frame_ranges(text: str, n_frames: int, option: str = "--exclude-frames", source: str | None = None,
                       unit: str = "frame") -> list[int]:
    """Frame indices from ``"3-5,10,20-22"``: inclusive ranges and single frames, 0-based.

    Returns the sorted unique indices (an empty or blank ``text`` gives none). Raises InputError
    (one line naming ``option``, the valid range 0..N-1 and ``source``) for junk (non-ASCII digits and
    numbers of more than 9 digits included), reversed ranges or frames outside the clip. ``unit``
    names what is counted (``"data row"`` for a table, whose rows are also counted from 0).
    """
    if n_frames < 1:
        raise InputError(f"{option}: there are no {unit}s", source)
    valid = f"{unit}s are 0..{n_frames - 1}"
    within = "the clip" if unit == "frame" else "the table"
    shown = " ".join(str(text).split())
    if not shown:
        return []
    frames: set[int] = set()
    for item in shown.split(","):
        item = item.strip()
        match = _RANGE_ITEM.fullmatch(item)
        if match is None:
            raise InputError(f"{option} {shown[:80]!r}: {item[:40]!r} is not a {unit} index or a range like 3-5 "
                             f"({valid})", source)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise InputError(f"{option} {shown!r}: range {item!r} is reversed; write {last}-{first} ({valid})", source)
        if last >= n_frames:
            raise InputError(f"{option} {shown!r}: {item!r} is outside {within} ({valid})", source)
        frames.update(range(first, last + 1))
    return sorted(frames)


def frames_to_use(n_frames: int, excluded: Sequence[ExcludedFrame] | Sequence[int]) -> np.ndarray:
    """Boolean (N,) selection of frames to fit: False for every excluded frame (entries or indices).

    Raises InputError for an index outside 0..N-1.
    """
    use = np.ones(int(n_frames), dtype=bool)
    for entry in excluded:
        k = entry.frame if isinstance(entry, ExcludedFrame) else entry
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n_frames:
            raise InputError(f"excluded frame {k!r} is outside the clip (frames are 0..{n_frames - 1})")
        use[int(k)] = False
    return use
