"""Destruction-replenishment: segments after flashes, the mono-exponential fit, its parameters."""
import math

import numpy as np
import pytest

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.replenishment import (REPLENISHMENT_PARAMETER_NAMES, ReplenishmentFit, fit_replenishment, fit_segments, replenishment_parameters, segments_after_flashes)

FRAME_RATE_HZ = 8.0
SPECKLE_CV = 0.04  # multiplicative noise of an ROI mean: a few % (speckle averaged over the ROI)
ADDITIVE_FRACTION = 0.01  # electronic noise, as a fraction of the replenished enhancement


def noisy(clean: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Speckle-like multiplicative noise (gamma, mean 1, CV 4 %) plus additive Gaussian noise."""
    speckle = rng.gamma(1.0 / SPECKLE_CV**2, SPECKLE_CV**2, clean.size)
    return clean * speckle + ADDITIVE_FRACTION * amplitude * rng.standard_normal(clean.size)


def monoexponential(t, t_flash, offset, amplitude, beta):
    tau = np.clip(np.asarray(t, dtype=float) - t_flash, 0.0, None)
    return offset + amplitude * -np.expm1(-beta * tau)


@pytest.mark.parametrize("amplitude,beta,seed", [(0.05, 0.3, 1), (0.2, 1.2, 2), (0.01, 0.6, 3), (0.08, 0.15, 4)])
def test_known_amplitude_and_rate_are_recovered(amplitude, beta, seed):
    rng = np.random.default_rng(seed)
    t_flash = 0.0
    t = np.arange(1, 25 * FRAME_RATE_HZ + 1) / FRAME_RATE_HZ  # 25 s after the flash
    offset = 0.1 * amplitude
    tic = noisy(monoexponential(t, t_flash, offset, amplitude, beta), amplitude, rng)
    fit = fit_replenishment(t, tic, t_flash)
    assert fit.status == "ok", fit.reason
    assert fit.params["A"] == pytest.approx(amplitude, rel=0.10)
    assert fit.params["beta"] == pytest.approx(beta, rel=0.10)
    assert fit.qof > 80
    parameters = replenishment_parameters(fit)
    assert parameters["rBV"] == pytest.approx(amplitude, rel=0.10)
    assert parameters["mTT"] == pytest.approx(1.0 / beta, rel=0.10)
    assert parameters["rBF"] == pytest.approx(amplitude * beta, rel=0.15)


def test_parameter_definitions():
    fit = ReplenishmentFit("monoexponential", "ok", t_flash_s=2.0,
                           params={"O": 0.01, "A": 0.3, "beta": 0.5}, qof=91.0)
    parameters = replenishment_parameters(fit)
    assert tuple(parameters) == REPLENISHMENT_PARAMETER_NAMES
    assert parameters == pytest.approx({"rBV": 0.3, "mTT": 2.0, "rBF": 0.15, "PI": 0.15, "WiR": 0.15, "QOF": 91.0})
    # WiR is the steepest slope of the fitted curve, just after the flash
    t = np.linspace(2.0 + 1e-7, 20.0, 200001)
    slope = np.gradient(fit.curve(t), t)
    assert slope.max() == pytest.approx(parameters["WiR"], rel=1e-4)
    # the plateau is O + rBV; the curve is undefined at and before the flash
    assert fit.curve(1e6) == pytest.approx(0.31)
    assert np.isnan(fit.curve([1.0, 2.0])).all()
    not_ok = ReplenishmentFit("monoexponential", "no_enhancement", t_flash_s=0.0, reason="flat")
    assert all(value is None for value in replenishment_parameters(not_ok).values())
    assert np.isnan(not_ok.curve([1.0])).all()


def clip_with_flashes(rng, flash_bursts, truths, n_frames=480, offset=0.004):
    """A whole clip's TIC: steady infusion before the first flash, then one refill per flash."""
    t = np.arange(n_frames) / FRAME_RATE_HZ
    first = flash_bursts[0][0]
    clean = np.full(n_frames, offset + truths[0][0])  # steady state before the first flash
    for number, burst in enumerate(flash_bursts):
        amplitude, beta = truths[number]
        stop = flash_bursts[number + 1][0] if number + 1 < len(flash_bursts) else n_frames
        frames = np.arange(burst[-1] + 1, stop)
        clean[frames] = monoexponential(t[frames], t[burst[-1]], offset, amplitude, beta)
        clean[list(burst)] = 1.0  # the high-MI flash frames are bright
    tic = noisy(clean, min(a for a, _ in truths), rng)
    assert first > 0
    return t, tic


def test_several_flashes_give_one_fit_per_segment():
    rng = np.random.default_rng(7)
    bursts = [(40, 41, 42), (200,), (330, 331)]
    truths = [(0.05, 0.4), (0.03, 0.8), (0.06, 0.25)]
    t, tic = clip_with_flashes(rng, bursts, truths)
    segments = segments_after_flashes(t, [331, 41, 200, 40, 42, 330])  # any order, bursts grouped
    assert [s.flash_frames for s in segments] == bursts
    assert [s.t_flash_s for s in segments] == [t[42], t[200], t[331]]
    assert segments[0].frames[0] == 43 and segments[0].frames[-1] == 199
    assert segments[2].frames[-1] == t.size - 1
    fits = fit_segments(t, tic, segments)
    assert len(fits) == 3
    for fit, (amplitude, beta) in zip(fits, truths):
        assert fit.status == "ok", fit.reason
        assert fit.params["A"] == pytest.approx(amplitude, rel=0.10)
        assert fit.params["beta"] == pytest.approx(beta, rel=0.10)


def test_use_mask_removes_frames_from_segments():
    t = np.arange(100) / FRAME_RATE_HZ
    use = np.ones(100, dtype=bool)
    use[[12, 13, 60]] = False
    segments = segments_after_flashes(t, [10, 50], use)
    assert 12 not in segments[0].frames and 13 not in segments[0].frames
    assert segments[0].frames.tolist() == [11] + list(range(14, 50))
    assert 60 not in segments[1].frames and segments[1].frames[0] == 51


def test_necrosis_like_flat_segment_is_no_enhancement():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        t = np.arange(1, 161) / FRAME_RATE_HZ
        tic = noisy(np.full(t.size, 0.004), 0.004, rng)
        fit = fit_replenishment(t, tic, 0.0)
        assert fit.status == "no_enhancement", fit.reason
        assert "noise" in fit.reason
        assert replenishment_parameters(fit)["rBV"] is None


def test_segment_shorter_than_the_transit_time_fails():
    rng = np.random.default_rng(11)
    t = np.arange(1, 41) / FRAME_RATE_HZ  # 5 s after the flash, mTT 20 s: far from the plateau
    tic = noisy(monoexponential(t, 0.0, 0.002, 0.1, 0.05), 0.1, rng)
    fit = fit_replenishment(t, tic, 0.0)
    assert fit.status == "fit_failed"
    assert "plateau is not reached" in fit.reason


def test_too_few_frames_and_nan_frames():
    t = np.arange(1, 6) / FRAME_RATE_HZ
    fit = fit_replenishment(t, np.linspace(0.01, 0.05, 5), 0.0)
    assert fit.status == "fit_failed" and "usable frames" in fit.reason
    rng = np.random.default_rng(5)
    t = np.arange(1, 161) / FRAME_RATE_HZ
    tic = noisy(monoexponential(t, 0.0, 0.003, 0.05, 0.5), 0.05, rng)
    tic[[3, 50, 90]] = np.nan
    fit = fit_replenishment(t, tic, 0.0)
    assert fit.ok and fit.n_frames_used == 157
    assert fit.params["beta"] == pytest.approx(0.5, rel=0.10)
    # frames at or before the flash are not part of the replenishment
    before = fit_replenishment(np.concatenate([[-1.0, 0.0], t]), np.concatenate([[1.0, 1.0], tic]), 0.0)
    assert before.n_frames_used == 157 and before.params == pytest.approx(fit.params)


@pytest.mark.parametrize("flashes,match", [
    (list(range(20)), "no usable frame is left"),  # every frame is a flash
    ([19], "no usable frame is left"),  # flash at the last frame only
    ([], "no flash frame"),
    ([25], "outside the clip's frames 0..19"),
    ([-1], "outside"),
    ([2.5], "not a whole frame index"),
])
def test_flash_lists_that_leave_nothing_to_fit(flashes, match):
    t = np.arange(20) / FRAME_RATE_HZ
    with pytest.raises(InputError, match=match) as error:
        segments_after_flashes(t, flashes)
    assert "--flash-frames" in str(error.value) and "\n" not in str(error.value)


def test_flash_whose_frames_are_all_excluded():
    t = np.arange(20) / FRAME_RATE_HZ
    use = np.ones(20, dtype=bool)
    use[16:] = False
    with pytest.raises(InputError, match="--flash-frames 15"):
        segments_after_flashes(t, [15], use)
    assert len(segments_after_flashes(t, [5, 15], use)) == 1


def test_misuse_raises():
    t = np.arange(1, 20) / FRAME_RATE_HZ
    with pytest.raises(InputError, match="unknown replenishment model"):
        fit_replenishment(t, t, 0.0, model="arditi2006")
    with pytest.raises(InputError, match="TIC values"):
        fit_replenishment(t, t[:-1], 0.0)
    with pytest.raises(InputError, match="flash time"):
        fit_replenishment(t, t, math.nan)
    with pytest.raises(InputError, match="frame selection"):
        fit_replenishment(t, t, 0.0, use=np.ones(3, dtype=bool))


def test_replenishment_in_a_synthetic_clip():
    """Flashes in a generated clip (speckle, log compression, linearisation): A and beta recovered."""
    import inspect

    from DCEUSResponseLib.synthetic import clips as synthetic
    from DCEUSResponseLib.ceus.linearize import linear_from_gray
    from DCEUSResponseLib.ceus.tic import time_intensity_curve
    from DCEUSResponseLib.synthetic.clips import PerfusionRegion, lognormal_enhancement, make_clip

    if "flash_frames" not in inspect.signature(make_clip).parameters:
        pytest.skip("synthetic.make_clip cannot generate flashes")
    beta = synthetic.REPLENISHMENT_RATE_PER_S
    frame_interval_s, n_frames = 0.125, 240
    # A very long, broad bolus around its peak: the blood concentration is steady over the clip,
    # as during the constant infusion of a destruction-replenishment study.
    mode_s, sigma = 1500.0, 0.5
    shape_peak = 1.0 / (math.sqrt(2 * math.pi) * sigma * mode_s) * math.exp(-sigma**2 / 2)
    steady = {"O": 3e-4, "A": 0.01 / shape_peak, "t0": 15.0 - mode_s, "mu": math.log(mode_s) + sigma**2,
              "sigma": sigma}
    panel = (80, 100)
    regions = [PerfusionRegion("tissue", (40, 50), 60, steady, is_background=True),
               PerfusionRegion("necrosis", (40, 70), 14, {**steady, "A": 0.0})]
    flashes = [40, 41, 150]
    clip = make_clip(regions, panel_shape=panel, n_frames=n_frames, frame_interval_s=frame_interval_s,
                     dynamic_range_db=50.0, flash_frames=flashes, seed=3)
    rows, columns = clip.contrast_region.slices
    linear = linear_from_gray(clip.frames[:, rows, columns], 50.0)
    times = clip.frame_times_s
    segments = segments_after_flashes(times, clip.flash_frames)
    assert [s.flash_frames for s in segments] == [(40, 41), (150,)]
    for name in ("tissue", "necrosis"):
        tic = time_intensity_curve(linear, clip.roi_masks[name][rows, columns])
        fits = fit_segments(times, tic, segments)
        for segment, fit in zip(segments, fits):
            if name == "necrosis":
                assert fit.status == "no_enhancement", fit.reason
                continue
            assert fit.status == "ok", fit.reason
            expected_a = float(np.mean(lognormal_enhancement(times[segment.frames], steady)))
            assert fit.params["A"] == pytest.approx(expected_a, rel=0.10)
            assert fit.params["beta"] == pytest.approx(beta, rel=0.10)
