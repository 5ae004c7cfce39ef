"""Study aggregation on synthetic results of 2 patients x 3 exams with known parameter values.

P1: lesion1, lesion2 and the reference liver; two injections at C2. P2: lesion1 and liver; two
injections at baseline. Every expected number below is worked out by hand from these values.
"""
import csv
import io
import math

import numpy as np
import pytest

from DCEUSResponseLib.export.staging import StagedFiles
from DCEUSResponseLib.longitudinal.aggregate import aggregate
from DCEUSResponseLib.longitudinal.manifest import read_manifest, read_outcomes
from DCEUSResponseLib.longitudinal.response import ResponseRule, compare_folders

# (patient, exam, date, clip) -> {roi: (WiWoAUC, AUC) or a status}
CLIPS = {
    ("P1", "B", "2024-01-10", "p1b.dcm"): {"liver": (50, 80), "lesion1": (100, 160), "lesion2": (80, 120)},
    ("P1", "C2", "2024-03-10", "p1c2a.dcm"): {"liver": (50, 80), "lesion1": (50, 88), "lesion2": (76, 126)},
    ("P1", "C2", "2024-03-10", "p1c2b.dcm"): {"liver": (60, 96), "lesion1": (54, 96), "lesion2": (84, 138)},
    ("P1", "C4", "2024-05-09", "p1c4.dcm"): {"liver": (50, 80), "lesion1": "no_enhancement", "lesion2": (40, 60)},
    ("P2", "B", "2024-02-01", "p2ba.dcm"): {"liver": (40, 70), "lesion1": (120, 200)},
    ("P2", "B", "2024-02-01", "p2bb.dcm"): {"liver": (40, 70), "lesion1": (130, 210)},
    ("P2", "C2", "2024-03-28", "p2c2.dcm"): {"liver": (40, 70), "lesion1": (100, 190)},
    ("P2", "C4", "2024-05-23", "p2c4.dcm"): {"liver": (40, 70), "lesion1": "fit_failed"},
}
# P1's PET SUVmax per clip (fused clips only)
SUVMAX = {"p1b.dcm": {"lesion1": 20.0, "lesion2": 10.0, "liver": 6.0},
          "p1c2a.dcm": {"lesion1": 12.0, "lesion2": 9.0, "liver": 6.0},
          "p1c2b.dcm": {"lesion1": 14.0, "lesion2": 10.0, "liver": 6.0},
          "p1c4.dcm": {"lesion1": 8.0, "lesion2": None, "liver": 6.0}}


def _results(rois):
    liver = rois["liver"]
    out = {"reference": "liver", "model": "lognormal", "rois": {}}
    for name, value in rois.items():
        if isinstance(value, str):
            out["rois"][name] = {"status": value, "reason": "flat curve" if value == "no_enhancement" else "no fit",
                                 "parameters": {"WiWoAUC": None, "AUC": None},
                                 "relative": {"WiWoAUC": None, "AUC": None}}
        else:
            out["rois"][name] = {"status": "ok", "reason": None, "parameters": {"WiWoAUC": value[0], "AUC": value[1]},
                                 "relative": {"WiWoAUC": value[0] / liver[0], "AUC": value[1] / liver[1]}}
    return out


def _fusion(clip):
    return {"pet": {"suv": {"factor": 1.0}}, "rois": {
        name: {"pet": {"SUVmax": suv, "SUVmean": suv, "SUVpeak": None, "voxels": 40, "TLR": None},
               "ct": {"HU_mean": 45.0}, "pet3d": None, "reason": None if suv is not None else "empty footprint"}
        for name, suv in SUVMAX[clip].items()}}


