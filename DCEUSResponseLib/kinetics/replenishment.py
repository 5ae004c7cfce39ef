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
:mod:`~DCEUSResponseLib.linearize`), and describes the refill as a first-order exchange: it ignores
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

Fitting mirrors :mod:`~DCEUSResponseLib.fitting` (same noise estimate, same screen for curves
without enhancement, same thresholds): the TIC is scaled by its robust maximum; a region whose
smoothed rise stays below 5 x the per-frame noise is ``no_enhancement`` before any fit; initial
values come from a variable-projection grid over ``beta`` (O and A solved by non-negative linear
least squares for every grid value); the best grid points start a bounded trust-region fit
(``scipy.optimize.least_squares``, analytic Jacobian); everything is deterministic. After the
fit: ``A`` below 5 x noise, QOF below 30 %, or a straight line explaining the segment about as
well (F below 20) give ``no_enhancement``; an optimiser failure, a rate at its upper bound (the
refill completes within the first frame after the flash) or a segment shorter than one mean
transit time (the plateau is not reached, so rBV and mTT would be extrapolated) give ``fit_failed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy import optimize

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.bolus import (
    MAX_FUNCTION_EVALUATIONS,
    MIN_DRIFT_F,
    MIN_QOF_PERCENT,
    N_STARTS,
    PEAK_NOISE_FACTOR,
    RISE_NOISE_FACTOR,
    _format,
    _linear_amplitudes,
    scale_and_screen,
)

#: Replenishment models available to :func:`fit_replenishment`.
REPLENISHMENT_MODELS: tuple[str, ...] = ("monoexponential",)
#: Parameter names in the order they are reported.
REPLENISHMENT_PARAMETER_NAMES: tuple[str, ...] = ("rBV", "mTT", "rBF", "PI", "WiR", "QOF")
#: Units of each parameter.
REPLENISHMENT_PARAMETER_UNITS: dict[str, str] = {
    "rBV": "a.u.", "mTT": "s", "rBF": "a.u./s", "PI": "a.u./s", "WiR": "a.u./s", "QOF": "%",
}
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
class ReplenishmentFit:
    """Outcome of :func:`fit_replenishment`.

    ``params``: ``O`` and ``A`` in a.u., ``beta`` in 1/s; empty unless ``status == "ok"``.
    ``status``: ``"ok"``, ``"no_enhancement"`` or ``"fit_failed"``, with ``reason`` (numbers
    included) when not ok. ``qof`` in % (None unless ok); ``noise``: per-frame noise in a.u.;
    ``t_flash_s``: where the replenishment starts (s).
    """

    model: str
    status: str
    t_flash_s: float
    reason: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    qof: float | None = None
    n_frames_used: int = 0
    noise: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def curve(self, t) -> np.ndarray:
        """Fitted y(t) in a.u. at times t (s); NaN at and before the flash and when not ok."""
        t = np.asarray(t, dtype=float)
        if not self.ok:
            return np.full(t.shape, np.nan)
        tau = t - self.t_flash_s
        with np.errstate(invalid="ignore"):
            values = self.params["O"] + self.params["A"] * -np.expm1(-self.params["beta"] * tau)
        return np.where(tau > 0, values, np.nan)


def segments_after_flashes(times_s, flash_frames: Iterable[int], use: np.ndarray | None = None) -> list[Segment]:
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


