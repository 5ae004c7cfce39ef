"""What every kinetic fit shares: the :class:`Fit` protocol, the status vocabulary, the fit skeleton
and the :class:`KineticFamily` interface that :mod:`~DCEUSResponseLib.kinetics.registry` keys by model.

A fit of a time-intensity curve (TIC) follows one skeleton (:func:`fit_scaled_curve`): check the
input (:func:`validated_tic`; misuse raises InputError), keep the usable frames, call a constant
curve ``no_enhancement``, scale the TIC by its robust maximum and screen its smoothed rise against
the per-frame noise (:func:`scale_and_screen`), start bounded trust-region least squares from the
best points of a variable-projection grid (:func:`linear_amplitudes`, :func:`best_least_squares`)
and measure the quality of fit; then each family applies its enhancement and validity checks
(:func:`enhancement_failure`, :func:`drift_f`) in its own order. Bad data never raises: the
outcome is a fit whose ``status`` is one of :data:`FIT_STATUSES` with a ``reason`` in numbers.

Where a newcomer adds a kinetic model
-------------------------------------
- **A new bolus shape** (e.g. a modified lognormal): a ``BolusModel`` subclass in ``models.py``
  added to ``BOLUS_MODELS``, its skewness grid in ``bolus.GRID_SKEW`` and its bounds in
  ``bolus.shape_bounds``. It becomes a choice of ``--model`` and of the maps, with the bolus
  parameters, without further changes (add it to the Slicer module's ``MODEL_CHOICES`` too: a test
  checks they agree; maps search its landmarks pixel by pixel unless
  ``parameters._VECTOR_LANDMARKS`` gets its closed forms).
- **A new kinetic family** (e.g. the Arditi beam-elevation replenishment, a pharmacokinetic model):
  its fit in a new module ``kinetics/<family>.py`` returning a fit that satisfies :class:`Fit`
  (build it on :func:`fit_scaled_curve`); its quantities in ``catalogue.py`` (a
  ``ParameterInfo`` each and the family's ordered names in ``FAMILY_PARAMETERS``); a
  :class:`KineticFamily` subclass in ``kinetics/registry.py`` and one line registering it there.
  ``ceus/pipeline.py``, the command line and the summaries then need no change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from DCEUSResponseLib.errors import InputError

# -- the status vocabulary ---------------------------------------------------------------------------

#: A meaningful curve was fitted.
STATUS_OK = "ok"
#: The TIC is baseline plus noise (and possibly a slow drift), e.g. a necrotic lesion.
STATUS_NO_ENHANCEMENT = "no_enhancement"
#: There is signal but no trustworthy fit (too few frames, no convergence, a degenerate curve).
STATUS_FIT_FAILED = "fit_failed"
#: The statuses of an ROI's fit.
FIT_STATUSES: tuple[str, ...] = (STATUS_OK, STATUS_NO_ENHANCEMENT, STATUS_FIT_FAILED)

#: Map pixels: fitted; its fit explains too little of the curve; outside the mapped region.
STATUS_FITTED = "fitted"
STATUS_POOR_FIT = "poor_fit"
STATUS_NOT_MAPPED = "not_mapped"
STATUS_OUTSIDE_IMAGE = "outside_image"  # no signal over the whole clip (outside the scan sector)
#: The statuses of a map pixel, in the order of their codes (0, 1, ...) in a map's status image.
MAP_STATUSES: tuple[str, ...] = (STATUS_FITTED, STATUS_NO_ENHANCEMENT, STATUS_POOR_FIT, STATUS_NOT_MAPPED,
                                 STATUS_FIT_FAILED, STATUS_OUTSIDE_IMAGE)

# -- thresholds shared by every fit (the module docstring of :mod:`~DCEUSResponseLib.kinetics.bolus`
# explains them) ----------------------------------------------------------------------------------

#: Pre-fit screen: the smoothed rise must reach this many per-frame noise units.
RISE_NOISE_FACTOR = 5.0
#: Post-fit: the fitted peak enhancement must reach this many per-frame noise units.
PEAK_NOISE_FACTOR = 5.0
#: Post-fit: the fit must explain at least this share of the TIC's variance (%).
MIN_QOF_PERCENT = 30.0
#: Post-fit: minimum F statistic of the fit against a slow drift (a polynomial in time).
MIN_DRIFT_F = 20.0
#: Width of the moving average of the enhancement screen, as a fraction of the used frames ...
SMOOTHING_FRACTION = 1.0 / 30.0
#: ... but never wider than this many seconds (keeps short boluses from being flattened) ...
SMOOTHING_MAX_S = 4.0
#: ... nor narrower than this many frames.
SMOOTHING_MIN_FRAMES = 3
#: Number of best grid points that start a local fit.
N_STARTS = 3
#: Residual evaluations allowed to each local fit.
MAX_FUNCTION_EVALUATIONS = 400


# -- the Fit protocol ------------------------------------------------------------------------------

@runtime_checkable
class Fit(Protocol):
    """What every fit of one ROI's TIC offers (bolus, replenishment, segmented replenishment).

    ``model``: the model's name; ``status``: one of :data:`FIT_STATUSES`, with ``reason`` (numbers
    included) when not ok; ``params``: the model parameters (a.u., s, 1/s), empty unless ok;
    ``qof``: quality of fit in % (None unless ok); ``n_frames_used``: frames that entered the fit.
    """

    model: str
    status: str
    reason: str | None
    params: dict[str, float]
    qof: float | None
    n_frames_used: int

    @property
    def ok(self) -> bool: ...

    def curve(self, t: ArrayLike) -> np.ndarray:
        """The fitted intensity (a.u.) at times ``t`` (s); NaN where the fit says nothing."""


@dataclass
class CurveFit:
    """The fields every single-curve fit has (see :class:`Fit`); ``noise``: per-frame noise, a.u.;
    ``fitted_span_s``: times (s) of the first and last frame that entered the fit; ``fitted_gaps_s``:
    the gaps (start, end; s) between fitted frames within it (``kinetics.parameters.fitted_gaps``)."""

    model: str
    status: str
    reason: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    qof: float | None = None
    n_frames_used: int = 0
    noise: float | None = None
    fitted_span_s: tuple[float, float] | None = None
    fitted_gaps_s: tuple[tuple[float, float], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def format_number(value: float) -> str:
    """Two significant digits, for the numbers in a status reason."""
    return f"{value:.2g}"


# -- the skeleton ----------------------------------------------------------------------------------

def validated_tic(t_s: ArrayLike, tic: ArrayLike, use: ArrayLike | None,
                  min_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, values, selected) as float, float and bool arrays, or InputError for misuse.

    Misuse: arrays that are not 1-D or differ in length, fewer than ``min_frames`` frames (when
    given), a ``use`` mask of the wrong length.
    """
    times = np.asarray(t_s, dtype=float)
    values = np.asarray(tic, dtype=float)
    if times.ndim != 1 or values.ndim != 1:
        raise InputError(f"frame times and TIC must be 1-D arrays, got shapes {times.shape} and {values.shape}")
    if times.size != values.size:
        raise InputError(f"{times.size} frame times but {values.size} TIC values")
    if min_frames is not None and times.size < min_frames:
        raise InputError(f"a TIC needs at least {min_frames} frames, got {times.size}")
    if use is None:
        selected = np.ones(times.size, dtype=bool)
    else:
        selected = np.asarray(use, dtype=bool)
        if selected.shape != times.shape:
            raise InputError(f"frame selection has {selected.size} entries for {times.size} frames")
    return times, values, selected


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


