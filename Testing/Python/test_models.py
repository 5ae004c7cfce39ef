"""Bolus models and the perfusion parameters derived from them, checked against numerical integration."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS, get_model
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES, bolus_parameters, relative_parameters

# Typical and extreme shape parameters (p1, p2) of every model.
SHAPES = {
    "lognormal": [(2.3, 0.5), (1.0, 0.15), (3.5, 1.3)],
    "gamma": [(3.0, 4.0), (1.5, 10.0), (40.0, 0.5)],
    "ldrw": [(14.0, 3.0), (20.0, 0.4), (10.0, 800.0)],
    "fpt": [(16.0, 2.5), (25.0, 0.4), (10.0, 800.0)],
}
CASES = [(name, p1, p2) for name, shapes in SHAPES.items() for p1, p2 in shapes]

# One bolus per model for the parameter checks: O (a.u.), A (a.u. s), t0 (s), p1, p2.
TYPICAL = {
    "lognormal": (1e-3, 0.2, 6.0, 2.3, 0.5),
    "gamma": (1e-3, 0.2, 7.0, 3.0, 4.0),
    "ldrw": (1e-3, 0.2, 6.0, 14.0, 3.0),
    "fpt": (1e-3, 0.2, 6.0, 16.0, 2.5),
}


def _quad_over_shape(model, p1, p2, weight=lambda tau: 1.0):
    """Integral of weight(tau) * shape(tau) over (0, inf), split at the peak and the inflections."""
    rise, fall = model.shape_inflections(p1, p2)
    breaks = [0.0, rise, model.shape_peak(p1, p2), fall]
    integrand = lambda tau: weight(tau) * float(model.shape(tau, p1, p2))  # noqa: E731
    total = 0.0
    for low, high in zip(breaks[:-1], breaks[1:]):
        if high > low:
            total += integrate.quad(integrand, low, high, epsabs=0, epsrel=1e-12, limit=200)[0]
    total += integrate.quad(integrand, fall, math.inf, epsabs=0, epsrel=1e-12, limit=200)[0]
    return total


@pytest.mark.parametrize("name,p1,p2", CASES)
def test_shape_has_unit_area(name, p1, p2):
    model = BOLUS_MODELS[name]
    assert _quad_over_shape(model, p1, p2) == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("name,p1,p2", CASES)
def test_mean_transit_is_first_moment(name, p1, p2):
    model = BOLUS_MODELS[name]
    t0 = 4.5
    params = dict(zip(model.parameter_names, (1e-3, 2.0, t0, p1, p2)))
    numerical_mean_delay = _quad_over_shape(model, p1, p2, weight=lambda tau: tau)
    assert model.mean_transit(params) == pytest.approx(t0 + numerical_mean_delay, rel=1e-8)


def test_mean_transit_closed_forms():
    assert BOLUS_MODELS["lognormal"].mean_transit((0, 1, 2.0, 2.3, 0.5)) == pytest.approx(2.0 + math.exp(2.3 + 0.125))
    assert BOLUS_MODELS["gamma"].mean_transit((0, 1, 2.0, 3.0, 4.0)) == pytest.approx(2.0 + 4.0 * 4.0)
    assert BOLUS_MODELS["ldrw"].mean_transit((0, 1, 2.0, 14.0, 3.0)) == pytest.approx(2.0 + 14.0 + 14.0 / 3.0)
    assert BOLUS_MODELS["fpt"].mean_transit((0, 1, 2.0, 16.0, 2.5)) == pytest.approx(2.0 + 16.0)


@pytest.mark.parametrize("name,p1,p2", CASES)
def test_cdf_matches_integral(name, p1, p2):
    model = BOLUS_MODELS[name]
    peak = model.shape_peak(p1, p2)
    for tau in (0.5 * peak, peak, 3.0 * peak):
        numerical = integrate.quad(lambda x: float(model.shape(x, p1, p2)), 0.0, tau,
                                   epsabs=1e-14, epsrel=1e-12, limit=200, points=[min(peak, tau)])[0]
        assert float(model.shape_cdf(np.array([tau]), p1, p2)[0]) == pytest.approx(numerical, rel=1e-8, abs=1e-13)
    assert float(model.shape_cdf(np.array([-1.0]), p1, p2)[0]) == 0.0


@pytest.mark.parametrize("name,p1,p2", CASES)
def test_enhancement_is_zero_before_t0_and_curve_adds_offset(name, p1, p2):
    model = BOLUS_MODELS[name]
    params = dict(zip(model.parameter_names, (0.01, 2.0, 5.0, p1, p2)))
    t = np.array([-10.0, 0.0, 5.0, 5.0 + model.shape_peak(p1, p2)])
    enhancement = model.enhancement(t, params)
    assert np.all(enhancement[:3] == 0.0)
    assert enhancement[3] > 0
    np.testing.assert_array_equal(model.curve(t, params), 0.01 + enhancement)


@pytest.mark.parametrize("name,p1,p2", CASES)
def test_no_warnings_near_t0_and_far_away(name, p1, p2):
    model = BOLUS_MODELS[name]
    t0 = 3.0
    t = t0 + np.array([-1.0, 0.0, 1e-300, 1e-200, 1e-15, 1e-9, 1e-3, 1.0, 1e3, 1e6, 1e12])
    params = (0.0, 1.0, t0, p1, p2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = model.enhancement(t, params)
        slopes = model.enhancement_slope(t, params)
        jacobian = model.jacobian(t, params)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(np.isfinite(slopes)) and np.all(np.isfinite(jacobian))


def test_huge_lambda_does_not_overflow():
    for name in ("ldrw", "fpt"):
        model = BOLUS_MODELS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tau = np.linspace(0.0, 40.0, 4001)
            values = model.shape(tau, 20.0, 1e4)
            cdf = model.shape_cdf(tau, 20.0, 1e4)
        assert np.all(np.isfinite(values)) and np.all(np.isfinite(cdf))
        # Nearly Gaussian, sd = mu / sqrt(lambda) = 0.2 s, so almost all of the area lies on the grid.
        assert integrate.trapezoid(values, tau) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("name", sorted(BOLUS_MODELS))
def test_jacobian_matches_finite_differences(name):
    model = BOLUS_MODELS[name]
    x = np.array(TYPICAL[name])
    t = np.linspace(0.0, 80.0, 300)
    analytic = model.jacobian(t, x)
    numerical = np.empty_like(analytic)
    for k in range(5):
        step = 1e-6 * max(abs(x[k]), 1.0)
        up, down = x.copy(), x.copy()
        up[k] += step
        down[k] -= step
        numerical[:, k] = (model.curve(t, up) - model.curve(t, down)) / (2 * step)
    scale = np.max(np.abs(numerical), axis=0)
    assert np.max(np.abs(analytic - numerical) / scale) < 1e-6


def test_registry_and_parameter_order():
    assert set(BOLUS_MODELS) == {"lognormal", "gamma", "ldrw", "fpt"}
    assert BOLUS_MODELS["lognormal"].parameter_names == ("O", "A", "t0", "mu", "sigma")
    assert BOLUS_MODELS["gamma"].parameter_names == ("O", "A", "t0", "alpha", "beta")
    assert BOLUS_MODELS["ldrw"].parameter_names == ("O", "A", "t0", "mu", "lambda")
    assert BOLUS_MODELS["fpt"].parameter_names == ("O", "A", "t0", "mu", "lambda")
    assert get_model("LogNormal") is BOLUS_MODELS["lognormal"]
    assert get_model(BOLUS_MODELS["fpt"]) is BOLUS_MODELS["fpt"]
    with pytest.raises(InputError) as raised:
        get_model("gaussian")
    for name in BOLUS_MODELS:
        assert name in str(raised.value)


def test_unpack_rejects_incomplete_parameters():
    model = BOLUS_MODELS["lognormal"]
    with pytest.raises(InputError, match="sigma"):
        model.curve([1.0], {"O": 0, "A": 1, "t0": 0, "mu": 1})
    with pytest.raises(InputError):
        model.curve([1.0], [0, 1, 0, 1])


# -- parameters ---------------------------------------------------------------------------------------

def _integral_between(t, e, start, end):
    """Trapezoid integral of samples e(t) from start to end, with interpolated partial end intervals."""
    inside = (t > start) & (t < end)
    tt = np.concatenate(([start], t[inside], [end]))
    ee = np.concatenate(([np.interp(start, t, e)], e[inside], [np.interp(end, t, e)]))
    return integrate.trapezoid(ee, tt)


def _numerical_parameters(model, params, dt=1e-4, t_end=300.0):
    """Every parameter from e(t) sampled every dt seconds, by np.gradient and trapezoids only."""
    t0 = params[2]
    t = np.arange(t0 - 1.0, t_end, dt)
    e = model.enhancement(t, params)
    slope = np.gradient(e, dt)
    i_peak, i_rise, i_fall = int(np.argmax(e)), int(np.argmax(slope)), int(np.argmin(slope))
    # Refine the peak with a parabola through the three samples around it.
    left, centre, right = e[i_peak - 1: i_peak + 2]
    time_to_peak = t[i_peak] + 0.5 * dt * (left - right) / (left - 2 * centre + right)
    time_in = t[i_rise] - e[i_rise] / slope[i_rise]
    time_out = t[i_fall] - e[i_fall] / slope[i_fall]
    area = integrate.trapezoid(e, t)
    mean_transit = integrate.trapezoid(t * e, t) / area
    wash_in = _integral_between(t, e, time_in, time_to_peak)
    wash_out = _integral_between(t, e, time_to_peak, time_out)
    return {
        "PE": e[i_peak], "TTP": time_to_peak, "WiR": slope[i_rise], "WoR": slope[i_fall],
        "TI": time_in, "TO": time_out, "RT": time_to_peak - time_in, "FT": time_out - time_to_peak,
        "mTTl": mean_transit - time_in, "WiAUC": wash_in, "WoAUC": wash_out,
        "WiWoAUC": wash_in + wash_out, "WiPI": wash_in / (time_to_peak - time_in), "AUC": area,
    }


@pytest.mark.parametrize("name", sorted(BOLUS_MODELS))
def test_parameters_match_finely_sampled_enhancement(name):
    model = BOLUS_MODELS[name]
    params = TYPICAL[name]
    values = bolus_parameters(name, params, qof=97.5)
    assert tuple(values) == PARAMETER_NAMES
    assert values["QOF"] == 97.5
    expected = _numerical_parameters(model, params)
    for key, reference in expected.items():
        assert values[key] == pytest.approx(reference, rel=1e-6), key
    assert values["AUC"] == params[1]
    assert values["WoR"] < 0 < values["WiR"]
    assert values["TI"] < values["TTP"] < values["TO"]


def test_lognormal_parameters_closed_forms():
    offset, area, t0, mu, sigma = 2e-3, 0.7, 4.0, 2.1, 0.45
    values = bolus_parameters("lognormal", {"O": offset, "A": area, "t0": t0, "mu": mu, "sigma": sigma}, None)
    assert values["TTP"] == pytest.approx(t0 + math.exp(mu - sigma**2), rel=1e-12)
    assert values["PE"] == pytest.approx(area / (math.sqrt(2 * math.pi) * sigma) * math.exp(-mu + sigma**2 / 2), rel=1e-12)
    # Inflections: ln tau = mu - sigma^2 (3 +- sqrt(1 + 4/sigma^2)) / 2; e'/e = -(1 + (ln tau - mu)/sigma^2)/tau.
    root = math.sqrt(1 + 4 / sigma**2)
    shape = lambda tau: math.exp(-(math.log(tau) - mu) ** 2 / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma * tau)  # noqa: E731
    rate = lambda tau: -(1 + (math.log(tau) - mu) / sigma**2) / tau  # noqa: E731
    tau_rise = math.exp(mu - sigma**2 * (3 + root) / 2)
    tau_fall = math.exp(mu - sigma**2 * (3 - root) / 2)
    assert values["WiR"] == pytest.approx(area * shape(tau_rise) * rate(tau_rise), rel=1e-12)
    assert values["WoR"] == pytest.approx(area * shape(tau_fall) * rate(tau_fall), rel=1e-12)
    assert values["TI"] == pytest.approx(t0 + tau_rise - 1 / rate(tau_rise), rel=1e-12)
    assert values["TO"] == pytest.approx(t0 + tau_fall - 1 / rate(tau_fall), rel=1e-12)
    assert values["mTTl"] == pytest.approx(t0 + math.exp(mu + sigma**2 / 2) - values["TI"], rel=1e-12)
    cdf = lambda t: 0.5 * math.erfc(-(math.log(t - t0) - mu) / (sigma * math.sqrt(2)))  # noqa: E731
    assert values["WiAUC"] == pytest.approx(area * (cdf(values["TTP"]) - cdf(values["TI"])), rel=1e-12)
    assert values["WoAUC"] == pytest.approx(area * (cdf(values["TO"]) - cdf(values["TTP"])), rel=1e-12)
    assert values["WiPI"] == pytest.approx(values["WiAUC"] / values["RT"], rel=1e-12)
    assert values["AUC"] == area
    assert values["QOF"] is None


def test_parameters_undefined_for_invalid_fit():
    values = bolus_parameters("lognormal", (0.0, math.nan, 1.0, 2.0, 0.5), 80.0)
    assert values["QOF"] == 80.0
    assert all(values[name] is None for name in PARAMETER_NAMES if name != "QOF")
    values = bolus_parameters("lognormal", (0.0, 1.0, 1.0, 2.0, -0.5), None)
    assert all(value is None for value in values.values())
    with pytest.raises(InputError):
        bolus_parameters("lognormal", {"A": 1.0}, None)


def test_relative_parameters():
    values = {"PE": 2.0, "TTP": 30.0, "WiR": None, "WoR": -1.0, "AUC": 5.0, "QOF": math.nan}
    reference = {"PE": 4.0, "TTP": 20.0, "WiR": 1.0, "WoR": 0.0, "QOF": 90.0}
    relative = relative_parameters(values, reference)
    assert relative == {"PE": 0.5, "TTP": 1.5, "WiR": None, "WoR": None, "AUC": None, "QOF": None}
