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
   up to ``max_shift_px``, from the frames' spectra on a zero-padded grid (FFTs in batches of frames,
   all cores), evaluated at those shifts only (a DFT restricted to the search box),
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
   it; frames within 32 frames of one (the reference frame aside) that gave a significant match
   there are also matched to the frames :data:`LINK_OFFSETS` (2, 4, ... 32) before them, so a clip
   (or a stretch of one) without structure costs two matches per frame. Each match measures a
   difference of two displacements; all displacements
   follow from a weighted least-squares solution of this graph with the reference frame fixed at
   zero (weights rho^2 / (1 - rho^2) from the match's correlation rho, then iteratively reweighted
   with a Cauchy loss of scale :data:`.motion_links.ROBUST_SCALE_PX` so that a false peak cannot pull the
   solution). Direct reference links keep the error from accumulating when the frames still look
   like the reference (always on B-mode); neighbour links carry the estimate through phases that
   look different from the reference (wash-in on the contrast panel), and the long links (up to 32
   frames) bound the random-walk drift a pure frame-to-frame chain would have.
4. Frames with no significant, consistent match (no structure: the dark pre-arrival contrast panel,
   a dropout) are marked unreliable and get displacements interpolated in time from reliable frames.
   A link that is a bridge of the graph (the only connection between two stretches of frames) is
   left out before solving (:mod:`.motion_links`): no other link can check it, so a chance match
   there would carry every frame beyond it by up to the search range and make them look consistent.
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
from DCEUSResponseLib.ceus.motion_matching import (BMODE_SMOOTHING_PX, CONTRAST_SMOOTHING_PX, LINK_OFFSETS,
                                                   MatchingGrid, Links, collect_links)
from DCEUSResponseLib.ceus.motion_links import solve_links
from DCEUSResponseLib.ceus.motion_sampling import sample_shifted
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.parallel import single_threaded_blas

MOTION_KINDS = ("bmode", "contrast")
#: Default largest displacement searched (px, full resolution), between any two frames: twice the
#: breathing amplitude must fit, and abdominal clips at 0.2-0.3 mm/px with shallow breathing move
#: up to ~5 mm (20 px) peak to peak. It is reduced when the panel is too small (see MIN_OVERLAP_FRACTION).
DEFAULT_MAX_SHIFT_PX = 24.0
#: When more than this fraction of the frames found no significant match, the warning says the
#: estimate itself is doubtful: interpolation in time cannot follow a breathing cycle. On a single
#: display with a small lesion (test_motion.py), 62 % of the frames were interpolated with 12 px
#: breathing (7.3 px RMS off, of 8.5) and 60 % with 6 px (3.6 px off); its dual display, none.
MOSTLY_INTERPOLATED_FRACTION = 0.25
#: The motion is significant when the variance of the reliable frames' displacements (summed over
#: both axes, around their mean) is at least this many times what the matches' precision predicts
#: for a still clip (motion RMS at least sqrt(3) times the noise RMS: compensating then removes more
#: error than it adds). Measured: still synthetic contrast panels give ratios of 0.5-1.1, 8 px
#: breathing on a contrast panel about 100, B-mode far more.
MIN_MOTION_TO_NOISE = 4.0


