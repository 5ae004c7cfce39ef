"""Fitting a bolus model to a measured time-intensity curve (TIC).

:func:`fit_bolus` fits ``f(t) = O + A * shape(t - t0; p1, p2)`` (see :mod:`DCEUSResponseLib.kinetics.models`)
to the mean linear intensity of a region, frame by frame, and decides whether the region enhances
at all. It never raises for bad data; the outcome is a :class:`BolusFit` whose ``status`` is

- ``"ok"``: a meaningful bolus was fitted;
- ``"no_enhancement"``: the TIC is baseline plus noise (and possibly a slow drift), e.g. a
  necrotic lesion; ``reason`` gives the numbers behind the decision;
- ``"fit_failed"``: there is signal but no trustworthy fit (too few usable frames, the optimiser
  failed, the fitted peak lies outside the clip, or the shape ran into a degenerate bound).

Strategy
--------
1. Frames not selected by ``use`` and frames with a non-finite time or intensity are left out of
   everything (fit, noise estimate, QOF). The TIC is divided by its robust maximum (the maximum of
   its moving average) so that intensities anywhere from 1e-6 to 1 a.u. fit alike; parameters are
   scaled back at the end.
2. Enhancement screen (before fitting, so noise is never fitted): the per-frame noise is
   ``1.4826 * MAD(first differences) / sqrt(2)``; the TIC is smoothed by a centred moving average of
   :data:`SMOOTHING_FRACTION` of the frames (at least 3 frames, at most :data:`SMOOTHING_MAX_S`
   seconds), which lowers the noise by sqrt(width), so that pure noise rarely rises by more than
   ~3 noise units. The rise is the smoothed maximum minus the lowest smoothed value before it (the
   pre-arrival baseline). A rise below :data:`RISE_NOISE_FACTOR` (5) x noise is ``no_enhancement``.
3. Initial values by variable projection: on a grid of the three nonlinear parameters (t0, the time
   to peak after t0 spread around the smoothed peak, and the model's skewness parameter), O and A
   are solved in closed form by linear least squares for all grid points at once (O >= 0, A >= 0);
   the best few grid points start a bounded trust-region fit of all five parameters
   (``scipy.optimize.least_squares``, method "trf", analytic Jacobian); the lowest cost wins.
   Everything is deterministic.
4. Enhancement checks after the fit, each giving ``no_enhancement``: fitted PE below
   :data:`PEAK_NOISE_FACTOR` (5) x noise; QOF below :data:`MIN_QOF_PERCENT` (30 %); and the bolus
   not explaining the curve clearly better than a slow drift, i.e. a quadratic polynomial in time:
   ``F = ((SS_quadratic - SS_bolus) / 2) / (SS_bolus / (n - 5))`` below :data:`MIN_DRIFT_F` (20).
   The drift test is what rejects a drifting baseline whose rise passes the screen of step 2. Last, a
   bolus lasting (TO - TI) less than :data:`MIN_BOLUS_FRAME_INTERVALS` (2) median frame intervals or
   :data:`MIN_BOLUS_DURATION_S` (3 s) is a spike between frames (one bright frame fits a bolus that
   rises and falls between two samples, with a huge PE and a high QOF), not a bolus.
5. Validity checks, giving ``fit_failed``: fitted peak time outside the used frames' time span, or
   a shape parameter at a bound that means a degenerate curve (lognormal sigma at its maximum, the
   LDRW/FPT lambda at its minimum, a time scale at its maximum, ...).

The steps shared with the replenishment fit (validation, screen, grid amplitudes, multi-start least
squares, QOF, the enhancement checks) are :mod:`DCEUSResponseLib.kinetics.base`'s skeleton; the
thresholds are defined there.

The noise estimate assumes noise that is roughly independent from frame to frame; strongly
correlated noise (e.g. very high frame rates without averaging) is underestimated, which the drift
test and the QOF threshold partly compensate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from DCEUSResponseLib.kinetics.base import (
    MAX_FUNCTION_EVALUATIONS,
    MIN_DRIFT_F,
    MIN_QOF_PERCENT,
    N_STARTS,
    PEAK_NOISE_FACTOR,
    RISE_NOISE_FACTOR,
    SMOOTHING_FRACTION,
    SMOOTHING_MAX_S,
    SMOOTHING_MIN_FRAMES,
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
    robust_noise,
    validated_tic,
)
from DCEUSResponseLib.kinetics.models import DEFAULT_MODEL, BolusModel, get_model
from DCEUSResponseLib.kinetics.parameters import bolus_parameters, fitted_gaps

__all__ = [
    "BolusFit", "fit_bolus", "shape_bounds", "GRID_SKEW", "robust_noise", "MIN_INPUT_FRAMES", "MIN_USABLE_FRAMES",
    "RISE_NOISE_FACTOR", "PEAK_NOISE_FACTOR", "MIN_QOF_PERCENT", "MIN_DRIFT_F", "SMOOTHING_FRACTION",
    "MIN_BOLUS_FRAME_INTERVALS", "MIN_BOLUS_DURATION_S", "shortest_bolus_s",
    "SMOOTHING_MAX_S", "SMOOTHING_MIN_FRAMES", "GRID_MAX_SAMPLES", "N_STARTS", "MAX_FUNCTION_EVALUATIONS",
]

#: Fewer frames than this in the input is a programming error (InputError).
MIN_INPUT_FRAMES = 5
#: Fewer usable (selected and finite) frames than this gives ``fit_failed``.
MIN_USABLE_FRAMES = 8
#: A fitted bolus that rises and falls (TI to TO, the tangents' crossings) within fewer than this many
#: median frame intervals, or within :data:`MIN_BOLUS_DURATION_S`, is a spike between frames (one to
#: three bright frames, a speckle flare): ``no_enhancement``. A microbubble bolus lasts tens of seconds
#: and even a steep arterial one more than 5 s from TI to TO; spikes of 1-3 frames fit 0.1-2 s. The rise
#: time alone would not do: a steep bolus at 1 Hz rises within two frames.
MIN_BOLUS_FRAME_INTERVALS = 2.0
MIN_BOLUS_DURATION_S = 3.0


def shortest_bolus_s(frame_interval_s: float) -> float:
    """The shortest TI-to-TO duration (s) of a bolus sampled every ``frame_interval_s`` seconds: a
    shorter one is a spike between frames (:data:`MIN_BOLUS_FRAME_INTERVALS`, :data:`MIN_BOLUS_DURATION_S`)."""
    return max(MIN_BOLUS_DURATION_S, MIN_BOLUS_FRAME_INTERVALS * frame_interval_s)
#: The initial-value grid works on at most this many (bin-averaged) samples.
GRID_MAX_SAMPLES = 240

# Initial-value grid: the arrival times, the time-to-peak factors around the smoothed peak, and
# each model's skewness parameter (sigma, alpha, lambda) at values typical of first-pass boluses.
_N_GRID_T0 = 24
_GRID_PEAK_FACTORS = np.geomspace(0.6, 1.6, 7)
GRID_SKEW = {
    "lognormal": np.geomspace(0.15, 1.6, 8),
    "gamma": np.geomspace(1.2, 40.0, 8),
    "ldrw": np.geomspace(0.3, 60.0, 8),
    "fpt": np.geomspace(0.3, 60.0, 8),
}


@dataclass(frozen=True)
class _ShapeBounds:
    """Bounds of (p1, p2) for a clip spanning ``span`` seconds, and which bounds are degenerate."""

    lower: tuple[float, float]
    upper: tuple[float, float]
    # (index 0/1 of the shape parameter, "lower"|"upper") pairs at which the curve is meaningless
    degenerate: tuple[tuple[int, str], ...]


def shape_bounds(model_name: str, span: float) -> _ShapeBounds:
    # Gaussian-like limits (sigma -> 0, alpha -> inf, lambda -> inf) still describe the data well,
    # so only the extreme-skew and extreme-scale ends count as degenerate.
    long_time = 20.0 * span + 10.0
    if model_name == "lognormal":
        return _ShapeBounds((math.log(0.05), 0.02), (math.log(long_time), 2.5),
                            ((0, "lower"), (0, "upper"), (1, "upper")))
    if model_name == "gamma":
        return _ShapeBounds((1.0, 1e-4), (1000.0, long_time), ((1, "upper"),))
    # LDRW and FPT: mu (s), lambda
    return _ShapeBounds((0.05, 0.05), (long_time, 1e4), ((0, "lower"), (0, "upper"), (1, "lower")))


@dataclass
class BolusFit(CurveFit):
    """Outcome of :func:`fit_bolus`.

    ``params`` maps the model's parameter names (O and A in a.u. and a.u. * s, t0 in s, shape
    parameters in the model's units) to values, and is empty unless ``status == "ok"``. ``qof`` is
    100 * (1 - SS_res / SS_tot) in % over the used frames, None unless ok. ``noise`` is the robust
    per-frame noise estimate in a.u. (None when it could not be estimated). ``reason`` explains a
    status other than "ok" with numbers.
    """

    def curve(self, t: ArrayLike) -> np.ndarray:
        """Fitted f(t) in a.u. at times t (s); all NaN when the fit is not ok."""
        t = np.asarray(t, dtype=float)
        if not self.ok:
            return np.full(t.shape, np.nan)
        return get_model(self.model).curve(t, self.params)

    def enhancement(self, t: ArrayLike) -> np.ndarray:
        """Fitted e(t) = f(t) - O in a.u. at times t (s); all NaN when the fit is not ok."""
        t = np.asarray(t, dtype=float)
        if not self.ok:
            return np.full(t.shape, np.nan)
        return get_model(self.model).enhancement(t, self.params)


def _bin_average(t: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of t and y over ``n_bins`` consecutive, nearly equal groups of samples."""
    if t.size <= n_bins:
        return t, y
    edges = np.linspace(0, t.size, n_bins + 1).round().astype(int)
    counts = np.diff(edges)
    return np.add.reduceat(t, edges[:-1]) / counts, np.add.reduceat(y, edges[:-1]) / counts


