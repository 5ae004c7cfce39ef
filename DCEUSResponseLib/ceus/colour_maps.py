"""Recovering a vendor's display colour map (gray level -> RGB) from the clip itself.

Two sources, in order of trust:

1. **A burned-in colour bar**: a static strip (vertical or horizontal, at least
   :data:`MIN_BAR_LENGTH_PX` long and :data:`MIN_BAR_WIDTH_PX` wide) whose colour runs smoothly and
   monotonically in luma from a dark to a bright end. Scanners draw the map's gray levels 0..255
   evenly along the bar, so position along the bar *is* the gray level: exact for any map.
2. **The clip's own colours**: a display map is a 1-D curve in RGB. The contrast panel's 2 x 2 block
   colours (JPEG 4:2:2 shares chroma within such blocks) are ordered by luma; the curve is their
   median per luma bin, starting at black (gray 0) and extended along its last direction to where its
   largest channel reaches 255 (gray 255). Gray is the arc length along it, scaled to 0..255: exact
   for maps that move at constant speed through RGB (linear ramps, tints, "hot"), an approximation
   otherwise -- hence a warning and the recovered table written for checking.

A pixel's gray level is then read from its luma (BT.601 Y, which JPEG keeps per pixel) through the
table's luma, when the table's luma rises strictly along the map; else from the nearest table colour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as in DICOM YBR_FULL

#: A colour bar is at least this long (pixels along the map) and this wide (pixels across).
MIN_BAR_LENGTH_PX = 32
MIN_BAR_WIDTH_PX = 3
#: and spans at least this many luma levels between its ends.
MIN_BAR_LUMA_RANGE = 96.0
#: Between neighbouring pixels along a bar, luma rises by at most this much (a 32-pixel bar over the
#: full range steps by 8) and falls by no more than JPEG noise.
MAX_BAR_STEP = 14.0
BAR_NOISE = 2.5
#: Static pixels vary over the clip by at most this much (display levels): JPEG decodes an unchanged
#: block identically, a live image's speckle changes by tens of levels.
STATIC_RANGE = 3.0
#: A recovered map must predict nearly all the panel's block colours within this distance (RGB levels):
#: JPEG quantises the chroma of saturated colours coarsely (the true "hot" map misses 7 % of 4:2:2
#: blocks by more than 28 levels, 0.8 % by more than 40), while a colour set that is not one map
#: (grey with a colour overlay) misses nearly all.
CURVE_DISTANCE_TOLERANCE = 40.0
CURVE_OUTLIER_FRACTION = 0.03
#: Luma along the map rises by at least this much per gray level on average for luma lookup.
MIN_LUMA_SLOPE = 0.2
_LUMA_BINS = 64
_FLAT = 1.0  # display levels: a bar's background run repeats its end colour within this
_SAMPLE_FRAMES = 16


@dataclass(frozen=True)
class RecoveredMap:
    """A display colour map found in the clip: ``table`` 256 x 3 RGB (row g = colour of gray g).

    ``source`` is ``"colour_bar"`` or ``"clip_colours"``; ``description`` says where (for results.json).
    """

    table: np.ndarray
    source: str
    description: str
    #: Why the table may be off, for the analysis's warnings (None when nothing is known to be).
    caveat: str | None = None


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y (float32) of RGB values (..., 3)."""
    return np.asarray(rgb, dtype=np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)


