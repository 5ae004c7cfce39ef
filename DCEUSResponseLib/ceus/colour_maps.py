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

from DCEUSResponseLib.ceus.colour_tables import BAR_NOISE, block_distances, luma

#: A colour bar is at least this long (pixels along the map) and this wide (pixels across).
MIN_BAR_LENGTH_PX = 32
MIN_BAR_WIDTH_PX = 3
#: and spans at least this many luma levels between its ends.
MIN_BAR_LUMA_RANGE = 96.0
#: Between neighbouring pixels along a bar, luma rises by at most this much and falls by no more than
#: JPEG noise: a 32-pixel bar over the full range steps by 8 on average. (A 32-pixel "hot" bar steps
#: 16 in its red-to-yellow third, as a reject level's edge does through JPEG: it is not found.)
MAX_BAR_STEP = 14.0
#: Static pixels vary over the clip by at most this much (display levels): JPEG decodes an unchanged
#: block identically, a live image's speckle changes by tens of levels.
STATIC_RANGE = 3.0
#: A recovered map must predict nearly all the panel's block colours within this distance (RGB levels):
#: JPEG quantises the chroma of saturated colours coarsely (the true "hot" map misses 7 % of 4:2:2
#: blocks by more than 28 levels, 0.8 % by more than 40), while a colour set that is not one map
#: (grey with a colour overlay) misses nearly all.
CURVE_DISTANCE_TOLERANCE = 40.0
CURVE_OUTLIER_FRACTION = 0.03
_LUMA_BINS = 64
_FLAT = 1.0  # display levels: a bar's background run repeats its end colour within this
_BACKGROUND_NOISE = 2 * BAR_NOISE  # JPEG's noise in a border of one colour (display levels)
_EDGE_RATIO = 3.0  # a step out of that noise this many times the one before it is the bar's hard edge
_SAMPLE_FRAMES = 16