def _grid_starts(model: BolusModel, t: np.ndarray, y: np.ndarray, t_peak: float, t0_low: float,
                 t0_high: float, n_starts: int) -> list[np.ndarray]:
    """The ``n_starts`` best (O, A, t0, p1, p2) of the variable-projection grid (scaled units)."""
    skews = GRID_SKEW.get(model.name, GRID_SKEW["lognormal"])
    t0_grid = np.linspace(t0_low, t0_high, _N_GRID_T0)
    arrival, factor, skew = (grid.ravel() for grid in
                             np.meshgrid(t0_grid, _GRID_PEAK_FACTORS, skews, indexing="ij"))
    tau_peak = (t_peak - arrival) * factor
    p1, p2 = model.shape_params_for_peak(tau_peak, skew)
    p1 = np.broadcast_to(p1, arrival.shape)
    p2 = np.broadcast_to(p2, arrival.shape)
    shapes = model.shape(t[None, :] - arrival[:, None], p1[:, None], p2[:, None])
    offset, amplitude, cost = linear_amplitudes(shapes, y)
    cost = np.where(amplitude > 0, cost, np.inf)
    order = np.argsort(cost, kind="stable")[:n_starts]
    return [np.array([offset[i], amplitude[i], arrival[i], p1[i], p2[i]]) for i in order if np.isfinite(cost[i])]



