"""Parameters extrapolated past the data (issue 9 item 4): flagged per ROI, warned about, and left out
of the maps, by the definition of ``kinetics.parameters.extrapolated_flags``."""
import csv
import io
import json

import numpy as np
import pytest
from scipy import special

from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
from DCEUSResponseLib.clip import Clip, RoiMask
from DCEUSResponseLib.export.contract import parameters_csv, results_json
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS
from DCEUSResponseLib.kinetics.parameters import (
    EXTRAPOLATED_SHARE,
    bolus_extrapolated,
    bolus_extrapolated_arrays,
    bolus_parameters,
    fitted_gaps,
)
from DCEUSResponseLib.synthetic.clips import PerfusionRegion, liver, make_clip

T0, MU, SIGMA = 8.0, np.log(10.0), 0.5
LOGNORMAL = {"O": 1e-3, "A": 1.0, "t0": T0, "mu": MU, "sigma": SIGMA}
FIRST_S = -2.0


def _flags(last_s, params=LOGNORMAL, model="lognormal"):
    return set(bolus_extrapolated(model, params, (FIRST_S, last_s)))


def test_time_landmarks_are_extrapolated_exactly_when_they_lie_past_the_last_fitted_frame():
    values = bolus_parameters("lognormal", LOGNORMAL, None)
    fall_inflection = T0 + np.exp(MU - SIGMA**2 * (1 + 0.5 * (1 - np.sqrt(1 + 4 / SIGMA**2))))
    assert "TO" in _flags(values["TO"] - 1e-6) and "TO" not in _flags(values["TO"] + 1e-6)
    assert {"WoR", "TO", "FT"} <= _flags(fall_inflection - 1e-6)
    assert "WoR" not in _flags(fall_inflection + 1e-6)
    # The peak and the rise were seen: they are measurements.
    assert not {"PE", "TTP", "WiR", "TI", "RT", "WiAUC", "WiPI", "QOF"} & _flags(values["TTP"] + 0.5)


def test_areas_are_extrapolated_when_more_than_the_share_lies_past_the_data():
    # The lognormal's area beyond t is 1 - Phi((ln(t - t0) - mu) / sigma): AUC has exactly the share
    # EXTRAPOLATED_SHARE outside at this last time.
    last = T0 + np.exp(MU + SIGMA * special.ndtri(1 - EXTRAPOLATED_SHARE))
    assert "AUC" in _flags(last - 1e-3) and "AUC" not in _flags(last + 1e-3)
    # mTTl: the share of the first moment about TI, (t0 - TI) F + partial mean, past the data.
    ti = bolus_parameters("lognormal", LOGNORMAL, None)["TI"]
    mttl = bolus_parameters("lognormal", LOGNORMAL, None)["mTTl"]

    def moment(t):
        z = (np.log(t - T0) - MU) / SIGMA
        return (T0 - ti) * special.ndtr(z) + np.exp(MU + SIGMA**2 / 2) * special.ndtr(z - SIGMA)

    from scipy.optimize import brentq
    last = brentq(lambda t: 1 - moment(t) / mttl - EXTRAPOLATED_SHARE, T0 + 5, T0 + 200)
    assert "mTTl" in _flags(last - 1e-3) and "mTTl" not in _flags(last + 1e-3)
    assert _flags(1000.0) == set()


@pytest.mark.parametrize("model", sorted(BOLUS_MODELS))
def test_every_model_flags_a_curve_cut_after_the_peak_and_maps_agree(model):
    shape = {"lognormal": {"mu": MU, "sigma": SIGMA}, "gamma": {"alpha": 3.0, "beta": 4.0},
             "ldrw": {"mu": 14.0, "lambda": 3.0}, "fpt": {"mu": 16.0, "lambda": 2.5}}[model]
    params = {"O": 1e-3, "A": 1.0, "t0": T0, **shape}
    ttp = bolus_parameters(model, params, None)["TTP"]
    cut = _flags(ttp + 1.0, params, model)
    assert {"TO", "FT", "WoAUC", "mTTl", "AUC"} <= cut and not {"PE", "TTP", "QOF"} & cut
    assert _flags(400.0, params, model) == set()
    arrays = bolus_extrapolated_arrays(model, {k: np.full(3, v) for k, v in params.items()}, (FIRST_S, ttp + 1.0))
    assert {name for name, flag in arrays.items() if flag.all()} == cut