@dataclass(frozen=True)
class RecoveredMap:
    """A display colour map found in the clip: ``table`` 256 x 3 RGB (row g = colour of gray g).

    ``source`` is ``"colour_bar"`` or ``"clip_colours"``; ``description`` says where (for results.json).
    """

    table: np.ndarray
    source: str
    description: str
    #: Why the table may be off, for the analysis's warnings (empty when nothing is known to be).
    caveats: tuple[str, ...] = ()


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
            beside = _beside_the_bar(picture[rows[0]:rows[1]], profile, first, last)
            # pixels past each end (up to a quarter of the bar), going outwards
            reach = max(_PAST_PX, (rows[1] - rows[0]) // 4)
            beyond = (picture[max(rows[0] - reach, 0):rows[0], first:last].mean(axis=1)[::-1],
                      picture[rows[1]:rows[1] + reach, first:last].mean(axis=1))
            table, unseen_ends = _table_from_profile(profile, beside, beyond)
            # A grey bar (the B-mode scale) is not the map of a colour panel.
            if table is not None and np.ptp(table, axis=1).max() > 2 * BAR_NOISE + 4:
                description = f"{'horizontal' if transposed else 'vertical'} colour bar at {where}"
                caveats = tuple(_end_caveat(description, *unseen) for unseen in unseen_ends)
                found.append((rows[1] - rows[0], RecoveredMap(table, "colour_bar", description, caveats)))
    found.sort(key=lambda item: -item[0])
    return [recovered for _, recovered in found]


def _beside_the_bar(strip: np.ndarray, profile: np.ndarray, first: int, last: int) -> list[np.ndarray]:
    """The profiles of the columns beside a bar (``strip``: its rows; ``first``..``last``: the columns it
    was found in): on each side, the first column that does not follow the bar's luma ``profile`` on the
    bar's inner rows (mean |luma difference| above :data:`_SIDE_LIKE_FRACTION` of the bar's luma
    range), :data:`_SIDE_BLUR_PX` further out. The columns a bar is found in may be fewer than it has
    (JPEG breaks the runs of some): a column at a fixed offset from them was inside the bar, so its
    colours, the bar's own, read as the background. Luma, which JPEG keeps per pixel, follows the bar
    in each of its columns where colours (subsampled chroma, ringing on a steep map) may not. Only the
    rows whose luma is clear of both end colours count: a bar's rows may be mostly a border of its end
    colour (a 40 px bar in a run of 408 rows), which a plain border column matches."""
    bar_luma = luma(profile)
    span = max(float(np.ptp(bar_luma)), 1.0)
    inner = (np.abs(bar_luma - bar_luma[0]) > _SIDE_END_CLEARANCE * span) \
        & (np.abs(bar_luma - bar_luma[-1]) > _SIDE_END_CLEARANCE * span)
    rows = inner if np.count_nonzero(inner) >= MIN_BAR_LENGTH_PX // 2 else np.ones(len(profile), dtype=bool)
    tolerance = _SIDE_LIKE_FRACTION * span
    sides = []
    for step, column in ((-1, first - 1), (1, last)):
        while 0 <= column < strip.shape[1] and np.mean(np.abs(luma(strip[rows, column]) - bar_luma[rows])) <= tolerance:
            column += step
        column += step * _SIDE_BLUR_PX
        if 0 <= column < strip.shape[1]:
            sides.append(strip[:, column])
    return sides


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
            best = _best_run(rising[:, column], y[:, column], sign, static[:, column])
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


def _best_run(ok_steps: np.ndarray, y: np.ndarray, sign: float, static: np.ndarray) -> tuple[int, int] | None:
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
        if pixels[1] - pixels[0] < MIN_BAR_LENGTH_PX - 2:  # the steep ends may add one pixel each
            continue
        pixels = _with_steep_ends(pixels, y, sign, static)
        if pixels[1] - pixels[0] < MIN_BAR_LENGTH_PX:
            continue
        span = sign * float(y[pixels[1] - 1] - y[pixels[0]])
        if span >= MIN_BAR_LUMA_RANGE and span > best_range:
            best, best_range = pixels, span
    return best


def _with_steep_ends(run: tuple[int, int], y: np.ndarray, sign: float, static: np.ndarray) -> tuple[int, int]:
    """``run`` with the static pixel past each end joined when the step to it continues the bar's slope
    there (same direction, at most :data:`_END_STEP_RATIO` times the mean of the next
    :data:`_END_STEP_PIXELS` steps): a map's last gray level can step more steeply than the bar allows
    (early top's dark end into black: -12.5 luma levels after steps of -8), and a 32-pixel bar cut to 31
    was lost, a 40-pixel one read 4 levels off. A reject level's jump (five such steps on a 100-pixel
    bar) stays outside, where :func:`_hidden_levels` sees it."""
    first, stop = run
    inside = sign * np.diff(y[first:stop])
    if first > 0 and static[first - 1]:
        slope = max(float(np.mean(inside[:_END_STEP_PIXELS])), BAR_NOISE)
        if 0.0 < sign * float(y[first] - y[first - 1]) <= _END_STEP_RATIO * slope:
            first -= 1
    if stop < len(y) and static[stop]:
        slope = max(float(np.mean(inside[-_END_STEP_PIXELS:])), BAR_NOISE)
        if 0.0 < sign * float(y[stop] - y[stop - 1]) <= _END_STEP_RATIO * slope:
            stop += 1
    return first, stop


_END_STEP_PIXELS = 4
_END_STEP_RATIO = 2.0


#: A bar end is faded when more than this fraction of the bar's pixels lie within
#: :data:`FADING_LUMA_LEVELS` of its end colour: the map approaches that colour so slowly that where
#: the map ends and a background of that colour begins is not visible (a gamma 2 map: 12 %; the
#: maps that are steep at their ends, hot, gold-map, curved-tint: 0.5-2 %).
FADING_END_FRACTION = 0.05
FADING_LUMA_LEVELS = 3.0
#: A bar end *jumps* when it steps into a background darker than its dark end (brighter than its
#: bright end) by more than the map's slope just inside it accounts for, by this many gray levels, and
#: the map continued at that slope would reach the background's colour: the background may hide part
#: of the map, as a reject level shown black on a black border does (gray 0-12 black: 15-17 estimated,
#: uncompressed and JPEG, bars vertical, horizontal or at the frame's edge). Not a map that starts at a
#: colour of its own (navy), nor a bar framed by an outline; nor a steep but continuous end (a gamma
#: 0.5 map: 9-10, the slope over 8 pixels missing its curvature).
JUMP_HIDDEN_LEVELS = 12.0
#: The pixels beside a bar are read this far outside its first column unlike it (past JPEG's blur of its
#: edges); a bar pixel of its end colour is background when the pixels beside it show that colour too.
_SIDE_BLUR_PX = 3
_SIDE_LIKE_FRACTION = 0.1  # of the bar's luma range: a column whose luma follows the bar within it is the bar's
_SIDE_END_CLEARANCE = 0.1  # of the bar's luma range: rows this far from both end colours are its inner rows
_SIDE_MATCH = 8.0  # display levels (max over channels)
_PAST_PX = 3  # pixels read past each end of a bar
_SLOPE_PX = 8  # pixels inside an end whose colours give the map's slope there


def _table_from_profile(profile: np.ndarray, beside: list[np.ndarray] | tuple = (),
                        beyond: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> tuple[np.ndarray | None, list[tuple[str, str]]]:
    """256-entry table from a bar's colour profile (dark end first, background trimmed, resampled), and
    the ends where the map's end is not visible: ``("dark" / "bright", "fades" / "jumps:N")``, N the
    gray levels the background may hide (:data:`FADING_END_FRACTION`, :data:`JUMP_HIDDEN_LEVELS`).

    A run of the end colour at an end of the bar is background only where the pixels ``beside`` the
    bar (profiles of the columns left and right of it, same rows) show that colour too, on either side
    (a tick or a label on one side is not background): a map that reaches its top colour early (gray
    230-255 one colour) on a black border keeps its flat top, which trimming would stretch over the
    whole scale. Without pixels beside it the run is trimmed. ``beyond`` holds the pixels past the
    profile's first and last pixels, going outwards (may be empty).
    """
    sides = [np.asarray(side, dtype=np.float64) for side in beside]
    past = [np.asarray(pixels, dtype=np.float64).reshape(-1, 3) for pixels in (beyond or (np.zeros((0, 3)),) * 2)]
    if luma(profile[-1]) < luma(profile[0]):
        profile, sides, past = profile[::-1], [side[::-1] for side in sides], past[::-1]
    # A flat end the bar's search stopped short of (a reject level's black on a grey background: the
    # step into it is too steep for a bar) is the map's own when it stands out from the background.
    dark_own = _own_flat_end(past[0], [side[0] for side in sides], darker=True, end_colour=profile[0])
    bright_own = _own_flat_end(past[1], [side[-1] for side in sides], darker=False, end_colour=profile[-1])
    if dark_own or bright_own:
        profile = np.concatenate([past[0][:dark_own][::-1], profile, past[1][:bright_own]])
        sides = [np.concatenate([np.repeat(side[:1], dark_own, axis=0), side, np.repeat(side[-1:], bright_own, axis=0)])
                 for side in sides]
        past = [past[0][dark_own:], past[1][bright_own:]]
    # The bar's ends may run into a background of the same colour (black below, white above): those
    # pixels are not part of the map, so each such end keeps only one pixel of its end colour.
    first = _background_run(profile, sides)
    stop = len(profile) - _background_run(profile[::-1], [side[::-1] for side in sides])
    around = {"dark": [side[first] for side in sides], "bright": [side[stop - 1] for side in sides]}
    trimmed = {"dark": first > 0, "bright": stop < len(profile)}
    profile = profile[first:stop]
    if len(profile) < MIN_BAR_LENGTH_PX:
        return None, []
    position = np.linspace(0.0, 1.0, len(profile))
    wanted = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(wanted, position, profile[:, k]) for k in range(3)], axis=1)
    unseen = []
    for end, inwards, outside in (("dark", profile, past[0]), ("bright", profile[::-1], past[1])):
        near_end = np.abs(luma(inwards) - luma(inwards[0]))
        if trimmed[end] and np.mean(near_end <= FADING_LUMA_LEVELS) > FADING_END_FRACTION:
            unseen.append((end, "fades"))
            continue
        if trimmed[end]:
            background = inwards[0]  # the one pixel kept of the background's colour
            inwards = inwards[1:]
        elif _is_background(outside, around[end]):
            background = outside[0]
        else:
            continue  # the bar ends against something else (an outline, the frame's edge): its end is seen
        hidden = _hidden_levels(inwards, background, 255.0 / (len(profile) - 1))
        if hidden > JUMP_HIDDEN_LEVELS:
            unseen.append((end, f"jumps:{hidden:.0f}"))
    return table, unseen


