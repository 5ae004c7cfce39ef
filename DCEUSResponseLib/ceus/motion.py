"""Breathing-motion estimation on one display panel: the in-plane translation of the anatomy per frame.

Liver CEUS is recorded free-breathing: the anatomy slides several millimetres in the image plane
with every breath. :func:`estimate_motion` measures, frame by frame, the in-plane translation of the
anatomy relative to the reference frame (on which the ROIs were drawn); :mod:`.motion_sampling`
then samples each ROI (or each map pixel) where the anatomy is in every frame.

Only translation is estimated, not rotation, scaling or deformation: over an abdominal field of
view the breathing displacement of the liver is dominated by a translation along the probe's plane,
the usual model of CEUS motion compensation. Through-plane motion cannot be recovered from a 2D
image; it shows as a collapse of the match scores (see :mod:`.quality`).

Method (the same engine for both panels, with panel-specific features)
------------------------------------------------------------------------
1. Features. Gray levels are the log-compressed display domain, where a change of echo power is an
   additive offset. B-mode panel (``kind="bmode"``): the gray levels smoothed by a Gaussian of
   :data:`BMODE_SMOOTHING_PX`; the tissue speckle moves with the anatomy and is the best texture to
   track. Contrast panel (``kind="contrast"``): the gradient magnitude of the gray levels at scale
   :data:`CONTRAST_SMOOTHING_PX`. The bubble speckle changes every frame, so only region borders
   (lesion, vessels, necrosis, liver edge) can be tracked; the gradient magnitude keeps exactly these,
   does not depend on the overall brightness (which rises ~30 dB during wash-in) and does not change
   sign when a lesion goes from brighter than the liver (arterial phase) to darker (wash-out), which
   the gray levels themselves would. Large panels are block-averaged first so the longer side is at
   most :data:`MAX_WORKING_SIZE_PX` (displacements are scaled back). Features are float32.
2. Matching. Zero-mean normalised cross-correlation (ZNCC) of two frames' features over all shifts
   up to ``max_shift_px``, computed with FFTs (batches of frames, all cores) on a zero-padded grid,
   inside a weight window that excludes what never carries signal (black borders outside an
   ultrasound sector, found from the clip's brightest frames) and tapers smoothly away from a
   sector's edge, whose strong static gradient would hold the match at zero shift. Each correlation
   value is divided by the window's overlap at that shift, which removes the pull towards zero shift
   that a fixed window would cause. The integer peak is refined to sub-pixel by a 3-point Gaussian
   fit in each axis (parabolic where the Gaussian is undefined). A match counts only when its peak
   is significant: at least :data:`LINK_MIN_SIGNIFICANCE` times the standard deviation the
   correlation of two *unrelated* images with the same spectra would have (computed exactly from the
   two power spectra), and :data:`LINK_MIN_PEAK_RATIO` times any rival peak; pre-arrival contrast
   frames, dropouts and flashes therefore give no match. Each match also predicts its own precision
   per axis: the standard deviation of the correlation's slope at the peak (the same spectral sum
   weighted by the squared frequency, times 1 - rho^2 for the part of the images that is common)
   divided by the peak's curvature.
3. Links and drift control. Every frame is matched to the reference frame and to the frame before
   it; frames within 32 frames of one that gave a significant match there are also matched to the
   frames :data:`LINK_OFFSETS` (2, 4, ... 32) before them, so a clip (or a stretch of one) without
   structure costs two matches per frame. Each match measures a difference of two displacements; all displacements
   follow from a weighted least-squares solution of this graph with the reference frame fixed at
   zero (weights rho^2 / (1 - rho^2) from the match's correlation rho, then iteratively reweighted
   with a Cauchy loss of scale :data:`ROBUST_SCALE_PX` so that a false peak cannot pull the
   solution). Direct reference links keep the error from accumulating when the frames still look
   like the reference (always on B-mode); neighbour links carry the estimate through phases that
   look different from the reference (wash-in on the contrast panel), and the long links (up to 32
   frames) bound the random-walk drift a pure frame-to-frame chain would have.
4. Frames with no significant, consistent match (no structure: the dark pre-arrival contrast panel,
   a dropout) are marked unreliable and get displacements interpolated in time from reliable frames.
   If the reference frame itself has no structure, the displacements are referred to the nearest
   frame that has, with a warning.
5. Significance of the motion as a whole. Every frame's estimate carries its own apparent-position
   noise (fresh bubble speckle in every contrast frame: ~0.3 px per axis), the reference frame's
   included, and on a still clip that noise would be reported as motion and move the ROIs for
   nothing. The spread of the reliable frames' displacements around their mean is therefore
   compared with the spread the matches' own precision predicts for a still clip (half the median
   predicted link variance per frame and axis): below :data:`MIN_MOTION_TO_NOISE` times it, the
   clip is taken as still, every displacement is exactly zero and ``significant`` is False. The
   test looks at the displacements' size, not at their time course, so it neither mistakes the
   slow, sub-noise drift that enhancement changes can give a contrast-panel estimate for motion,
   nor misses motion that is not smooth in time (a low frame rate aliases the breathing).
6. The score of each frame is the ZNCC of its features with the reference frame's after moving it
   back by the estimated displacement (bilinear: a whole-pixel gather and a fractional blend), over
   the pixels both cover; the neighbour score the same with the previous or next frame (the better
   of the two).

Displacement convention: ``d[k]`` is where the anatomy moved in frame k relative to the reference
frame, (row, column) in pixels: the content at reference pixel p is found at p + d[k] in frame k.

Accuracy (tests ``test_motion.py``, 8 px breathing): ~0.01 px RMS on the B-mode panel; 0.5 to
0.9 px RMS on a synthetic contrast panel with fresh speckle in every frame, where the limit is each
frame's own apparent-position noise (~0.4 px per axis), including the reference frame's, which is
common to all frames and cannot be averaged out without a temporal model of the breathing. Still
clips (``test_motion_still.py``) give exactly zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as scipy_fft
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as sparse_linalg

from DCEUSResponseLib.ceus.motion_sampling import sample_shifted
from DCEUSResponseLib.errors import InputError

MOTION_KINDS = ("bmode", "contrast")
#: Default largest displacement searched (px, full resolution), between any two frames: twice the
#: breathing amplitude must fit, and abdominal clips at 0.2-0.3 mm/px with shallow breathing move
#: up to ~5 mm (20 px) peak to peak. It is reduced when the panel is too small (see MIN_OVERLAP_FRACTION).
DEFAULT_MAX_SHIFT_PX = 24.0
#: Gaussian smoothing (px, working resolution) of B-mode gray levels: about the speckle size, so the
#: correlation peak is smooth enough for sub-pixel interpolation yet still sharp.
BMODE_SMOOTHING_PX = 1.0
#: Scale (px, working resolution) of the Gaussian derivative on contrast frames: large enough to
#: average the fresh bubble speckle (~1-2 px) of every frame, small enough for region borders.
CONTRAST_SMOOTHING_PX = 3.0
#: Each frame is matched to the reference frame and to the frames this many frames before it; the
#: first offset (1) for every frame, the others only between frames with structure.
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
#: Cauchy loss scale (px, working resolution) of the robust least squares: disagreements of a
#: pixel or more between links are down-weighted, gross ones (false peaks) effectively ignored.
ROBUST_SCALE_PX = 1.0
ROBUST_ITERATIONS = 6
#: A frame is reliable when at least MIN_CONSISTENT_LINKS of its links agree with the solution
#: within CONSISTENT_LINK_PX (px, full resolution): a single link could be a chance match that
#: nothing corroborates; two chance matches agreeing within 2 px over a +-24 px search are rare.
CONSISTENT_LINK_PX = 2.0
MIN_CONSISTENT_LINKS = 2
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
#: The motion is significant when the variance of the reliable frames' displacements (summed over
#: both axes, around their mean) is at least this many times what the matches' precision predicts
#: for a still clip. 4 means the motion's RMS is twice the noise's: compensating then removes more
#: error than it adds (it adds the noise, it removes the motion). Measured: still synthetic contrast
#: panels give ratios of CALIBRATION_NOTE; 8 px breathing gives hundreds, B-mode far more.
MIN_MOTION_TO_NOISE = 4.0
#: Factor on the predicted variance of a match's shift, per panel kind, from the measured errors of
#: matches with a known (zero) shift: on still synthetic contrast panels (4 patterns, 3 seeds,
#: 140 x 180 to 208 x 288 px) the errors' standard deviation is 1.55-1.9 times the prediction (the
#: 3-point peak fit is not the ideal estimator, and the peak's curvature is itself noisy); on
#: B-mode speckle 0.7 times (left at 1: over-predicting the noise only makes small motions count less).
NOISE_CALIBRATION = {"bmode": 1.0, "contrast": 3.0}
#: Frames whose features, spectra and correlations are computed together (FFTs of a batch run on
#: all cores through scipy.fft's workers); the batch is also bounded by BATCH_BYTES.
BATCH_FRAMES = 64
BATCH_BYTES = 48 * 2**20
#: Worker threads of scipy.fft (-1: all cores).
FFT_WORKERS = -1


@dataclass
class MotionEstimate:
    """In-plane translation of the anatomy per frame, relative to ``reference_frame``.

    ``displacement_px``: (N, 2) float (row, column) in pixels; the content at reference pixel p is at
    p + d in frame k. ``displacement_mm``: the same in mm (row spacing, column spacing), or None when
    the panel has no physical calibration. ``score``: (N,) ZNCC in [-1, 1] of each frame's features
    with the reference frame's after alignment (1 for the reference frame itself). ``reliable``: (N,)
    bool, False where no significant match was found and the displacement was interpolated in time.
    ``neighbour_score``: (N,) the better ZNCC of each frame with the previous or the next frame,
    both aligned onto the reference frame: unlike ``score`` it does not fall when the contrast phase
    makes the clip look different from the reference, so a frame from another plane shows as a dip
    in it (see :mod:`.quality`). ``kind``: the panel it was estimated on, "bmode" or "contrast".
    ``method``: a one-line description for reports. ``warnings``: one-line notes for the user.
    ``significant``: False when the measured motion was not above the estimate's own noise, in which
    case every displacement is exactly zero. ``noise_px``: the predicted RMS length of one frame's
    displacement error (px), ``motion_to_noise``: the variance ratio the significance test used
    (both None when nothing could be matched).
    """

    displacement_px: np.ndarray
    score: np.ndarray
    method: str
    kind: str
    reference_frame: int
    displacement_mm: np.ndarray | None = None
    reliable: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    neighbour_score: np.ndarray | None = None
    significant: bool = True
    noise_px: float | None = None
    motion_to_noise: float | None = None

    @property
    def n_frames(self) -> int:
        return int(self.displacement_px.shape[0])

    @property
    def rms_displacement_px(self) -> float:
        """Root-mean-square length of the displacement over all frames (px)."""
        return float(np.sqrt(np.mean(np.sum(self.displacement_px ** 2, axis=1))))

    @property
    def rms_displacement_mm(self) -> float | None:
        if self.displacement_mm is None:
            return None
        return float(np.sqrt(np.mean(np.sum(self.displacement_mm ** 2, axis=1))))

    def to_json(self) -> dict:
        """The ``results.json`` ``clip.motion`` record (plain JSON types)."""
        reliable = self.reliable if self.reliable is not None else np.ones(self.n_frames, dtype=bool)
        peak = float(np.max(np.hypot(self.displacement_px[:, 0], self.displacement_px[:, 1])))
        return {
            "compensated": True,
            "significant": bool(self.significant),
            "method": self.method,
            "estimated_on": self.kind,
            "reference_frame": int(self.reference_frame),
            "displacement_px": [[round(float(r), 3), round(float(c), 3)] for r, c in self.displacement_px],
            "displacement_mm": None if self.displacement_mm is None else
            [[round(float(r), 4), round(float(c), 4)] for r, c in self.displacement_mm],
            "score": [round(float(s), 4) for s in self.score],
            "neighbour_score": None if self.neighbour_score is None else
            [round(float(s), 4) for s in self.neighbour_score],
            "rms_displacement_px": round(self.rms_displacement_px, 4),
            "rms_displacement_mm": None if self.displacement_mm is None else round(self.rms_displacement_mm, 4),
            "max_displacement_px": round(peak, 4),
            "noise_px": None if self.noise_px is None else round(float(self.noise_px), 4),
            "motion_to_noise": None if self.motion_to_noise is None else round(float(self.motion_to_noise), 3),
            "interpolated_frames": [int(k) for k in np.flatnonzero(~reliable)],
            "warnings": list(self.warnings),
        }


# ----------------------------------------------------------------------------------------------
# Estimation


def estimate_motion(panel_frames: np.ndarray, reference_frame: int, *, kind: str,
                    spacing_mm: tuple[float, float] | None = None,
                    max_shift_px: float = DEFAULT_MAX_SHIFT_PX) -> MotionEstimate:
    """Estimate the in-plane translation of the anatomy in every frame relative to ``reference_frame``.

    ``panel_frames``: (N, rows, columns) gray levels 0..255 (log-compressed display domain) of ONE
    panel: the B-mode panel of a dual display (``kind="bmode"``) or the contrast panel
    (``kind="contrast"``). ``spacing_mm``: (row, column) pixel spacing in mm, or None.
    ``max_shift_px``: the largest displacement between two frames searched (px).

    Translation only: rotation and deformation are not estimated. When the measured motion is not
    significant against the estimate's own noise, every displacement is zero (``significant``
    False). See the module docstring for the method. Returns a :class:`MotionEstimate`. Raises
    InputError for arrays of the wrong shape, non-finite gray levels, an unknown ``kind``, a
    reference frame outside the clip, or a non-positive search range or spacing.
    """
    frames = np.asarray(panel_frames)
    if frames.ndim != 3:
        raise InputError(f"motion estimation needs (frames, rows, columns) gray levels of one panel, "
                         f"got shape {frames.shape}")
    n_frames, rows, columns = frames.shape
    if n_frames < 1 or rows < 16 or columns < 16:
        raise InputError(f"motion estimation needs at least 1 frame of 16 x 16 pixels, got shape {frames.shape}")
    if kind not in MOTION_KINDS:
        raise InputError(f"motion kind must be one of {', '.join(MOTION_KINDS)}, not {kind!r}")
    if not isinstance(reference_frame, (int, np.integer)) or not 0 <= reference_frame < n_frames:
        raise InputError(f"reference frame {reference_frame!r} is outside the clip's frames 0..{n_frames - 1}")
    if not (isinstance(max_shift_px, (int, float, np.number)) and math.isfinite(max_shift_px) and max_shift_px >= 1):
        raise InputError(f"the motion search range must be at least 1 pixel, got {max_shift_px!r}")
    spacing = _check_spacing(spacing_mm)
    if np.issubdtype(frames.dtype, np.floating) and not np.all(np.isfinite(frames)):
        raise InputError("the panel's gray levels contain NaN or infinite values")
    reference_frame = int(reference_frame)

    grid = _MatchingGrid(frames, kind, float(max_shift_px))
    warnings = list(grid.warnings)
    links, features = _collect_links(frames, grid, reference_frame)
    displacement, reliable, gauge_note = _solve_links(links, n_frames, reference_frame, grid.factor)
    noise_px, motion_to_noise = _motion_to_noise(displacement, reliable, links, grid.factor)
    significant = motion_to_noise is not None and motion_to_noise >= MIN_MOTION_TO_NOISE
    if significant:
        if gauge_note:
            warnings.append(gauge_note)
        unreliable = int(np.count_nonzero(~reliable))
        if unreliable:
            warnings.append(f"motion: {unreliable} of {n_frames} frames had no significant match on the {kind} "
                            "panel; their displacement is interpolated in time")
    else:
        displacement = np.zeros_like(displacement)
        if gauge_note and gauge_note.startswith("motion: no two frames"):
            warnings.append(gauge_note)
        elif motion_to_noise is not None:
            warnings.append(f"motion: no significant motion on the {kind} panel (spread of the estimates "
                            f"{motion_to_noise:.2g} x their predicted noise of {noise_px:.2g} px, below "
                            f"{MIN_MOTION_TO_NOISE:g}); displacements are zero")
    score, neighbour_score = _alignment_scores(features, grid, reference_frame, displacement)

    smoothing = BMODE_SMOOTHING_PX if kind == "bmode" else CONTRAST_SMOOTHING_PX
    feature = "smoothed gray levels" if kind == "bmode" else "gradient magnitude of gray levels"
    method = (f"translation by ZNCC of {feature} (Gaussian {smoothing:g} px"
              f"{f' after {grid.factor}x{grid.factor} block averaging' if grid.factor > 1 else ''}) on the "
              f"{kind} panel; links to the reference frame and to frames {', '.join(map(str, LINK_OFFSETS))} "
              "back, robust weighted least squares; Gaussian sub-pixel peak; zero unless significant "
              f"against the matches' own noise (variance ratio {MIN_MOTION_TO_NOISE:g})")
    displacement_mm = None if spacing is None else displacement * np.asarray(spacing)[None, :]
    return MotionEstimate(displacement, score, method, kind, reference_frame, displacement_mm, reliable, warnings,
                          neighbour_score, significant, noise_px, motion_to_noise)


def _check_spacing(spacing_mm) -> tuple[float, float] | None:
    if spacing_mm is None:
        return None
    try:
        values = tuple(float(v) for v in spacing_mm)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"pixel spacing must be two positive numbers of mm (row, column), got {spacing_mm!r}")
    return values


class _MatchingGrid:
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
        self.row_lags = np.arange(-search, search + 1) % self.fft_shape[0]
        self.column_lags = np.arange(-search, search + 1) % self.fft_shape[1]
        lag = np.arange(2 * search + 1)
        self.lag_distance2 = (lag[:, None, None, None] - lag[None, None, :, None]) ** 2 + \
            (lag[None, :, None, None] - lag[None, None, None, :]) ** 2  # [r0, c0, r, c]
        # rfft keeps half the spectrum: weights that sum it as the full spectrum (Parseval), times
        # 1, omega_row^2 and omega_column^2 (rad/px) for the correlation's value and slopes.
        half_weights = np.full(self.fft_shape[1] // 2 + 1, 2.0)
        half_weights[0] = 1.0
        if self.fft_shape[1] % 2 == 0:
            half_weights[-1] = 1.0
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


def _prepare(grid: _MatchingGrid, features: np.ndarray) -> _Spectra:
    """Spectra of a batch of frames' features (n, working rows, working columns) for matching."""
    weighted_mean = np.tensordot(features, grid.window, axes=([1, 2], [0, 1])) / grid.window_sum
    values = grid.window * (features - weighted_mean.astype(np.float32)[:, None, None])
    norm = np.sqrt(np.sum(values.astype(np.float64) ** 2, axis=(1, 2)))
    scale = np.maximum(1.0, np.abs(features).max(axis=(1, 2)))
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