def test_gaps_between_fitted_frames_are_found_above_four_intervals_and_two_seconds():
    times = np.arange(100) * 0.25
    assert fitted_gaps(times) == ()
    holed = np.delete(times, np.arange(36, 61))  # frames 36-60 (9-15 s) lost: 8.75 s to 15.25 s
    assert fitted_gaps(holed) == ((8.75, 15.25),)
    assert fitted_gaps(np.delete(times, np.arange(36, 42))) == ()  # 1.75 s: below 2 s
    slow = np.arange(30) * 2.0  # 0.5 Hz: one missing frame (a 4 s step) is no gap, nor three (8 s)...
    assert fitted_gaps(np.delete(slow, [10])) == () and fitted_gaps(np.delete(slow, [10, 11, 12])) == ()
    assert fitted_gaps(np.delete(slow, [10, 11, 12, 13])) == ((18.0, 28.0),)  # ...four (10 s) are


def test_a_gap_over_the_wash_in_flags_what_rests_on_it_and_nothing_else():
    """Frames lost (or excluded) during the wash-in leave the rise to the model: WiR, TI and what is
    built on them are not measured, while the peak, the fall and the tail, seen, stay measurements."""
    values = bolus_parameters("lognormal", LOGNORMAL, None)
    rise_gap = ((T0 + 0.5, values["TTP"] - 0.3),)  # from just after arrival to just before the peak
    flagged = set(bolus_extrapolated("lognormal", LOGNORMAL, (FIRST_S, 300.0), rise_gap))
    assert {"WiR", "TI", "RT", "WiAUC", "WiPI"} <= flagged
    assert not {"PE", "TTP", "WoR", "TO", "FT", "WoAUC"} & flagged
    # a gap in the late tail holding under 10 % of every area flags nothing
    assert bolus_extrapolated("lognormal", LOGNORMAL, (FIRST_S, 300.0), ((150.0, 200.0),)) == ()
    # the landmarks where the curve is evaluated: exactly when inside the gap (TO follows the fall's
    # inflection, whose tangent makes it; TO itself inside a gap is no reason)
    fall = T0 + np.exp(MU - SIGMA**2 * (1 + 0.5 * (1 - np.sqrt(1 + 4 / SIGMA**2))))
    wash_out_s = values["TO"] - values["TTP"]  # FT
    after_peak = values["TTP"] + 0.1
    assert after_peak < fall < after_peak + 0.8 * wash_out_s
    long_gap = ((after_peak, after_peak + 1.2 * wash_out_s),)  # 1.2 FT over the fall: not held
    around_fall = set(bolus_extrapolated("lognormal", LOGNORMAL, (FIRST_S, 300.0), long_gap))
    assert {"WoR", "TO", "FT", "WoAUC", "WiWoAUC"} <= around_fall and not {"PE", "WiR", "TI"} & around_fall
    # a gap shorter than the fall time: the frames on both sides hold the curve through it
    short_gap = ((after_peak, after_peak + 0.8 * wash_out_s),)
    assert bolus_extrapolated("lognormal", LOGNORMAL, (FIRST_S, 300.0), short_gap) == ()
    assert bolus_extrapolated("lognormal", LOGNORMAL, (FIRST_S, 300.0), ((values["TO"] - 1, values["TO"] + 1),)) == ()
    arrays = bolus_extrapolated_arrays("lognormal", {k: np.full(2, v) for k, v in LOGNORMAL.items()},
                                       (FIRST_S, 300.0), rise_gap)
    assert {name for name, flag in arrays.items() if flag.all()} == flagged