def _own_flat_end(outside: np.ndarray, around: list[np.ndarray], darker: bool, end_colour: np.ndarray) -> int:
    """How many pixels past a bar's end (``outside``, going outwards) are a flat end of the map: at
    least :data:`_PAST_PX` of one colour, darker (``darker``) or brighter than the bar's ``end_colour``,
    unlike the colours ``around`` the bar beside that end, and bounded by the background (not an
    outline, which is thinner; not the frame's edge)."""
    if len(outside) <= _PAST_PX or not around:
        return 0
    if (luma(outside[0]) < luma(end_colour)) != darker or min(
            np.abs(side - outside[0]).max() for side in around) <= _SIDE_MATCH:
        return 0
    same = np.abs(outside - outside[0]).max(axis=-1) <= _SIDE_MATCH
    count = int(np.argmin(same)) if not np.all(same) else len(outside)
    bounded = count < len(outside) and any(np.abs(side - outside[count]).max() <= _SIDE_MATCH for side in around)
    return count if count >= _PAST_PX and bounded else 0


def _is_background(outside: np.ndarray, around: list[np.ndarray]) -> bool:
    """Whether the pixels past a bar's end are the background: uniform, and the colour beside the bar."""
    if len(outside) < _PAST_PX:
        return False
    uniform = np.abs(outside[:_PAST_PX] - outside[0]).max() <= _SIDE_MATCH
    return bool(uniform and any(np.abs(side - outside[0]).max() <= _SIDE_MATCH for side in around))


