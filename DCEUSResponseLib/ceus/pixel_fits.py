"""Fitting many time-intensity curves at once, without a per-pixel loop (the engine of the maps).

Method (per chunk of curves, all arrays shaped frames x curves):

1. **Initial values by a shared dictionary.** The bolus model ``O + A s(t - t0; p1, p2)`` is linear
   in O and A. For a grid of (t0, time to peak, skew) shapes s_g shared by all curves, the best
   (O, A) of every curve and shape is closed-form, and the residual reduction is
   ``(s~_g . y~)^2 / |s~_g|^2`` (centred vectors). One matrix product (shapes x samples) @
   (samples x curves), done by BLAS on frame-bin means, scores every shape for every curve; the
   best shape with A > 0 starts the fit.
2. **Batched Levenberg-Marquardt.** Each curve's 5 x 5 normal equations come from the model's
   analytic Jacobian (:mod:`models` log-shape derivatives) and are solved for all curves together;
   steps are projected onto the same bounds as the ROI fit and accepted per curve when they lower
   the cost. The iterations run on frame-bin means (bins of at most :data:`BIN_SECONDS`, weighted
   by their frame counts); QOF is then computed over every frame.
3. **Decisions per curve.** ``no_enhancement`` when the bolus does not explain the curve better
   than a constant by an F ratio of :data:`MIN_ENHANCEMENT_F`, rises and falls within a few frames
   (a spike, the ROI fits' rule), or the curve is constant (no QOF); ``poor_fit`` when QOF is below
   :data:`MIN_MAP_QOF_PERCENT`; ``fit_failed`` when the peak lies outside the clip or values are not
   finite. The codes are those of the maps' status image (``STATUS_*``).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from DCEUSResponseLib.ceus.linearize import table_lookup
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.base import MAP_STATUSES
from DCEUSResponseLib.kinetics.bolus import GRID_SKEW, MIN_USABLE_FRAMES, shape_bounds, shortest_bolus_s
from DCEUSResponseLib.kinetics.models import BolusModel, get_model
from DCEUSResponseLib.kinetics.parameters import bolus_parameter_arrays
from DCEUSResponseLib.parallel import single_threaded_blas, worker_threads

# Codes of the status image: positions in the status vocabulary's MAP_STATUSES.
(STATUS_FITTED, STATUS_NO_ENHANCEMENT, STATUS_POOR_FIT, STATUS_NOT_MAPPED, STATUS_FIT_FAILED,
 STATUS_OUTSIDE_IMAGE) = range(len(MAP_STATUSES))
STATUS_NAMES = dict(enumerate(MAP_STATUSES))

#: A pixel enhances when the bolus lowers the residual sum of squares below the constant's by this
#: F ratio ((SS_const - SS_bolus) / 4) / (SS_bolus / (n - 5)). Pure speckle gives F ~ 1 (F > 10 by
#: chance has p < 1e-6 at n = 100); an enhancing pixel of a 2-minute clip gives F in the hundreds.
MIN_ENHANCEMENT_F = 10.0
#: Pixels whose fit explains less of the curve's variance than this are NaN. Single pixels carry
#: fully developed speckle (standard deviation = mean), so pixel QOF is far below ROI QOF: a well
#: enhancing pixel reaches 30-60 %.
MIN_MAP_QOF_PERCENT = 5.0
#: A curve whose variance over the frames is at most this fraction of its mean square is constant
#: (to the float32 rounding of its bin means): nothing to fit, no_enhancement with no QOF. One
#: display level in one frame of a few hundred is already 1e-5 to 1e-3 (a level is 0.1-0.5 dB).
CONSTANT_CURVE_RELATIVE_VARIANCE = 1e-6
#: Frame bins for the initial dictionary and the first iterations: at most this long.
BIN_SECONDS = 0.5
#: and at most this many bins for the dictionary.
MAX_DICTIONARY_BINS = 160
BINNED_ITERATIONS = 12
#: Pixels per chunk: large enough that Python-level steps and BLAS calls amortise (measured best
#: at 8192 on 2 cores), small enough for a few hundred MB per thread.
CHUNK_PIXELS = 8192
#: Threads fitting chunks at once (one per core).
WORKER_THREADS = worker_threads()
_N_GRID_T0 = 12
_N_GRID_PEAK = 10
_N_GRID_SKEW = 4



@dataclass
class PixelFits:
    """Fits of P curves: ``params`` (P, 5) in the model's order, ``qof`` (%), ``f_ratio``, ``status``."""

    params: np.ndarray
    qof: np.ndarray
    f_ratio: np.ndarray
    status: np.ndarray