def find_colour_bar(frames: np.ndarray) -> list[RecoveredMap]:
    """Colour bars burned into RGB ``frames`` (N, rows, columns, 3), best (longest) first."""
    sample = np.linspace(0, frames.shape[0] - 1, min(frames.shape[0], _SAMPLE_FRAMES)).round().astype(int)
    stack = frames[sample]
    static = (stack.max(axis=0).astype(np.int16) - stack.min(axis=0)).max(axis=-1) <= STATIC_RANGE
    image = stack.mean(axis=0, dtype=np.float32)
    found = []
    for transposed in (False, True):
        picture = image.transpose(1, 0, 2) if transposed else image
        still = static.T if transposed else static
        for bar in _vertical_bars(picture, still):
            first, last, rows = bar
            where = (f"rows {rows[0]}-{rows[1] - 1}, columns {first}-{last - 1}" if not transposed
                     else f"columns {rows[0]}-{rows[1] - 1}, rows {first}-{last - 1}")
            profile = picture[rows[0]:rows[1], first:last].mean(axis=1)
            table, faded = _table_from_profile(profile)
            # A grey bar (the B-mode scale) is not the map of a colour panel.
            if table is not None and np.ptp(table, axis=1).max() > 2 * BAR_NOISE + 4:
                description = f"{'horizontal' if transposed else 'vertical'} colour bar at {where}"
                caveat = None if faded is None else (
                    f"the {description} fades into the {faded} colour around it: where the map ends there is "
                    f"not visible, so its {faded}est gray levels are uncertain; check colour_map.csv against the "
                    "scanner's colour bar, or give --colormap")
                found.append((rows[1] - rows[0], RecoveredMap(table, "colour_bar", description, caveat)))
    found.sort(key=lambda item: -item[0])
    return [recovered for _, recovered in found]


def _vertical_bars(image: np.ndarray, static: np.ndarray) -> list[tuple[int, int, tuple[int, int]]]:
    """(first column, stop column, (first row, stop row)) of vertical strips that look like a bar."""
    y = luma(image)
    step = np.diff(y, axis=0)
    colour_step = np.abs(np.diff(image, axis=0)).max(axis=-1)
    both_static = static[1:] & static[:-1]
    candidates = {}
    for sign in (1.0, -1.0):
        rising = both_static & (sign * step >= -BAR_NOISE) & (sign * step <= MAX_BAR_STEP) \
            & (colour_step <= 2 * MAX_BAR_STEP)
        for column in range(image.shape[1]):
            best = _best_run(rising[:, column], y[:, column], sign)
            if best is not None:
                candidates.setdefault(column, []).append(best)
    bars = []
    columns = sorted(candidates)
    index = 0
    while index < len(columns):
        # Group neighbouring columns whose runs coincide (within 2 pixels at each end).
        run = candidates[columns[index]][0]
        group = [columns[index]]
        while index + 1 < len(columns) and columns[index + 1] == group[-1] + 1 and any(
                abs(r[0] - run[0]) <= 2 and abs(r[1] - run[1]) <= 2 for r in candidates[columns[index + 1]]):
            index += 1
            group.append(columns[index])
        index += 1
        if len(group) >= MIN_BAR_WIDTH_PX:
            # Keep off the strip's edges, where JPEG blurs the bar into its surroundings.
            inner = group[1:-1] if len(group) >= 5 else group
            bars.append((inner[0], inner[-1] + 1, run))
    return bars


