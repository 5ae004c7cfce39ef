"""Destruction-replenishment (flash-replenishment) kinetics.

During a constant infusion of microbubbles, a few high-MI frames (the *flash*) destroy the bubbles
in the imaging plane; imaging at low MI then watches them flow back in. The linear intensity of a
region after the flash rises from a residual level to a plateau, the steady-state blood volume
signal, at a rate set by the flow.

Model ("monoexponential", Wei et al., Circulation 1998;97:473-483)::

    y(t) = O + A * (1 - exp(-beta * (t - t_flash)))      for t > t_flash

``O`` (a.u.): intensity left just after the flash (tissue signal, surviving bubbles); ``A`` (a.u.):
the replenished enhancement, i.e. the plateau above ``O``; ``beta`` (1/s): the replenishment rate.
It assumes complete destruction in the slice at ``t_flash`` (the last flash frame), a constant
infusion (steady concentration in the feeding blood over the segment), linear intensity (after
:mod:`~DCEUSResponseLib.ceus.linearize`), and describes the refill as a first-order exchange: it ignores
the S-shaped start that the beam's elevation profile and the spread of vessel velocities give to
real refills (Arditi et al., IEEE Trans UFFC 2006;53:1118-1129). That model is not implemented
here: its exact perfusion function could not be established from the sources at hand.

Parameters (:func:`replenishment_parameters`; ``None`` unless the fit is ``ok``):

| name | definition | unit |
|---|---|---|
| rBV | relative blood volume: the plateau enhancement ``A`` | a.u. |
| mTT | mean transit time ``1 / beta`` | s |
| rBF | relative blood flow ``rBV / mTT = A * beta`` (central volume principle) | a.u./s |
| PI | perfusion index ``rBV / mTT = A * beta`` | a.u./s |
| WiR | wash-in rate: maximum slope of the fitted curve, ``A * beta`` at ``t_flash`` | a.u./s |
| QOF | ``100 * (1 - SS_res / SS_tot)`` of the segment's measured TIC against y | % |

For this model rBF, PI and WiR coincide; they differ for S-shaped models.

Fitting follows the skeleton of :mod:`~DCEUSResponseLib.kinetics.base` that the bolus fit uses
(same noise estimate, same screen for curves without enhancement, same thresholds): the TIC is scaled by its robust maximum; a region whose
smoothed rise stays below 5 x the per-frame noise is ``no_enhancement`` before any fit; initial
values come from a variable-projection grid over ``beta`` (O and A solved by non-negative linear
least squares for every grid value); the best grid points start a bounded trust-region fit
(``scipy.optimize.least_squares``, analytic Jacobian); everything is deterministic. After the
fit: ``A`` below 5 x noise, QOF below 30 %, or a straight line explaining the segment about as
well (F below 20) give ``no_enhancement``; an optimiser failure, a rate at its upper bound (the
refill completes within the first frame after the flash) or a segment shorter than one mean
transit time (the plateau is not reached, so rBV and mTT would be extrapolated) give ``fit_failed``.

A clip with several flashes has one segment per flash (:func:`segments_after_flashes`); an ROI's
:class:`SegmentedFit` (:func:`fit_segmented`) holds one fit per segment and reports the means over
the segments that fitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from DCEUSResponseLib.catalogue import parameter_names
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.base import (
    MIN_DRIFT_F,
    N_STARTS,
    RISE_NOISE_FACTOR,
    STATUS_FIT_FAILED,
    STATUS_NO_ENHANCEMENT,
    STATUS_OK,
    CurveFit,
    CurveProblem,
    LeastSquares,
    Screen,
    drift_f,
    enhancement_failure,
    fit_scaled_curve,
    format_number,
    linear_amplitudes,
    polynomial_residual,
    validated_tic,
)

#: Replenishment models available to :func:`fit_replenishment`.
REPLENISHMENT_MODELS: tuple[str, ...] = ("monoexponential",)
#: Parameter names in the order they are reported (the catalogue's replenishment family).
REPLENISHMENT_PARAMETER_NAMES: tuple[str, ...] = parameter_names("replenishment")
#: Fewer usable frames than this in a segment gives ``fit_failed`` (3 parameters plus the noise).
MIN_USABLE_FRAMES = 6
#: The segment must last at least this many mean transit times (1: the fit reaches 63 % of A).
MIN_TIME_CONSTANTS = 1.0
#: Upper bound of beta: this many e-foldings within the first frame interval after the flash.
MAX_E_FOLDINGS_FIRST_FRAME = 10.0
#: Lower bound of beta: this many e-foldings over the whole segment (a straight line).
MIN_E_FOLDINGS_SEGMENT = 0.01
#: Number of beta values of the initial-value grid.
N_GRID_BETA = 48


@dataclass(frozen=True)
class Segment:
    """The frames replenishing after one flash.

    ``flash_frames``: the flash (consecutive flash frames form one flash); ``t_flash_s``: time of
    its last frame (s, on the clock of the times given), where the replenishment starts;
    ``frames``: indices of the frames to fit, from the frame after the flash up to the frame
    before the next flash, without the frames ``use`` excludes.
    """

    flash_frames: tuple[int, ...]
    t_flash_s: float
    frames: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.frames.size)


@dataclass
class ReplenishmentFit(CurveFit):
    """Outcome of :func:`fit_replenishment`.

    ``params``: ``O`` and ``A`` in a.u., ``beta`` in 1/s; empty unless ``status == "ok"``.
    ``status``: ``"ok"``, ``"no_enhancement"`` or ``"fit_failed"``, with ``reason`` (numbers
    included) when not ok. ``qof`` in % (None unless ok); ``noise``: per-frame noise in a.u.;
    ``t_flash_s``: where the replenishment starts (s).
    """

    t_flash_s: float = field(default=math.nan, kw_only=True)

    def curve(self, t: ArrayLike) -> np.ndarray:
        """Fitted y(t) in a.u. at times t (s); NaN at and before the flash and when not ok."""
        t = np.asarray(t, dtype=float)
        if not self.ok:
            return np.full(t.shape, np.nan)
        tau = t - self.t_flash_s
        with np.errstate(invalid="ignore"):
            values = self.params["O"] + self.params["A"] * -np.expm1(-self.params["beta"] * tau)
        return np.where(tau > 0, values, np.nan)


def segments_after_flashes(times_s: ArrayLike, flash_frames: Iterable[int],
                           use: np.ndarray | None = None) -> list[Segment]:
    """Split a clip into the replenishment segments that follow each flash.

    ``times_s``: frame times (s, increasing). ``flash_frames``: indices of the flash frames
    (any order; consecutive indices form one flash). ``use``: optional boolean mask of usable
    frames (e.g. from quality control); frames it excludes are left out of the segments.

    Each segment holds the frames after one flash up to the next flash, without the flash frames;
    frames before the first flash belong to no segment. Segments left without frames are dropped.
    Raises InputError (mentioning ``--flash-frames``) for no flash, an index that is not a frame
    of the clip, or flashes that leave no frame to fit (e.g. every frame listed, or only the last).
    """
    times = np.asarray(times_s, dtype=float)
    if times.ndim != 1 or times.size == 0:
        raise InputError(f"frame times must be a non-empty 1-D array, got shape {times.shape}")
    n_frames = times.size
    flashes = sorted(set(_frame_index(k, n_frames) for k in flash_frames))
    if not flashes:
        raise InputError("--flash-frames: no flash frame given")
    if use is None:
        usable = np.ones(n_frames, dtype=bool)
    else:
        usable = np.asarray(use, dtype=bool)
        if usable.shape != times.shape:
            raise InputError(f"frame selection has {usable.size} entries for {n_frames} frames")
    usable = usable & np.isfinite(times)

    bursts: list[list[int]] = []
    for index in flashes:
        if bursts and index == bursts[-1][-1] + 1:
            bursts[-1].append(index)
        else:
            bursts.append([index])
    segments = []
    for number, burst in enumerate(bursts):
        stop = bursts[number + 1][0] if number + 1 < len(bursts) else n_frames
        frames = np.arange(burst[-1] + 1, stop)
        frames = frames[usable[frames]]
        if frames.size:
            segments.append(Segment(tuple(burst), float(times[burst[-1]]), frames))
    if not segments:
        listed = ",".join(str(k) for k in flashes) if len(flashes) <= 8 else f"{len(flashes)} frames"
        raise InputError(f"--flash-frames {listed}: no usable frame is left after the flashes to fit a "
                         f"replenishment (the clip has frames 0..{n_frames - 1})")
    return segments


def _frame_index(value, n_frames: int) -> int:
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise InputError(f"--flash-frames: {value!r} is not a frame index") from None
    if index != value or isinstance(value, bool):
        raise InputError(f"--flash-frames: {value!r} is not a whole frame index")
    if not 0 <= index < n_frames:
        raise InputError(f"--flash-frames: frame {index} is outside the clip's frames 0..{n_frames - 1}")
    return index


def fit_replenishment(t_s: ArrayLike, tic: ArrayLike, t_flash_s: float, model: str = "monoexponential",
                      use: ArrayLike | None = None) -> ReplenishmentFit:
    """Fit a replenishment model to the TIC of one segment (see the module docstring).

    ``t_s``: frame times (s) of the segment, on the same clock as ``t_flash_s``, the time the
    replenishment starts (the last flash frame); frames at or before it are ignored. ``tic``: mean
    linear intensity per frame (a.u., any magnitude). ``use``: optional boolean mask of frames to
    fit. Returns a :class:`ReplenishmentFit`; never raises for bad data (NaN, flat, noisy).
    Raises InputError for misuse: an unknown model, arrays that are not 1-D or differ in length, a
    ``use`` mask of the wrong length, a non-finite ``t_flash_s``.
    """
    if model not in REPLENISHMENT_MODELS:
        raise InputError(f"unknown replenishment model {model!r}; available: {', '.join(REPLENISHMENT_MODELS)}")
    if not math.isfinite(t_flash_s):
        raise InputError(f"the flash time must be a finite number of seconds, got {t_flash_s!r}")
    times, values, selected = validated_tic(t_s, tic, use)
    with np.errstate(invalid="ignore"):
        usable = selected & np.isfinite(times) & np.isfinite(values) & (times > t_flash_s)
    n_used = int(usable.sum())
    result = ReplenishmentFit(model=model, status=STATUS_FIT_FAILED, t_flash_s=float(t_flash_s), n_frames_used=n_used)
    if n_used < MIN_USABLE_FRAMES:
        result.reason = (f"only {n_used} usable frames after the flash at {t_flash_s:.3g} s; "
                         f"at least {MIN_USABLE_FRAMES} are needed")
        return result
    order = np.argsort(times[usable], kind="stable")
    tau = times[usable][order] - t_flash_s
    y_au = values[usable][order]
    beta_low = MIN_E_FOLDINGS_SEGMENT / float(tau[-1])
    beta_high = MAX_E_FOLDINGS_FIRST_FRAME / float(tau[0])
    problem = CurveProblem(
        rise_reason=lambda rise, noise: (
            f"rise {format_number(rise)} a.u. of the smoothed TIC after the flash is below {RISE_NOISE_FACTOR:g} x "
            f"noise {format_number(noise)} a.u. (a refill completed within the first {tau[0]:.3g} s after the "
            "flash would look the same)"),
        least_squares=lambda screen: _exponential_least_squares(tau, screen, beta_low, beta_high),
        constant_reason_suffix=" after the flash")
    outcome = fit_scaled_curve(tau, y_au, result, problem)
    if outcome is None:
        return result
    screen, fitted = outcome
    reason = _replenishment_check(tau, screen, fitted, beta_high)
    if reason is not None:
        result.status, result.reason = reason
        return result
    offset, amplitude, beta = (float(v) for v in fitted.x)
    result.status = STATUS_OK
    result.params = {"O": offset * screen.scale, "A": amplitude * screen.scale, "beta": beta}
    result.qof = fitted.qof
    return result


def _exponential_least_squares(tau: np.ndarray, screen: Screen, beta_low: float,
                               beta_high: float) -> LeastSquares | str:
    """Grid starts over beta (O, A by variable projection) and bounds of (O, A, beta), scaled units."""
    y = screen.y
    beta_grid = np.geomspace(beta_low, beta_high, N_GRID_BETA)
    shapes = -np.expm1(-beta_grid[:, None] * tau[None, :])
    offsets, amplitudes, costs = linear_amplitudes(shapes, y)
    costs = np.where(amplitudes > 0, costs, np.inf)
    starts = [np.array([offsets[i], amplitudes[i], beta_grid[i]])
              for i in np.argsort(costs, kind="stable")[:N_STARTS] if np.isfinite(costs[i])]
    if not starts:
        return "no rising curve fits the TIC after the flash (best amplitude 0)"

    def residuals(x: np.ndarray) -> np.ndarray:
        return x[0] + x[1] * -np.expm1(-x[2] * tau) - y

    def jacobian(x: np.ndarray) -> np.ndarray:
        decay = np.exp(-x[2] * tau)
        return np.stack([np.ones_like(tau), 1.0 - decay, x[1] * tau * decay], axis=1)

    return LeastSquares(residuals, jacobian, starts, np.array([0.0, 0.0, beta_low]),
                        np.array([10.0, np.inf, beta_high]), tolerance=1e-10)


def _replenishment_check(tau: np.ndarray, screen: Screen, fitted, beta_high: float):
    """(status, reason) of a fitted replenishment that fails the enhancement or validity checks, else None."""
    amplitude, beta = float(fitted.x[1]), float(fitted.x[2])
    noise, scale = screen.noise, screen.scale
    reason = enhancement_failure(amplitude, fitted.qof, noise, scale, "replenished enhancement", "replenishment")
    if reason is not None:
        return STATUS_NO_ENHANCEMENT, reason
    if not fitted.converged:
        return STATUS_FIT_FAILED, "the optimiser did not converge" + (
            f": {fitted.messages[-1]}" if fitted.messages else "")
    duration = float(tau[-1])
    if beta >= beta_high * (1.0 - 1e-6):
        return STATUS_FIT_FAILED, (
            f"the replenishment completes within the first frame after the flash ({tau[0]:.3g} s): mTT below "
            f"{1.0 / beta_high:.2g} s cannot be measured at this frame rate")
    if beta * duration < MIN_TIME_CONSTANTS:
        return STATUS_FIT_FAILED, (
            f"the segment ({duration:.3g} s after the flash) is shorter than the fitted mean transit time "
            f"{1.0 / beta:.3g} s: the plateau is not reached, rBV and mTT would be extrapolated")
    f_line = drift_f(polynomial_residual(tau, screen.y, 1), fitted.ss_res, 1, tau.size - 3)
    if f_line < MIN_DRIFT_F:
        return STATUS_NO_ENHANCEMENT, (
            f"a straight line explains the TIC after the flash almost as well as a replenishment (F = {f_line:.3g} "
            f"< {MIN_DRIFT_F:g}; rise {format_number(screen.rise * scale)} a.u., noise {format_number(noise * scale)} a.u.)")
    return None


def fit_segments(times_s: ArrayLike, tic: ArrayLike, segments: Sequence[Segment],
                 model: str = "monoexponential") -> list[ReplenishmentFit]:
    """One :func:`fit_replenishment` per segment of :func:`segments_after_flashes` (same order).

    ``times_s`` and ``tic`` cover the whole clip (frame times in s, linear intensity in a.u.).
    """
    times = np.asarray(times_s, dtype=float)
    values = np.asarray(tic, dtype=float)
    if times.shape != values.shape or times.ndim != 1:
        raise InputError(f"frame times and TIC must be 1-D arrays of one length, got {times.shape} and {values.shape}")
    return [fit_replenishment(times[segment.frames], values[segment.frames], segment.t_flash_s, model)
            for segment in segments]


def replenishment_parameters(fit: ReplenishmentFit) -> dict[str, float | None]:
    """The :data:`REPLENISHMENT_PARAMETER_NAMES` of a fitted replenishment (mono-exponential).

    With ``y(t) = O + A (1 - exp(-beta (t - t_flash)))``:

    - ``rBV`` = A, relative blood volume: the plateau enhancement above the post-flash level (a.u.);
    - ``mTT`` = 1 / beta, mean transit time (s);
    - ``rBF`` = rBV / mTT = A * beta, relative blood flow (a.u./s; central volume principle);
    - ``PI`` = rBV / mTT = A * beta, perfusion index (a.u./s; the flow-type index);
    - ``WiR`` = A * beta, wash-in rate: the maximum slope dy/dt, reached just after the flash (a.u./s);
    - ``QOF`` = 100 * (1 - SS_res / SS_tot) of the fit over the segment's frames (%).

    Every value is None unless ``fit.status == "ok"`` (and for non-finite results).
    """
    values: dict[str, float | None] = {name: None for name in REPLENISHMENT_PARAMETER_NAMES}
    if not fit.ok:
        return values
    amplitude, beta = float(fit.params["A"]), float(fit.params["beta"])
    flow = amplitude * beta
    values.update(rBV=amplitude, mTT=1.0 / beta if beta > 0 else None, rBF=flow, PI=flow, WiR=flow, QOF=fit.qof)
    return {name: (value if value is not None and math.isfinite(value) else None) for name, value in values.items()}


@dataclass
class SegmentedFit:
    """Replenishment fits of one ROI, one per post-flash segment, seen as one fit (the ``Fit`` protocol
    of :mod:`~DCEUSResponseLib.kinetics.base`).

    ``status`` is "ok" when at least one segment fitted (``reason`` then says how many, when not
    all did), else the first segment's status and reason; ``params`` and ``qof`` are the means over
    the fitted segments; ``segments`` hold each segment's fit, ``segment_frames`` its :class:`Segment`.
    """

    model: str
    status: str
    reason: str | None
    params: dict[str, float]
    qof: float | None
    n_frames_used: int
    segments: list[ReplenishmentFit]
    segment_frames: list[Segment]

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def curve(self, t: ArrayLike) -> np.ndarray:
        """The fitted replenishment of every segment, each from its flash to the next (NaN elsewhere)."""
        t = np.asarray(t, dtype=float)
        out = np.full(t.shape, np.nan)
        for index, fit in enumerate(self.segments):
            end = self.segments[index + 1].t_flash_s if index + 1 < len(self.segments) else np.inf
            inside = (t > fit.t_flash_s) & (t < end)
            out[inside] = fit.curve(t[inside])
        return out


def fit_segmented(times_s: ArrayLike, tic: ArrayLike, segments: Sequence[Segment], name: str,
                  model: str = "monoexponential") -> SegmentedFit:
    """One :func:`fit_replenishment` per segment of a whole clip's TIC, as one :class:`SegmentedFit`
    whose ``model`` is ``name`` (the model as the user chose it)."""
    fits = fit_segments(times_s, tic, segments, model)
    fitted = [f for f in fits if f.ok]
    if fitted:
        status, reason = STATUS_OK, None
        if len(fitted) < len(fits):
            reason = f"{len(fitted)} of {len(fits)} segments fitted"
        params = {key: float(np.mean([f.params[key] for f in fitted])) for key in fitted[0].params}
        qof = float(np.mean([f.qof for f in fitted]))
    else:
        status, reason, params, qof = fits[0].status, fits[0].reason, {}, None
    return SegmentedFit(name, status, reason, params, qof, sum(f.n_frames_used for f in fits), fits,
                        list(segments))


def segmented_parameters(fit: SegmentedFit) -> dict[str, float | None]:
    """Mean of each :data:`REPLENISHMENT_PARAMETER_NAMES` over the segments where it is defined
    (None where none is)."""
    per_segment = [replenishment_parameters(f) for f in fit.segments]
    out = {}
    for key in REPLENISHMENT_PARAMETER_NAMES:
        values = [p[key] for p in per_segment if p.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
