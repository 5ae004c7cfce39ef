"""Perfusion parameters of a fitted bolus, per the quantification contract ("Parameters (bolus)").

Every value is computed from the fitted enhancement e(t) = f(t) - O of the model, never from the
measured samples: times in seconds relative to the injection, amplitudes in linear a.u., rates in
a.u./s, areas in a.u. * s, QOF in %. Peaks, inflection points, areas and mean transit times come
from the analytic properties of :mod:`DCEUSResponseLib.kinetics.models` (the inflections of LDRW and FPT are
Brent roots of an analytic quartic), so the values are exact to about 1e-12 relative.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from DCEUSResponseLib.catalogue import parameter_names
from DCEUSResponseLib.kinetics.models import BolusModel, ParamsLike, get_model

#: Parameter names in the order they are reported (the columns of parameters.csv): the catalogue's
#: bolus family, where their units, codes and colour maps are.
PARAMETER_NAMES: tuple[str, ...] = parameter_names("bolus")


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def bolus_parameters(model_name_or_model: str | BolusModel, params: ParamsLike,
                     qof: float | None) -> dict[str, float | None]:
    """All :data:`PARAMETER_NAMES` of the enhancement e(t) = A * shape(t - t0) of a fitted model.

    ``params`` are the model parameters (mapping or sequence in the model's parameter order: O and
    PE-type values in a.u., times in s). Definitions (contract): PE = max e (a.u.); TTP = time of
    that maximum (s, includes t0); WiR / WoR = max / min de/dt (a.u./s); TI / TO = where the
    tangents at those steepest points cross e = 0 (s); RT = TTP - TI; FT = TO - TTP;
    mTTl = mean transit time (first moment of e about t = 0 over its area) - TI (s);
    WiAUC = integral of e over [TI, TTP], WoAUC over [TTP, TO], WiWoAUC their sum (a.u. * s);
    WiPI = WiAUC / RT (a.u.); AUC = A, the integral of e over all time (a.u. * s); QOF is passed
    through (%). A value that is undefined (non-finite parameters, negative area, an infinitely steep
    rise) is None. Raises InputError for an unknown model or missing parameters.
    """
    model = get_model(model_name_or_model)
    _, area, t0, p1, p2 = model.unpack(params)
    values: dict[str, float | None] = {name: None for name in PARAMETER_NAMES}
    values["QOF"] = _finite_or_none(qof)
    if not (math.isfinite(area) and math.isfinite(t0) and area >= 0 and model.shape_parameters_valid(p1, p2)):
        return values
    try:
        tau_peak = model.shape_peak(p1, p2)
        tau_rise, tau_fall = model.shape_inflections(p1, p2)
        slope_rise, intercept_rise = model.tangent(tau_rise, p1, p2)
        slope_fall, intercept_fall = model.tangent(tau_fall, p1, p2)
        peak = area * float(model.shape(tau_peak, p1, p2))
        time_to_peak = t0 + tau_peak
        time_in = t0 + intercept_rise
        time_out = t0 + intercept_fall
        mean_transit = model.mean_transit(params)
        wash_in_area = model.enhancement_area(time_in, time_to_peak, params)
        wash_out_area = model.enhancement_area(time_to_peak, time_out, params)
    except (ValueError, ArithmeticError):
        # Shape parameters outside the model's domain (e.g. sigma <= 0): nothing is defined.
        return values
    rise_time = time_to_peak - time_in
    values.update(
        PE=peak,
        TTP=time_to_peak,
        WiR=area * slope_rise,
        WoR=area * slope_fall,
        TI=time_in,
        TO=time_out,
        RT=rise_time,
        FT=time_out - time_to_peak,
        mTTl=mean_transit - time_in,
        WiAUC=wash_in_area,
        WoAUC=wash_out_area,
        WiWoAUC=wash_in_area + wash_out_area,
        WiPI=wash_in_area / rise_time if rise_time > 0 else None,
        AUC=area,
    )
    return {name: _finite_or_none(value) for name, value in values.items()}


def relative_parameters(values: Mapping[str, float | None],
                        reference_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """``values[name] / reference_values[name]`` for every name in ``values`` (dimensionless).

    None where either value is missing, None or not finite, or the reference is 0.
    """
    relative: dict[str, float | None] = {}
    for name, value in values.items():
        value = _finite_or_none(value)
        reference = _finite_or_none(reference_values.get(name))
        if value is None or reference is None or reference == 0.0:
            relative[name] = None
        else:
            relative[name] = _finite_or_none(value / reference)
    return relative


def relative_extrapolated(relative: Mapping[str, float | None], extrapolated: Iterable[str],
                          reference_extrapolated: Iterable[str]) -> tuple[str, ...]:
    """The names, in ``relative``'s order, whose relative value is defined but uses a value extrapolated
    beyond the fitted frames: the ROI's own (``extrapolated``) or the reference ROI's."""
    leaning = set(extrapolated) | set(reference_extrapolated)
    return tuple(name for name, value in relative.items() if name in leaning and value is not None)


def _lognormal_landmarks(mu: np.ndarray, sigma: np.ndarray):
    """Delays (s) of the peak, the steepest rise and fall, and the mean of lognormal shapes."""
    variance = sigma * sigma
    root = np.sqrt(1.0 + 4.0 / variance)
    rise = np.exp(mu - variance * (1.0 + 0.5 * (1.0 + root)))
    fall = np.exp(mu - variance * (1.0 + 0.5 * (1.0 - root)))
    return np.exp(mu - variance), rise, fall, np.exp(mu + 0.5 * variance)


def _gamma_landmarks(alpha: np.ndarray, beta: np.ndarray):
    """As :func:`_lognormal_landmarks` for gamma variates (rise at 0, i.e. undefined, for alpha <= 1)."""
    root = np.sqrt(alpha)
    rise = np.where(alpha > 1.0, beta * (alpha - root), np.nan)
    return alpha * beta, rise, beta * (alpha + root), beta * (alpha + 1.0)


_VECTOR_LANDMARKS = {"lognormal": _lognormal_landmarks, "gamma": _gamma_landmarks}


def _vector_times(t0, tau_peak, tau_rise, tau_fall, rate_rise, rate_fall):
    """TTP, TI and TO (s) from the landmark delays and the log-shape slopes at the inflections."""
    return t0 + tau_peak, t0 + tau_rise - 1.0 / rate_rise, t0 + tau_fall - 1.0 / rate_fall


def bolus_parameter_arrays(model_name_or_model: str | BolusModel, params: Mapping[str, np.ndarray],
                           qof: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`bolus_parameters` for many fits at once (parametric maps), as float arrays.

    ``params`` maps the model's parameter names to equally shaped arrays. Closed forms make the
    lognormal and gamma variate fast; other models fall back to :func:`bolus_parameters` per
    element. Undefined values are NaN. Same definitions and units as :func:`bolus_parameters`.
    """
    model = get_model(model_name_or_model)
    offset, area, t0, p1, p2 = (np.asarray(params[name], dtype=np.float64) for name in model.parameter_names)
    shape = area.shape
    out = {name: np.full(shape, np.nan) for name in PARAMETER_NAMES}
    if qof is not None:
        out["QOF"] = np.asarray(qof, dtype=np.float64).copy()
    landmarks = _VECTOR_LANDMARKS.get(model.name)
    if landmarks is None:
        for index in np.ndindex(shape):
            single = bolus_parameters(model, [offset[index], area[index], t0[index], p1[index], p2[index]], None)
            for name in PARAMETER_NAMES[:-1]:
                value = single[name]
                out[name][index] = np.nan if value is None else value
        return out
    with np.errstate(all="ignore"):
        tau_peak, tau_rise, tau_fall, tau_mean = landmarks(p1, p2)
        rate_rise = model.dlog_shape_dtau(tau_rise, p1, p2)
        rate_fall = model.dlog_shape_dtau(tau_fall, p1, p2)
        shape_rise = np.exp(model.log_shape(tau_rise, p1, p2))
        shape_fall = np.exp(model.log_shape(tau_fall, p1, p2))
        time_to_peak, time_in, time_out = _vector_times(t0, tau_peak, tau_rise, tau_fall, rate_rise, rate_fall)
        cdf_in, cdf_peak, cdf_out = (model.shape_cdf(np.maximum(t - t0, 0.0), p1, p2)
                                     for t in (time_in, time_to_peak, time_out))
        rise_time = time_to_peak - time_in
        wash_in = area * (cdf_peak - cdf_in)
        wash_out = area * (cdf_out - cdf_peak)
        out.update(PE=area * np.exp(model.log_shape(tau_peak, p1, p2)), TTP=time_to_peak,
                   WiR=area * shape_rise * rate_rise, WoR=area * shape_fall * rate_fall, TI=time_in, TO=time_out,
                   RT=rise_time, FT=time_out - time_to_peak, mTTl=t0 + tau_mean - time_in, WiAUC=wash_in,
                   WoAUC=wash_out, WiWoAUC=wash_in + wash_out, WiPI=np.where(rise_time > 0, wash_in / rise_time, np.nan),
                   AUC=area)
    valid = np.isfinite(area) & (area >= 0) & np.isfinite(t0) & np.isfinite(p1) & np.isfinite(p2) & (p2 > 0)
    for name in PARAMETER_NAMES[:-1]:
        values = out[name]
        values[~valid | ~np.isfinite(values)] = np.nan
    return out