def _best_run(ok_steps: np.ndarray, y: np.ndarray, sign: float) -> tuple[int, int] | None:
    """The [first, stop) pixel run joined by ``ok_steps`` with the largest luma range in the direction
    ``sign`` (+1: luma rising along the run), if bar-like.

    The direction matters: the steps allowed in a rising run include falls within JPEG noise, so a bar
    falling slowly (the dark half of a gamma > 1 map, the bright half of a gamma < 1 map) would make a
    long "rising" run whose luma falls, cut where the fall steepens, and win over the true bar."""
    padded = np.concatenate([[False], ok_steps, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    best, best_range = None, 0.0
    for start, stop in zip(edges[::2], edges[1::2]):
        pixels = (start, stop + 1)  # steps start..stop-1 join pixels start..stop
        if pixels[1] - pixels[0] < MIN_BAR_LENGTH_PX:
            continue
        span = sign * float(y[pixels[1] - 1] - y[pixels[0]])
        if span >= MIN_BAR_LUMA_RANGE and span > best_range:
            best, best_range = pixels, span
    return best


#: A bar end is faded when more than this fraction of the bar's pixels lie within
#: :data:`FADING_LUMA_LEVELS` of its end colour: the map approaches that colour so slowly that where
#: the map ends and a background of that colour begins is not visible (a gamma 2 map: 12 %; the
#: maps that are steep at their ends, hot, gold-map, curved-tint: 0.5-2 %).
FADING_END_FRACTION = 0.05
FADING_LUMA_LEVELS = 3.0


def _table_from_profile(profile: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """256-entry table from a bar's colour profile (dark end first, flat ends trimmed, resampled), and
    ``"dark"`` / ``"bright"`` when that end was trimmed but fades (:data:`FADING_END_FRACTION`),
    so that the trimmed pixels may have been the map's own (a gamma 2 map is within one level of black
    over its first 16 gray levels)."""
    if luma(profile[-1]) < luma(profile[0]):
        profile = profile[::-1]
    # The bar's ends may run into a background of the same colour (black below, white above): those
    # pixels are not part of the map, so each end keeps only one pixel of its end colour.
    distance_from_start = np.abs(profile - profile[0]).max(axis=-1)
    distance_from_end = np.abs(profile - profile[-1]).max(axis=-1)
    first = max(int(np.argmax(distance_from_start > _FLAT)) - 1, 0)
    last = len(profile) - max(int(np.argmax(distance_from_end[::-1] > _FLAT)) - 1, 0)
    # A single pixel near the end colour is the map itself; a run of them is background.
    first = first if first >= 2 else 0
    last = last if len(profile) - last >= 2 else len(profile)
    trimmed = {"dark": first > 0, "bright": last < len(profile)}
    profile = profile[first:last]
    if len(profile) < MIN_BAR_LENGTH_PX:
        return None, None
    position = np.linspace(0.0, 1.0, len(profile))
    wanted = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(wanted, position, profile[:, k]) for k in range(3)], axis=1)
    y = luma(profile)
    near = {"dark": np.mean(np.abs(y - y[0]) <= FADING_LUMA_LEVELS),
            "bright": np.mean(np.abs(y - y[-1]) <= FADING_LUMA_LEVELS)}
    faded = [end for end in ("dark", "bright") if trimmed[end] and near[end] > FADING_END_FRACTION]
    return table, (faded[0] if faded else None)


def panel_blocks(frames: np.ndarray, panel: tuple[slice, slice], max_blocks: int = 200_000) -> np.ndarray:
    """The RGB pixels (M, 4, 3) of 2 x 2 blocks aligned to even rows and columns of ``panel``.

    Subsampled chroma (JPEG 4:2:2 and 4:2:0) is shared within such blocks, so a block's mean colour is
    the mean of its pixels' true colours although single pixels' colours are not.
    """
    step = max(1, frames.shape[0] // _SAMPLE_FRAMES)
    row0, row1 = _even_bounds(panel[0], frames.shape[1])
    col0, col1 = _even_bounds(panel[1], frames.shape[2])
    crop = frames[::step, row0:row1, col0:col1].astype(np.float64)
    n, rows, columns = crop.shape[0], crop.shape[1] // 2, crop.shape[2] // 2
    blocks = crop.reshape(n, rows, 2, columns, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 4, 3)
    if len(blocks) > max_blocks:
        blocks = blocks[np.linspace(0, len(blocks) - 1, max_blocks).astype(np.int64)]
    return blocks


def _even_bounds(index: slice, size: int) -> tuple[int, int]:
    start, stop, _ = index.indices(size)
    start += start % 2
    stop -= (stop - start) % 2
    return start, stop


def curve_from_colours(blocks: np.ndarray) -> RecoveredMap | None:
    """The display map through a contrast panel's 2 x 2 blocks (M, 4, 3), or None when they are not 1-D.

    The map is sought as colour = f(luma), f piecewise linear on luma knots, and fitted by least
    squares to the blocks' *mean* colours from their pixels' lumas (mean of f over the block's four
    pixels): exact under chroma subsampling and at kinks of the map, where block means cut corners.
    """
    from scipy import sparse

    pixel_luma = luma(blocks).astype(np.float64)
    low, high = float(np.percentile(pixel_luma, 0.1)), float(np.percentile(pixel_luma, 99.9))
    if high - low < MIN_BAR_LUMA_RANGE / 2:
        return None
    knot_luma = np.linspace(low, high, _LUMA_BINS)
    position = np.clip((pixel_luma - low) / (high - low) * (_LUMA_BINS - 1), 0, _LUMA_BINS - 1 - 1e-6)
    left = position.astype(np.int64)
    fraction = position - left
    rows = np.repeat(np.arange(len(blocks)), 8)
    columns = np.stack([left, left + 1], axis=-1).reshape(len(blocks), 8).ravel()
    weights = (0.25 * np.stack([1.0 - fraction, fraction], axis=-1)).reshape(-1)
    design = sparse.csr_matrix((weights, (rows, columns)), shape=(len(blocks), _LUMA_BINS))
    second = np.diff(np.eye(_LUMA_BINS), n=2, axis=0)
    normal = (design.T @ design).toarray() + 0.1 * len(blocks) / _LUMA_BINS * (second.T @ second)
    knots = np.linalg.solve(normal, design.T @ blocks.mean(axis=1).astype(np.float64))
    knots = np.clip(knots, 0.0, 255.0)
    if knots[0].max() > BAR_NOISE:
        knots = np.vstack([np.zeros((1, 3)), knots])  # the map starts at black (gray 0)
    top = knots[-1]
    direction = top - knots[-4]
    rising = (direction > 0) & (top < 255.0 - BAR_NOISE)
    if np.any(rising):
        # Extend along the last direction until a rising channel reaches full scale (gray 255):
        # the map's top is often beyond the clip's brightest pixel.
        reach = float(np.min((255.0 - top[rising]) / direction[rising]))
        knots = np.vstack([knots, np.clip(top + reach * direction, 0.0, 255.0)])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(knots, axis=0), axis=1))])
    if arc[-1] <= 0:
        return None
    table = np.stack([np.interp(np.arange(256.0), arc / arc[-1] * 255.0, knots[:, k]) for k in range(3)], axis=1)
    if explained_fraction(table, blocks) < 1.0 - CURVE_OUTLIER_FRACTION:
        return None
    return RecoveredMap(table, "clip_colours",
                        f"from the contrast panel's colours ({len(blocks)} 2x2 blocks): gray = arc length along "
                        "the colour curve from black to full scale")