def fit_replenishment(t_s, tic, t_flash_s: float, model: str = "monoexponential", use=None) -> ReplenishmentFit:
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
    times = np.asarray(t_s, dtype=float)
    values = np.asarray(tic, dtype=float)
    if times.ndim != 1 or values.ndim != 1:
        raise InputError(f"frame times and TIC must be 1-D arrays, got shapes {times.shape} and {values.shape}")
    if times.size != values.size:
        raise InputError(f"{times.size} frame times but {values.size} TIC values")
    if not math.isfinite(t_flash_s):
        raise InputError(f"the flash time must be a finite number of seconds, got {t_flash_s!r}")
    if use is None:
        selected = np.ones(times.size, dtype=bool)
    else:
        selected = np.asarray(use, dtype=bool)
        if selected.shape != times.shape:
            raise InputError(f"frame selection has {selected.size} entries for {times.size} frames")
    with np.errstate(invalid="ignore"):
        usable = selected & np.isfinite(times) & np.isfinite(values) & (times > t_flash_s)
    n_used = int(usable.sum())
    result = ReplenishmentFit(model=model, status="fit_failed", t_flash_s=float(t_flash_s), n_frames_used=n_used)
    if n_used < MIN_USABLE_FRAMES:
        result.reason = (f"only {n_used} usable frames after the flash at {t_flash_s:.3g} s; "
                         f"at least {MIN_USABLE_FRAMES} are needed")
        return result
    order = np.argsort(times[usable], kind="stable")
    tau = times[usable][order] - t_flash_s
    y_au = values[usable][order]
    if np.ptp(y_au) == 0:
        result.status = "no_enhancement"
        result.noise = 0.0
        result.reason = f"TIC is constant at {_format(float(y_au[0]))} a.u. after the flash"
        return result

    # -- scale and screen (as fitting.fit_bolus) ------------------------------------------------------
    duration = float(tau[-1])
    scale, y, smoothed, noise, i_peak, rise = scale_and_screen(tau, y_au)[:6]
    result.noise = noise * scale
    if rise < RISE_NOISE_FACTOR * noise:
        result.status = "no_enhancement"
        result.reason = (f"rise {_format(rise * scale)} a.u. of the smoothed TIC after the flash is below "
                         f"{RISE_NOISE_FACTOR:g} x noise {_format(noise * scale)} a.u. (a refill completed within "
                         f"the first {tau[0]:.3g} s after the flash would look the same)")
        return result

    # -- initial values by variable projection, then bounded local fits ------------------------------
    beta_low = MIN_E_FOLDINGS_SEGMENT / duration
    beta_high = MAX_E_FOLDINGS_FIRST_FRAME / float(tau[0])
    beta_grid = np.geomspace(beta_low, beta_high, N_GRID_BETA)
    shapes = -np.expm1(-beta_grid[:, None] * tau[None, :])
    offsets, amplitudes, costs = _linear_amplitudes(shapes, y)
    costs = np.where(amplitudes > 0, costs, np.inf)
    starts = [np.array([offsets[i], amplitudes[i], beta_grid[i]])
              for i in np.argsort(costs, kind="stable")[:N_STARTS] if np.isfinite(costs[i])]
    if not starts:
        result.status = "no_enhancement"
        result.reason = "no rising curve fits the TIC after the flash (best amplitude 0)"
        return result
    lower = np.array([0.0, 0.0, beta_low])
    upper = np.array([10.0, np.inf, beta_high])

    def residuals(x: np.ndarray) -> np.ndarray:
        return x[0] + x[1] * -np.expm1(-x[2] * tau) - y

    def jacobian(x: np.ndarray) -> np.ndarray:
        decay = np.exp(-x[2] * tau)
        return np.stack([np.ones_like(tau), 1.0 - decay, x[1] * tau * decay], axis=1)

    best, best_converged, messages = None, False, []
    for start in starts:
        try:
            solution = optimize.least_squares(
                residuals, np.clip(start, lower, upper), jac=jacobian, bounds=(lower, upper), method="trf",
                x_scale="jac", ftol=1e-10, xtol=1e-10, gtol=1e-10, max_nfev=MAX_FUNCTION_EVALUATIONS)
        except (ValueError, np.linalg.LinAlgError) as error:  # pragma: no cover - defensive
            messages.append(str(error))
            continue
        if not np.all(np.isfinite(solution.x)) or not np.isfinite(solution.cost):
            messages.append(solution.message)
            continue
        if solution.status <= 0:
            messages.append(solution.message)
        if best is None or solution.cost < best.cost:
            best, best_converged = solution, solution.status > 0
    if best is None:
        result.reason = "the optimiser found no finite solution" + (f": {messages[0]}" if messages else "")
        return result

    offset, amplitude, beta = (float(v) for v in best.x)
    residual = residuals(best.x)
    ss_res = float(residual @ residual)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    qof = 100.0 * (1.0 - ss_res / ss_tot)

    # -- enhancement checks --------------------------------------------------------------------------
    if amplitude < PEAK_NOISE_FACTOR * noise:
        result.status = "no_enhancement"
        result.reason = (f"fitted replenished enhancement {_format(amplitude * scale)} a.u. is below "
                         f"{PEAK_NOISE_FACTOR:g} x noise {_format(noise * scale)} a.u.")
        return result
    if qof < MIN_QOF_PERCENT:
        result.status = "no_enhancement"
        result.reason = (f"the replenishment fit explains only {qof:.1f} % of the TIC variance "
                         f"(minimum {MIN_QOF_PERCENT:g} %)")
        return result

    # -- validity checks --------------------------------------------------------------------------------
    if not best_converged:
        result.reason = "the optimiser did not converge" + (f": {messages[-1]}" if messages else "")
        return result
    if beta >= beta_high * (1.0 - 1e-6):
        result.reason = (f"the replenishment completes within the first frame after the flash "
                         f"({tau[0]:.3g} s): mTT below {1.0 / beta_high:.2g} s cannot be measured at this frame rate")
        return result
    if beta * duration < MIN_TIME_CONSTANTS:
        result.reason = (f"the segment ({duration:.3g} s after the flash) is shorter than the fitted mean "
                         f"transit time {1.0 / beta:.3g} s: the plateau is not reached, rBV and mTT would be "
                         "extrapolated")
        return result
    ss_line = _line_residual(tau, y)
    degrees_of_freedom = n_used - 3
    f_line = ((ss_line - ss_res) / 1.0) / (ss_res / degrees_of_freedom) if ss_res > 0 else math.inf
    if f_line < MIN_DRIFT_F:
        result.status = "no_enhancement"
        result.reason = (f"a straight line explains the TIC after the flash almost as well as a replenishment "
                         f"(F = {f_line:.3g} < {MIN_DRIFT_F:g}; rise {_format(rise * scale)} a.u., "
                         f"noise {_format(noise * scale)} a.u.)")
        return result

    result.status = "ok"
    result.params = {"O": offset * scale, "A": amplitude * scale, "beta": beta}
    result.qof = qof
    return result


def _line_residual(t: np.ndarray, y: np.ndarray) -> float:
    """Sum of squared residuals of the least-squares straight line in t."""
    design = np.stack([np.ones_like(t), (t - t.mean()) / max(float(np.ptp(t)), 1e-12)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return float(residual @ residual)


def fit_segments(times_s, tic, segments: Sequence[Segment],
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