@dataclass
class MotionEstimate:
    """In-plane translation of the anatomy per frame, relative to ``reference_frame``.

    ``displacement_px``: (N, 2) float (row, column) in pixels; the content at reference pixel p is at
    p + d in frame k. ``displacement_mm``: the same in mm (row spacing, column spacing), or None when
    the panel has no physical calibration. ``score``: (N,) ZNCC in [-1, 1] of each frame's features
    with the reference frame's after alignment (1 for the reference frame itself). ``reliable``: (N,)
    bool, False where no significant match that another confirms was found and the displacement was
    interpolated in time.
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

    grid = MatchingGrid(frames, kind, float(max_shift_px))
    warnings = list(grid.warnings)
    with single_threaded_blas():  # the matches' products run beside the feature threads
        links, features = collect_links(frames, grid, reference_frame)
    displacement, reliable, gauge_note = solve_links(links, n_frames, reference_frame, grid.factor)
    noise_px, motion_to_noise = _motion_to_noise(displacement, reliable, links, grid.factor)
    significant = motion_to_noise is not None and motion_to_noise >= MIN_MOTION_TO_NOISE
    if significant:
        if gauge_note:
            warnings.append(gauge_note)
        unreliable = int(np.count_nonzero(~reliable))
        if unreliable > MOSTLY_INTERPOLATED_FRACTION * n_frames:
            warnings.append(f"motion: {unreliable} of {n_frames} frames had no significant match that another "
                            f"confirms on the {kind} panel, so the motion estimate rests on few frames and may be "
                            "wrong by several pixels (ROIs then take in their surroundings); check the motion "
                            "columns of tic.csv, prefer a dual display (its B-mode panel), or compare with "
                            "--no-motion-compensation")
        elif unreliable:
            warnings.append(f"motion: {unreliable} of {n_frames} frames had no significant match that another "
                            f"confirms on the {kind} panel; their displacement is interpolated in time")
    else:
        displacement = np.zeros_like(displacement)
        if gauge_note and gauge_note.startswith(("motion: no two frames", "motion: no match between")):
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


def _motion_to_noise(displacement: np.ndarray, reliable: np.ndarray, links: Links,
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


def _alignment_scores(features: np.ndarray, grid: MatchingGrid, reference_frame: int,
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
    # Frames that did not move (all of a still clip) cover the whole core: each one's centred
    # values there are computed once and serve its score with the reference and with both neighbours.
    centred_reference = _Centred(reference[core])
    scores = np.ones(n_frames)
    with_previous = np.full(n_frames + 1, np.nan)  # [k]: frame k with frame k - 1
    previous = None
    for k in range(n_frames):
        shift = displacement[k] / grid.factor
        if k == reference_frame:
            aligned, seen, centred = reference, core, centred_reference
        elif not np.any(shift):
            aligned, seen, centred = features[k], core, _Centred(features[k][core])
            scores[k] = centred_reference.zncc(centred)
        else:
            # Frame k sampled at p + d is the reference's content at p.
            aligned = sample_shifted(features[k], 0, 0, rows, columns, shift)
            seen = core & _shifted(core, -np.round(shift).astype(int))
            centred = None
            scores[k] = _zncc(reference[seen], aligned[seen])
        if previous is not None:
            if centred is not None and previous[2] is not None:
                with_previous[k] = previous[2].zncc(centred)
            else:
                both = seen & previous[1]
                with_previous[k] = _zncc(previous[0][both], aligned[both])
        previous = (aligned, seen, centred)
    neighbour = np.fmax(with_previous[:n_frames], with_previous[1:])
    if n_frames == 1:
        neighbour[:] = 1.0  # no neighbour to disagree with
    return scores, neighbour


class _Centred:
    """Values less their mean, and their sum of squares (float64), for ZNCCs over the same pixels."""

    def __init__(self, values: np.ndarray):
        self.size = values.size
        if self.size < 16:  # too few to correlate (and no mean of nothing)
            self.values, self.squares = values, 0.0
            return
        self.values = values - values.mean(dtype=np.float64)
        # Plain sums rather than BLAS dot products: BLAS thread start-up dominates at this size.
        self.squares = float(np.sum(self.values * self.values, dtype=np.float64))

    def zncc(self, other: "_Centred") -> float:
        """ZNCC of the two original value arrays (0 over fewer than 16 pixels or without spread)."""
        if self.size < 16 or other.size < 16:
            return 0.0
        denominator = math.sqrt(self.squares * other.squares)
        if denominator <= 0:
            return 0.0
        return float(np.clip(np.sum(self.values * other.values, dtype=np.float64) / denominator, -1.0, 1.0))


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
    """Zero-mean normalised cross-correlation of two arrays of the same pixels (0 for fewer than 16)."""
    return _Centred(a).zncc(_Centred(b))
