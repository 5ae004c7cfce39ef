"""The matching engine of :mod:`.motion`: features, spectral correlation of frame pairs, and the link graph.

Frames are turned into matching features at a working resolution (:class:`MatchingGrid`, batches
on worker threads), their window-weighted, zero-mean, unit-norm spectra are computed in batches
(:func:`_prepare`, scipy.fft's workers), and pairs are correlated in batches (:func:`_match`: the
correlation at the search box's lags by a restricted DFT, BLAS matrix products), each match with
its sub-pixel shift, correlation, significance and predicted precision. :func:`collect_links`
gathers the matches of a clip in one pass. The method is described in :mod:`.motion`'s
docstring; everything here runs in float32.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import fft as scipy_fft
from scipy import ndimage

from DCEUSResponseLib.parallel import worker_threads

#: Gaussian smoothing (px, working resolution) of B-mode gray levels: about the speckle size, so the
#: correlation peak is smooth enough for sub-pixel interpolation yet still sharp.
BMODE_SMOOTHING_PX = 1.0
#: Scale (px, working resolution) of the Gaussian derivative on contrast frames: large enough to
#: average the fresh bubble speckle (~1-2 px) of every frame, small enough for region borders.
CONTRAST_SMOOTHING_PX = 3.0
#: Each frame is matched to the reference frame and to the frames this many frames before it; the
#: first offset (1) for every frame, the others only near frames with structure.
LINK_OFFSETS = (1, 2, 4, 8, 16, 32)
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
#: Factor on the predicted variance of a match's shift, per panel kind, from the measured errors of
#: matches with a known (zero) shift: on still synthetic contrast panels (4 patterns, 3 seeds,
#: 140 x 180 to 208 x 288 px) the errors' standard deviation is 1.55-1.9 times the prediction (the
#: 3-point peak fit is not the ideal estimator, and the peak's curvature is itself noisy); on
#: B-mode speckle 0.7 times (left at 1: over-predicting the noise only makes small motions count less).
NOISE_CALIBRATION = {"bmode": 1.0, "contrast": 3.0}
#: Frames whose features, spectra and correlations are computed together; a batch's spectra and
#: cross-power spectra (16 bytes per frequency and frame) are also bounded by BATCH_BYTES. The
#: spectrum ring of :func:`collect_links` holds a batch and 2 x 32 + 1 frames more.
BATCH_FRAMES = 64
BATCH_BYTES = 48 * 2**20
#: Threads for the features (a thread pool) and for scipy.fft's workers.
FFT_WORKERS = worker_threads()


class MatchingGrid:
    """Working resolution, weight window, FFT grid and search range shared by all matches of a clip."""

    def __init__(self, frames: np.ndarray, kind: str, max_shift_px: float):
        n_frames, rows, columns = frames.shape
        self.kind = kind
        self.warnings: list[str] = []
        self.factor = max(1, math.ceil(max(rows, columns) / MAX_WORKING_SIZE_PX))
        self.shape = (rows // self.factor, columns // self.factor)
        self.window = self._window(frames).astype(np.float32)
        self.window_sum = float(self.window.sum(dtype=np.float64))
        # Effective number of pixels in the window (Kish's formula); the spectra add their correlation.
        self.window_pixels = float(np.sum(self.window.astype(np.float64) ** 2) ** 2
                                   / max(np.sum(self.window.astype(np.float64) ** 4), 1e-12))

        wanted = max(1, int(math.ceil(max_shift_px / self.factor)))
        self.fft_shape = tuple(scipy_fft.next_fast_len(n + wanted + 1, real=True) for n in self.shape)
        window_spectrum = scipy_fft.rfft2(self.window.astype(np.float64), s=self.fft_shape)
        overlap = scipy_fft.irfft2(np.abs(window_spectrum) ** 2, s=self.fft_shape)
        overlap /= overlap[0, 0]
        search = wanted
        while search > 1 and np.min(self.box(overlap, search)) < MIN_OVERLAP_FRACTION:
            search -= 1
        if search < wanted:
            self.warnings.append(f"motion: search range reduced from {max_shift_px:g} to {search * self.factor} px "
                                 "so that frames overlap by at least half the panel")
        self.search = search
        self.overlap = np.maximum(self.box(overlap, search), 1e-6).astype(np.float32)
        # rfft keeps half the spectrum: weights that sum it as the full spectrum (Parseval, and the
        # real inverse transform below).
        half_weights = np.full(self.fft_shape[1] // 2 + 1, 2.0)
        half_weights[0] = 1.0
        if self.fft_shape[1] % 2 == 0:
            half_weights[-1] = 1.0
        # The correlation is only ever needed at the lags of the search box: a DFT restricted to those
        # lags (two matrix products) costs a quarter of an inverse FFT of the whole grid. Rows:
        # exp(+2 pi i lag u / R); columns: the half-spectrum weights, exp(+2 pi i v lag / C) and the
        # 1 / (R C) of the inverse transform (whose real part is taken).
        lags = np.arange(-search, search + 1)
        frequency_rows = np.arange(self.fft_shape[0])
        frequency_columns = np.arange(half_weights.size)
        self.row_dft = np.exp(2j * np.pi * np.outer(lags, frequency_rows) / self.fft_shape[0]).astype(np.complex64)
        self.column_dft = (half_weights[:, None] * np.exp(2j * np.pi * np.outer(frequency_columns, lags)
                                                          / self.fft_shape[1])
                           / (self.fft_shape[0] * self.fft_shape[1])).astype(np.complex64)
        lag = np.arange(2 * search + 1)
        self.lag_distance2 = (lag[:, None, None, None] - lag[None, None, :, None]) ** 2 + \
            (lag[None, :, None, None] - lag[None, None, None, :]) ** 2  # [r0, c0, r, c]
        # The correlation's value and slopes: the spectral sums times 1, omega_row^2, omega_column^2 (rad/px).
        omega_row = 2 * np.pi * scipy_fft.fftfreq(self.fft_shape[0])
        omega_column = 2 * np.pi * scipy_fft.rfftfreq(self.fft_shape[1])
        ones = np.ones((self.fft_shape[0], half_weights.size))
        self.moment_weights = np.stack([ones * half_weights, omega_row[:, None] ** 2 * half_weights,
                                        ones * (omega_column ** 2 * half_weights)[None, :]],
                                       axis=-1).reshape(-1, 3).astype(np.float32)
        self.n_fft = float(self.fft_shape[0] * self.fft_shape[1])
        per_frame = 16 * self.fft_shape[0] * self.fft_shape[1]
        self.batch = int(max(1, min(BATCH_FRAMES, BATCH_BYTES // per_frame)))

    def box(self, surface: np.ndarray, search: int) -> np.ndarray:
        """The lags -search..search of a circular correlation surface, zero lag in the centre."""
        row_index = np.arange(-search, search + 1) % self.fft_shape[0]
        column_index = np.arange(-search, search + 1) % self.fft_shape[1]
        return surface[np.ix_(row_index, column_index)]

    def working_images(self, frames: np.ndarray) -> np.ndarray:
        """(n, rows, columns) frames at working resolution, float32."""
        if self.factor == 1:
            return np.asarray(frames, dtype=np.float32)
        f = self.factor
        rows, columns = self.shape
        if frames.dtype == np.uint8:
            # Exact integer sums, rows first: each of the f row passes reads only its own rows (the
            # strided float sums below read the whole block f x f times); 3-4 x faster, same values.
            crop = frames[:, :rows * f, :columns * f]
            row_sums = crop[:, 0::f, :].astype(np.uint16 if f <= 16 else np.uint32)
            for i in range(1, f):
                row_sums += crop[:, i::f, :]
            block_sums = row_sums[:, :, 0::f].copy()
            for j in range(1, f):
                block_sums += row_sums[:, :, j::f]
            images = block_sums.astype(np.float32)
            images *= np.float32(1.0 / (f * f))
            return images
        # A sum of f x f strided views: numpy reduces over inner reshaped axes far more slowly.
        images = np.zeros((frames.shape[0], rows, columns), dtype=np.float32)
        for i in range(f):
            for j in range(f):
                images += frames[:, i:rows * f:f, j:columns * f:f]
        images *= np.float32(1.0 / (f * f))
        return images

    def features(self, frames: np.ndarray) -> np.ndarray:
        """Matching features (n, working rows, working columns), float32, of a batch of frames."""
        images = self.working_images(frames)
        if self.kind == "bmode":
            return ndimage.gaussian_filter(images, (0, BMODE_SMOOTHING_PX, BMODE_SMOOTHING_PX), mode="nearest")
        sigma = (0, CONTRAST_SMOOTHING_PX, CONTRAST_SMOOTHING_PX)
        along_rows = ndimage.gaussian_filter(images, sigma, order=(0, 1, 0), mode="nearest")
        along_columns = ndimage.gaussian_filter(images, sigma, order=(0, 0, 1), mode="nearest")
        return np.hypot(along_rows, along_columns)

    def all_features(self, frames: np.ndarray) -> np.ndarray:
        """Matching features of every frame (float32, working resolution), batches on the worker threads
        (scipy.ndimage's filters release the GIL; each batch is independent, so the values do not
        depend on the thread count)."""
        features = np.empty((frames.shape[0],) + self.shape, dtype=np.float32)
        starts = range(0, frames.shape[0], self.batch)

        def compute(start: int) -> None:
            features[start:start + self.batch] = self.features(frames[start:start + self.batch])

        threads = min(FFT_WORKERS, len(starts))
        if threads <= 1:
            for start in starts:
                compute(start)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(compute, starts))
        return features

    def _window(self, frames: np.ndarray) -> np.ndarray:
        """Weights 0..1: where the panel ever carries signal, tapered away from a sector's edge."""
        n_frames = frames.shape[0]
        sample = np.unique(np.linspace(0, n_frames - 1, min(n_frames, 32)).round().astype(int))
        smoothed = ndimage.gaussian_filter(self.working_images(frames[sample]), (0, 2.0, 2.0))
        brightest = smoothed.max(axis=0)
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


