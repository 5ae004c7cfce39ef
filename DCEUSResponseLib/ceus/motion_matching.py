"""Matching two frames of one panel (steps 1 and 2 of :mod:`DCEUSResponseLib.ceus.motion`): the
features (smoothed gray levels on B-mode, gradient magnitude on contrast), the weighted matching
window, and the FFT zero-mean normalised cross-correlation with its sub-pixel peak and significance.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import fft as scipy_fft
from scipy import ndimage

#: Gaussian smoothing (px, working resolution) of B-mode gray levels: about the speckle size, so the
#: correlation peak is smooth enough for sub-pixel interpolation yet still sharp.
BMODE_SMOOTHING_PX = 1.0
#: Scale (px, working resolution) of the Gaussian derivative on contrast frames: large enough to
#: average the fresh bubble speckle (~1-2 px) of every frame, small enough for region borders.
CONTRAST_SMOOTHING_PX = 3.0
#: A match counts only when its correlation peak is this many standard deviations of the
#: correlation between unrelated images with the same spectra (computed from the two spectra)...
#: Measured on synthetic contrast panels (4 clips, 40-60 dB): pairs of pre-arrival frames (pure
#: speckle) have a median of 3.3 and a 99th percentile of 4.7; pairs after arrival a median of 7.6;
#: B-mode speckle matches about 20.
LINK_MIN_SIGNIFICANCE = 5.0
#: ... and exceeds every correlation farther than PEAK_EXCLUSION_PX from it by this factor: noise
#: surfaces have many near-equal maxima (median ratio 1.1), true matches one clear peak (median 1.7).
#: Both tests together pass < 1 % of pure-noise pairs and ~86 % of true contrast pairs; the rare
#: chance match is then outvoted by the graph (MIN_CONSISTENT_LINKS, robust loss).
LINK_MIN_PEAK_RATIO = 1.5
#: Radius (px, working resolution) around the peak left out when looking for a rival peak.
PEAK_EXCLUSION_PX = 6.0
#: Panels are block-averaged until their longer side is at most this (px): breathing motion is
#: large compared with a pixel, and it keeps a 1,500-frame clip to seconds.
MAX_WORKING_SIZE_PX = 256
#: The search range is reduced so that two frames always overlap by at least this fraction of the
#: window: correlations over small overlaps are noisy.
MIN_OVERLAP_FRACTION = 0.5
#: Pixels never brighter than this (gray, smoothed, over the clip's frames) carry no signal (black
#: border around a sector image) and are left out of the matching window.
SIGNAL_FLOOR_GRAY = 3.0
#: Width (px, working resolution) of the smooth taper of the matching window at a sector's edge.
EDGE_TAPER_PX = 6.0


class MatchingGrid:
    """Working resolution, weight window, FFT grid and search range shared by all matches of a clip."""

    def __init__(self, frames: np.ndarray, kind: str, max_shift_px: float):
        n_frames, rows, columns = frames.shape
        self.kind = kind
        self.warnings: list[str] = []
        self.factor = max(1, math.ceil(max(rows, columns) / MAX_WORKING_SIZE_PX))
        self.shape = (rows // self.factor, columns // self.factor)
        self.window = self._window(frames)
        self.window_sum = float(self.window.sum())
        # Effective number of pixels in the window (Kish's formula); the spectra add their correlation.
        self.window_pixels = float(np.sum(self.window ** 2) ** 2 / max(np.sum(self.window ** 4), 1e-12))

        wanted = max(1, int(math.ceil(max_shift_px / self.factor)))
        self.fft_shape = tuple(scipy_fft.next_fast_len(n + wanted + 1, real=True) for n in self.shape)
        window_spectrum = scipy_fft.rfft2(self.window, s=self.fft_shape)
        overlap = scipy_fft.irfft2(np.abs(window_spectrum) ** 2, s=self.fft_shape)
        overlap /= overlap[0, 0]
        search = wanted
        while search > 1 and np.min(self.box(overlap, search)) < MIN_OVERLAP_FRACTION:
            search -= 1
        if search < wanted:
            self.warnings.append(f"motion: search range reduced from {max_shift_px:g} to {search * self.factor} px "
                                 "so that frames overlap by at least half the panel")
        self.search = search
        self.overlap = np.maximum(self.box(overlap, search), 1e-6)
        self._lag_rows, self._lag_columns = np.mgrid[0:2 * search + 1, 0:2 * search + 1]
        # rfft keeps half the spectrum: weights that sum it as the full spectrum (Parseval).
        half_weights = np.full(self.fft_shape[1] // 2 + 1, 2.0)
        half_weights[0] = 1.0
        if self.fft_shape[1] % 2 == 0:
            half_weights[-1] = 1.0
        self.half_weights = half_weights
        self.n_fft = float(self.fft_shape[0] * self.fft_shape[1])

    def box(self, surface: np.ndarray, search: int) -> np.ndarray:
        """The lags -search..search of a circular correlation surface, zero lag in the centre."""
        row_index = np.arange(-search, search + 1) % self.fft_shape[0]
        column_index = np.arange(-search, search + 1) % self.fft_shape[1]
        return surface[np.ix_(row_index, column_index)]

    def near_peak(self, peak_row: int, peak_column: int) -> np.ndarray:
        """Lags of the search box within PEAK_EXCLUSION_PX of the given one."""
        return np.hypot(self._lag_rows - peak_row, self._lag_columns - peak_column) <= PEAK_EXCLUSION_PX

    def working_image(self, frame: np.ndarray) -> np.ndarray:
        image = np.asarray(frame, dtype=np.float64)
        if self.factor > 1:
            f = self.factor
            rows, columns = self.shape
            image = image[:rows * f, :columns * f].reshape(rows, f, columns, f).mean(axis=(1, 3))
        return image

    def features(self, frame: np.ndarray) -> np.ndarray:
        image = self.working_image(frame)
        if self.kind == "bmode":
            return ndimage.gaussian_filter(image, BMODE_SMOOTHING_PX, mode="nearest")
        return ndimage.gaussian_gradient_magnitude(image, CONTRAST_SMOOTHING_PX, mode="nearest")

    def _window(self, frames: np.ndarray) -> np.ndarray:
        """Weights 0..1: where the panel ever carries signal, tapered away from a sector's edge."""
        n_frames = frames.shape[0]
        sample = np.unique(np.linspace(0, n_frames - 1, min(n_frames, 32)).round().astype(int))
        brightest = np.max([ndimage.gaussian_filter(self.working_image(frames[k]), 2.0) for k in sample], axis=0)
        # Holes (a necrosis that stays dark) are inside the image and must stay in the window.
        signal = ndimage.binary_fill_holes(brightest > SIGNAL_FLOOR_GRAY)
        if np.count_nonzero(signal) < 0.2 * signal.size:
            signal = np.ones(self.shape, dtype=bool)
        # Stay clear of a sector's own edge (a static, very strong gradient) by the filter's reach and
        # taper from there; the panel's outer border is no edge (filters extend it) and needs neither.
        distance = ndimage.distance_transform_edt(np.pad(signal, 1, mode="edge"))[1:-1, 1:-1]
        margin = 3.0 * (BMODE_SMOOTHING_PX if self.kind == "bmode" else CONTRAST_SMOOTHING_PX)
        ramp = np.clip((distance - margin) / EDGE_TAPER_PX, 0.0, 1.0)
        return ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no kink for the FFT to ring on


