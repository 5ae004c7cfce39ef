"""Bolus fitting: recovery of known parameters, the no-enhancement decision and robustness."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from DCEUSResponseLib.kinetics import bolus as fitting
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.bolus import BolusFit, fit_bolus
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS
from DCEUSResponseLib.kinetics.parameters import bolus_parameters

# True shape of the synthetic boluses: t0 (s) and the two shape parameters.
TRUE_SHAPE = {
    "lognormal": {"t0": 6.0, "mu": 2.3, "sigma": 0.5},
    "gamma": {"t0": 7.0, "alpha": 3.0, "beta": 4.0},
    "ldrw": {"t0": 6.0, "mu": 14.0, "lambda": 3.0},
    "fpt": {"t0": 6.0, "mu": 16.0, "lambda": 2.5},
}

# Acquisitions: frame interval (s), clip end (s), baseline O (a.u.), PE / O.
ACQUISITIONS = [
    (0.1, 60.0, 1e-4, 3.0),
    (0.5, 180.0, 1e-2, 50.0),
    (0.25, 90.0, 1e-6, 10.0),
]

TOLERANCES = {"PE": 0.05, "TTP": 0.02, "mTTl": 0.05, "WiWoAUC": 0.05}


def _frame_times(rng, interval, end, start=-3.0):
    """Frame times (s) with up to +-30 % jitter of the frame interval."""
    times = np.arange(start, end, interval)
    return times + rng.uniform(-0.3, 0.3, times.size) * interval


def _noisy(rng, clean, baseline, multiplicative=0.03, additive=0.01):
    """Multiplicative (speckle-like) noise plus additive noise relative to the baseline."""
    return (clean * (1 + multiplicative * rng.standard_normal(clean.size))
            + additive * baseline * rng.standard_normal(clean.size))


def _synthetic_bolus(name, rng, interval, end, baseline, peak_ratio):
    model = BOLUS_MODELS[name]
    params = {"O": baseline, "A": 1.0, **TRUE_SHAPE[name]}
    params["A"] = peak_ratio * baseline / bolus_parameters(model, params, None)["PE"]
    times = _frame_times(rng, interval, end)
    return times, _noisy(rng, model.curve(times, params), baseline), params


@pytest.mark.parametrize("name", sorted(BOLUS_MODELS))
@pytest.mark.parametrize("acquisition", ACQUISITIONS)
def test_fit_recovers_parameters(name, acquisition):
    interval, end, baseline, peak_ratio = acquisition
    rng = np.random.default_rng(11)
    times, tic, true_params = _synthetic_bolus(name, rng, interval, end, baseline, peak_ratio)
    # A few frames excluded (e.g. motion): corrupt them so that using them would spoil the fit.
    use = np.ones(times.size, dtype=bool)
    excluded = rng.choice(times.size, 6, replace=False)
    use[excluded] = False
    tic[excluded] *= 8.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_bolus(times, tic, model=name, use=use)
    assert fit.status == "ok", fit.reason
    assert fit.reason is None
    assert fit.model == name
    assert fit.n_frames_used == times.size - 6
    assert tuple(fit.params) == BOLUS_MODELS[name].parameter_names
    assert 80.0 < fit.qof <= 100.0
    fitted = bolus_parameters(name, fit.params, fit.qof)
    truth = bolus_parameters(name, true_params, None)
    for key, tolerance in TOLERANCES.items():
        assert fitted[key] == pytest.approx(truth[key], rel=tolerance), key
    assert fit.params["O"] == pytest.approx(baseline, rel=0.05)


def test_qof_uses_only_used_frames():
    rng = np.random.default_rng(3)
    times, tic, _ = _synthetic_bolus("lognormal", rng, 0.3, 90.0, 1e-3, 10.0)
    use = np.ones(times.size, dtype=bool)
    use[100:110] = False
    tic[100:110] = 1.0  # wildly off, must not count
    fit = fit_bolus(times, tic, use=use)
    assert fit.status == "ok"
    residual = tic[use] - fit.curve(times[use])
    expected = 100.0 * (1.0 - residual @ residual / np.sum((tic[use] - tic[use].mean()) ** 2))
    assert fit.qof == pytest.approx(expected, rel=1e-9)
    assert fit.qof > 90.0


def test_fit_is_deterministic():
    rng = np.random.default_rng(5)
    times, tic, _ = _synthetic_bolus("ldrw", rng, 0.2, 90.0, 1e-3, 8.0)
    first = fit_bolus(times, tic, model="ldrw")
    second = fit_bolus(times.copy(), tic.copy(), model="ldrw")
    assert first.status == "ok"
    assert first.params == second.params
    assert first.qof == second.qof


def _flat_tic(seed, drift):
    rng = np.random.default_rng(seed)
    interval, end = [(0.1, 60.0), (0.2, 120.0), (0.5, 180.0), (1.0, 90.0)][seed % 4]
    times = _frame_times(rng, interval, end)
    baseline = 10 ** rng.uniform(-6, -1)
    fraction = (times - times[0]) / (times[-1] - times[0])
    # Slow drift of the baseline by up to 30 % over the clip, well above the noise.
    profile = {"none": 0.0 * fraction, "up": 0.3 * fraction, "down": -0.3 * fraction,
               "curved": 0.3 * fraction**2}[drift]
    return times, _noisy(rng, baseline * (1 + profile), baseline), baseline


@pytest.mark.parametrize("drift", ["none", "up", "down", "curved"])
def test_flat_tic_is_no_enhancement(drift):
    for seed in range(20):
        times, tic, baseline = _flat_tic(seed, drift)
        fit = fit_bolus(times, tic)
        assert fit.status == "no_enhancement", (seed, fit.reason, fit.params)
        assert fit.params == {} and fit.qof is None
        # The reason states the numbers it is based on.
        assert re.search(r"\d", fit.reason) and ("noise" in fit.reason or "drift" in fit.reason)
        assert np.all(np.isnan(fit.curve(times)))
        assert 0.005 * baseline < fit.noise < 0.1 * baseline


@pytest.mark.parametrize("name", sorted(BOLUS_MODELS))
def test_flat_tic_is_no_enhancement_for_every_model(name):
    for seed in range(4):
        times, tic, _ = _flat_tic(seed, "up" if seed % 2 else "none")
        assert fit_bolus(times, tic, model=name).status == "no_enhancement"


def test_no_enhancement_reason_for_noise_gives_rise_and_noise():
    times, tic, _ = _flat_tic(0, "none")
    reason = fit_bolus(times, tic).reason
    match = re.search(r"peak rise (\S+) a\.u\..* below 5 x noise (\S+) a\.u\.", reason)
    assert match, reason
    assert float(match.group(1)) < 5 * float(match.group(2))


@pytest.mark.parametrize("name", sorted(BOLUS_MODELS))
@pytest.mark.parametrize("interval, width", [(0.5, 1), (0.5, 2), (0.5, 3), (0.1, 1), (0.1, 3)])
def test_a_spike_of_one_or_a_few_frames_on_a_flat_curve_is_no_bolus(name, interval, width):
    """One bright frame (or two, three) on a flat curve fits a "bolus" rising and falling between two
    samples, with a PE many times the spike and a QOF of 97 % (it was ``ok``): no_enhancement."""
    rng = np.random.default_rng(7)
    times = np.arange(0.0, 60.0, interval)
    tic = 1.0 + 0.02 * rng.standard_normal(times.size)
    middle = times.size // 2
    tic[middle:middle + width] += 1.0
    fit = fit_bolus(times, tic, model=name)
    assert fit.status == "no_enhancement", (fit.status, fit.reason, fit.params)
    if interval == 0.5:  # at 10 Hz the smoothing screen already sees no rise above the noise
        assert "spike between frames" in fit.reason and "TI to TO" in fit.reason


@pytest.mark.parametrize("interval", [0.067, 0.25, 1.0, 2.0])
def test_a_fast_real_bolus_is_no_spike(interval):
    """A steep first-pass bolus (RT 1.9 s, TI to TO 5.6 s, an arterial lesion) stays ``ok`` at 15, 4, 1
    and 0.5 Hz."""
    rng = np.random.default_rng(3)
    model = BOLUS_MODELS["lognormal"]
    times = np.arange(0.0, 90.0, interval)
    clean = model.curve(times, (1e-2, 2.0, 8.0, 1.3, 0.45))
    fit = fit_bolus(times, _noisy(rng, clean, 1e-2))
    assert fit.status == "ok", fit.reason
    rise_time = bolus_parameters("lognormal", fit.params, fit.qof)["RT"]
    assert 1.0 < rise_time < 4.0


def test_weak_enhancement_is_fitted():
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        times, tic, params = _synthetic_bolus("lognormal", rng, 0.3, 120.0, 1e-3, 2.0)
        fit = fit_bolus(times, tic)
        assert fit.status == "ok", fit.reason
        pe = bolus_parameters("lognormal", fit.params, fit.qof)["PE"]
        assert pe == pytest.approx(2.0 * params["O"], rel=0.1)


def test_peak_after_last_frame_fails():
    model = BOLUS_MODELS["lognormal"]
    times = np.arange(0.0, 12.0, 0.2)  # the bolus peaks at 15.2 s
    tic = _noisy(np.random.default_rng(2), model.curve(times, (1e-3, 0.2, 6.0, 2.3, 0.5)), 1e-3)
    fit = fit_bolus(times, tic)
    assert fit.status == "fit_failed"
    assert "outside the frames" in fit.reason


def test_bad_data_does_not_raise():
    times = np.linspace(0.0, 60.0, 200)
    constant = fit_bolus(times, np.full(200, 3e-4))
    assert constant.status == "no_enhancement" and "constant" in constant.reason
    zeros = fit_bolus(times, np.zeros(200))
    assert zeros.status == "no_enhancement"
    all_nan = fit_bolus(times, np.full(200, np.nan))
    assert all_nan.status == "fit_failed" and "usable frames" in all_nan.reason
    assert all_nan.n_frames_used == 0
    nothing_used = fit_bolus(times, np.ones(200), use=np.zeros(200, dtype=bool))
    assert nothing_used.status == "fit_failed"
    infinite = fit_bolus(times, np.full(200, np.inf))
    assert infinite.status == "fit_failed"


def test_nan_frames_are_left_out():
    rng = np.random.default_rng(8)
    times, tic, params = _synthetic_bolus("gamma", rng, 0.3, 90.0, 1e-3, 10.0)
    tic[::7] = np.nan
    times[3] = np.nan
    fit = fit_bolus(times, tic, model="gamma")
    assert fit.status == "ok", fit.reason
    assert fit.n_frames_used == int(np.sum(np.isfinite(tic) & np.isfinite(times)))
    fitted = bolus_parameters("gamma", fit.params, fit.qof)
    assert fitted["PE"] == pytest.approx(bolus_parameters("gamma", params, None)["PE"], rel=0.05)


def test_misuse_raises_input_error():
    times = np.arange(10.0)
    with pytest.raises(InputError):
        fit_bolus(times, np.ones(9))
    with pytest.raises(InputError):
        fit_bolus(times[:4], np.ones(4))
    with pytest.raises(InputError):
        fit_bolus(times, np.ones(10), use=np.ones(9, dtype=bool))
    with pytest.raises(InputError, match="lognormal"):
        fit_bolus(times, np.ones(10), model="bogus")


def test_failed_fit_curve_is_nan():
    fit = BolusFit(model="lognormal", status="fit_failed", reason="x")
    assert np.all(np.isnan(fit.curve(np.arange(5.0))))


def test_thresholds_are_module_constants():
    assert fitting.RISE_NOISE_FACTOR == 5.0
    assert fitting.PEAK_NOISE_FACTOR == 5.0
    assert 0 < fitting.MIN_QOF_PERCENT < 100
    assert fitting.MIN_DRIFT_F > 1
