"""compare: percent changes, the response rule and the response.json of two analyze folders."""
import json

import pytest

from DCEUSResponseLib.longitudinal.response import ResponseRule, compare_folders, compare_results, percent_change
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES


def _roi(wiwoauc, reference_wiwoauc, status="ok"):
    if status != "ok":
        return {"status": status, "reason": "flat curve", "parameters": {p: None for p in PARAMETER_NAMES},
                "relative": {p: None for p in PARAMETER_NAMES}}
    parameters = {p: 1.0 for p in PARAMETER_NAMES}
    parameters["WiWoAUC"] = wiwoauc
    relative = {p: 1.0 for p in PARAMETER_NAMES}
    relative["WiWoAUC"] = wiwoauc / reference_wiwoauc
    return {"status": "ok", "reason": None, "parameters": parameters, "relative": relative}


def _results(rois, reference="liver"):
    return {"rois": rois, "reference": reference}


def test_percent_change():
    assert percent_change(2.0, 1.0) == -50.0
    assert percent_change(-2.0, -1.0) == 50.0
    assert percent_change(0.0, 1.0) is None
    assert percent_change(None, 1.0) is None


def test_relative_rule_sees_through_a_gain_change():
    # follow-up has 30 % more gain: absolute WiWoAUC of lesion A rises although it halved against liver
    baseline = _results({"liver": _roi(10.0, 10.0), "A": _roi(20.0, 10.0), "B": _roi(20.0, 10.0),
                         "N": _roi(0, 0, "no_enhancement")})
    followup = _results({"liver": _roi(13.0, 13.0), "A": _roi(13.0, 13.0), "B": _roi(23.4, 13.0),
                         "N": _roi(0, 0, "no_enhancement")})
    response = compare_results(baseline, followup, ResponseRule.parse("lassau2014"))
    a = response["rois"]["A"]
    assert a["parameters"]["WiWoAUC"]["delta_percent"] == pytest.approx(-35.0)
    assert a["parameters"]["WiWoAUC"]["relative_delta_percent"] == pytest.approx(-50.0)
    assert a["classification"] == "responder"
    assert response["rois"]["B"]["classification"] == "non-responder"
    assert response["rois"]["B"]["parameters"]["WiWoAUC"]["relative_delta_percent"] == pytest.approx(-10.0)
    assert response["rois"]["N"]["classification"] == "not-evaluable"
    assert response["rois"]["liver"]["classification"] == "not-evaluable"
    absolute = compare_results(baseline, followup, ResponseRule.parse("absolute:WiWoAUC:-40"))
    assert absolute["rois"]["A"]["classification"] == "non-responder"


def test_enhancement_lost_at_follow_up_is_a_response_and_failed_fits_are_not_evaluable():
    baseline = _results({"liver": _roi(10.0, 10.0), "A": _roi(20.0, 10.0), "F": _roi(20.0, 10.0)})
    followup = _results({"liver": _roi(10.0, 10.0), "A": _roi(0, 0, "no_enhancement"),
                         "F": _roi(0, 0, "fit_failed")})
    response = compare_results(baseline, followup, ResponseRule.parse("lassau2014"))
    assert response["rois"]["A"]["classification"] == "responder"
    assert response["rois"]["F"]["classification"] == "not-evaluable"


@pytest.mark.parametrize("rule", ["nonsense", "relative:XYZ:-40", "relative:AUC:lots", "sideways:AUC:-40"])
def test_bad_rules(rule):
    with pytest.raises(InputError, match="rule"):
        ResponseRule.parse(rule)


def test_compare_folders_errors_name_the_folder(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match="no results.json") as error:
        compare_folders(str(tmp_path / "a"), str(tmp_path / "a"))
    assert str(tmp_path / "a") in str(error.value)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text("{broken")
    with pytest.raises(InputError, match="cannot read results.json"):
        compare_folders(str(tmp_path / "b"), str(tmp_path / "b"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps(_results({"x": _roi(1.0, 1.0)})))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "results.json").write_text(json.dumps(_results({"y": _roi(1.0, 1.0)})))
    with pytest.raises(InputError, match="no ROI name is shared"):
        compare_folders(str(tmp_path / "c"), str(tmp_path / "d"))


def _analysed(dynamic_range_db, source="option", model="lognormal"):
    results = _results({"liver": _roi(10.0, 10.0), "A": _roi(20.0, 10.0)})
    results["clip"] = {"dynamic_range_db": dynamic_range_db, "dynamic_range_source": source, "uids": {}}
    results["model"] = model
    return results


def test_exams_analysed_alike_give_no_settings_warning():
    response = compare_results(_analysed(50.0), _analysed(50.0), ResponseRule.parse("lassau2014"))
    assert response["warnings"] == []


@pytest.mark.parametrize("baseline, followup, fragments", [
    ((50.0,), (60.0, "default"), ["follow-up was analysed without --dynamic-range (60 dB assumed)",
                                  "different dynamic ranges (50 dB at baseline, 60 dB at follow-up)"]),
    ((60.0, "default"), (60.0, "default"), ["baseline was analysed without --dynamic-range",
                                            "follow-up was analysed without --dynamic-range"]),
    ((50.0,), (70.0,), ["different dynamic ranges (50 dB at baseline, 70 dB at follow-up): right only if"]),
    ((50.0, "option", "lognormal"), (50.0, "option", "gamma"), ["different models (lognormal at baseline, gamma"]),
], ids=["one assumed", "both assumed", "two settings", "two models"])
def test_exams_analysed_differently_are_compared_with_a_warning(baseline, followup, fragments):
    """Every value rests on the dynamic range and the model: a 60 dB default at follow-up against 50 dB
    at baseline turned a +13 % change into a -47 % responder without a word."""
    response = compare_results(_analysed(*baseline), _analysed(*followup), ResponseRule.parse("lassau2014"))
    assert len(response["warnings"]) == len(fragments)
    for fragment, warning in zip(fragments, response["warnings"]):
        assert fragment in warning
    assert response["rois"]["A"]["classification"] in ("responder", "non-responder")  # warned, not refused