class Screen(NamedTuple):
    """The scaled TIC and its enhancement screen (scaled units unless noted)."""

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


def linear_amplitudes(shapes: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


@dataclass
class LeastSquares:
    """A bounded least-squares problem in scaled units, with its starting points.

    ``residuals(x)`` and ``jacobian(x)`` of the parameter vector x; ``lower``/``upper`` bounds;
    ``tolerance``: ftol = xtol = gtol of ``scipy.optimize.least_squares``.
    """

    residuals: Callable[[np.ndarray], np.ndarray]
    jacobian: Callable[[np.ndarray], np.ndarray]
    starts: Sequence[np.ndarray]
    lower: np.ndarray
    upper: np.ndarray
    tolerance: float


class Solution(NamedTuple):
    """The lowest-cost local fit of :func:`best_least_squares` (None when none was finite)."""

    best: Any  # scipy.optimize.OptimizeResult | None
    converged: bool
    messages: list[str]


def best_least_squares(problem: LeastSquares) -> Solution:
    """Bounded trust-region fits ("trf", analytic Jacobian) from each start; the lowest cost wins.

    Unconverged solutions are kept too: the enhancement checks can still reject a curve that no
    model explains, and only then does non-convergence make the fit fail.
    """
    best, best_converged, messages = None, False, []
    for start in problem.starts:
        x0 = np.clip(start, problem.lower, problem.upper)
        try:
            solution = optimize.least_squares(
                problem.residuals, x0, jac=problem.jacobian, bounds=(problem.lower, problem.upper), method="trf",
                x_scale="jac", ftol=problem.tolerance, xtol=problem.tolerance, gtol=problem.tolerance,
                max_nfev=MAX_FUNCTION_EVALUATIONS)
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
    return Solution(best, best_converged, messages)


class Fitted(NamedTuple):
    """What the skeleton hands to a family's checks: the best solution and its quality (scaled)."""

    x: np.ndarray  # best parameter vector
    residual: np.ndarray  # its residuals
    ss_res: float  # sum of squared residuals
    qof: float  # 100 (1 - SS_res / SS_tot), %
    converged: bool
    messages: list[str]


@dataclass
class CurveProblem:
    """The family-specific parts of :func:`fit_scaled_curve`.

    ``rise_reason(rise_au, noise_au)``: the ``no_enhancement`` reason of a failed screen;
    ``least_squares(screen)``: the problem to solve on the scaled TIC, or a ``no_enhancement``
    reason (str) when no starting point exists; ``constant_reason_suffix``: appended to the reason
    of a constant TIC.
    """

    rise_reason: Callable[[float, float], str]
    least_squares: Callable[[Screen], "LeastSquares | str"]
    constant_reason_suffix: str = ""


def fit_scaled_curve(t: np.ndarray, y_au: np.ndarray, result: CurveFit,
                     problem: CurveProblem) -> tuple[Screen, Fitted] | None:
    """The shared steps of a fit on the usable, time-ordered samples (``t`` in s, ``y_au`` in a.u.).

    Fills ``result`` (status, reason, noise) and returns None when the curve is settled: constant,
    below the enhancement screen, without a starting point (``no_enhancement``), or without a finite
    solution (``fit_failed``). Otherwise returns the screen and the best fit for the family's checks.
    """
    if np.ptp(y_au) == 0:
        result.status = STATUS_NO_ENHANCEMENT
        result.noise = 0.0
        result.reason = f"TIC is constant at {format_number(float(y_au[0]))} a.u.{problem.constant_reason_suffix}"
        return None
    screen = scale_and_screen(t, y_au)
    result.noise = screen.noise * screen.scale
    if screen.rise < RISE_NOISE_FACTOR * screen.noise:
        result.status = STATUS_NO_ENHANCEMENT
        result.reason = problem.rise_reason(screen.rise * screen.scale, screen.noise * screen.scale)
        return None
    least_squares = problem.least_squares(screen)
    if isinstance(least_squares, str):
        result.status = STATUS_NO_ENHANCEMENT
        result.reason = least_squares
        return None
    solution = best_least_squares(least_squares)
    if solution.best is None:
        messages = solution.messages
        result.reason = "the optimiser found no finite solution" + (f": {messages[0]}" if messages else "")
        return None
    x = solution.best.x
    residual = least_squares.residuals(x)
    ss_res = float(residual @ residual)
    y = screen.y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    qof = 100.0 * (1.0 - ss_res / ss_tot)
    return screen, Fitted(x, residual, ss_res, qof, solution.converged, solution.messages)


def enhancement_failure(enhancement: float, qof: float, noise: float, scale: float, what: str,
                        fit_name: str) -> str | None:
    """The ``no_enhancement`` reason of a fitted ``enhancement`` (scaled) below 5 x noise or a QOF
    below 30 %, None when both pass. ``what`` names the enhancement, ``fit_name`` the fit."""
    if enhancement < PEAK_NOISE_FACTOR * noise:
        return (f"fitted {what} {format_number(enhancement * scale)} a.u. is below "
                f"{PEAK_NOISE_FACTOR:g} x noise {format_number(noise * scale)} a.u.")
    if qof < MIN_QOF_PERCENT:
        return (f"the {fit_name} fit explains only {qof:.1f} % of the TIC variance "
                f"(minimum {MIN_QOF_PERCENT:g} %)")
    return None


def drift_f(ss_drift: float, ss_fit: float, extra_parameters: int, degrees_of_freedom: int) -> float:
    """F statistic of the fit against a slow-drift polynomial with ``extra_parameters`` fewer
    parameters: ((SS_drift - SS_fit) / extra) / (SS_fit / dof); infinite for a perfect fit."""
    if degrees_of_freedom > 0 and ss_fit > 0:
        return ((ss_drift - ss_fit) / float(extra_parameters)) / (ss_fit / degrees_of_freedom)
    return math.inf


def polynomial_residual(t: np.ndarray, y: np.ndarray, degree: int) -> float:
    """Sum of squared residuals of the least-squares polynomial of ``degree`` (1 or 2) in t (a slow drift)."""
    centred = (t - t.mean()) / max(float(np.ptp(t)), 1e-12)
    design = np.stack([np.ones_like(centred), centred, centred**2][: degree + 1], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return float(residual @ residual)


# -- kinetic families ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipFrames:
    """What a family fits on: frame times (s since injection), the frames to use, the flash frames."""

    times_s: np.ndarray
    use: np.ndarray
    flash_frames: tuple[int, ...]


class KineticFamily:
    """A kind of kinetic analysis (bolus, destruction-replenishment), like a SegmentStatistics plugin.

    ``name``: the family (a key of ``catalogue.FAMILY_PARAMETERS``); ``models``: the model names it
    answers to (choices of ``--model``); ``parameter_names``: what it reports, in order (from the
    catalogue); ``supports_maps``: whether per-pixel maps exist; ``flash_ends_curve``: a flash
    destroys the bubbles the curve needs, so frames after the first flash are not fitted;
    ``summary``: (parameter, format) pairs the terminal summary shows, the last one also relative.
    """

    name: str = ""
    models: tuple[str, ...] = ()
    parameter_names: tuple[str, ...] = ()
    supports_maps: bool = False
    flash_ends_curve: bool = False
    summary: tuple[tuple[str, str], ...] = ()

    def prepare(self, frames: ClipFrames, source: str | None = None) -> Any:
        """Per-clip preparation shared by every ROI's fit (InputError naming ``source`` if impossible)."""
        return frames

    def fit(self, model: str, prepared: Any, tic: np.ndarray) -> Fit:
        """Fit one ROI's TIC (linear a.u., one value per frame of the clip)."""
        raise NotImplementedError

    def parameters(self, model: str, fit: Fit) -> dict[str, float | None]:
        """The family's :attr:`parameter_names` of a fit (None where undefined or not ok)."""
        raise NotImplementedError

    def extrapolated(self, model: str, fit: Fit) -> tuple[str, ...]:
        """The parameters of an ok fit that depend on the fitted curve outside the fitted frames (the
        family defines when), in :attr:`parameter_names` order; none by default."""
        return ()
