"""The pixels of synthetic display panels: speckle, log compression, the B-mode panel (static or
moving with the anatomy), the display layout, dropout frames and burned-in annotations."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from DCEUSResponseLib.clip import UltrasoundRegion

if TYPE_CHECKING:  # annotations only
    from DCEUSResponseLib.synthetic.clips import PerfusionRegion

GOLD_TINT = (1.0, 0.78, 0.42)
PIXEL_SPACING_MM = 0.2  # isotropic, a typical abdominal CEUS field of view over ~250 pixels
DISPLAY_COLOUR_MAPS = ("hot", "gold-map", "curved-tint", "sqrt-tint", "square-tint", "early-top", "reject-12",
                       "mid-plateau", "grey-then-gold", "dim-gold")


def display_colour_map(name: str) -> np.ndarray:
    """A vendor-like display colour map, 256 x 3 RGB floats (row g = colour of gray g), for tests.

    ``"hot"``: black-red-yellow-white, each channel ramping over a third (constant speed in RGB);
    ``"gold-map"``: a gold map whose channels rise with different powers (uneven speed);
    ``"curved-tint"``: a tint that turns from red-brown to pale yellow as it brightens;
    ``"sqrt-tint"`` / ``"square-tint"``: one gold tint whose brightness is the square root / the square
    of the gray level (a display gamma of 0.5 / 2: every colour a multiple of the tint, but not linear).
    Maps that lose gray levels, as displays do: ``"early-top"``, the gold map reaching its top colour at
    gray 230 (230-255 one colour); ``"reject-12"``, the gold map with a reject level (gray 0-12 black);
    ``"mid-plateau"``, the curved tint pausing at gray 140's colour up to gray 180, then running on to its
    top colour; and
    ``"grey-then-gold"``, grey up to gray 190, then turning to gold at gray 255. ``"dim-gold"``: the gold
    tint reaching only (230, 176, 97) at gray 255 (every colour a multiple of the tint, short of full scale).
    """
    x = np.arange(256.0) / 255.0
    if name == "hot":
        channels = (np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1))
    elif name == "gold-map":
        channels = (x ** 0.6, 0.9 * x ** 1.2, 0.7 * x ** 2.5)
    elif name == "curved-tint":
        channels = (x, x * (0.5 + 0.4 * x), x * (0.15 + 0.6 * x * x))
    elif name in ("sqrt-tint", "square-tint"):
        brightness = x ** (0.5 if name == "sqrt-tint" else 2.0)
        channels = (brightness, 0.78 * brightness, 0.42 * brightness)
    elif name == "early-top":
        return display_colour_map("gold-map")[np.minimum(np.round(np.arange(256) * 255 / 230), 255).astype(int)]
    elif name == "reject-12":
        table = display_colour_map("gold-map")
        table[:13] = 0.0
        return table
    elif name == "mid-plateau":
        pausing = np.where(np.arange(256) <= 140, np.arange(256.0),
                           np.maximum(140.0, 140.0 + (np.arange(256) - 180) * 115.0 / 75.0))
        return display_colour_map("curved-tint")[np.round(pausing).astype(int)]
    elif name == "dim-gold":
        return 0.9 * 255.0 * x[:, None] * np.asarray(GOLD_TINT)[None, :]
    elif name == "grey-then-gold":
        towards_gold = np.clip((x - 190 / 255) / (65 / 255), 0, 1)[:, None]
        grey = np.repeat(np.minimum(x, 190 / 255)[:, None], 3, axis=1)
        return 255.0 * ((1 - towards_gold) * grey + towards_gold * np.asarray(GOLD_TINT)[None, :])
    else:
        raise ValueError(f"unknown display colour map {name!r}: one of {', '.join(DISPLAY_COLOUR_MAPS)}")
    return 255.0 * np.stack(channels, axis=1)
# Gray levels of a frame recorded without probe contact: electronic noise just above black.
DROPOUT_GRAY_MEAN, DROPOUT_GRAY_STD = 4.0, 3.0


def moving_bmode_panel(regions, panel_shape, sigma_px: float, rng, anatomy_px: np.ndarray) -> np.ndarray:
    """:func:`bmode_panel` with the tissue (echogenicity map and speckle) displaced per frame.

    The tissue's complex scattering field is drawn once on a canvas padded beyond the largest
    displacement and moved by a Fourier phase ramp (exact for this band-limited field), so the
    speckle pattern moves rigidly by sub-pixel amounts; the power is taken after the shift.
    """
    from scipy.ndimage import gaussian_filter

    rows, columns = panel_shape
    pad = int(np.ceil(np.max(np.abs(anatomy_px)))) + int(np.ceil(4 * sigma_px)) + 4
    canvas = (rows + 2 * pad, columns + 2 * pad)
    field_ = gaussian_filter(rng.standard_normal(canvas), sigma_px, mode="wrap") \
        + 1j * gaussian_filter(rng.standard_normal(canvas), sigma_px, mode="wrap")
    spectrum = np.fft.fft2(field_)
    row_frequency = np.fft.fftfreq(canvas[0])[:, None]
    column_frequency = np.fft.fftfreq(canvas[1])[None, :]
    energy = speckle_energy(sigma_px)
    grid_rows, grid_columns = np.mgrid[0:rows, 0:columns].astype(np.float64)
    frames = np.empty((anatomy_px.shape[0],) + tuple(panel_shape), dtype=np.uint8)
    for k, (d_row, d_column) in enumerate(anatomy_px):
        ramp = np.exp(-2j * np.pi * (row_frequency * d_row + column_frequency * d_column))
        moved = np.fft.ifft2(spectrum * ramp)[pad:pad + rows, pad:pad + columns]
        speckle = (moved.real ** 2 + moved.imag ** 2) / energy
        echo = np.full(panel_shape, 0.01)
        for region in regions:
            if not region.is_background:
                echo += coverage(region, grid_rows, grid_columns, (d_row, d_column)) \
                    * (0.01 * region.echogenicity - echo)
        tissue = echo * speckle
        frames[k] = log_compress(tissue * (1.0 + 0.02 * rng.standard_normal(panel_shape)).clip(0.5), 60.0)
    return frames


def black_out(frames: np.ndarray, dropouts: Sequence[int], contrast_region, bmode_region, colour: str,
               seed: int) -> None:
    """Probe contact lost: both panels show electronic noise just above black."""
    noise_rng = np.random.default_rng([seed, 0xD0])  # own stream: the other frames stay as they were
    for k in dropouts:
        for region in (contrast_region, bmode_region):
            if region is None:
                continue
            gray = np.clip(np.round(noise_rng.normal(DROPOUT_GRAY_MEAN, DROPOUT_GRAY_STD,
                                                     (region.rows, region.columns))), 0, 255)
            rows, cols = region.slices
            if colour in DISPLAY_COLOUR_MAPS and region is contrast_region:
                table = np.round(display_colour_map(colour)).astype(np.uint8)
                frames[k, rows, cols, :] = table[gray.astype(np.uint8)]
            elif frames.ndim == 4:
                tint = np.asarray(GOLD_TINT) if region is contrast_region else np.ones(3)
                frames[k, rows, cols, :] = np.round(gray[..., None] * tint).astype(np.uint8)
            else:
                frames[k, rows, cols] = gray.astype(np.uint8)


def speckle(shape, sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Fully developed speckle: exponential power with mean 1, correlated over ~``sigma_px``."""
    from scipy.ndimage import gaussian_filter

    real = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    imaginary = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    power = real * real + imaginary * imaginary
    return power / speckle_energy(sigma_px)