@dataclass
class _Spectra:
    """Frames' features, zero-mean and unit-norm inside the window, as spectra (n, fft rows, half columns)."""

    spectrum: np.ndarray  # complex64
    power: np.ndarray  # float32, |spectrum|^2
    flat: np.ndarray  # bool: no structure at all (uniform gray), nothing to match

    def take(self, index) -> "_Spectra":
        return _Spectra(self.spectrum[index], self.power[index], self.flat[index])


def _prepare(grid: MatchingGrid, features: np.ndarray) -> _Spectra:
    """Spectra of a batch of frames' features (n, working rows, working columns) for matching."""
    weighted_mean = np.tensordot(features, grid.window, axes=([1, 2], [0, 1])) / grid.window_sum
    values = grid.window * (features - weighted_mean.astype(np.float32)[:, None, None])
    norm = np.sqrt(np.einsum("nij,nij->n", values, values, dtype=np.float64))
    scale = np.maximum(1.0, np.maximum(features.max(axis=(1, 2)), -features.min(axis=(1, 2))))
    # A frame without structure (uniform gray) leaves only float32 rounding after the mean is removed.
    flat = ~(norm > 1e-5 * scale * math.sqrt(grid.window_sum))
    norm[flat] = 1.0
    values /= norm.astype(np.float32)[:, None, None]
    spectrum = scipy_fft.rfft2(values, s=grid.fft_shape, workers=FFT_WORKERS)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return _Spectra(spectrum, power, flat)