# -- extrapolation -----------------------------------------------------------------------------------

#: An area (WiAUC, WoAUC, WiWoAUC, AUC) or the first moment behind mTTl is extrapolated when more than
#: this share of it lies outside the fitted frames' time span: 10 % is below the test-retest
#: variability of DCE-US areas (15-30 % in the literature), so a smaller share cannot change a
#: reading, while a larger one makes the model's tail, not the data, the value.
EXTRAPOLATED_SHARE = 0.10


class _Landmarks(NamedTuple):
    """Times (s since injection) where a bolus parameter evaluates the fitted curve, and its shape."""

    rise: np.ndarray  # steepest rise (WiR; TI is its tangent's crossing of e = 0)
    peak: np.ndarray  # TTP (PE)
    fall: np.ndarray  # steepest fall (WoR; TO is its tangent's crossing)
    time_in: np.ndarray
    time_out: np.ndarray


#: Two consecutive fitted frames farther apart than this many median frame intervals, and at least
#: :data:`MIN_GAP_S`, leave a gap in which the curve is the model's, not the data's (frames lost or
#: excluded during the wash-in): a parameter resting on a gap is as unmeasured as one beyond the span.
GAP_FRAME_INTERVALS = 4.0
MIN_GAP_S = 2.0
#: and a gap counts where it is longer than this share of the curve's phase there (the rise time RT for
#: the peak and the steepest rise, the fall time FT for the steepest fall): a 6.5 s gap over a 5 s rise
#: leaves the rise to the model (WiR +55 %), while a 10 s dropout over the 13 s rise of a liver's peak
#: or the 14 s fall of a lesion is held by the frames on both sides (relative WiWoAUC within 5 % of the
#: truth in the study's cohort).
GAP_SHARE_OF_PHASE = 1.0