def test_frames_excluded_over_the_wash_in_make_its_parameters_extrapolated(cut_and_full):
    """The audit's case: --exclude-frames over the lesion's wash-in (9-15 s) gave WiR +55 % and TI
    +16 % as ordinary measurements; they are flagged, warned about and left out of the maps."""
    _, full = cut_and_full
    excluded = _clip(480, exclude_frames="36-60")
    lesion = excluded.rois["lesion"]
    assert lesion.fit.ok and lesion.fit.fitted_gaps_s == ((8.75, 15.25),)
    assert {"WiR", "TI", "WiAUC"} <= set(lesion.extrapolated) and "TO" not in lesion.extrapolated
    assert any("no fitted frame from 8.8 to 15.2 s" in w and "ROI 'lesion'" in w for w in excluded.warnings)
    assert excluded.maps.extrapolated["WiR"] > excluded.maps.extrapolated["TO"]
    assert full.maps.extrapolated["WiR"] == 0


def _clip(n_frames, frame_interval_s=0.25, **options):
    """Lesion and liver of known lognormals, 4 frames/s from the injection, ``n_frames`` long."""
    rows, columns = 70, 90
    lesion = {"O": 3e-4, "A": 0.33, "t0": T0, "mu": MU, "sigma": SIGMA}
    regions = [PerfusionRegion("liver", (50, 25), 12, liver(), is_background=True),
               PerfusionRegion("lesion", (30, 60), 16, lesion, roi_margin_px=2)]
    clip = make_clip(regions, panel_shape=(rows, columns), n_frames=n_frames, frame_interval_s=frame_interval_s,
                     seed=9)
    in_memory = Clip("synthetic.dcm", clip.frames, clip.frame_times_s, regions=clip.regions)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    return analyze(in_memory, rois, AnalysisOptions(dynamic_range_db=clip.dynamic_range_db, maps=True,
                                                    motion_compensation=False, **options))


@pytest.fixture(scope="module")
def cut_and_full():
    # The lesion peaks at 15.8 s and its tangent at the steepest fall reaches 0 at 27 s: the short
    # clip ends 4 s after the peak.
    return _clip(81), _clip(480)


def test_a_clip_cut_short_after_the_peak_reports_its_extrapolated_parameters(cut_and_full):
    cut, full = cut_and_full
    lesion = cut.rois["lesion"]
    assert lesion.fit.ok and lesion.fit.fitted_span_s[1] == pytest.approx(20.0, abs=0.01)
    assert {"TO", "FT", "WoAUC", "mTTl", "AUC"} <= set(lesion.extrapolated)
    assert not {"PE", "TTP", "WiR", "QOF"} & set(lesion.extrapolated)
    assert full.rois["lesion"].fit.ok and full.rois["lesion"].extrapolated == ()
    assert any("ROI 'lesion'" in w and "extrapolated" in w and "TO" in w for w in cut.warnings)

    results = results_json(cut)
    assert results["rois"]["lesion"]["extrapolated"] == list(lesion.extrapolated)
    assert results_json(full)["rois"]["lesion"]["extrapolated"] == []
    rows = list(csv.reader(io.StringIO(parameters_csv(cut))))
    assert rows[0][-1] == "extrapolated" and rows[0][-2] == "reason"  # appended, nothing reordered
    row = next(r for r in rows[1:] if r[0] == "lesion")
    assert row[-1].split(";") == list(lesion.extrapolated)


def test_maps_leave_extrapolated_pixels_out_and_count_them(cut_and_full):
    cut, full = cut_and_full
    lesion = cut.rois["lesion"]
    mask = next(r.mask for r in cut.roi_masks if r.name == "lesion")[cut.layout.contrast.slices]
    fitted = (cut.maps.status == 0) & mask
    assert np.count_nonzero(fitted) > 0.5 * np.count_nonzero(mask)
    # PE was measured: shown; mTTl needs the unseen tail: NaN, and counted.
    assert np.mean(np.isfinite(cut.maps.values["PE"][fitted])) == 1.0
    assert np.mean(np.isnan(cut.maps.values["mTTl"][fitted])) > 0.9
    summary = json.loads(json.dumps(cut.maps.summary()))
    assert summary["extrapolated_pixels"]["mTTl"] >= np.count_nonzero(np.isnan(cut.maps.values["mTTl"][fitted]))
    assert summary["extrapolated_pixels"]["PE"] == 0
    assert any(w.startswith("maps: pixels whose parameter is extrapolated") for w in cut.warnings)
    assert "mTTl" in lesion.extrapolated
    # On the full clip the lesion's mTTl map is an ordinary map.
    full_mask = next(r.mask for r in full.roi_masks if r.name == "lesion")[full.layout.contrast.slices]
    full_fitted = (full.maps.status == 0) & full_mask
    assert np.mean(np.isfinite(full.maps.values["mTTl"][full_fitted])) > 0.9  # 17 of 18 pixels