def frame_bins(times_s: np.ndarray, bin_seconds: float, max_bins: int | None = None) -> np.ndarray:
    """Bin index of each frame: consecutive frames in bins of at most ``bin_seconds`` (and ``max_bins``)."""
    span = float(times_s[-1] - times_s[0])
    n_bins = max(1, int(math.ceil(span / bin_seconds)))
    if max_bins is not None:
        n_bins = min(n_bins, max_bins)
    n_bins = min(n_bins, len(times_s))
    edges = np.linspace(times_s[0], times_s[-1], n_bins + 1)
    index = np.clip(np.searchsorted(edges, times_s, side="right") - 1, 0, n_bins - 1)
    # drop empty bins (irregular frame times)
    _, index = np.unique(index, return_inverse=True)
    return index


def _bin(values: np.ndarray, index: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means of the rows of ``values`` per bin, and each bin's total weight (its count)."""
    # Frames are in time order, so every bin is a contiguous run of rows.
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    stops = np.append(starts[1:], len(index))
    totals = (stops - starts).astype(np.float64) if weights is None else np.add.reduceat(
        weights.astype(np.float64), starts)
    shaped = None if weights is None else weights.reshape((-1,) + (1,) * (values.ndim - 1)).astype(values.dtype)
    if values.ndim == 1:
        sums = np.add.reduceat(values if shaped is None else values * shaped, starts)
    else:
        # One reduction per bin: reduceat along the rows of a (frames x pixels) chunk took 13 x longer.
        sums = np.empty((len(starts),) + values.shape[1:], dtype=values.dtype)
        for row, (start, stop) in enumerate(zip(starts, stops)):
            rows = values[start:stop] if shaped is None else values[start:stop] * shaped[start:stop]
            np.add.reduce(rows, axis=0, out=sums[row])
    return sums / totals.reshape((-1,) + (1,) * (values.ndim - 1)).astype(values.dtype), totals


class _Dictionary:
    """Shapes shared by all pixels, centred on the bin grid, for the initial-value search."""

    def __init__(self, model: BolusModel, bin_times: np.ndarray, bin_weights: np.ndarray):
        t_first, t_last = float(bin_times[0]), float(bin_times[-1])
        span = max(t_last - t_first, 1e-6)
        t0 = np.linspace(t_first - 0.05 * span, t_first + 0.7 * span, _N_GRID_T0)
        peak = np.geomspace(max(0.01 * span, 0.3), 0.5 * span, _N_GRID_PEAK)
        skew_all = GRID_SKEW[model.name]
        skew = skew_all[np.linspace(0, len(skew_all) - 1, _N_GRID_SKEW).round().astype(int)]
        t0_g, peak_g, skew_g = (a.ravel() for a in np.meshgrid(t0, peak, skew, indexing="ij"))
        p1_g, p2_g = model.shape_params_for_peak(peak_g, skew_g)
        keep = t0_g + peak_g < t_last
        self.t0, self.p1, self.p2 = t0_g[keep], np.asarray(p1_g)[keep], np.asarray(p2_g)[keep]
        shapes = model.shape(bin_times[None, :] - self.t0[:, None], self.p1[:, None], self.p2[:, None])
        weights = bin_weights / bin_weights.sum()
        self.weights = weights
        self.means = shapes @ weights
        centred = (shapes - self.means[:, None]) * np.sqrt(weights)[None, :]
        self.norms = np.einsum("gb,gb->g", centred, centred)
        useful = self.norms > 1e-12 * self.norms.max()
        self.t0, self.p1, self.p2 = self.t0[useful], self.p1[useful], self.p2[useful]
        self.means, self.norms = self.means[useful], self.norms[useful]
        self.centred = centred[useful].astype(np.float32)
        self.inverse_norms = (1.0 / self.norms).astype(np.float32)

    def best(self, binned: np.ndarray) -> np.ndarray:
        """Initial (P, 5) parameters for binned curves (B, P) (scaled intensities)."""
        weights = self.weights
        mean_y = weights @ binned
        centred_y = (binned - mean_y[None, :]) * np.sqrt(weights)[:, None].astype(binned.dtype)
        # (P, G): the one BLAS product, pixels in rows so that the search runs along contiguous rows
        products = centred_y.astype(np.float32).T @ self.centred.T
        # Residual reduction p^2/|s|^2, signed so that shapes with A < 0 (p < 0) never win.
        score = np.abs(products)
        score *= products
        score *= self.inverse_norms[None, :]
        best = np.argmax(score, axis=1)
        area = products[np.arange(binned.shape[1]), best] / self.norms[best]
        area = np.maximum(area, 0.0)
        offset = np.maximum(mean_y - area * self.means[best], 0.0)
        return np.stack([offset, area, self.t0[best], self.p1[best], self.p2[best]], axis=1)


def _bounds(model: BolusModel, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    span = float(times_s[-1] - times_s[0])
    shape = shape_bounds(model.name, max(span, 1e-6))
    interval = float(np.min(np.diff(times_s))) if len(times_s) > 1 else 1.0
    lower = np.array([0.0, 0.0, times_s[0] - span, *shape.lower])
    upper = np.array([10.0, np.inf, times_s[-1] - interval, *shape.upper])
    return lower, upper


def _model_and_jacobian(model: BolusModel, times_s: np.ndarray, x: np.ndarray, need_jacobian: bool,
                        scratch: "_Scratch | None" = None):
    """f (N, P) float32 and, if asked, the Jacobian columns for A, t0, p1, p2 (that of O is 1)."""
    if model.name == "lognormal":
        return _lognormal_and_jacobian(times_s, x, need_jacobian, scratch)
    offset, area, t0, p1, p2 = (x[:, k][None, :] for k in range(5))
    tau = times_s[:, None] - t0
    positive = tau > 0
    safe_tau = np.where(positive, tau, 1.0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        shape = np.where(positive, np.exp(np.minimum(model.log_shape(safe_tau, p1, p2), 80.0)), 0.0)
        curve = (offset + area * shape).astype(np.float32)
        if not need_jacobian:
            return curve, None
        scaled = area * shape
        d_tau = model.dlog_shape_dtau(safe_tau, p1, p2)
        d_p1, d_p2 = model.dlog_shape_dparams(safe_tau, p1, p2)
        columns = (shape, -scaled * d_tau, scaled * d_p1, scaled * d_p2)
    return curve, [np.where(np.isfinite(c), c, 0.0).astype(np.float32) for c in columns]


_TINY_DELAY_S = np.float32(1e-12)
_LOG_SQRT_2PI = np.float32(0.5 * math.log(2.0 * math.pi))
#: Frames x curves arrays of one evaluation of the lognormal and its Jacobian.
_LOGNORMAL_ARRAYS = 8


def _lognormal_and_jacobian(times_s: np.ndarray, x: np.ndarray, need_jacobian: bool,
                            scratch: "_Scratch | None" = None):
    """The lognormal fast path: float32, ln(tau) computed once, in-place arithmetic, no masks.

    Delays tau <= 0 are raised to 1e-12 s, where the lognormal is below 1e-20 of its peak for every
    sigma within the fit's bounds, so the curve and its derivatives vanish there by themselves.
    With ``scratch``, every frames x curves array is a view of its buffers: valid until its next use.
    """
    x32 = x.astype(np.float32)
    offset, area, t0, mu, sigma = (x32[:, k][None, :] for k in range(5))
    inverse_sigma = np.float32(1.0) / sigma
    log_constant = -_LOG_SQRT_2PI - np.log(sigma)
    frames_by_curves = (len(times_s), x.shape[0])
    tau, log_tau, z, z_squared, shape, scaled, curve, d_mu = (
        scratch.arrays(frames_by_curves) if scratch is not None
        else [np.empty(frames_by_curves, np.float32) for _ in range(_LOGNORMAL_ARRAYS)])
    np.subtract(times_s.astype(np.float32)[:, None], t0, out=tau)
    np.maximum(tau, _TINY_DELAY_S, out=tau)
    np.log(tau, out=log_tau)
    np.subtract(log_tau, mu, out=z)
    z *= inverse_sigma
    np.multiply(z, z, out=z_squared)
    np.multiply(z_squared, np.float32(-0.5), out=shape)
    shape -= log_tau
    shape += log_constant
    np.minimum(shape, np.float32(80.0), out=shape)
    np.exp(shape, out=shape)
    np.multiply(shape, area, out=scaled)
    np.add(scaled, offset, out=curve)
    if not need_jacobian:
        return curve, None
    z *= inverse_sigma  # now z / sigma
    np.multiply(scaled, z, out=d_mu)
    z += np.float32(1.0)
    z *= scaled
    with np.errstate(over="ignore", invalid="ignore"):
        np.divide(z, tau, out=z)  # d f / d t0 = A s (1 + z/sigma) / tau
    z[~np.isfinite(z)] = 0.0  # what nan_to_num(nan=0, posinf=0, neginf=0) does, in one pass
    z_squared -= np.float32(1.0)
    z_squared *= scaled
    z_squared *= inverse_sigma  # d f / d sigma = A s (z^2 - 1) / sigma
    return curve, [shape, z, d_mu, z_squared]


class _Scratch:
    """Float32 buffers for the model evaluations of one chunk's LM iterations, allocated once.

    Arrays of this size (8 MB for 8,192 curves of 240 bins) are returned to the system when freed,
    so fresh ones at every iteration faulted all their pages in again: in the LM of the benchmark's
    small map, 125,000 page faults and 0.54 s of system time before, 37,000 and 0.26 s after.
    """

    def __init__(self, count: int, elements: int):
        self._buffers = [np.empty(elements, dtype=np.float32) for _ in range(count)]

    def arrays(self, shape: tuple[int, int]) -> list[np.ndarray]:
        size = shape[0] * shape[1]
        return [buffer[:size].reshape(shape) for buffer in self._buffers]


#: A pixel stops iterating once an accepted step lowers its cost by less than this fraction.
CONVERGED_RELATIVE_DECREASE = 1e-4


def _levenberg_marquardt(model: BolusModel, times_s: np.ndarray, y: np.ndarray, x: np.ndarray,
                         lower: np.ndarray, upper: np.ndarray, iterations: int,
                         weights: np.ndarray | None = None) -> np.ndarray:
    """Batched, bounded LM on curves y (N, P) float32 from x (P, 5); rows weighted by ``weights``.

    Weighted rows (bin means weighted by their frame counts) are handled by scaling rows of the
    residual and of the Jacobian by sqrt(weight). Each iteration evaluates the model and its
    Jacobian once, at the trial parameters: a pixel whose step is rejected keeps its parameters,
    so its normal equations from the last accepted point still hold and are kept. Pixels that have
    converged drop out of the remaining iterations, so the work follows the pixels still moving.
    """
    root_w = None if weights is None else np.sqrt(weights).astype(np.float32)[:, None]
    if root_w is not None:
        y = y * root_w
    x = x.copy()
    identity = np.eye(5)[None]
    active = np.arange(x.shape[0])
    damping = np.full(active.size, 1e-3)
    scratch = _Scratch(_LOGNORMAL_ARRAYS, y.size) if model.name == "lognormal" else None
    normal, gradient, cost = _normal_equations(model, times_s, y, x, root_w, scratch)
    y_active = y  # the curves of the active pixels, gathered again only when pixels drop out
    for _ in range(iterations):
        if active.size == 0:
            break
        diagonal = np.einsum("pii->pi", normal)
        # Marquardt scaling, floored so that a parameter the data cannot see (a shape entirely
        # before or after the clip) still gives a solvable system.
        scale = np.maximum(diagonal, 1e-9 * np.maximum(diagonal.max(axis=1, keepdims=True), 1e-30))
        system = normal + (damping[:, None] * scale)[:, :, None] * identity
        step = np.linalg.solve(system, gradient[:, :, None])[:, :, 0]
        step = np.where(np.isfinite(step), step, 0.0)
        trial = np.clip(x[active] + step, lower, upper)
        trial_normal, trial_gradient, trial_cost = _normal_equations(model, times_s, y_active, trial, root_w,
                                                                     scratch)
        better = np.isfinite(trial_cost) & (trial_cost < cost)
        x[active[better]] = trial[better]
        normal[better], gradient[better] = trial_normal[better], trial_gradient[better]
        converged = better & (cost - trial_cost <= CONVERGED_RELATIVE_DECREASE * cost)
        cost = np.where(better, trial_cost, cost)
        damping = np.where(better, np.maximum(damping / 3.0, 1e-7), np.minimum(damping * 4.0, 1e7))
        keep = ~converged & (damping < 1e6)
        if not keep.all():
            y_active = np.take(y_active, np.flatnonzero(keep), axis=1)  # 3.7 x a boolean mask's column gather
        active, damping = active[keep], damping[keep]
        normal, gradient, cost = normal[keep], gradient[keep], cost[keep]
    return x


def _normal_equations(model: BolusModel, times_s: np.ndarray, y: np.ndarray, x: np.ndarray,
                      root_w: np.ndarray | None, scratch: "_Scratch | None" = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J^T J (P, 5, 5), J^T r (P, 5) and r^T r (P) at x for curves y (N, P), rows scaled by ``root_w``."""
    curve, columns = _model_and_jacobian(model, times_s, x, True, scratch)
    if root_w is not None:
        curve *= root_w
        for column in columns:
            column *= root_w
    residual = np.subtract(y, curve, out=curve)
    # The offset's column is the same for every pixel: its products are matrix-vector products
    # (BLAS, 3.6 x faster than the elementwise reductions of the other columns).
    offset_column = np.ones(len(times_s), dtype=np.float32) if root_w is None else root_w[:, 0]
    normal = np.empty((x.shape[0], 5, 5))
    gradient = np.empty((x.shape[0], 5))
    gradient[:, 0] = offset_column @ residual
    normal[:, 0, 0] = float(offset_column @ offset_column)
    for j in range(1, 5):
        normal[:, 0, j] = normal[:, j, 0] = offset_column @ columns[j - 1]
    for i in range(1, 5):
        gradient[:, i] = np.einsum("np,np->p", columns[i - 1], residual)
        for j in range(i, 5):
            normal[:, i, j] = normal[:, j, i] = np.einsum("np,np->p", columns[i - 1], columns[j - 1])
    cost = np.einsum("np,np->p", residual, residual).astype(np.float64)
    return normal, gradient, cost


def fit_curves(times_s: np.ndarray, curves: np.ndarray, model: str | BolusModel = "lognormal", *,
               lookup: np.ndarray | None = None) -> PixelFits:
    """Fit the bolus model to every column of ``curves`` (N frames x P pixels, linear a.u.).

    ``times_s`` are the N frame times since injection (s). Returns parameters in a.u. (O, A),
    seconds (t0) and the model's shape units, plus QOF, the enhancement F ratio and a status per curve.
    With ``lookup`` (float32, indexed by every value of the curves' integer dtype), ``curves`` are
    display values and their linear intensities ``lookup[curves]``, converted chunk by chunk on the
    worker threads: the same fits, without holding the float curves of the whole map.
    """
    model = get_model(model)
    times_s = np.asarray(times_s, dtype=np.float64)
    curves = np.asarray(curves) if lookup is not None else np.asarray(curves, dtype=np.float32)
    if lookup is not None and (curves.dtype not in (np.uint8, np.uint16) or len(lookup) < 1 << (8 * curves.itemsize)):
        raise ValueError("a lookup needs 8- or 16-bit curves and an entry for every value of their type")
    n_frames, n_pixels = curves.shape
    if n_frames < MIN_USABLE_FRAMES:
        raise InputError(f"a parametric map needs at least {MIN_USABLE_FRAMES} frames, got {n_frames}")
    if n_pixels == 0:  # no curve (a region of no pixels): no fit, and no thread pool of no threads
        return PixelFits(np.empty((0, 5)), np.empty(0), np.empty(0), np.empty(0, dtype=np.uint8))
    bins_fit = frame_bins(times_s, BIN_SECONDS)
    fit_times, fit_counts = _bin(times_s, bins_fit)
    bins_dictionary = frame_bins(fit_times, BIN_SECONDS, MAX_DICTIONARY_BINS)
    dictionary_times, dictionary_weights = _bin(fit_times, bins_dictionary, fit_counts)
    dictionary = _Dictionary(model, dictionary_times, dictionary_weights)
    lower, upper = _bounds(model, times_s)

    params = np.empty((n_pixels, 5))
    qof = np.empty(n_pixels)
    constant = np.empty(n_pixels, dtype=bool)
    f_ratio = np.empty(n_pixels)
    scale = np.empty(n_pixels)

    def fit_chunk(start: int) -> None:
        chunk = slice(start, min(start + CHUNK_PIXELS, n_pixels))
        block = curves[:, chunk] if lookup is None else table_lookup(lookup, curves[:, chunk])
        binned, _ = _bin(block, bins_fit)
        # Scale each curve to a peak of about 1 (the bins average the speckle out of the maximum) so
        # that one set of bounds and damping suits all pixels.
        peak = binned.max(axis=0)
        chunk_scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
        scale[chunk] = chunk_scale
        binned /= chunk_scale
        x = np.clip(dictionary.best(_bin(binned, bins_dictionary, fit_counts)[0]), lower, upper)
        x = _levenberg_marquardt(model, fit_times, binned, x, lower, upper, BINNED_ITERATIONS, weights=fit_counts)
        params[chunk] = x
        binned_curve = _model_and_jacobian(model, fit_times, x, False)[0]
        # Quality over every frame (QOF) and enhancement significance on the bins (F), where a
        # single-frame speckle spike, exponentially distributed, cannot pass for a bolus.
        qof[chunk], constant[chunk] = _qof_all_frames(block, chunk_scale, binned, binned_curve, fit_counts)
        f_ratio[chunk] = _enhancement_f(binned, binned_curve, fit_counts)

    # numpy releases the GIL inside array operations, so chunks run in parallel on threads.
    starts = range(0, n_pixels, CHUNK_PIXELS)
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=min(WORKER_THREADS, len(starts))) as pool:
        for _ in pool.map(fit_chunk, starts):  # the chunks are the parallelism, each one BLAS thread
            pass
    params[:, 0] *= scale
    params[:, 1] *= scale
    return PixelFits(params, qof, f_ratio, _status(model, params, qof, f_ratio, constant, times_s))


def _qof_all_frames(curves: np.ndarray, scale: np.ndarray, binned: np.ndarray, binned_curve: np.ndarray,
                    counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """QOF (%) over every frame, the fitted curve taken at each bin's mean time, and which curves are
    constant (:data:`CONSTANT_CURVE_RELATIVE_VARIANCE`; their QOF is NaN).

    SS_res = sum over bins of the frames' scatter about their bin mean plus count x (bin mean -
    curve)^2: exact for the data, and for the curve to second order in the bin length (the curve
    moves little within 0.5 s), at the cost of one pass over the frames instead of an evaluation
    of the model at every frame. The frames' scatter summed over the bins is their sum of squares
    less count x (bin mean)^2 per bin, so the one pass is a sum of squares (in float64).
    """
    squares = np.einsum("np,np->p", curves, curves, dtype=np.float64)
    squares /= np.square(scale, dtype=np.float64)  # the curves' scaled units, as binned and binned_curve
    weights = counts.astype(np.float32)[:, None]
    scatter = squares - np.einsum("np,np->p", binned * weights, binned, dtype=np.float64)
    misfit = binned - binned_curve
    residual_ss = scatter + np.einsum("np,np->p", misfit * weights, misfit, dtype=np.float64)
    mean = (binned * weights).sum(axis=0, dtype=np.float64) / counts.sum()
    total_ss = squares - counts.sum() * mean * mean
    constant = ~(total_ss > CONSTANT_CURVE_RELATIVE_VARIANCE * squares)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(constant, np.nan, 100.0 * (1.0 - residual_ss / total_ss)), constant


def _enhancement_f(binned: np.ndarray, binned_curve: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """F ratio of the bolus against a constant on count-weighted bin means."""
    weights = (counts / counts.mean()).astype(np.float32)[:, None]
    mean = (binned * weights).sum(axis=0, dtype=np.float64) / weights.sum()
    centred = binned - mean[None, :].astype(np.float32)
    total = np.einsum("np,np->p", centred * weights, centred, dtype=np.float64)
    residual = binned - binned_curve
    residual_ss = np.einsum("np,np->p", residual * weights, residual, dtype=np.float64)
    degrees = max(binned.shape[0] - 5, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(residual_ss > 0, ((total - residual_ss) / 4.0) / (residual_ss / degrees), np.inf)


def _status(model: BolusModel, params: np.ndarray, qof: np.ndarray, f_ratio: np.ndarray, constant: np.ndarray,
            times_s: np.ndarray) -> np.ndarray:
    status = np.full(params.shape[0], STATUS_FITTED, dtype=np.uint8)
    peak_time = params[:, 2] + _peak_delay(model, params[:, 3], params[:, 4])
    failed = ~np.all(np.isfinite(params), axis=1) | ~np.isfinite(qof) | (peak_time <= times_s[0]) \
        | (peak_time >= times_s[-1])
    status[failed] = STATUS_FIT_FAILED
    status[(qof < MIN_MAP_QOF_PERCENT) & ~failed] = STATUS_POOR_FIT
    # A "bolus" rising and falling within a few frames is a speckle spike between frames, not
    # perfusion: the ROI fits' rule (kinetics.bolus), on the frame bins.
    landmarks = bolus_parameter_arrays(model, dict(zip(model.parameter_names, params.T)))
    shortest = shortest_bolus_s(max(BIN_SECONDS, float(np.median(np.diff(times_s)))))
    with np.errstate(invalid="ignore"):
        spike = ~(landmarks["TO"] - landmarks["TI"] >= shortest)
    no_enhancement = ~(f_ratio >= MIN_ENHANCEMENT_F) | ~(params[:, 1] > 0) | spike
    status[no_enhancement & ~failed] = STATUS_NO_ENHANCEMENT
    status[constant] = STATUS_NO_ENHANCEMENT  # nothing to fit: its QOF (NaN) is no failure
    return status


def _peak_delay(model: BolusModel, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if model.name == "lognormal":
            return np.exp(p1 - p2 * p2)
        if model.name == "gamma":
            return p1 * p2
        return np.array([model.shape_peak(a, b) if np.isfinite(a) and np.isfinite(b) and b > 0 else np.nan
                         for a, b in zip(p1, p2)])