def _match(grid: _MatchingGrid, first: _Spectra, second: _Spectra) -> _Matches:
    """Matches of ``second[i]`` against ``first[i]`` (or against a single ``first``), vectorised."""
    correlation = scipy_fft.irfft2(np.conj(first.spectrum) * second.spectrum, s=grid.fft_shape,
                                   workers=FFT_WORKERS)
    surface = correlation[:, grid.row_lags[:, None], grid.column_lags[None, :]] / grid.overlap
    n, size = surface.shape[0], surface.shape[1]
    index = np.arange(n)
    peak = np.argmax(surface.reshape(n, -1), axis=1)
    peak_row, peak_column = np.divmod(peak, size)
    rho = surface.reshape(n, -1)[index, peak].astype(np.float64)
    # Correlation of unrelated images with these spectra (Parseval): the variance of its value and
    # of its two slopes, (1/n) sum_m R1(m) R2(m) over the autocorrelations R of the unit-norm images.
    product = (first.power * second.power).reshape(n, -1)
    moments = (product @ grid.moment_weights).astype(np.float64) / (grid.n_fft * grid.window_pixels)
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
    with np.errstate(divide="ignore"):
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
class _Links:
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

    def links(self) -> _Links:
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return _Links(empty, empty, np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
        columns = list(zip(*self.parts))
        return _Links(*(np.concatenate(c) for c in columns[:5]))


def _collect_links(frames: np.ndarray, grid: _MatchingGrid, reference_frame: int) -> tuple[_Links, np.ndarray]:
    """Significant matches between frames (working px), and every frame's features (for the scores).

    First pass: every frame against the reference and the previous frame. Second pass, only between
    frames that matched something in the first (frames with structure): the longer LINK_OFFSETS.
    """
    n_frames = frames.shape[0]
    links = _LinkList()
    # Features once per frame (float32, working resolution): the second pass needs them again.
    features = np.empty((n_frames,) + grid.shape, dtype=np.float32)
    for start in range(0, n_frames, grid.batch):
        features[start:start + grid.batch] = grid.features(frames[start:start + grid.batch])
    reference = _prepare(grid, features[reference_frame:reference_frame + 1])
    previous = None
    for start in range(0, n_frames, grid.batch):
        stop = min(start + grid.batch, n_frames)
        block = _prepare(grid, features[start:stop])
        later = np.arange(start, stop)
        matches = _match(grid, reference, block)
        links.add(reference_frame, later, matches, matches.ok & (later != reference_frame))
        earlier = block.take(slice(0, -1)) if previous is None else _Spectra(
            *(np.concatenate([a, b[:-1]]) for a, b in zip((previous.spectrum, previous.power, previous.flat),
                                                          (block.spectrum, block.power, block.flat))))
        if previous is None:
            later = later[1:]
        if later.size:
            matches = _match(grid, earlier, block.take(slice(block.flat.size - later.size, None)))
            # A pair with the reference frame is already linked above.
            links.add(later - 1, later, matches, matches.ok & (later != reference_frame)
                      & (later - 1 != reference_frame))
        previous = block.take(slice(-1, None))
    first_pass = links.links()
    structured = np.zeros(n_frames, dtype=bool)
    structured[first_pass.earlier] = True
    structured[first_pass.later] = True
    # Frames near one with structure keep all their long links (their own first-pass matches can
    # fail: after a dropout, in a wash-in that looks unlike the reference); only a run of frames
    # without any structure within the longest offset (no bolus yet, no contact, a still
    # structureless panel) is skipped.
    if structured.any():
        structured = ndimage.binary_dilation(structured, iterations=max(LINK_OFFSETS))
    _long_links(features, grid, structured, reference_frame, links)
    return links.links(), features


def _long_links(features: np.ndarray, grid: _MatchingGrid, structured: np.ndarray, reference_frame: int,
                links: _LinkList) -> None:
    """Matches at the offsets LINK_OFFSETS[1:] between frames with structure (second pass)."""
    offsets = [o for o in LINK_OFFSETS if o > 1]
    if not offsets or np.count_nonzero(structured) < 2:
        return
    longest = max(offsets)
    cache: dict[int, _Spectra] = {}
    candidates = np.flatnonzero(structured)
    for start in range(0, candidates.size, grid.batch):
        indices = candidates[start:start + grid.batch]
        block = _prepare(grid, features[indices])
        for j, k in enumerate(indices):
            cache[int(k)] = block.take(slice(j, j + 1))
        for offset in offsets:
            pairs = [(int(k) - offset, int(k)) for k in indices
                     if int(k) - offset in cache and reference_frame not in (int(k), int(k) - offset)]
            if not pairs:
                continue
            first = [cache[a] for a, _ in pairs]
            second = [cache[b] for _, b in pairs]
            stacked = [_Spectra(*(np.concatenate([getattr(s, name) for s in side])
                                  for name in ("spectrum", "power", "flat"))) for side in (first, second)]
            matches = _match(grid, stacked[0], stacked[1])
            earlier, later = np.array(pairs).T
            links.add(earlier, later, matches, matches.ok)
        newest = int(indices[-1])
        for k in [k for k in cache if k < newest - longest]:
            del cache[k]


def _solve_links(links: _Links, n_frames: int, reference_frame: int,
                 factor: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Displacements (full-resolution px) from the link graph, reliability per frame, and a note."""
    displacement = np.zeros((n_frames, 2))
    reliable = np.zeros(n_frames, dtype=bool)
    if n_frames == 1:
        return displacement, np.ones(1, dtype=bool), None
    earlier = np.asarray(links.earlier, dtype=np.int64)
    later = np.asarray(links.later, dtype=np.int64)
    measured = np.asarray(links.shift, dtype=np.float64).reshape(-1, 2)
    rho = np.clip(np.asarray(links.rho, dtype=np.float64), 0.05, 0.98)
    base_weight = rho * rho / (1.0 - rho * rho)

    note = None
    # The reference frame fixes the gauge of every displacement, so one chance match of a frame
    # without structure (a black pre-arrival contrast frame) must not anchor the whole solution.
    touching = (earlier == reference_frame) | (later == reference_frame)
    if 0 < np.count_nonzero(touching) < MIN_CONSISTENT_LINKS:
        keep = ~touching
        earlier, later, measured, rho, base_weight = (a[keep] for a in (earlier, later, measured, rho, base_weight))
    graph = sparse.coo_matrix((np.ones(earlier.size), (earlier, later)), shape=(n_frames, n_frames))
    _, component = csgraph.connected_components(graph, directed=False)
    members = np.flatnonzero(component == component[reference_frame])
    gauge = reference_frame
    if members.size < 2:
        sizes = np.bincount(component)
        largest = int(np.argmax(sizes))
        if sizes[largest] < 2:
            return displacement, reliable | (np.arange(n_frames) == reference_frame), \
                "motion: no two frames could be matched; no motion compensation is possible on this panel"
        members = np.flatnonzero(component == largest)
        gauge = int(members[np.argmin(np.abs(members - reference_frame))])
        note = (f"motion: the reference frame {reference_frame} has no structure to match on this panel; "
                f"displacements are relative to frame {gauge} (choose a reference frame with visible anatomy)")

    position = -np.ones(n_frames, dtype=np.int64)
    unknowns = members[members != gauge]
    position[unknowns] = np.arange(unknowns.size)
    in_component = np.isin(earlier, members)
    e, l_, m, w0 = earlier[in_component], later[in_component], measured[in_component], base_weight[in_component]
    solution = np.zeros((n_frames, 2))
    weight = w0.copy()
    for _ in range(ROBUST_ITERATIONS):
        solution[unknowns] = _weighted_solve(e, l_, m, weight, position, unknowns.size)
        residual = np.hypot(*(solution[l_] - solution[e] - m).T)
        weight = w0 / (1.0 + (residual / ROBUST_SCALE_PX) ** 2)
    residual = np.hypot(*(solution[l_] - solution[e] - m).T) * factor
    consistent = residual <= CONSISTENT_LINK_PX
    agreeing = np.bincount(e[consistent], minlength=n_frames) + np.bincount(l_[consistent], minlength=n_frames)
    reliable = agreeing >= min(MIN_CONSISTENT_LINKS, n_frames - 1)
    reliable[gauge] = True
    displacement = solution * factor
    if not reliable.all():
        known = np.flatnonzero(reliable)
        for axis in range(2):
            displacement[~reliable, axis] = np.interp(np.flatnonzero(~reliable), known, displacement[known, axis])
    if gauge != reference_frame:
        # Refer everything to the reference frame's (interpolated) position, as promised.
        displacement -= displacement[reference_frame]
    return displacement, reliable, note


def _weighted_solve(earlier, later, measured, weight, position, n_unknowns) -> np.ndarray:
    """Minimise sum w |d[later] - d[earlier] - measured|^2 with the gauge frame fixed at zero."""
    rows, columns, values = [], [], []
    rhs = np.zeros((n_unknowns, 2))
    p_e, p_l = position[earlier], position[later]
    # The weighted graph Laplacian, without the gauge frame's row and column (position -1).
    for a, b, sign in ((p_l, p_l, 1.0), (p_e, p_e, 1.0), (p_l, p_e, -1.0), (p_e, p_l, -1.0)):
        keep = (a >= 0) & (b >= 0)
        rows.append(a[keep])
        columns.append(b[keep])
        values.append(sign * weight[keep])
    keep = p_l >= 0
    np.add.at(rhs, p_l[keep], weight[keep, None] * measured[keep])
    keep = p_e >= 0
    np.add.at(rhs, p_e[keep], -weight[keep, None] * measured[keep])
    matrix = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                               shape=(n_unknowns, n_unknowns))
    # A tiny ridge keeps the system definite if reweighting ever isolates a frame.
    matrix = matrix + sparse.identity(n_unknowns, format="csc") * 1e-9
    return sparse_linalg.splu(matrix).solve(rhs)


def _motion_to_noise(displacement: np.ndarray, reliable: np.ndarray, links: _Links,
                     factor: int) -> tuple[float | None, float | None]:
    """Predicted RMS error of one frame's displacement (px) and the ratio of the reliable frames'
    displacement variance (around their mean, both axes) to the variance noise alone would give.

    A frame's estimate inherits its own apparent-position error through all its links, so its
    variance is about half a link's (a link compares two frames' errors): half the median over the
    links. None, None when fewer than two reliable frames or no link are left.
    """
    variance = links.variance[np.all(np.isfinite(links.variance), axis=1)]
    if variance.shape[0] == 0 or np.count_nonzero(reliable) < 2:
        return None, None
    noise_variance = float(np.sum(np.median(variance, axis=0))) * factor * factor / 2.0
    measured = displacement[reliable]
    spread = float(np.mean(np.sum((measured - measured.mean(axis=0)) ** 2, axis=1)))
    return math.sqrt(noise_variance), spread / max(noise_variance, 1e-12)


def _alignment_scores(features: np.ndarray, grid: _MatchingGrid, reference_frame: int,
                      displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZNCC of each frame's aligned features with the reference frame's, and with its neighbours'.

    Every frame's features are moved back by its displacement onto the reference frame's geometry
    (bilinear: features are smooth at the pixel scale, and on textures the scores differ from a
    cubic spline's by < 0.001); the neighbour score of frame k is the better of its ZNCCs with
    frames k - 1 and k + 1 there. Over the pixels both cover, inside the matching window's core.
    """
    n_frames = features.shape[0]
    rows, columns = grid.shape
    core = grid.window > 0.5
    reference = features[reference_frame]
    scores = np.ones(n_frames)
    with_previous = np.full(n_frames + 1, np.nan)  # [k]: frame k with frame k - 1
    previous = None
    for k in range(n_frames):
        shift = displacement[k] / grid.factor
        if k == reference_frame:
            aligned, seen = reference, core
        elif not np.any(shift):
            aligned, seen = features[k], core
            scores[k] = _zncc(reference[seen], aligned[seen])
        else:
            # Frame k sampled at p + d is the reference's content at p.
            aligned = sample_shifted(features[k], 0, 0, rows, columns, shift)
            seen = core & _shifted(core, -np.round(shift).astype(int))
            scores[k] = _zncc(reference[seen], aligned[seen])
        if previous is not None:
            both = seen & previous[1]
            with_previous[k] = _zncc(previous[0][both], aligned[both])
        previous = (aligned, seen)
    neighbour = np.fmax(with_previous[:n_frames], with_previous[1:])
    if n_frames == 1:
        neighbour[:] = 1.0  # no neighbour to disagree with
    return scores, neighbour


def _shifted(mask: np.ndarray, shift) -> np.ndarray:
    """``mask`` moved by whole pixels (row, column), False where nothing moved in."""
    out = np.zeros_like(mask)
    dr, dc = int(shift[0]), int(shift[1])
    rows, columns = mask.shape
    if abs(dr) < rows and abs(dc) < columns:
        out[max(dr, 0):rows + min(dr, 0), max(dc, 0):columns + min(dc, 0)] = \
            mask[max(-dr, 0):rows + min(-dr, 0), max(-dc, 0):columns + min(-dc, 0)]
    return out


def _zncc(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 16:
        return 0.0
    a = a - a.mean(dtype=np.float64)
    b = b - b.mean(dtype=np.float64)
    # Plain sums rather than BLAS dot products: BLAS thread start-up dominates at this size.
    denominator = math.sqrt(float(np.sum(a * a, dtype=np.float64)) * float(np.sum(b * b, dtype=np.float64)))
    if denominator <= 0:
        return 0.0
    return float(np.clip(np.sum(a * b, dtype=np.float64) / denominator, -1.0, 1.0))
