"""From display pixels of a log-compressed CEUS clip to linear echo power.

The scanner maps echo power to display gray level logarithmically over its dynamic range DR (dB)
and may then tint the gray level through a colour map. We undo both: first recover the gray level
g (0..255) as the pixel's position along the display colour map, then apply the contract's
``I = 10 ** ((g / 255 * DR - DR) / 10)`` (gray 255 is 1.0 a.u., gray 0 is 10^(-DR/10) a.u.).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from DCEUSResponseLib.ceus.colour_maps import (
    CURVE_DISTANCE_TOLERANCE,
    CURVE_OUTLIER_FRACTION,
    RecoveredMap,
    curve_from_colours,
    find_colour_bar,
    panel_blocks,
)
from DCEUSResponseLib.ceus.colour_tables import (LUMA_WEIGHTS, block_distances, flat_stretches, gray_from_luma,
                                                  gray_positions, luma_lookup, saturation_gray)
from DCEUSResponseLib.clip import Clip
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.files import require_regular_file

DEFAULT_DYNAMIC_RANGE_DB = 60.0
# Scanners offer display dynamic ranges of about 20-90 dB. Outside 10-120 dB the value is a typo
# (or a unit mix-up), and the exponent leaves float32: 1000 dB underflows the dark half of the scale
# to 0, 1e-300 dB makes every gray level the same intensity (every TIC constant).
MIN_DYNAMIC_RANGE_DB = 10.0
MAX_DYNAMIC_RANGE_DB = 120.0
SATURATED_GRAY = 254.5  # gray levels above this are the top of the display scale
FLOOR_GRAY = 0.5  # gray levels below this are the bottom of the display scale
# JPEG moves pixels at the top of the display scale a few levels below it: counting a lossy clip's
# saturation from this many levels lower recovers it (lesion peak frame 0.31 / 0.29 / 0.65 counted for
# 0.30 / 0.30 / 0.68 uncompressed: grey, gold tint, a map topping at gray 230; 0.19 / 0.16 / 0.43 without).
LOSSY_SATURATION_MARGIN = 2.5

# A pixel is "grey" when its channels differ by no more than this many levels (JPEG adds a few).
_GREY_CHANNEL_TOLERANCE = 6.0
# A colour clip is on a tinted grey map when nearly all 2 x 2 block colours lie this close to one line
# (gray levels; JPEG chroma quantisation scatters blocks by up to ~10 levels, a curved map by ~100).
_TINT_DISTANCE_TOLERANCE = 14.0
_TINT_OUTLIER_FRACTION = 0.02
# Grey blocks brighter than this tell a grey map from a tinted one (gold differs from grey by 40 levels
# at gray 70, by 13 at gray 24).
_TELLING_GREY = 24.0
_MIN_TABLE_RANGE = 16.0  # display levels a colour table spans at least (a bar spans 96 luma levels)


@dataclass(frozen=True)
class ColourMapping:
    """How display colours were turned into gray levels, for the record.

    ``kind`` is ``"gray"`` (monochrome or grey RGB), ``"palette"`` (the DICOM palette LUT),
    ``"tint"`` (a tinted grey map: colour = g * ``tint``, ``tint`` scaled so its largest channel
    is 1), ``"table"`` (a user-given colour table, nearest colour wins) or ``"recovered"`` (a map
    found in the clip by :mod:`colour_maps`: ``table`` 256 x 3, ``source`` ``"colour_bar"`` or
    ``"clip_colours"``, ``where`` how it was found; gray from luma when ``luma_knots`` is set).
    """

    kind: str
    tint: tuple[float, float, float] | None = None
    table: np.ndarray | None = None
    source: str | None = None
    where: str | None = None
    luma_knots: np.ndarray | None = None

    def describe(self) -> str:
        if self.kind == "tint" and self.tint is not None:
            # Colours alone cannot tell a tint that tops out short of full scale from a clip with no
            # pixel that bright: the reading rests on this assumption, said where the scale is named.
            return ("tinted grey map, channel gains R {:.3f} G {:.3f} B {:.3f}, its brightest channel at full "
                    "scale at gray 255 (assumed: a colour bar or --colormap would show it)").format(*self.tint)
        if self.kind == "recovered":
            lookup = "pixel luma" if self.luma_knots is not None else "nearest table colour"
            return f"position along the display colour map recovered {self.where} (read from {lookup})"
        return {"gray": "grey levels", "palette": "DICOM palette colour LUT position",
                "table": "position along the given colour table"}.get(self.kind, self.kind)

    @property
    def saturated_above(self) -> float:
        """Gray levels above this are the top of the display scale: 254.5, or below the first gray level
        a colour table shows in its top colour when the map reaches it early (gray 230-255 one colour)."""
        if self.table is None or self.kind not in ("recovered", "table"):
            return SATURATED_GRAY
        rows = len(self.table)
        return min(SATURATED_GRAY, saturation_gray(self.table) * 255.0 / (rows - 1) - 0.5)

    def to_json(self) -> dict:
        """How the display values became gray levels, for ``results.json`` ``clip.colour_map``."""
        recovered = self.kind == "recovered"
        return {"kind": self.kind, "source": self.source if recovered else
                {"table": "option", "palette": "dicom_palette"}.get(self.kind, "pixels"),
                "description": self.describe(),
                "tint": list(self.tint) if self.tint is not None else None,
                "table_file": COLOUR_MAP_FILE if self.kind in ("recovered", "table") else None}

    def table_csv(self) -> str | None:
        """The colour table as CSV rows R,G,B (row g = gray g), the format ``--colormap`` reads."""
        if self.table is None or self.kind not in ("recovered", "table"):
            return None
        return "".join(f"{r:.1f},{g:.1f},{b:.1f}\n" for r, g, b in np.asarray(self.table, dtype=float))


#: Where ``analyze`` writes a recovered (or given) colour table, in ``--colormap`` format.
COLOUR_MAP_FILE = "colour_map.csv"


def linear_from_gray(gray: np.ndarray, dynamic_range_db: float) -> np.ndarray:
    """Linear echo power (a.u., float32) from display gray levels 0..255 under ``dynamic_range_db`` dB."""
    check_dynamic_range(dynamic_range_db)
    exponent = (np.asarray(gray, dtype=np.float32) * np.float32(dynamic_range_db / 255.0)
                - np.float32(dynamic_range_db)) * np.float32(np.log(10.0) / 10.0)
    return np.exp(exponent, dtype=np.float32)


def gray_from_linear(intensity: np.ndarray, dynamic_range_db: float) -> np.ndarray:
    """Inverse of :func:`linear_from_gray`, unclipped: gray level (float) of linear echo power."""
    check_dynamic_range(dynamic_range_db)
    with np.errstate(divide="ignore"):
        return (10.0 * np.log10(np.asarray(intensity, dtype=np.float64)) + dynamic_range_db) \
            * 255.0 / dynamic_range_db


def check_dynamic_range(dynamic_range_db: float) -> None:
    """InputError unless ``dynamic_range_db`` lies in [MIN_DYNAMIC_RANGE_DB, MAX_DYNAMIC_RANGE_DB] dB."""
    try:
        value = float(dynamic_range_db)
    except (TypeError, ValueError):
        value = math.nan
    if not MIN_DYNAMIC_RANGE_DB <= value <= MAX_DYNAMIC_RANGE_DB:  # also refuses NaN
        raise InputError(f"dynamic range must be {MIN_DYNAMIC_RANGE_DB:g} to {MAX_DYNAMIC_RANGE_DB:g} dB, got "
                         f"{dynamic_range_db!r} (--dynamic-range)")


def read_colour_table(path: str) -> np.ndarray:
    """A display colour table from ``.npy`` or ``.csv``/``.txt``: rows of R, G, B in 0..255 (or 0..1).

    Raises InputError for a file that is not a regular file or over 16 MiB, unreadable, not N x 3,
    holding values that are not finite or outside 0..255, or one colour in every row.
    """
    require_regular_file(path, "colour table", 16 << 20)
    try:
        if str(path).lower().endswith(".npy"):
            table = np.load(path, allow_pickle=False)
        else:
            table = np.loadtxt(path, delimiter="," if str(path).lower().endswith(".csv") else None)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the colour table: {error}", path) from None
    try:
        table = np.asarray(table, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("the colour table does not hold numbers", path) from None
    if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < 2:
        raise InputError(f"a colour table needs rows of R,G,B (N x 3), got shape {table.shape}", path)
    if not np.all(np.isfinite(table)) or table.min() < 0 or table.max() > 255:
        raise InputError("the colour table holds values that are not finite or outside 0..255", path)
    if table.max() <= 1.0:
        table = table * 255.0
    if np.ptp(table, axis=0).max() < _MIN_TABLE_RANGE:
        raise InputError(f"the colour table's rows are all one colour (within {_MIN_TABLE_RANGE:g} levels): it "
                         "cannot tell gray levels apart", path)
    return table


def choose_colour_mapping(clip: Clip, panel: tuple[slice, slice],
                          colour_table: np.ndarray | None = None, warnings: list[str] | None = None) -> ColourMapping:
    """Decide how the clip's display values in ``panel`` become gray levels.

    In order: the DICOM palette; monochrome; the user's ``--colormap`` table; grey RGB without a
    coloured block; a colour bar burned into the frame whose map explains the panel's colours (on a
    mostly grey panel: explains its grey blocks as grey and its coloured ones better than grey); grey
    RGB; a tinted grey map (every colour a multiple of one tint); a map recovered from the panel's own
    colours (with a warning appended to ``warnings``: its gray scale is an assumption). Colours that lie
    on no 1-D curve need ``--colormap``. Warnings also say where a bar's end is not visible and which
    gray levels a map shows as one colour.
    """
    if clip.palette is not None:
        if colour_table is not None and warnings is not None:
            warnings.append("--colormap is ignored: the clip carries its own DICOM palette, whose position is "
                            "the gray level")
        return ColourMapping("palette", table=np.asarray(clip.palette, dtype=np.float64))
    if not clip.is_colour:
        if colour_table is None:
            return ColourMapping("gray")
        # A grey display curve (gamma, a reject level) stored as MONOCHROME: each stored value is
        # the grey shown, so its gray level is the table row showing that grey.
        if clip.bits_stored > 8:
            raise InputError(f"--colormap maps 8-bit display values, but this MONOCHROME clip stores "
                             f"{clip.bits_stored} bits per pixel; leave --colormap out", clip.source)
    if colour_table is not None:
        if warnings is not None:
            warnings.extend(flat_stretch_warnings(colour_table, "--colormap"))
        return ColourMapping("table", table=colour_table)
    blocks = panel_blocks(clip.frames, panel)
    sample = blocks.mean(axis=1)
    spread = sample.max(axis=1) - sample.min(axis=1)
    coloured = spread > _GREY_CHANNEL_TOLERANCE
    mostly_grey = np.mean(~coloured) >= 1.0 - _TINT_OUTLIER_FRACTION
    if not np.any(coloured):
        return ColourMapping("gray")  # no colour to explain: no bar search (seconds on large frames)
    for bar in find_colour_bar(clip.frames):
        if _bar_is_the_map(bar.table, blocks, coloured, mostly_grey):
            if warnings is not None:
                warnings.extend(bar.caveats)
                warnings.extend(flat_stretch_warnings(bar.table, bar.description))
            return _recovered(bar)
    if mostly_grey:
        return ColourMapping("gray")
    bright = sample[sample.max(axis=1) > 16.0]
    if len(bright) < 10:
        return ColourMapping("gray")
    tint = _tint_of(bright)
    if tint is not None:
        return ColourMapping("tint", tint=tint)
    curve = curve_from_colours(blocks)
    if curve is None:
        raise InputError("the contrast panel's colours lie on no single display colour map and the frame has no "
                         "colour bar matching them; give the display's colour map with --colormap TABLE.csv "
                         "(256 rows of R,G,B)", clip.source)
    if warnings is not None:
        warnings.append("the display colour map was recovered from the clip's colours (no colour bar found): gray "
                        f"levels assume the map moves evenly through RGB; check {COLOUR_MAP_FILE} against the "
                        "scanner's colour bar, or give --colormap")
    return _recovered(curve)


def _bar_is_the_map(table: np.ndarray, blocks: np.ndarray, coloured: np.ndarray, mostly_grey: bool) -> bool:
    """Whether a colour bar's ``table`` is the contrast panel's map: it explains nearly all block colours
    and, on a panel of mostly grey blocks, explains its ``coloured`` blocks better than grey does (a map
    grey up to gray 190 and gold above leaves only the brightest blocks coloured; a grey panel beside an
    unrelated bar has none, or only JPEG's faint chroma)."""
    distances = block_distances(table, blocks)
    if np.mean(distances <= CURVE_DISTANCE_TOLERANCE) < 1.0 - CURVE_OUTLIER_FRACTION:
        return False
    if not mostly_grey:
        return True
    # Grey blocks bright enough to tell a grey map from a tinted one must be grey on the bar's map too:
    # on a dark grey panel a gold table is within 40 levels of nearly every block, and an annotation's
    # coloured pixels (a yellow caliper) would then pick the unrelated bar.
    telling = ~coloured & (blocks.mean(axis=1).max(axis=1) > _TELLING_GREY)
    if not np.any(coloured) or np.count_nonzero(telling) < 10:
        return False
    if np.median(distances[telling]) > 2 * _GREY_CHANNEL_TOLERANCE:
        return False
    observed = blocks[coloured].mean(axis=1)
    grey_distances = np.linalg.norm(observed - observed.mean(axis=1, keepdims=True), axis=1)
    return bool(np.median(distances[coloured]) < np.median(grey_distances))


def flat_stretch_warnings(table: np.ndarray, where: str) -> list[str]:
    """Warnings for gray levels a colour ``table`` shows as one colour mid-map (:func:`flat_stretches`)."""
    scale = 255.0 / (len(table) - 1)
    out = []
    for first, stop in flat_stretches(table):
        if first == 0 or stop == len(table):
            continue  # the ends are the display's floor and top, counted as clipping
        low, high = first * scale, (stop - 1) * scale
        out.append(f"the display colour map ({where}) shows gray levels {low:.0f}-{high:.0f} as one colour: those "
                   f"pixels are read as gray {(low + high) / 2:.0f}, uncertain by up to {(high - low) / 2:.0f} "
                   "levels (the display lost them); a map without a flat stretch avoids this")
    return out


def _recovered(found: RecoveredMap) -> ColourMapping:
    return ColourMapping("recovered", table=found.table, source=found.source, where=found.description,
                         luma_knots=luma_lookup(found.table))


def _tint_of(bright: np.ndarray) -> tuple[float, float, float] | None:
    """The tint of a tinted grey map explaining the block colours ``bright``, or None."""
    # The tint is the principal direction of the colours through black (the map's origin).
    _, _, vt = np.linalg.svd(bright, full_matrices=False)
    direction = np.abs(vt[0])
    tint = direction / direction.max()
    along = bright @ tint / (tint @ tint)
    distance = np.linalg.norm(bright - along[:, None] * tint[None, :], axis=1)
    if np.mean(distance > _TINT_DISTANCE_TOLERANCE) > _TINT_OUTLIER_FRACTION:
        return None
    return float(tint[0]), float(tint[1]), float(tint[2])


def gray_levels(frames: np.ndarray, clip: Clip, mapping: ColourMapping) -> np.ndarray:
    """Display gray level (float32, 0..255) of every pixel of ``frames`` (a crop of ``clip.frames``)."""
    if mapping.kind == "palette":
        entries = mapping.table.shape[0]
        return frames.astype(np.float32) * np.float32(255.0 / max(entries - 1, 1))
    if mapping.kind == "gray":
        if frames.ndim == 4:
            return frames.astype(np.float32).mean(axis=-1)
        full_scale = float(2 ** clip.bits_stored - 1)
        return frames.astype(np.float32) * np.float32(255.0 / full_scale)
    if mapping.kind == "tint":
        # Position along the tint from luma alone: JPEG keeps luma per pixel but shares chroma
        # between neighbours (4:2:2), so chroma would mix the gray levels of adjacent pixels.
        luma_weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        weights = luma_weights / np.float32(luma_weights @ np.asarray(mapping.tint, dtype=np.float32))
        gray = frames.astype(np.float32) @ weights
        return np.clip(gray, 0.0, 255.0, out=gray)
    if mapping.kind == "recovered" and mapping.luma_knots is not None:
        return gray_from_luma(frames, mapping.luma_knots)
    if frames.ndim == 3:  # single-channel display values through a grey table: value v shows (v, v, v)
        frames = np.repeat(frames[..., None], 3, axis=-1)
    return _gray_from_table(frames, mapping.table)


def _gray_from_table(frames: np.ndarray, table: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    packed = (frames[..., 0].astype(np.uint32) << 16) | (frames[..., 1].astype(np.uint32) << 8) \
        | frames[..., 2].astype(np.uint32)
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.float64)
    _, index = cKDTree(table).query(rgb)
    position = (gray_positions(table)[index] * (255.0 / (len(table) - 1))).astype(np.float32)
    return position[inverse].reshape(packed.shape)


@dataclass(frozen=True)
class ClippingCount:
    """Fractions of ROI samples (pixels x frames) at the top and bottom of the display scale, and the
    largest fraction of the ROI's pixels saturated in one frame (``peak_saturated_fraction``).

    The peak fraction is what biases the peak: speckle is exponentially distributed, so with a
    fraction p of the pixels clipped at the top the mean is underestimated by about p, however few
    frames are that bright (over a 2-minute clip a saturated peak is a small share of all samples).
    """

    saturated_fraction: float
    floor_fraction: float
    peak_saturated_fraction: float = 0.0


def saturation_threshold(clip: Clip, mapping: ColourMapping) -> float:
    """Gray levels above this count as saturated: :attr:`ColourMapping.saturated_above`, lowered by
    :data:`LOSSY_SATURATION_MARGIN` for a lossily compressed clip (``Clip.lossy``)."""
    return mapping.saturated_above - (LOSSY_SATURATION_MARGIN if clip.lossy else 0.0)


def count_clipping(gray: np.ndarray, mask: np.ndarray, frame_use: np.ndarray | None = None,
                   saturated_above: float = SATURATED_GRAY) -> ClippingCount:
    """Saturated (gray > ``saturated_above``, :func:`saturation_threshold`) and floor
    (gray < 0.5) fractions of the ``mask`` pixels over frames."""
    samples = gray[:, mask] if frame_use is None else gray[frame_use][:, mask]
    total = max(samples.size, 1)
    saturated = np.count_nonzero(samples > saturated_above, axis=1)
    peak = float(saturated.max()) / samples.shape[1] if saturated.size and samples.shape[1] else 0.0
    return ClippingCount(float(saturated.sum()) / total, float(np.count_nonzero(samples < FLOOR_GRAY)) / total, peak)


def stored_clipping(frames: np.ndarray, table: np.ndarray, mask: np.ndarray,
                    frame_use: np.ndarray | None = None, saturated_above: float = SATURATED_GRAY) -> ClippingCount:
    """:func:`count_clipping` of stored integer ``frames`` whose gray is ``table[frames]``
    (:func:`gray_lookup`), frame by frame: only the ``mask`` pixels are gathered."""
    if mask.shape != frames.shape[1:]:
        raise ValueError(f"the mask is {mask.shape} but the frames are {frames.shape[1:]}")
    saturated, floor = table > saturated_above, table < FLOOR_GRAY
    counts = np.zeros(2, dtype=np.int64)
    most_saturated = 0
    used = range(frames.shape[0]) if frame_use is None else np.flatnonzero(frame_use)
    # A 1-D gather of the frame made contiguous: 15 x faster than a boolean mask on the strided view
    # (a 300 x 300 box, a third of it ROI), the same samples in the same order.
    at_mask = np.flatnonzero(mask)
    for k in used:
        samples = np.ascontiguousarray(frames[k]).reshape(-1).take(at_mask)
        frame_counts = (np.count_nonzero(saturated[samples]), np.count_nonzero(floor[samples]))
        counts += frame_counts
        most_saturated = max(most_saturated, frame_counts[0])
    pixels = int(np.count_nonzero(mask))
    total = max(len(used) * pixels, 1)
    return ClippingCount(float(counts[0]) / total, float(counts[1]) / total, float(most_saturated) / max(pixels, 1))


def panel_gray_uint8(clip: Clip, panel: tuple[slice, slice], mapping: ColourMapping,
                     frames_per_step: int = 64) -> np.ndarray:
    """Display gray levels of a panel as uint8 (frames, rows, columns), for motion and quality control.

    8-bit grey clips give a view without copying; others are converted a few frames at a time so
    that no float copy of the whole clip is ever held.
    """
    rows, columns = panel
    if mapping.kind == "gray" and clip.frames.ndim == 3 and clip.frames.dtype == np.uint8:
        return clip.frames[:, rows, columns]
    first = clip.frames[:1, rows, columns]
    out = np.empty((clip.n_frames,) + first.shape[1:3], dtype=np.uint8)
    for start in range(0, clip.n_frames, frames_per_step):
        chunk = gray_levels(clip.frames[start:start + frames_per_step, rows, columns], clip, mapping)
        np.clip(np.round(chunk), 0, 255, out=chunk)
        out[start:start + frames_per_step] = chunk
    return out


def gray_lookup(clip: Clip, mapping: ColourMapping, dtype: np.dtype) -> np.ndarray | None:
    """Gray level (float32) of every stored value of an integer ``dtype``, when one value gives one gray.

    That holds for palette clips and single-channel grey clips: then ``gray_lookup(...)[frames]``
    equals ``gray_levels(frames, ...)`` value for value, and linearising is one gather per pixel
    through ``linear_from_gray`` of the table. None for colour clips (the gray depends on 3 channels).
    """
    if not np.issubdtype(dtype, np.integer):
        return None
    if mapping.kind == "palette":
        entries = mapping.table.shape[0]
    elif mapping.kind in ("gray", "table") and not clip.is_colour:
        entries = 2 ** clip.bits_stored
    else:
        return None
    # Values above the table (not stored by a valid file) are refused by the reader; the table
    # still spans the dtype's range up to 16 bits so that a gather can never index past it.
    values = np.arange(max(entries, min(np.iinfo(dtype).max + 1, 65536)), dtype=np.int64).astype(dtype)
    table = gray_levels(values.reshape(-1, 1, 1), clip, mapping).reshape(-1)
    # The entries no valid file stores repeat the last valid one: scaled past 255 (a 12-bit clip's
    # values above 4095), they overflowed the exponential of linear_from_gray with a numpy warning.
    table[entries:] = table[entries - 1]
    return table


def linear_lookup(clip: Clip, mapping: ColourMapping, dtype: np.dtype, dynamic_range_db: float) -> np.ndarray | None:
    """Linear echo power (a.u., float32) of every stored value of an integer ``dtype`` (see
    :func:`gray_lookup`; None for colour clips): ``linear_lookup(...)[frames]`` equals
    ``linear_intensity(frames, ...)`` value for value."""
    table = gray_lookup(clip, mapping, dtype)
    return None if table is None else linear_from_gray(table, dynamic_range_db)


_GATHER_PIXELS = 1 << 19  # pixels per gather of table_lookup (4 MiB of intp indices)


def table_lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``table[values]`` for 8- or 16-bit ``values`` (any strides) and a ``table`` with an entry for
    every value of their type: the same values, a few times faster.

    A whole-array gather converts every index to intp first (8 bytes a pixel, touched once: page
    faults cost 3 x the gather); a few rows at a time keep that temporary in the cache. The table
    spans the dtype's whole range, so "clip" never clips (and lets take skip buffering).
    """
    out = np.empty(values.shape, dtype=table.dtype)
    if values.ndim == 0:  # no rows to step over (empty arrays need no case: the loop runs zero times)
        out[...] = table[values]
        return out
    step = max(1, _GATHER_PIXELS // max(int(np.prod(values.shape[1:])), 1))
    for start in range(0, values.shape[0], step):
        np.take(table, values[start:start + step], out=out[start:start + step], mode="clip")
    return out


def linear_intensity(frames: np.ndarray, clip: Clip, mapping: ColourMapping, dynamic_range_db: float) -> np.ndarray:
    """Linear echo power (a.u., float32) of ``frames`` (a crop of ``clip.frames``).

    Integer display values of grey and palette clips go through a lookup table (one gather per
    pixel instead of the arithmetic and exponential); colour values are mapped to gray first.
    """
    linear = linear_lookup(clip, mapping, frames.dtype, dynamic_range_db) if frames.ndim == 3 else None
    if linear is None:
        return linear_from_gray(gray_levels(frames, clip, mapping), dynamic_range_db)
    if frames.dtype not in (np.uint8, np.uint16):
        return linear[frames]
    return table_lookup(linear, frames)