def _hidden_levels(inwards: np.ndarray, background: np.ndarray, levels_per_pixel: float) -> float:
    """Gray levels a ``background`` colour may hide past a bar end whose colours, going inwards, are
    ``inwards``: how far the map, continued outwards at its slope over :data:`_SLOPE_PX` pixels, runs
    beyond the one pixel step to the background before reaching its luma; 0 when the continued map does
    not lead to the background's colour (a map starting at a colour of its own)."""
    inner = inwards[:_SLOPE_PX]
    if len(inner) < 3:
        return 0.0
    offsets = np.arange(len(inner), dtype=np.float64)
    colour_slope = np.polyfit(offsets, inner, 1)[0]  # per pixel inwards, per channel
    luma_slope = float(luma(colour_slope))
    if abs(luma_slope) * (len(inner) - 1) <= BAR_NOISE:
        return 0.0  # a flat end (the map's own end colour) heads nowhere: the step to the background is seen
    outwards_step = float(luma(background) - luma(inner[0]))
    # The map continued outwards must head for the background (darker past the dark end, brighter past
    # the bright end) and reach it only after more than the one pixel step.
    if luma_slope * outwards_step >= 0 or abs(outwards_step) <= abs(luma_slope):
        return 0.0
    pixels = abs(outwards_step / luma_slope)
    continued = inner[0] - pixels * colour_slope
    if np.abs(continued - background).max() > 0.35 * np.abs(inner[0] - background).max() + 2 * BAR_NOISE:
        return 0.0
    return (pixels - 1.0) * levels_per_pixel


def _background_run(profile: np.ndarray, sides: list[np.ndarray]) -> int:
    """How many pixels at the start of ``profile`` to drop as background: the run of its first colour
    where a side shows that colour too, but for the run's last pixel (the map's own end colour). Runs
    of one pixel are the map's own.

    The run is contiguous: pixels within :data:`_FLAT` of the first colour, and single pixels within
    :data:`_BACKGROUND_NOISE` of it that the next pixel follows within :data:`_FLAT` again (JPEG's
    noise in a black border: a decoded (0, 1, 3) among blacks). Where the bar leaves the stretch within
    :data:`_BACKGROUND_NOISE` by a hard edge (a step beyond the noise and :data:`_EDGE_RATIO` times the
    step before it), the whole stretch is the run: JPEG blurs the map's first visible colour into its
    black end pixel ((1.8, 0, 0) before (10.6, 1, 0)) and leaves noise beside it ((1.1, 0, 0) twice in
    the mean of the bar's columns). Both kept border pixels as the map's dark end (up to 3 of a
    100-pixel bar: gray +8 at the dark end, +4.6 on average through JPEG 4:2:2). A map that leaves its
    end colour gradually (a gamma 1.5 tint, "hot"'s steps of 3) has no hard edge, and its own first
    levels are not taken for border beyond what the strict run took.
    """
    end_colour = profile[0]
    deviation = np.abs(profile - end_colour).max(axis=-1)
    run = 0
    while run < len(deviation) and (deviation[run] <= _FLAT or (
            deviation[run] <= _BACKGROUND_NOISE and run + 1 < len(deviation) and deviation[run + 1] <= _FLAT)):
        run += 1
    beyond_noise = deviation > _BACKGROUND_NOISE
    stretch = int(np.argmax(beyond_noise)) if np.any(beyond_noise) else len(profile)
    if 1 < stretch < len(profile):
        step_out = deviation[stretch] - deviation[stretch - 1]
        step_before = max(deviation[stretch - 1] - deviation[stretch - 2], 0.0)
        if step_out > max(_EDGE_RATIO * step_before, _BACKGROUND_NOISE):
            run = stretch
    if sides:
        like_a_side = np.any([np.abs(side[:run] - end_colour).max(axis=-1) <= _SIDE_MATCH for side in sides], axis=0)
        run = int(np.argmin(like_a_side)) if not np.all(like_a_side) else run
    return run - 1 if run >= 3 else 0


def _end_caveat(description: str, end: str, why: str) -> str:
    """The warning for a bar whose ``end`` (dark / bright) cannot be seen (``why``: fades / jumps:N)."""
    if why == "fades":
        shown, hidden = f"fades into the {end} colour around it", ""
    else:
        shown = f"steps abruptly into the {end} colour around it (a reject level?)"
        hidden = f" (about {why.partition(':')[2]} may be hidden)"
    return (f"the {description} {shown}: where the map ends there is not visible, so its {end}est gray levels "
            f"are uncertain{hidden}; check colour_map.csv against the scanner's colour bar, or give --colormap")


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
    """Fraction of 2 x 2 ``blocks`` (M, 4, 3) whose mean colour ``table`` predicts within ``tolerance``."""
    return float(np.mean(block_distances(table, blocks) <= tolerance))