@pytest.fixture
def study(tmp_path):
    (tmp_path / "mask.png").write_bytes(b"")
    lines = ["patient,exam,date,clip,rois,reference"]
    for (patient, exam, date, clip) in CLIPS:
        (tmp_path / clip).write_bytes(b"")
        lines.append(f"{patient},{exam},{date},{clip},lesion1=mask.png;liver=mask.png,liver")
    (tmp_path / "MANIFEST.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = read_manifest(str(tmp_path / "MANIFEST.csv"))
    by_clip = {row.clip_text: row.key for row in manifest.rows}
    results = {by_clip[clip]: _results(rois) for (_, _, _, clip), rois in CLIPS.items()}
    fusion = {by_clip[clip]: _fusion(clip) for clip in SUVMAX}
    return manifest, results, fusion, tmp_path


def _response(tables, patient, lesion, exam, rule):
    rows = [r for r in tables.response if (r.patient, r.lesion, r.exam, r.rule) == (patient, lesion, exam, rule)]
    assert len(rows) == 1
    return rows[0]


def test_percent_changes_and_classifications_are_exact(study):
    manifest, results, fusion, _ = study
    tables = aggregate(manifest, results, fusion, rules=["relative:WiWoAUC:-40", "lassau2014-auc", "pet:SUVmax:-30"])
    r = _response(tables, "P1", "lesion1", "C2", "relative:WiWoAUC:-40")
    # relative WiWoAUC: baseline 100/50 = 2; C2 mean of 50/50 and 54/60 = 0.95 -> -52.5 %
    assert (r.baseline, r.value) == (100, 52) and r.delta_percent == pytest.approx(-48.0)
    assert (r.relative_baseline, r.relative_value) == (2.0, pytest.approx(0.95))
    assert r.relative_delta_percent == pytest.approx(-52.5) and r.classification == "responder"
    assert r.delta_previous_percent == pytest.approx(-48.0) and r.days_from_baseline == 60
    assert "exploratory" in r.rule_definition
    auc = _response(tables, "P1", "lesion1", "C2", "lassau2014-auc")
    assert auc.parameter == "AUC" and auc.delta_percent == pytest.approx(92 / 160 * 100 - 100)  # -42.5 %
    assert auc.classification == "responder"
    lesion2 = _response(tables, "P1", "lesion2", "C2", "relative:WiWoAUC:-40")
    assert lesion2.relative_delta_percent == pytest.approx((1.46 / 1.6 - 1) * 100)  # -8.75 %
    assert lesion2.classification == "non-responder"
    assert _response(tables, "P1", "lesion2", "C2", "lassau2014-auc").delta_percent == pytest.approx(10.0)
    late = _response(tables, "P1", "lesion2", "C4", "relative:WiWoAUC:-40")
    assert late.relative_delta_percent == pytest.approx(-50.0) and late.classification == "responder"
    assert late.delta_previous_percent == pytest.approx(-50.0)
    assert late.relative_delta_previous_percent == pytest.approx((0.8 / 1.46 - 1) * 100)
    gone = _response(tables, "P1", "lesion1", "C4", "lassau2014-auc")
    assert gone.classification == "responder" and "no enhancement" in gone.reason
    p2 = _response(tables, "P2", "lesion1", "C2", "relative:WiWoAUC:-40")
    assert p2.relative_baseline == pytest.approx(3.125) and p2.relative_delta_percent == pytest.approx(-20.0)
    assert p2.classification == "non-responder"
    p2_auc = _response(tables, "P2", "lesion1", "C2", "lassau2014-auc")
    assert p2_auc.delta_percent == pytest.approx(190 / 205 * 100 - 100)
    assert _response(tables, "P2", "lesion1", "C4", "lassau2014-auc").classification == "not-evaluable"
    assert _response(tables, "P1", "liver", "C2", "lassau2014-auc").reason == "reference ROI"
    # PET: SUVmax 20 -> mean(12, 14) = 13: -35 %; P2 has no fusion; C4 lesion2 has an empty footprint
    pet = _response(tables, "P1", "lesion1", "C2", "pet:SUVmax:-30")
    assert pet.delta_percent == pytest.approx(-35.0) and pet.classification == "responder"
    assert _response(tables, "P1", "lesion2", "C2", "pet:SUVmax:-30").classification == "non-responder"
    assert _response(tables, "P1", "lesion2", "C4", "pet:SUVmax:-30").classification == "not-evaluable"
    assert _response(tables, "P2", "lesion1", "C2", "pet:SUVmax:-30").classification == "not-evaluable"
    # 2 patients: P1 3 ROIs x 2 follow-ups, P2 2 ROIs x 2 follow-ups, 3 rules
    assert len(tables.response) == (3 * 2 + 2 * 2) * 3


def test_a_rule_on_a_value_extrapolated_in_any_averaged_clip_is_not_evaluable(study):
    """As in compare: one of P1's two C2 injections has the liver's WiWoAUC extrapolated (a short clip),
    so the C2 mean of lesion1's relative WiWoAUC rests partly on the model's tail: not-evaluable, while
    AUC (measured) is still classified; a results.json without relative_extrapolated gets the same
    answer from the reference ROI's list."""
    manifest, results, fusion, _ = study
    key = next(row.key for row in manifest.rows if row.clip_text == "p1c2b.dcm")
    results[key]["rois"]["liver"]["extrapolated"] = ["WiWoAUC"]
    tables = aggregate(manifest, results, fusion, rules=["relative:WiWoAUC:-40", "lassau2014-auc"])
    relative = _response(tables, "P1", "lesion1", "C2", "relative:WiWoAUC:-40")
    assert relative.classification == "not-evaluable"
    assert "extrapolated beyond the fitted frames at follow-up" in relative.reason
    assert _response(tables, "P1", "lesion1", "C2", "lassau2014-auc").classification == "responder"
    assert _response(tables, "P1", "lesion1", "C4", "relative:WiWoAUC:-40").classification == "responder"
    results[key]["rois"]["lesion1"]["extrapolated"] = ["AUC"]
    tables = aggregate(manifest, results, fusion, rules=["lassau2014-auc"])
    assert _response(tables, "P1", "lesion1", "C2", "lassau2014-auc").classification == "not-evaluable"


def test_repeated_injections_means_cv_and_repeatability(study):
    manifest, results, fusion, _ = study
    tables = aggregate(manifest, results, fusion)
    lesion = next(le for le in tables.lesions if (le.patient, le.lesion, le.exam) == ("P1", "lesion1", "C2"))
    assert lesion.n_clips == 2 and lesion.values["WiWoAUC"] == 52.0
    assert lesion.cv_percent["WiWoAUC"] == pytest.approx(100 * math.sqrt(8) / 52)  # SD of (50, 54) / 52
    assert lesion.values["pet_SUVmax"] == 13.0
    assert lesion.cv_percent["pet_SUVmax"] == pytest.approx(100 * math.sqrt(2) / 13)
    single = next(le for le in tables.lesions if (le.patient, le.lesion, le.exam) == ("P1", "lesion1", "B"))
    assert single.cv_percent["WiWoAUC"] is None
    # groups (lesions x exams with 2 clips, reference left out): (50, 54), (76, 84), (120, 130)
    wiwo, n_lesions = tables.repeatability["WiWoAUC"]
    assert n_lesions == 3 and wiwo.n_groups == 3 and wiwo.n_measurements == 6
    assert wiwo.wsd == pytest.approx(math.sqrt((8 + 32 + 50) / 3))
    assert wiwo.wcv_percent == pytest.approx(100 * math.sqrt((8 / 52 ** 2 + 32 / 80 ** 2 + 50 / 125 ** 2) / 3))
    assert wiwo.rc == pytest.approx(2.77 * math.sqrt(30))
    relative, _ = tables.repeatability["rel_WiWoAUC"]
    rel_wsd = math.sqrt((0.005 + 0.0072 + 0.03125) / 3)  # variances of (1.0, 0.9), (1.52, 1.4), (3.0, 3.25)
    assert relative.wsd == pytest.approx(rel_wsd)
    # a change of a single clip against a mean of two clips: limit RC sqrt(3/4)
    limit = 2.77 * rel_wsd * math.sqrt(0.75)
    big = _response(tables, "P1", "lesion1", "C2", "relative:WiWoAUC:-40")  # 0.95 - 2.0 = -1.05
    small = _response(tables, "P1", "lesion2", "C2", "relative:WiWoAUC:-40")  # 1.46 - 1.6 = -0.14
    assert big.repeatability_limit == pytest.approx(limit) and big.beyond_repeatability is True
    assert small.beyond_repeatability is False
    assert _response(tables, "P1", "lesion2", "C4", "relative:WiWoAUC:-40").repeatability_limit == \
        pytest.approx(2.77 * rel_wsd)  # single clips at both exams
    assert _response(tables, "P1", "lesion1", "C4", "relative:WiWoAUC:-40").beyond_repeatability is None


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_files_hold_the_contract_columns(study):
    manifest, results, fusion, folder = study
    outcomes_path = folder / "OUTCOMES.csv"
    outcomes_path.write_text("patient,outcome\nP1,responder\nP2,non-responder\n", encoding="utf-8")
    tables = aggregate(manifest, results, fusion, outcomes=read_outcomes(str(outcomes_path), manifest),
                       n_resamples=200)
    texts = tables.csv_texts()
    assert sorted(texts) == ["lesions.csv", "measurements.csv", "repeatability.csv", "response.csv", "statistics.csv"]
    units = {row["parameter"]: row["unit"] for row in _csv(texts["repeatability.csv"])}
    assert units["WiWoAUC"] and units["rel_WiWoAUC"] == ""  # a reference-normalised value is a ratio
    measurements = _csv(texts["measurements.csv"])
    assert list(measurements[0])[:13] == ["patient", "exam", "date", "days_from_baseline", "clip", "roi",
                                         "is_reference", "modality", "parameter", "value", "unit", "relative_value",
                                         "status"]
    ceus = [m for m in measurements if m["modality"] == "CEUS"]
    assert len(ceus) == sum(len(rois) for rois in CLIPS.values()) * 2
    first = next(m for m in ceus if (m["clip"], m["roi"], m["parameter"]) == ("p1c2b.dcm", "lesion1", "WiWoAUC"))
    assert (first["value"], first["relative_value"], first["unit"], first["days_from_baseline"]) == \
        ("54", "0.9", "a.u.*s", "60")
    pet = next(m for m in measurements if (m["clip"], m["roi"], m["parameter"]) == ("p1c4.dcm", "lesion2", "SUVmax"))
    assert pet["modality"] == "PET" and pet["value"] == "" and pet["status"] == "not_measured"
    lesions = _csv(texts["lesions.csv"])
    assert list(lesions[0])[:8] == ["patient", "lesion", "exam", "date", "days_from_baseline", "n_clips",
                                    "WiWoAUC", "AUC"]
    assert {"rel_WiWoAUC", "cv_WiWoAUC", "pet_SUVmax", "cv_pet_SUVmax", "ct_HU_mean"} <= set(lesions[0])
    response = _csv(texts["response.csv"])
    assert list(response[0])[:18] == ["patient", "lesion", "exam", "date", "days_from_baseline", "rule", "parameter",
                                      "baseline", "value", "delta_percent", "relative_baseline", "relative_value",
                                      "relative_delta_percent", "delta_previous_percent",
                                      "relative_delta_previous_percent", "beyond_repeatability", "classification",
                                      "reason"]
    assert {r["rule"] for r in response} == {"relative:WiWoAUC:-40", "lassau2014-auc"}
    repeat = {r["parameter"]: r for r in _csv(texts["repeatability.csv"])}
    assert float(repeat["WiWoAUC"]["rc"]) == pytest.approx(2.77 * math.sqrt(30))
    statistics = {(s["exam"], s["parameter"]): s for s in _csv(texts["statistics.csv"])}
    # C2, relative WiWoAUC: responders P1 lesion1 -52.5, lesion2 -8.75; non-responder P2 lesion1 -20
    # pairs: -52.5 < -20 (1), -8.75 > -20 (0): AUC 1/2
    c2 = statistics[("C2", "rel_WiWoAUC")]
    assert (c2["n_responders"], c2["n_non_responders"], float(c2["auc"])) == ("2", "1", 0.5)
    c4 = statistics[("C4", "rel_WiWoAUC")]
    assert c4["n_undefined"] == "2" and c4["auc"] == ""  # lesion1 of both patients has no defined change
    with StagedFiles(str(folder / "out")) as staged:
        written = tables.write_csvs(staged)
        staged.commit(last="response.csv")
    assert sorted(written) == sorted(texts)
    assert (folder / "out" / "response.csv").read_text(encoding="utf-8") == texts["response.csv"]


def test_formula_like_names_are_neutralised(tmp_path):
    (tmp_path / "c.dcm").write_bytes(b"")
    (tmp_path / "d.dcm").write_bytes(b"")
    (tmp_path / "m.png").write_bytes(b"")
    (tmp_path / "M.csv").write_text("patient,exam,date,clip,rois\n=1+1,b,2024-01-01,c.dcm,@x=m.png\n"
                                    "=1+1,f,2024-02-01,d.dcm,@x=m.png\n", encoding="utf-8")
    manifest = read_manifest(str(tmp_path / "M.csv"))
    results = {row.key: {"reference": None, "rois": {"@x": {"status": "ok", "parameters": {"WiWoAUC": 1.0 + k},
                                                            "relative": {"WiWoAUC": None}}}}
               for k, row in enumerate(manifest.rows)}
    text = aggregate(manifest, results, rules=["absolute:WiWoAUC:-40"]).response_csv()
    row = text.splitlines()[1]
    assert row.startswith("'=1+1,'@x,f,") and ",100.0," in row


def test_old_alias_still_works_for_compare_and_names_the_relative_rule():
    assert ResponseRule.parse("lassau2014") == ResponseRule("lassau2014", "relative", "WiWoAUC", -40.0)
    assert ResponseRule.parse("lassau2014-auc") == ResponseRule("lassau2014-auc", "absolute", "AUC", -40.0)
    with pytest.raises(Exception, match="unknown response rule"):
        ResponseRule.parse("pet:SUVmax:-30")  # compare has no PET
    assert ResponseRule.parse("pet:SUVmax:-30", allow_pet=True).scale == "pet"
    assert callable(compare_folders)


def test_clip_outputs_are_read_from_the_study_folder_and_a_failed_clip_is_left_out(study):
    import json
    import os

    from DCEUSResponseLib.longitudinal.aggregate import read_clip_outputs

    manifest, results, fusion, folder = study
    out = folder / "out"
    failed = next(row for row in manifest.rows if row.clip_text == "p1c2b.dcm")
    for row in manifest.rows:
        if row is failed:
            continue
        target = out / row.output_dir
        target.mkdir(parents=True)
        (target / "results.json").write_text(json.dumps(results[row.key]), encoding="utf-8")
    read_results, read_fusion = read_clip_outputs(manifest, str(out))
    assert set(read_results) == set(results) - {failed.key} and read_fusion == {}
    tables = aggregate(manifest, read_results, read_fusion)
    lesion = next(le for le in tables.lesions if (le.patient, le.lesion, le.exam) == ("P1", "lesion1", "C2"))
    assert lesion.n_clips == 1 and lesion.values["WiWoAUC"] == 50.0
    assert _response(tables, "P1", "lesion1", "C2", "relative:WiWoAUC:-40").relative_delta_percent == \
        pytest.approx(-50.0)
    assert os.path.isdir(out / "exams" / "P2" / "C4" / "1")


def test_an_outcome_for_a_lesion_no_clip_has_is_warned_about(study):
    """'Lesion1' for lesion1 (a typo) was dropped silently: n_responders 1 instead of 2 and an AUC
    over fewer lesions, exit 0. Each such row is warned about with its line, and a near name is offered."""
    manifest, results, fusion, folder = study
    outcomes_path = folder / "OUTCOMES-typo.csv"
    outcomes_path.write_text("patient,lesion,outcome\nP1,Lesion1,responder\nP1,lesion2,responder\n"
                             "P1,lesion9,non-responder\n", encoding="utf-8")
    tables = aggregate(manifest, results, fusion, outcomes=read_outcomes(str(outcomes_path), manifest),
                       n_resamples=50)
    assert len(tables.warnings) == 2, tables.warnings
    typo, unknown = tables.warnings
    assert "line 2" in typo and "'Lesion1'" in typo and "did you mean 'lesion1'?" in typo and str(outcomes_path) in typo
    assert "line 4" in unknown and "'lesion9'" in unknown and "its lesions: lesion1, lesion2" in unknown
    good = folder / "OUTCOMES-good.csv"
    good.write_text("patient,lesion,outcome\nP1,lesion1,responder\n", encoding="utf-8")
    assert aggregate(manifest, results, fusion, outcomes=read_outcomes(str(good), manifest), n_resamples=50).warnings == []


def test_the_cv_is_the_contracts_signed_sd_over_mean():
    """lesions.csv's cv_PARAM is the shared contract's sample SD / mean x 100: signed, so WoR (negative)
    has a negative CV, whose magnitude is the spread; empty with one clip or a zero mean."""
    from DCEUSResponseLib.longitudinal.aggregate import _mean_and_cv

    spread = 100 * np.std([0.5, 0.6], ddof=1) / 0.55
    assert _mean_and_cv([-0.5, -0.6]) == (pytest.approx(-0.55), pytest.approx(-spread))
    assert _mean_and_cv([0.5, 0.6])[1] == pytest.approx(spread)
    assert _mean_and_cv([0.5]) == (0.5, None) and _mean_and_cv([-1.0, 1.0])[1] is None