def fitted_gaps(times_s) -> tuple[tuple[float, float], ...]:
    """The gaps (start, end; s) between consecutive fitted frames at ``times_s`` (sorted) longer than
    :data:`GAP_FRAME_INTERVALS` median frame intervals and :data:`MIN_GAP_S`."""
    times = np.asarray(times_s, dtype=np.float64)
    if times.size < 3:
        return ()
    steps = np.diff(times)
    longest = max(GAP_FRAME_INTERVALS * float(np.median(steps)), MIN_GAP_S)
    return tuple((float(times[k]), float(times[k + 1])) for k in np.flatnonzero(steps > longest))


def extrapolated_flags(model: BolusModel, t0, p1, p2, landmarks: _Landmarks,
                       span_s: tuple[float, float], gaps_s=()) -> dict[str, np.ndarray]:
    """For each bolus parameter, whether it is extrapolated beyond the fitted span ``span_s`` (s) or
    into one of its ``gaps_s`` (:func:`fitted_gaps`): the peak or an inflection inside a gap longer than
    :data:`GAP_SHARE_OF_PHASE` of the rise or fall time, with what is built on it (TI, TO, RT, FT, WiPI,
    mTTl) and the areas it bounds (WiAUC, WoAUC, WiWoAUC); an area's share inside a gap does not count,
    as frames on both sides hold the curve there.

    A parameter is extrapolated when a time it evaluates the curve at (the peak, an inflection)
    or reports (TI, TO) lies outside the span, when one it is built from is (RT, FT, WiPI), or
    when more than :data:`EXTRAPOLATED_SHARE` of its area (WiAUC, WoAUC, WiWoAUC, AUC) or of the
    first moment about TI (mTTl) comes from outside the span. QOF never is. Arrays broadcast.
    """
    first, last = (float(v) for v in span_s)
    with np.errstate(all="ignore"):
        def in_gap(time, phase_s):
            """Inside a gap longer than GAP_SHARE_OF_PHASE of the curve's phase there (RT, FT): the
            frames on both sides of a shorter gap hold the curve through it."""
            inside_gap = np.zeros(np.broadcast(time, phase_s).shape, dtype=bool)
            for gap_start, gap_end in gaps_s:
                inside_gap = inside_gap | ((time > gap_start) & (time < gap_end)
                                           & ~(gap_end - gap_start <= GAP_SHARE_OF_PHASE * phase_s))
            return inside_gap

        def outside(time):
            return (time < first) | (time > last)

        def cdf(time):
            return model.shape_cdf(np.maximum(np.asarray(time, dtype=float) - t0, 0.0), p1, p2)

        def area_share_outside(low, high):
            total = cdf(high) - cdf(low)
            inside = cdf(np.clip(high, first, last)) - cdf(np.clip(low, first, last))
            return np.where(total > 0, 1.0 - inside / total, 0.0)

        def moment_below(time):  # integral of (t - TI) e(t) dt up to ``time``, per unit area
            tau = np.maximum(np.asarray(time, dtype=float) - t0, 0.0)
            return (t0 - landmarks.time_in) * model.shape_cdf(tau, p1, p2) + model.shape_partial_mean(tau, p1, p2)

        # Where the curve is evaluated (the peak, the inflections), inside a gap is as unseen as beyond
        # the span; TI and TO, built on the inflections' tangents, follow them.
        rise_s, fall_s = landmarks.peak - landmarks.time_in, landmarks.time_out - landmarks.peak
        peak_gap, rise_gap, fall_gap = (in_gap(landmarks.peak, rise_s), in_gap(landmarks.rise, rise_s),
                                        in_gap(landmarks.fall, fall_s))
        peak, rise, fall = outside(landmarks.peak) | peak_gap, outside(landmarks.rise) | rise_gap, \
            outside(landmarks.fall) | fall_gap
        time_in = rise | outside(landmarks.time_in)
        time_out = fall | outside(landmarks.time_out)
        wash_in = area_share_outside(landmarks.time_in, landmarks.peak) > EXTRAPOLATED_SHARE
        total_moment = t0 + np.vectorize(model.shape_mean, otypes=[float])(p1, p2) - landmarks.time_in
        inside_moment = moment_below(last) - moment_below(first)
        moment = np.where(total_moment > 0, 1.0 - inside_moment / total_moment, 0.0) > EXTRAPOLATED_SHARE
        all_time = 1.0 - (cdf(last) - cdf(first)) > EXTRAPOLATED_SHARE
        # Across a gap the curve is held by frames on both sides, so an area is not judged by its share
        # in the gap; but an area bounded by an inflection inside one (through TI, TO) is the model's.
        flags = dict(PE=peak, TTP=peak, WiR=rise, WoR=fall, TI=time_in, TO=time_out, RT=time_in | peak,
                     FT=time_out | peak, mTTl=time_in | moment, WiAUC=wash_in | rise_gap,
                     WoAUC=(area_share_outside(landmarks.peak, landmarks.time_out) > EXTRAPOLATED_SHARE) | fall_gap,
                     WiWoAUC=(area_share_outside(landmarks.time_in, landmarks.time_out) > EXTRAPOLATED_SHARE)
                     | rise_gap | fall_gap,
                     WiPI=wash_in | time_in | peak, AUC=all_time)
    shape = np.broadcast(t0, p1, p2).shape
    out = {name: np.broadcast_to(np.asarray(flags.get(name, False), dtype=bool), shape) for name in PARAMETER_NAMES}
    return out