def speckle_energy(sigma_px: float) -> float:
    """Mean of |h * w|^2 for unit complex white noise w: twice the filter's energy."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((64, 64))
    impulse[32, 32] = 1.0
    kernel = gaussian_filter(impulse, sigma_px, mode="wrap")
    return 2.0 * float(np.sum(kernel * kernel))


def log_compress(power: np.ndarray, dynamic_range_db: float) -> np.ndarray:
    gray = (10.0 * np.log10(np.maximum(power, 1e-30)) + dynamic_range_db) * 255.0 / dynamic_range_db
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)


def bmode_panel(regions, panel_shape, n_frames, sigma_px, rng) -> np.ndarray:
    """A static B-mode image (tissue speckle with region echogenicity) plus 2 % electronic noise."""
    echo = np.full(panel_shape, 0.01)
    for region in regions:
        if not region.is_background:
            echo[region.mask(panel_shape)] = 0.01 * region.echogenicity
    tissue = echo * speckle(panel_shape, sigma_px, rng)
    frames = np.empty((n_frames,) + tuple(panel_shape), dtype=np.uint8)
    for k in range(n_frames):
        frames[k] = log_compress(tissue * (1.0 + 0.02 * rng.standard_normal(panel_shape)).clip(0.5), 60.0)
    return frames


def sector_mask(panel_shape: tuple[int, int]) -> np.ndarray:
    """Panel pixels inside the scan sector of ``sector=True`` clips (apex 10 % of the height above the
    top centre, +-40 degrees, out to 1.1 x the panel height from the apex)."""
    rows, columns = panel_shape
    row_grid, column_grid = np.mgrid[0:rows, 0:columns].astype(np.float64)
    apex_row, apex_column = -0.1 * rows, (columns - 1) / 2.0
    depth, across = row_grid - apex_row, column_grid - apex_column
    angle = np.degrees(np.arctan2(np.abs(across), depth))
    return (angle <= 40.0) & (np.hypot(depth, across) <= 1.1 * rows)


def burn_in_colour_bar(frames: np.ndarray, colour: str, contrast_region, frame_shape) -> None:
    """The contrast panel's display map as a vertical bar in the right border, gray 0 at the bottom."""
    if colour in DISPLAY_COLOUR_MAPS:
        table = np.round(display_colour_map(colour)).astype(np.uint8)
    elif colour == "gold":
        table = np.round(np.arange(256.0)[:, None] * np.asarray(GOLD_TINT)[None, :]).astype(np.uint8)
    else:
        table = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    height = contrast_region.rows
    gray = np.round(np.linspace(255.0, 0.0, height)).astype(np.uint8)  # top row = gray 255
    x0 = frame_shape[1] - 14
    column = table[gray] if frames.ndim == 4 else gray
    frames[:, contrast_region.y0:contrast_region.y0 + height, x0:x0 + 10, ...] = \
        column[:, None, ...] if frames.ndim == 4 else column[:, None]