class PreparedFrame:
    """One frame's features, zero-mean and unit-norm inside the window, and their spectrum."""

    __slots__ = ("spectrum", "power", "weighted_power", "flat")

    def __init__(self, grid: MatchingGrid, features: np.ndarray):
        weighted_mean = float(np.sum(grid.window * features) / grid.window_sum)
        values = grid.window * (features - weighted_mean)
        norm = float(np.sqrt(np.sum(values * values)))
        # A frame without structure (uniform gray) has nothing to match.
        self.flat = not norm > 1e-9 * max(1.0, float(np.abs(features).max()))
        if self.flat:
            norm = 1.0
        self.spectrum = scipy_fft.rfft2(values / norm, s=grid.fft_shape)
        self.power = np.abs(self.spectrum) ** 2
        # Weighted so that a plain sum over the half spectrum is the full-spectrum sum.
        self.weighted_power = self.power * grid.half_weights


def match_frames(grid: MatchingGrid, first: PreparedFrame, second: PreparedFrame) -> tuple[tuple[float, float], float] | None:
    """Shift of ``second``'s content relative to ``first`` (working px) and its correlation, or None."""
    if first.flat or second.flat:
        return None
    correlation = scipy_fft.irfft2(np.conj(first.spectrum) * second.spectrum, s=grid.fft_shape)
    surface = grid.box(correlation, grid.search) / grid.overlap
    peak_row, peak_column = np.unravel_index(int(np.argmax(surface)), surface.shape)
    size = surface.shape[0]
    if peak_row in (0, size - 1) or peak_column in (0, size - 1):
        return None  # the best match lies at the edge of the search: its true position is beyond it
    rho = float(surface[peak_row, peak_column])
    # Standard deviation of the correlation of unrelated images with these spectra (Parseval).
    # (1/n) sum_m R1(m) R2(m) over the autocorrelations R of the two unit-norm images.
    null_variance = float(np.sum(first.weighted_power * second.power)) / grid.n_fft / grid.window_pixels
    if not rho > LINK_MIN_SIGNIFICANCE * math.sqrt(max(null_variance, 1e-30)):
        return None
    rival = float(np.max(np.where(grid.near_peak(peak_row, peak_column), -np.inf, surface)))
    if rival > 0 and rho < LINK_MIN_PEAK_RATIO * rival:
        return None
    row_fraction = _peak_offset(surface[peak_row - 1, peak_column], rho, surface[peak_row + 1, peak_column])
    column_fraction = _peak_offset(surface[peak_row, peak_column - 1], rho, surface[peak_row, peak_column + 1])
    shift = (peak_row - grid.search + row_fraction, peak_column - grid.search + column_fraction)
    return shift, min(rho, 1.0)


def _peak_offset(before: float, peak: float, after: float) -> float:
    """Sub-pixel position (-0.5..0.5) of a peak from three samples: Gaussian fit, else parabola."""
    if before > 0 and peak > 0 and after > 0:
        a, b, c = math.log(before), math.log(peak), math.log(after)
    else:
        a, b, c = before, peak, after
    curvature = a - 2.0 * b + c
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5))


def shifted(mask: np.ndarray, shift) -> np.ndarray:
    """``mask`` moved by whole pixels (row, column), False where nothing moved in."""
    out = np.zeros_like(mask)
    dr, dc = int(shift[0]), int(shift[1])
    rows, columns = mask.shape
    if abs(dr) < rows and abs(dc) < columns:
        out[max(dr, 0):rows + min(dr, 0), max(dc, 0):columns + min(dc, 0)] = \
            mask[max(-dr, 0):rows + min(-dr, 0), max(-dc, 0):columns + min(-dc, 0)]
    return out


def zncc(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 16:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    # Plain sums rather than BLAS dot products: BLAS thread start-up dominates at this size.
    denominator = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    if denominator <= 0:
        return 0.0
    return float(np.clip(np.sum(a * b) / denominator, -1.0, 1.0))