def fit_bolus(t_s: ArrayLike, tic: ArrayLike, model: str | BolusModel = DEFAULT_MODEL,
              use: ArrayLike | None = None) -> BolusFit:
    """Fit a bolus model to a TIC and decide whether it enhances; see the module docstring.

    ``t_s``: frame times in seconds relative to the injection (may start negative, need not be
    regular). ``tic``: measured mean linear intensity per frame (a.u., positive; any magnitude).
    ``model``: name in :data:`~DCEUSResponseLib.kinetics.models.BOLUS_MODELS` or a model. ``use``: optional
    boolean mask of frames to fit; other frames are kept out of the fit, the noise estimate and QOF.

    Returns a :class:`BolusFit`; never raises for bad data (NaN, constant or noise-only TICs).
    Raises InputError for misuse: an unknown model, arrays that are not 1-D or differ in length,
    fewer than 5 frames, or a ``use`` mask of the wrong length.
    """
    bolus_model = get_model(model)
    times, values, selected = validated_tic(t_s, tic, use, MIN_INPUT_FRAMES)
    usable = selected & np.isfinite(times) & np.isfinite(values)
    n_used = int(usable.sum())
    result = BolusFit(model=bolus_model.name, status=STATUS_FIT_FAILED, n_frames_used=n_used)
    if n_used < MIN_USABLE_FRAMES:
        result.reason = (f"only {n_used} usable frames (selected, finite time and intensity); "
                         f"at least {MIN_USABLE_FRAMES} are needed")
        return result
    order = np.argsort(times[usable], kind="stable")
    t = times[usable][order]
    y_au = values[usable][order]
    span = float(t[-1] - t[0])
    result.fitted_span_s = (float(t[0]), float(t[-1]))
    result.fitted_gaps_s = fitted_gaps(t)
    if not span > 0:
        result.reason = "the used frames all have the same time"
        return result

    bounds_shape = shape_bounds(bolus_model.name, span)
    problem = CurveProblem(
        rise_reason=lambda rise, noise: (f"peak rise {format_number(rise)} a.u. of the smoothed TIC above its "
                                         f"baseline is below {RISE_NOISE_FACTOR:g} x noise {format_number(noise)} a.u."),
        least_squares=lambda screen: _bolus_least_squares(bolus_model, t, screen, span, bounds_shape))
    outcome = fit_scaled_curve(t, y_au, result, problem)
    if outcome is None:
        return result
    screen, fitted = outcome
    reason = _bolus_check(bolus_model, t, screen, fitted, bounds_shape)
    if reason is not None:
        result.status, result.reason = reason
        return result
    params = dict(zip(bolus_model.parameter_names, (float(v) for v in fitted.x)))
    params["O"] *= screen.scale
    params["A"] *= screen.scale
    result.status = STATUS_OK
    result.params = params
    result.qof = fitted.qof
    return result