@dataclass
class _Matches:
    ok: np.ndarray  # (n,) bool: a significant, clear peak
    shift: np.ndarray  # (n, 2) working px, second's content relative to first's
    rho: np.ndarray  # (n,) peak correlation
    variance: np.ndarray  # (n, 2) predicted variance of the shift per axis (working px^2)


def _match(grid: MatchingGrid, first: _Spectra, second: _Spectra) -> _Matches:
    """Matches of ``second[i]`` against ``first[i]`` (or against a single ``first``), vectorised."""
    cross_power = np.conj(np.broadcast_to(first.spectrum, second.spectrum.shape))
    cross_power *= second.spectrum
    n, size = cross_power.shape[0], grid.row_dft.shape[0]
    # Both products per pair (matmul's stacked form), not one product over the batch's rows: a
    # pair's rounding, hence its sub-pixel shift, must not depend on the pairs matched with it.
    rows_done = np.matmul(grid.row_dft, cross_power)
    surface = np.matmul(rows_done, grid.column_dft).real
    surface /= grid.overlap
    index = np.arange(n)
    peak = np.argmax(surface.reshape(n, -1), axis=1)
    peak_row, peak_column = np.divmod(peak, size)
    rho = surface.reshape(n, -1)[index, peak].astype(np.float64)
    # Correlation of unrelated images with these spectra (Parseval): the variance of its value and
    # of its two slopes, (1/n) sum_m R1(m) R2(m) over the autocorrelations R of the unit-norm images.
    product = (first.power * second.power).reshape(n, -1)
    moments = np.matmul(product[:, None, :], grid.moment_weights)[:, 0].astype(np.float64) \
        / (grid.n_fft * grid.window_pixels)  # per pair, as the surface
    inside = (peak_row > 0) & (peak_row < size - 1) & (peak_column > 0) & (peak_column < size - 1)
    significant = rho > LINK_MIN_SIGNIFICANCE * np.sqrt(np.maximum(moments[:, 0], 1e-30))
    near = grid.lag_distance2[peak_row, peak_column] <= PEAK_EXCLUSION_PX ** 2
    rival = np.max(np.where(near, -np.inf, surface), axis=(1, 2)) if size > 1 else np.full(n, -np.inf)
    clear = ~((rival > 0) & (rho < LINK_MIN_PEAK_RATIO * rival))
    ok = inside & significant & clear & ~(first.flat | second.flat)

    def neighbours(d_row, d_column):
        return surface[index, np.clip(peak_row + d_row, 0, size - 1),
                       np.clip(peak_column + d_column, 0, size - 1)].astype(np.float64)

    row_fraction, row_curvature = _peak_offset(neighbours(-1, 0), rho, neighbours(1, 0))
    column_fraction, column_curvature = _peak_offset(neighbours(0, -1), rho, neighbours(0, 1))
    shift = np.stack([peak_row - grid.search + row_fraction, peak_column - grid.search + column_fraction], axis=1)
    common = np.clip(1.0 - np.minimum(rho, 1.0) ** 2, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 on flat frames: inf below
        variance = np.stack([common * moments[:, 1] / row_curvature ** 2,
                             common * moments[:, 2] / column_curvature ** 2], axis=1)
    variance *= NOISE_CALIBRATION[grid.kind]
    variance[~np.isfinite(variance)] = np.inf
    return _Matches(ok, shift, np.minimum(rho, 1.0), variance)


def _peak_offset(before: np.ndarray, peak: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel position (-0.5..0.5) of peaks from three samples (Gaussian fit, else parabola), and
    the second difference of the samples themselves (the peak's curvature, correlation per px^2)."""
    positive = (before > 0) & (peak > 0) & (after > 0)
    safe = [np.where(positive, v, 1.0) for v in (before, peak, after)]
    a, b, c = (np.where(positive, np.log(s), v) for s, v in zip(safe, (before, peak, after)))
    curvature = a - 2.0 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, np.clip(0.5 * (a - c) / curvature, -0.5, 0.5), 0.0)
    linear_curvature = before - 2.0 * peak + after
    return offset, np.where(linear_curvature < 0, linear_curvature, 0.0)


@dataclass
class Links:
    earlier: np.ndarray  # frame index of the first image of each match
    later: np.ndarray  # frame index of the second: shift = d[later] - d[earlier]
    shift: np.ndarray  # (L, 2) working px
    rho: np.ndarray
    variance: np.ndarray  # (L, 2) predicted, working px^2


class _LinkList:
    def __init__(self):
        self.parts = []

    def add(self, earlier, later, matches: _Matches, keep: np.ndarray) -> None:
        if np.any(keep):
            count = int(np.count_nonzero(keep))
            self.parts.append((np.broadcast_to(np.asarray(earlier), keep.shape)[keep],
                               np.broadcast_to(np.asarray(later), keep.shape)[keep],
                               matches.shift[keep], matches.rho[keep], matches.variance[keep], count))

    def links(self) -> Links:
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return Links(empty, empty, np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
        columns = list(zip(*self.parts))
        return Links(*(np.concatenate(c) for c in columns[:5]))


class _SpectrumRing:
    """The spectra of the most recent ``capacity`` frames, addressed by frame index."""

    def __init__(self, grid: MatchingGrid, capacity: int):
        half = grid.fft_shape[1] // 2 + 1
        self.capacity = capacity
        self.spectrum = np.empty((capacity, grid.fft_shape[0], half), dtype=np.complex64)
        self.power = np.empty((capacity, grid.fft_shape[0], half), dtype=np.float32)
        self.flat = np.zeros(capacity, dtype=bool)
        self.frame = np.full(capacity, -1)  # the frame each slot holds

    def put(self, frames: np.ndarray, spectra: _Spectra) -> None:
        slots = frames % self.capacity
        self.spectrum[slots], self.power[slots], self.flat[slots] = spectra.spectrum, spectra.power, spectra.flat
        self.frame[slots] = frames

    def take(self, frames: np.ndarray) -> _Spectra:
        slots = np.asarray(frames) % self.capacity
        if not np.array_equal(self.frame[slots], frames):
            raise RuntimeError("motion matching asked for a frame's spectrum after it left the ring")
        if slots.size and slots[-1] - slots[0] == slots.size - 1 and np.all(np.diff(slots) == 1):
            slots = slice(int(slots[0]), int(slots[-1]) + 1)  # consecutive frames: views, not copies
        return _Spectra(self.spectrum[slots], self.power[slots], self.flat[slots])


def collect_links(frames: np.ndarray, grid: MatchingGrid, reference_frame: int) -> tuple[Links, np.ndarray]:
    """Significant matches between frames (working px), and every frame's features (for the scores).

    Every frame is matched against the reference and the previous frame (first links); frames with
    structure, i.e. within the longest offset of a frame with a first link (the reference frame
    aside: whether it has one is known only once the whole clip has been matched), also against the
    frames LINK_OFFSETS[1:] before them, when those have structure too (long links). One pass
    over the clip: each frame's spectrum is computed once and kept while a later frame may need it,
    and a frame's long links are matched as soon as the first links of the frames around it are known.
    """
    n_frames = frames.shape[0]
    links = _LinkList()
    features = grid.all_features(frames)
    reference = _prepare(grid, features[reference_frame:reference_frame + 1])
    longest = max(LINK_OFFSETS)
    ring = _SpectrumRing(grid, min(grid.batch + 2 * longest + 1, n_frames))
    matched = np.zeros(n_frames, dtype=bool)  # frames with a first link
    long_links_done = 0  # long links are matched for the frames before this one
    for start in range(0, n_frames, grid.batch):
        stop = min(start + grid.batch, n_frames)
        later = np.arange(start, stop)
        block = _prepare(grid, features[start:stop])
        ring.put(later, block)
        matches = _match(grid, reference, block)
        keep = matches.ok & (later != reference_frame)
        links.add(reference_frame, later, matches, keep)
        matched[later[keep]] = True
        pairs = later[later > 0]
        if pairs.size:
            matches = _match(grid, ring.take(pairs - 1), ring.take(pairs))
            # A pair with the reference frame is already linked above.
            keep = matches.ok & (pairs != reference_frame) & (pairs - 1 != reference_frame)
            links.add(pairs - 1, pairs, matches, keep)
            matched[pairs[keep]] = matched[pairs[keep] - 1] = True
        # Frame k has structure when a frame within `longest` of it has a first link: known once the
        # first links up to frame k + longest + 1 are (the last frame of a batch links to the next).
        settled = n_frames if stop == n_frames else max(stop - longest - 1, long_links_done)
        _long_links(grid, ring, matched, np.arange(long_links_done, settled), reference_frame, links)
        long_links_done = settled
    return links.links(), features


def _structured(matched: np.ndarray, frames: np.ndarray, reach: int) -> np.ndarray:
    """Whether each of ``frames`` lies within ``reach`` frames of a frame in ``matched``."""
    # Frames near one with structure keep all their long links (their own first links can fail:
    # after a dropout, in a wash-in that looks unlike the reference); only a run of frames without
    # any structure within the longest offset (no bolus yet, no contact, a structureless panel) is
    # skipped.
    counts = np.concatenate([[0], np.cumsum(matched)])
    low = np.clip(frames - reach, 0, matched.size)
    high = np.clip(frames + reach + 1, 0, matched.size)
    return counts[high] > counts[low]


def _long_links(grid: MatchingGrid, ring: _SpectrumRing, matched: np.ndarray, frames: np.ndarray,
                reference_frame: int, links: _LinkList) -> None:
    """The long links (offsets LINK_OFFSETS[1:]) of ``frames``, between frames with structure."""
    if frames.size == 0 or not matched.any():
        return
    longest = max(LINK_OFFSETS)
    # Which frames may have long links, from the longest offset before the first of ``frames`` on.
    first = max(int(frames[0]) - longest, 0)
    window = np.arange(first, int(frames[-1]) + 1)
    usable = _structured(matched, window, longest) & (window != reference_frame)
    for offset in LINK_OFFSETS[1:]:
        earlier = frames - offset
        keep = earlier >= 0
        keep[keep] = usable[frames[keep] - first] & usable[earlier[keep] - first]
        if not keep.any():
            continue
        later, earlier = frames[keep], earlier[keep]
        matches = _match(grid, ring.take(earlier), ring.take(later))
        links.add(earlier, later, matches, matches.ok)
