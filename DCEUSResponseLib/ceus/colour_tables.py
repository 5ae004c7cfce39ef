"""Reading a display colour table (gray level -> RGB, 256 rows): where it shows gray levels as one
colour, where the display saturates, and the gray level of a colour from its luma.

The tables come from :mod:`.colour_maps` (a colour bar, the clip's colours) or from ``--colormap``.
"""
from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as in DICOM YBR_FULL
#: Display levels of noise a decoded colour carries (JPEG): steps and falls within it are flat.
BAR_NOISE = 2.5
#: Luma along the map rises by at least this much per gray level on average for luma lookup.
MIN_LUMA_SLOPE = 0.2


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y (float32) of RGB values (..., 3)."""
    return np.asarray(rgb, dtype=np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)


#: A map shows a stretch of at least this many gray levels as one colour (all channels within
#: :data:`PLATEAU_COLOUR_LEVELS` of the stretch's first colour) where it pauses, while it moves by more
#: than :data:`PLATEAU_MOVING_LEVELS` over as many levels on either side: the display loses those gray
#: levels (a top colour reached early, a reject level, a flat stretch mid-map). A map that is merely
#: slow (the dark end of a gamma 2 map, within 1.5 levels over 16 gray levels) is not flat.
PLATEAU_MIN_LEVELS = 8
PLATEAU_COLOUR_LEVELS = 1.5
PLATEAU_MOVING_LEVELS = 4.5
_END_SLACK_LEVELS = 8


def flat_stretches(table: np.ndarray) -> list[tuple[int, int]]:
    """The [first, stop) gray levels of a colour ``table`` (N x 3) shown as one colour
    (:data:`PLATEAU_MIN_LEVELS`, :data:`PLATEAU_COLOUR_LEVELS`, :data:`PLATEAU_MOVING_LEVELS`), in order.

    Neighbouring stretches whose colours together stay within :data:`PLATEAU_MOVING_LEVELS` are one
    (a top colour reached through a small step), and a stretch within :data:`_END_SLACK_LEVELS` of an
    end of the table reaches it when the rows between keep its luma (JPEG ringing alters a bar's last
    pixels' colour); a map that goes on brightening (or darkening) there is not flat to its end."""
    table = np.asarray(table, dtype=np.float64)
    runs, first = [], 0
    while first < len(table):
        apart = np.abs(table[first:] - table[first]).max(axis=-1) > PLATEAU_COLOUR_LEVELS
        stop = first + (int(np.argmax(apart)) if apart.any() else len(table) - first)
        if stop - first >= PLATEAU_MIN_LEVELS:
            merged = (runs and runs[-1][1] == first
                      and np.ptp(table[runs[-1][0]:stop], axis=0).max() <= PLATEAU_MOVING_LEVELS)
            runs[-1:] = [(runs[-1][0], stop)] if merged else runs[-1:] + [(first, stop)]
        first = max(stop, first + 1)

    def moving(a: int, b: int) -> bool:  # the map moves between rows a and b (or b is off the table)
        return not 0 <= b < len(table) or np.abs(table[b] - table[a]).max() > PLATEAU_MOVING_LEVELS

    def near(first: int, stop: int, rows: slice) -> bool:  # rows show the stretch's brightness
        # Luma, not every channel: 4:2:2 chroma rings by 14 levels at a horizontal bar's end where its
        # luma stays within 1.5 of the stretch's; a map still rising past the stretch leaves it by more.
        return bool(np.all(np.abs(luma(table[rows]) - np.median(luma(table[first:stop]))) <= PLATEAU_MOVING_LEVELS))

    stretches = []
    for first, stop in runs:
        first = 0 if first <= _END_SLACK_LEVELS and near(first, stop, slice(0, first)) else first
        stop = len(table) if stop >= len(table) - _END_SLACK_LEVELS and near(first, stop, slice(stop, None)) else stop
        if moving(first, first - PLATEAU_MIN_LEVELS) and moving(stop - 1, stop - 1 + PLATEAU_MIN_LEVELS):
            stretches.append((first, stop))
    return stretches


def gray_positions(table: np.ndarray) -> np.ndarray:
    """The gray level read for each row of a colour ``table``: its own, except on flat stretches.

    A colour shown for a stretch of gray levels stands for all of them. Mid-map it is read as the
    stretch's middle (its error at most half the stretch, unbiased); at the top of the map as the
    stretch's first level (the display saturates there, as at gray 255: the pixel is at least that
    bright); at the bottom as gray 0 (the display floor).
    """
    positions = np.arange(len(table), dtype=np.float64)
    for first, stop in flat_stretches(table):
        if first == 0:
            positions[first:stop] = 0.0
        elif stop == len(table):
            positions[first:stop] = first
        else:
            positions[first:stop] = (first + stop - 1) / 2.0
    return positions


def saturation_gray(table: np.ndarray) -> float:
    """The lowest gray level a ``table`` shows in its top colour: where the display saturates."""
    stretches = flat_stretches(table)
    return float(stretches[-1][0]) if stretches and stretches[-1][1] == len(table) else float(len(table) - 1)


def luma_lookup(table: np.ndarray) -> np.ndarray | None:
    """Knots (2 x K: luma rising, gray) to read gray from luma, when the table's luma rises strictly
    enough for that, else None. Flat stretches are one knot at their :func:`gray_positions`."""
    table_luma = luma(table).astype(np.float64)
    rise = table_luma[-1] - table_luma[0]
    if rise < MIN_LUMA_SLOPE * 255.0 or np.any(np.diff(table_luma) < -BAR_NOISE / 4):
        return None
    rising = np.maximum.accumulate(table_luma)
    gray, group = np.unique(gray_positions(table), return_inverse=True)
    return np.stack([np.bincount(group, weights=rising) / np.bincount(group), gray])


def gray_from_luma(frames: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Gray level (float32 0..255) of RGB ``frames`` from their luma through :func:`luma_lookup` knots."""
    values = luma(frames)
    # np.interp needs increasing x; equal lumas left by the running maximum are broken by a tiny ramp.
    knot_luma = knots[0] + np.arange(knots.shape[1]) * 1e-6
    return np.interp(values, knot_luma, knots[1]).astype(np.float32)


def block_distances(table: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Distance (RGB levels) of each 2 x 2 block's mean colour from what ``table`` predicts for it.

    With a rising luma the prediction is the mean of the table colours at the pixels' lumas (robust to
    chroma subsampling); otherwise the distance of the block mean to the table's polyline.
    """
    observed = blocks.mean(axis=1)
    knots = luma_lookup(table)
    if knots is not None:
        gray = gray_from_luma(blocks, knots)
        predicted = np.stack([np.interp(gray, np.arange(len(table)), table[:, k]) for k in range(3)], axis=-1)
        return np.linalg.norm(observed - predicted.mean(axis=1), axis=1)
    from scipy.spatial import cKDTree

    # Eight points per table step make the nearest point a close stand-in for the polyline distance.
    dense = np.stack([np.interp(np.linspace(0, len(table) - 1, 8 * len(table)), np.arange(len(table)), table[:, k])
                      for k in range(3)], axis=1)
    distance, _ = cKDTree(dense).query(observed)
    return distance