def _bolus_least_squares(model: BolusModel, t: np.ndarray, screen: Screen, span: float,
                         bounds_shape: _ShapeBounds) -> LeastSquares:
    """Bounds and grid starts of the five-parameter fit (scaled units), around the smoothed peak."""
    # Smoothed sample i_peak is centred on frame i_peak + (width - 1)/2.
    t_peak = float(np.interp(screen.i_peak + 0.5 * (screen.width - 1), np.arange(t.size), t))
    step = max(screen.frame_interval, 1e-3 * span)
    t0_low = min(t[0] - 0.2 * span, t_peak - 2.0 * step)
    t0_high = t_peak - step
    lower = np.array([0.0, 0.0, t[0] - span, *bounds_shape.lower])
    upper = np.array([10.0, np.inf, t[-1] - step, *bounds_shape.upper])
    t_grid, y_grid = _bin_average(t, screen.y, GRID_MAX_SAMPLES)
    starts = _grid_starts(model, t_grid, y_grid, t_peak, t0_low, t0_high, N_STARTS)
    y = screen.y
    return LeastSquares(residuals=lambda x: model.curve(t, x) - y, jacobian=lambda x: model.jacobian(t, x),
                        starts=starts, lower=lower, upper=upper, tolerance=1e-8)


def _bolus_check(model: BolusModel, t: np.ndarray, screen: Screen, fitted, bounds_shape: _ShapeBounds):
    """(status, reason) of a fitted bolus that fails the enhancement or validity checks, else None."""
    x = fitted.x
    _, area, t0, p1, p2 = x
    tau_peak = model.shape_peak(p1, p2)
    peak = area * float(model.shape(tau_peak, p1, p2))
    noise, scale = screen.noise, screen.scale
    reason = enhancement_failure(peak, fitted.qof, noise, scale, "peak enhancement", "bolus")
    if reason is not None:
        return STATUS_NO_ENHANCEMENT, reason
    f_drift = drift_f(polynomial_residual(t, screen.y, 2), fitted.ss_res, 2, t.size - 5)
    if f_drift < MIN_DRIFT_F:
        return STATUS_NO_ENHANCEMENT, (
            f"a slow quadratic drift explains the TIC almost as well as a bolus (F = {f_drift:.3g} < "
            f"{MIN_DRIFT_F:g}; rise {format_number(screen.rise * scale)} a.u., noise {format_number(noise * scale)} a.u.)")
    shortest = shortest_bolus_s(screen.frame_interval)
    landmarks = bolus_parameters(model, x, None)
    if landmarks["TI"] is not None and landmarks["TO"] is not None and landmarks["TO"] - landmarks["TI"] < shortest:
        return STATUS_NO_ENHANCEMENT, (
            f"the fitted bolus rises and falls within {landmarks['TO'] - landmarks['TI']:.3g} s (TI to TO; RT "
            f"{landmarks['RT']:.3g} s), less than {shortest:.3g} s ({MIN_BOLUS_FRAME_INTERVALS:g} frame intervals, "
            f"at least {MIN_BOLUS_DURATION_S:g} s): a spike between frames, not a bolus")
    if not fitted.converged:
        return STATUS_FIT_FAILED, "the optimiser did not converge" + (
            f": {fitted.messages[-1]}" if fitted.messages else "")
    time_to_peak = t0 + tau_peak
    if not t[0] <= time_to_peak <= t[-1]:
        return STATUS_FIT_FAILED, (f"fitted peak at {time_to_peak:.3g} s lies outside the frames "
                                   f"({t[0]:.3g} s to {t[-1]:.3g} s)")
    names = model.shape_parameter_names
    for index, side in bounds_shape.degenerate:
        value = x[3 + index]
        bound = (bounds_shape.lower if side == "lower" else bounds_shape.upper)[index]
        tolerance = 1e-4 * (bounds_shape.upper[index] - bounds_shape.lower[index])
        if abs(value - bound) <= tolerance:
            return STATUS_FIT_FAILED, (f"{names[index]} = {value:.4g} sits at its {side} bound {bound:.4g}; "
                                       "the fitted curve is degenerate")
    return None