def bolus_extrapolated(model_name_or_model: str | BolusModel, params: ParamsLike,
                       span_s: tuple[float, float] | None, gaps_s=()) -> tuple[str, ...]:
    """The defined bolus parameters of a fit (``params`` as for :func:`bolus_parameters`) that are
    extrapolated beyond the fitted frames' time span ``span_s`` (first, last; s since injection) or
    into its ``gaps_s`` (:func:`fitted_gaps`), in :data:`PARAMETER_NAMES` order; see
    :func:`extrapolated_flags`. Empty without a span."""
    if span_s is None:
        return ()
    model = get_model(model_name_or_model)
    _, area, t0, p1, p2 = model.unpack(params)
    values = bolus_parameters(model, params, None)
    try:
        tau_peak = model.shape_peak(p1, p2)
        tau_rise, tau_fall = model.shape_inflections(p1, p2)
        _, intercept_rise = model.tangent(tau_rise, p1, p2)
        _, intercept_fall = model.tangent(tau_fall, p1, p2)
    except (ValueError, ArithmeticError):
        return ()
    landmarks = _Landmarks(*(np.float64(t0 + tau) for tau in (tau_rise, tau_peak, tau_fall, intercept_rise,
                                                                intercept_fall)))
    flags = extrapolated_flags(model, np.float64(t0), np.float64(p1), np.float64(p2), landmarks, span_s, gaps_s)
    return tuple(name for name in PARAMETER_NAMES if values[name] is not None and bool(flags[name]))