@pytest.fixture(scope="module")
def cut_and_full_with_reference():
    def referenced(n_frames):
        analysis = _clip(n_frames)
        return analysis, analyze(analysis.clip, analysis.roi_masks,
                                 AnalysisOptions(dynamic_range_db=analysis.options.dynamic_range_db,
                                                 motion_compensation=False, reference="liver"))
    # 40 s: the lesion's bolus is over (TO 27 s), the liver's peak seen (29 s) but not its fall (TO 61 s).
    return referenced(160)[1], referenced(480)[1]


def test_relative_values_resting_on_an_extrapolated_reference_are_flagged(cut_and_full_with_reference):
    """A relative value is only as measured as both its parts: the lesion's relative WiWoAUC divides by
    the liver's, extrapolated on the short clip, so it is listed in ``relative_extrapolated`` (and as
    ``rel_WiWoAUC`` in parameters.csv) although the lesion's own WiWoAUC is not the problem."""
    cut, full = cut_and_full_with_reference
    liver_roi, lesion = cut.rois["liver"], cut.rois["lesion"]
    assert liver_roi.fit.ok and {"WiWoAUC", "AUC"} <= set(liver_roi.extrapolated)
    expected = [name for name in lesion.parameters
                if name in set(lesion.extrapolated) | set(liver_roi.extrapolated) and lesion.relative.get(name) is not None]
    assert list(lesion.relative_extrapolated) == expected and "WiWoAUC" in expected
    assert "WiWoAUC" not in lesion.extrapolated  # the lesion's own is measured
    assert any(w.startswith("reference ROI 'liver'") and "relative_extrapolated" in w for w in cut.warnings)
    assert results_json(cut)["rois"]["lesion"]["relative_extrapolated"] == expected
    row = next(r for r in csv.reader(io.StringIO(parameters_csv(cut))) if r[0] == "lesion")
    assert row[-1].split(";") == [*lesion.extrapolated, *(f"rel_{name}" for name in expected)]
    assert full.rois["lesion"].relative_extrapolated == () and full.rois["liver"].extrapolated == ()


def test_compare_does_not_classify_on_an_extrapolated_value(cut_and_full_with_reference):
    """The default rule on the short baseline's relative WiWoAUC would classify on the liver's model
    tail: not-evaluable, saying why; a rule on a measured value (PE) is classified. A results.json
    written before ``relative_extrapolated`` existed gets the same answer from the reference's list."""
    from DCEUSResponseLib.longitudinal.response import ResponseRule, compare_results

    cut, full = (json.loads(json.dumps(results_json(analysis))) for analysis in cut_and_full_with_reference)
    default = compare_results(cut, full, ResponseRule.parse("relative:WiWoAUC:-40"))["rois"]["lesion"]
    assert default["classification"] == "not-evaluable"
    assert "extrapolated beyond the fitted frames at baseline" in default["reason"]
    measured = compare_results(cut, full, ResponseRule.parse("absolute:PE:-40"))["rois"]["lesion"]
    assert measured["classification"] in ("responder", "non-responder")
    for roi in cut["rois"].values():
        del roi["relative_extrapolated"]
    older = compare_results(cut, full, ResponseRule.parse("relative:WiWoAUC:-40"))["rois"]["lesion"]
    assert older["classification"] == "not-evaluable" and older["reason"] == default["reason"]
    assert compare_results(full, cut, ResponseRule.parse("absolute:AUC:-40"))["rois"]["lesion"]["classification"] \
        in ("responder", "non-responder")  # the lesion's own AUC was seen to 99 % on the short clip
    cut["rois"]["lesion"]["extrapolated"] = ["AUC"]  # as a shorter follow-up would have it
    lesion_area = compare_results(full, cut, ResponseRule.parse("absolute:AUC:-40"))["rois"]["lesion"]
    assert lesion_area["classification"] == "not-evaluable" and "AUC value is extrapolated" in lesion_area["reason"]
    assert "at follow-up" in lesion_area["reason"]