def explained_fraction(table: np.ndarray, blocks: np.ndarray, tolerance: float = CURVE_DISTANCE_TOLERANCE) -> float:
    """Fraction of 2 x 2 ``blocks`` (M, 4, 3) whose mean colour ``table`` predicts within ``tolerance``.

    With a rising luma the prediction is the mean of the table colours at the pixels' lumas (robust to
    chroma subsampling); otherwise the distance of the block mean to the table's polyline.
    """
    observed = blocks.mean(axis=1)
    table_luma = luma_lookup(table)
    if table_luma is not None:
        gray = gray_from_luma(blocks, table_luma)
        predicted = np.stack([np.interp(gray, np.arange(len(table)), table[:, k]) for k in range(3)], axis=-1)
        distance = np.linalg.norm(observed - predicted.mean(axis=1), axis=1)
        return float(np.mean(distance <= tolerance))
    from scipy.spatial import cKDTree

    # Eight points per table step make the nearest point a close stand-in for the polyline distance.
    dense = np.stack([np.interp(np.linspace(0, len(table) - 1, 8 * len(table)), np.arange(len(table)), table[:, k])
                      for k in range(3)], axis=1)
    distance, _ = cKDTree(dense).query(observed)
    return float(np.mean(distance <= tolerance))


def luma_lookup(table: np.ndarray) -> np.ndarray | None:
    """The table's luma per gray level when it rises strictly enough to read gray from luma, else None."""
    table_luma = luma(table).astype(np.float64)
    rise = table_luma[-1] - table_luma[0]
    if rise < MIN_LUMA_SLOPE * 255.0 or np.any(np.diff(table_luma) < -BAR_NOISE / 4):
        return None
    return np.maximum.accumulate(table_luma)


def gray_from_luma(frames: np.ndarray, table_luma: np.ndarray) -> np.ndarray:
    """Gray level (float32 0..255) of RGB ``frames`` from their luma along a map's rising luma."""
    values = luma(frames)
    # np.interp needs increasing x; ties (flat stretches) are broken by a tiny ramp.
    knots = table_luma + np.arange(table_luma.size) * 1e-6
    return np.interp(values, knots, np.arange(table_luma.size, dtype=np.float64)).astype(np.float32)
