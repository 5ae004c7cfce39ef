"""Fitting a bolus model to a measured time-intensity curve (TIC).

:func:`fit_bolus` fits ``f(t) = O + A * shape(t - t0; p1, p2)`` (see :mod:`DCEUSResponseLib.models`)
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
   The last test is what rejects a drifting baseline whose rise passes the screen of step 2.
5. Validity checks, giving ``fit_failed``: fitted peak time outside the used frames' time span, or
   a shape parameter at a bound that means a degenerate curve (lognormal sigma at its maximum, the
   LDRW/FPT lambda at its minimum, a time scale at its maximum, ...).

The noise estimate assumes noise that is roughly independent from frame to frame; strongly
correlated noise (e.g. very high frame rates without averaging) is underestimated, which the drift
test and the QOF threshold partly compensate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.models import DEFAULT_MODEL, BolusModel, get_model

#: Fewer frames than this in the input is a programming error (InputError).
MIN_INPUT_FRAMES = 5
#: Fewer usable (selected and finite) frames than this gives ``fit_failed``.
MIN_USABLE_FRAMES = 8
#: Pre-fit screen: the smoothed rise must reach this many per-frame noise units.
RISE_NOISE_FACTOR = 5.0
#: Post-fit: the fitted peak enhancement must reach this many per-frame noise units.
PEAK_NOISE_FACTOR = 5.0
#: Post-fit: the fit must explain at least this share of the TIC's variance (%).
MIN_QOF_PERCENT = 30.0
#: Post-fit: minimum F statistic of the bolus fit against a quadratic drift (2 extra parameters).
MIN_DRIFT_F = 20.0
#: Width of the moving average of the enhancement screen, as a fraction of the used frames ...
SMOOTHING_FRACTION = 1.0 / 30.0
#: ... but never wider than this many seconds (keeps short boluses from being flattened) ...
SMOOTHING_MAX_S = 4.0
#: ... nor narrower than this many frames.
SMOOTHING_MIN_FRAMES = 3
#: The initial-value grid works on at most this many (bin-averaged) samples.
GRID_MAX_SAMPLES = 240
#: Number of best grid points that start a local fit.
N_STARTS = 3
#: Residual evaluations allowed to each local fit.
MAX_FUNCTION_EVALUATIONS = 400

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
class BolusFit:
    """Outcome of :func:`fit_bolus`.

    ``params`` maps the model's parameter names (O and A in a.u. and a.u. * s, t0 in s, shape
    parameters in the model's units) to values, and is empty unless ``status == "ok"``. ``qof`` is
    100 * (1 - SS_res / SS_tot) in % over the used frames, None unless ok. ``noise`` is the robust
    per-frame noise estimate in a.u. (None when it could not be estimated). ``reason`` explains a
    status other than "ok" with numbers.
    """

    model: str
    status: str
    reason: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    qof: float | None = None
    n_frames_used: int = 0
    noise: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

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


def _format(value: float) -> str:
    return f"{value:.2g}"


def robust_noise(values: ArrayLike) -> float:
    """Per-frame noise standard deviation of a series: 1.4826 * MAD(first differences) / sqrt(2).

    Differences remove the slowly varying signal; the MAD ignores the few steep frames of a bolus.
    Falls back to the RMS of the differences when more than half of them are equal (quantised
    data), and returns 0 only for a constant series. Same units as ``values``.
    """
    differences = np.diff(np.asarray(values, dtype=float))
    if differences.size == 0:
        return 0.0
    mad = np.median(np.abs(differences - np.median(differences)))
    noise = 1.4826 * mad / math.sqrt(2.0)
    if noise > 0:
        return float(noise)
    return float(math.sqrt(np.mean(differences**2) / 2.0))


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` samples, only where the window is full."""
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    return (cumulative[width:] - cumulative[:-width]) / width