def bolus_extrapolated_arrays(model_name_or_model: str | BolusModel, params: Mapping[str, np.ndarray],
                              span_s: tuple[float, float], gaps_s=()) -> dict[str, np.ndarray]:
    """:func:`bolus_extrapolated` for many fits at once (parametric maps): a boolean array per parameter."""
    model = get_model(model_name_or_model)
    _, area, t0, p1, p2 = (np.asarray(params[name], dtype=np.float64) for name in model.parameter_names)
    vector = _VECTOR_LANDMARKS.get(model.name)
    if vector is None:
        flags = {name: np.zeros(area.shape, dtype=bool) for name in PARAMETER_NAMES}
        for index in np.ndindex(area.shape):
            single = [params[name][index] for name in model.parameter_names]
            for name in bolus_extrapolated(model, single, span_s, gaps_s):
                flags[name][index] = True
        return flags
    with np.errstate(all="ignore"):
        tau_peak, tau_rise, tau_fall, _ = vector(p1, p2)
        times = _vector_times(t0, tau_peak, tau_rise, tau_fall, model.dlog_shape_dtau(tau_rise, p1, p2),
                              model.dlog_shape_dtau(tau_fall, p1, p2))
    landmarks = _Landmarks(t0 + tau_rise, times[0], t0 + tau_fall, times[1], times[2])
    flags = extrapolated_flags(model, t0, p1, p2, landmarks, span_s, gaps_s)
    return {name: np.array(flag) for name, flag in flags.items()}