def frame_layout(panel_shape, display: str, contrast_side: str, wide_border: bool = False):
    """Frame shape and panel regions with a scanner-like border (annotations above the image).

    ``wide_border`` widens the right border to 24 pixels to make room for a colour bar.
    """
    rows, columns = panel_shape
    top, side, gap = 24, 16, 12
    right = 24 if wide_border else side
    spacing = (PIXEL_SPACING_MM, PIXEL_SPACING_MM)

    def region(x0):
        return UltrasoundRegion(x0, top, x0 + columns - 1, top + rows - 1, spacing, 1, 1)

    if display == "single":
        return (rows + top + 8, columns + side + right), region(side), None
    if display != "dual":
        raise ValueError(f"display must be 'single' or 'dual', not {display!r}")
    left_panel, right_panel = region(side), region(side + columns + gap)
    frame_shape = (rows + top + 8, 2 * columns + gap + side + right)
    return (frame_shape, right_panel, left_panel) if contrast_side == "right" else \
        (frame_shape, left_panel, right_panel)


def burn_in_annotations(frames: np.ndarray) -> None:
    """Static text-like marks in the top border, as scanners burn in (must not disturb anything)."""
    frames[:, 4:14, 10:60, ...] = 200
    frames[:, 6:12, 70:90, ...] = 255


def coverage(region: PerfusionRegion, rows: np.ndarray, columns: np.ndarray, offset) -> np.ndarray:
    """Fraction (0..1) of each pixel inside ``region`` moved by ``offset`` (row, column) pixels.

    A linear ramp one pixel wide across the edge: the exact partial-volume fraction of a straight
    edge crossing a pixel parallel to an axis, and close to it otherwise. It makes the rendered
    region move smoothly with sub-pixel displacements instead of jumping a pixel at a time.
    """
    distance = np.hypot(rows - (region.center[0] + offset[0]), columns - (region.center[1] + offset[1]))
    inside = np.clip(region.radius - distance + 0.5, 0.0, 1.0)
    if region.inner_radius > 0:
        inside -= np.clip(region.inner_radius - distance + 0.5, 0.0, 1.0)
    return inside