def _bin_average(t: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of t and y over ``n_bins`` consecutive, nearly equal groups of samples."""
    if t.size <= n_bins:
        return t, y
    edges = np.linspace(0, t.size, n_bins + 1).round().astype(int)
    counts = np.diff(edges)
    return np.add.reduceat(t, edges[:-1]) / counts, np.add.reduceat(y, edges[:-1]) / counts


def _linear_amplitudes(shapes: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row s of ``shapes``, the (O >= 0, A >= 0) minimising |y - O - A s|^2, and that cost."""
    n = y.size
    shape_sum = shapes.sum(axis=1)
    shape_square = np.einsum("ij,ij->i", shapes, shapes)
    shape_dot_y = shapes @ y
    y_sum = y.sum()
    centred_square = shape_square - shape_sum**2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        amplitude = np.where(centred_square > 0, (shape_dot_y - shape_sum * y_sum / n) / centred_square, 0.0)
        offset = (y_sum - amplitude * shape_sum) / n
        # A negative offset: refit through the origin (O = 0).
        through_origin = np.where(shape_square > 0, shape_dot_y / shape_square, 0.0)
    negative_offset = offset < 0
    amplitude = np.where(negative_offset, through_origin, amplitude)
    offset = np.where(negative_offset, 0.0, offset)
    # A negative amplitude: the best non-negative one is none at all.
    negative_amplitude = amplitude < 0
    amplitude = np.where(negative_amplitude, 0.0, amplitude)
    offset = np.where(negative_amplitude, max(y_sum / n, 0.0), offset)
    residual = y[None, :] - offset[:, None] - amplitude[:, None] * shapes
    return offset, amplitude, np.einsum("ij,ij->i", residual, residual)


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
    offset, amplitude, cost = _linear_amplitudes(shapes, y)
    cost = np.where(amplitude > 0, cost, np.inf)
    order = np.argsort(cost, kind="stable")[:n_starts]
    return [np.array([offset[i], amplitude[i], arrival[i], p1[i], p2[i]]) for i in order if np.isfinite(cost[i])]


def _quadratic_residual(t: np.ndarray, y: np.ndarray) -> float:
    """Sum of squared residuals of the least-squares quadratic in t (the slow-drift model)."""
    centred = (t - t.mean()) / max(np.ptp(t), 1e-12)
    design = np.stack([np.ones_like(centred), centred, centred**2], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return float(residual @ residual)


class Screen(NamedTuple):
    """Step 2 of the strategy, shared with the replenishment fit (scaled units unless noted)."""

    scale: float  # a.u.: the maximum of the TIC's moving average, which y is divided by
    y: np.ndarray  # the TIC divided by scale
    smoothed: np.ndarray  # its moving average (sample i centred on frame i + (width - 1) / 2)
    noise: float  # robust per-frame noise
    i_peak: int  # index of the smoothed maximum
    rise: float  # smoothed maximum minus the lowest smoothed value before it
    width: int  # moving-average length (frames)
    frame_interval: float  # median frame interval (s)


def scale_and_screen(t: np.ndarray, y_au: np.ndarray) -> Screen:
    """Scale the TIC ``y_au`` (a.u., at times ``t``) and measure its smoothed rise against its noise."""
    n_used = len(y_au)
    frame_interval = float(np.median(np.diff(t))) if n_used > 1 else 0.0
    width = int(round(n_used * SMOOTHING_FRACTION))
    if frame_interval > 0:
        width = min(width, int(SMOOTHING_MAX_S / frame_interval))
    width = min(max(width, SMOOTHING_MIN_FRAMES), n_used)
    smoothed_au = _moving_average(y_au, width)
    scale = float(np.max(np.abs(smoothed_au)))
    if not scale > 0:
        scale = float(np.max(np.abs(y_au)))
    y = y_au / scale
    smoothed = smoothed_au / scale
    i_peak = int(np.argmax(smoothed))
    rise = float(smoothed[i_peak] - np.min(smoothed[: i_peak + 1]))
    return Screen(scale, y, smoothed, robust_noise(y), i_peak, rise, width, frame_interval)


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
    times = np.asarray(t_s, dtype=float)
    values = np.asarray(tic, dtype=float)
    if times.ndim != 1 or values.ndim != 1:
        raise InputError(f"frame times and TIC must be 1-D arrays, got shapes {times.shape} and {values.shape}")
    if times.size != values.size:
        raise InputError(f"{times.size} frame times but {values.size} TIC values")
    if times.size < MIN_INPUT_FRAMES:
        raise InputError(f"a TIC needs at least {MIN_INPUT_FRAMES} frames, got {times.size}")
    if use is None:
        selected = np.ones(times.size, dtype=bool)
    else:
        selected = np.asarray(use, dtype=bool)
        if selected.shape != times.shape:
            raise InputError(f"frame selection has {selected.size} entries for {times.size} frames")
    usable = selected & np.isfinite(times) & np.isfinite(values)
    n_used = int(usable.sum())
    result = BolusFit(model=bolus_model.name, status="fit_failed", n_frames_used=n_used)

    if n_used < MIN_USABLE_FRAMES:
        result.reason = (f"only {n_used} usable frames (selected, finite time and intensity); "
                         f"at least {MIN_USABLE_FRAMES} are needed")
        return result
    order = np.argsort(times[usable], kind="stable")
    t = times[usable][order]
    y_au = values[usable][order]
    span = float(t[-1] - t[0])
    if not span > 0:
        result.reason = "the used frames all have the same time"
        return result
    if np.ptp(y_au) == 0:
        result.status = "no_enhancement"
        result.noise = 0.0
        result.reason = f"TIC is constant at {_format(float(y_au[0]))} a.u."
        return result

    # -- scale and screen ------------------------------------------------------------------------
    scale, y, smoothed, noise, i_peak, rise, width, frame_interval = scale_and_screen(t, y_au)
    result.noise = noise * scale
    if rise < RISE_NOISE_FACTOR * noise:
        result.status = "no_enhancement"
        result.reason = (f"peak rise {_format(rise * scale)} a.u. of the smoothed TIC above its baseline "
                         f"is below {RISE_NOISE_FACTOR:g} x noise {_format(noise * scale)} a.u.")
        return result

    # -- initial values and local fits --------------------------------------------------------------
    # Smoothed sample i_peak is centred on frame i_peak + (width - 1)/2.
    t_peak = float(np.interp(i_peak + 0.5 * (width - 1), np.arange(t.size), t))
    step = max(frame_interval, 1e-3 * span)
    t0_low = min(t[0] - 0.2 * span, t_peak - 2.0 * step)
    t0_high = t_peak - step
    bounds_shape = shape_bounds(bolus_model.name, span)
    lower = np.array([0.0, 0.0, t[0] - span, *bounds_shape.lower])
    upper = np.array([10.0, np.inf, t[-1] - step, *bounds_shape.upper])
    t_grid, y_grid = _bin_average(t, y, GRID_MAX_SAMPLES)
    starts = _grid_starts(bolus_model, t_grid, y_grid, t_peak, t0_low, t0_high, N_STARTS)

    def residuals(x: np.ndarray) -> np.ndarray:
        return bolus_model.curve(t, x) - y

    def jacobian(x: np.ndarray) -> np.ndarray:
        return bolus_model.jacobian(t, x)

    # Keep unconverged solutions too: the enhancement checks below can still reject a curve that no
    # bolus explains, and only then does non-convergence make the fit fail.
    best = None
    best_converged = False
    messages = []
    for start in starts:
        x0 = np.clip(start, lower, upper)
        try:
            solution = optimize.least_squares(
                residuals, x0, jac=jacobian, bounds=(lower, upper), method="trf", x_scale="jac",
                ftol=1e-8, xtol=1e-8, gtol=1e-8, max_nfev=MAX_FUNCTION_EVALUATIONS)
        except (ValueError, np.linalg.LinAlgError) as error:  # pragma: no cover - defensive
            messages.append(str(error))
            continue
        if not np.all(np.isfinite(solution.x)) or not np.isfinite(solution.cost):
            messages.append(solution.message)
            continue
        converged = solution.status > 0
        if not converged:
            messages.append(solution.message)
        if best is None or solution.cost < best.cost:
            best, best_converged = solution, converged
    if best is None:
        result.reason = "the optimiser found no finite solution" + (f": {messages[0]}" if messages else "")
        return result

    x = best.x
    residual = residuals(x)
    ss_res = float(residual @ residual)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    qof = 100.0 * (1.0 - ss_res / ss_tot)
    _, area, t0, p1, p2 = x
    tau_peak = bolus_model.shape_peak(p1, p2)
    peak = area * float(bolus_model.shape(tau_peak, p1, p2))

    # -- enhancement checks -----------------------------------------------------------------------------
    if peak < PEAK_NOISE_FACTOR * noise:
        result.status = "no_enhancement"
        result.reason = (f"fitted peak enhancement {_format(peak * scale)} a.u. is below "
                         f"{PEAK_NOISE_FACTOR:g} x noise {_format(noise * scale)} a.u.")
        return result
    if qof < MIN_QOF_PERCENT:
        result.status = "no_enhancement"
        result.reason = (f"the bolus fit explains only {qof:.1f} % of the TIC variance "
                         f"(minimum {MIN_QOF_PERCENT:g} %)")
        return result
    ss_drift = _quadratic_residual(t, y)
    degrees_of_freedom = n_used - 5
    if degrees_of_freedom > 0 and ss_res > 0:
        f_drift = ((ss_drift - ss_res) / 2.0) / (ss_res / degrees_of_freedom)
    else:
        f_drift = math.inf
    if f_drift < MIN_DRIFT_F:
        result.status = "no_enhancement"
        result.reason = (f"a slow quadratic drift explains the TIC almost as well as a bolus "
                         f"(F = {f_drift:.3g} < {MIN_DRIFT_F:g}; rise {_format(rise * scale)} a.u., "
                         f"noise {_format(noise * scale)} a.u.)")
        return result

    # -- validity checks --------------------------------------------------------------------------------
    if not best_converged:
        result.reason = "the optimiser did not converge" + (f": {messages[-1]}" if messages else "")
        return result
    time_to_peak = t0 + tau_peak
    if not t[0] <= time_to_peak <= t[-1]:
        result.reason = (f"fitted peak at {time_to_peak:.3g} s lies outside the frames "
                         f"({t[0]:.3g} s to {t[-1]:.3g} s)")
        return result
    names = bolus_model.shape_parameter_names
    for index, side in bounds_shape.degenerate:
        value = x[3 + index]
        bound = (bounds_shape.lower if side == "lower" else bounds_shape.upper)[index]
        tolerance = 1e-4 * (bounds_shape.upper[index] - bounds_shape.lower[index])
        if abs(value - bound) <= tolerance:
            result.reason = (f"{names[index]} = {value:.4g} sits at its {side} bound {bound:.4g}; "
                             "the fitted curve is degenerate")
            return result

    params = dict(zip(bolus_model.parameter_names, (float(v) for v in x)))
    params["O"] *= scale
    params["A"] *= scale
    result.status = "ok"
    result.params = params
    result.qof = qof
    return result
