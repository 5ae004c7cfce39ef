"""End to end against analytic ground truth: synthetic clips with known lognormal perfusion are
written as DICOM, analysed from the files, and every parameter is checked against the truth.

CI runs a representative subset; ``--run-slow`` runs the whole matrix (dynamic ranges x displays x
colour maps x frame timing x compression).
"""
import itertools
import json

import pytest

from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze_files
from DCEUSResponseLib.synthetic.clips import make_clip, truth_parameters, write_clip, write_roi_masks

AMPLITUDES = ("PE", "WiR", "WoR", "WiAUC", "WoAUC", "WiWoAUC", "WiPI", "AUC")
TIMES = ("TTP", "TI", "TO", "RT", "FT", "mTTl")
AMPLITUDE_TOLERANCE = 0.10
TIME_TOLERANCE, TIME_TOLERANCE_S = 0.05, 0.5
RATIO_TOLERANCE = 0.05
RATIO_PARAMETERS = ("PE", "WiWoAUC", "AUC", "TTP", "mTTl")


def run_case(tmp_path, *, display, colour, dynamic_range_db, jitter, transfer_syntax="explicit",
             timing="vector", contrast_side="right", seed=0, roi_format="png", frame_interval_s=0.75,
             n_frames=160):
    clip = make_clip(display=display, colour=colour, dynamic_range_db=dynamic_range_db, jitter=jitter,
                     contrast_side=contrast_side, injection_time_s=1.5, seed=seed,
                     frame_interval_s=frame_interval_s, n_frames=n_frames)
    path = str(tmp_path / "clip.dcm")
    write_clip(clip, path, transfer_syntax=transfer_syntax, timing=timing)
    masks = write_roi_masks(clip, str(tmp_path / "rois"))
    specs = [masks["__segmentation__"]] if roi_format == "seg" else \
        [f"{name}={masks[name]}" for name in clip.roi_masks]
    options = AnalysisOptions(dynamic_range_db=dynamic_range_db, injection_time_s=1.5, reference="liver")
    return clip, analyze_files(path, specs, options)


def check_against_truth(clip, analysis):
    failures = []
    truth = {name: truth_parameters(p) for name, p in clip.truth.items() if p["A"] > 0}
    for name, expected in truth.items():
        roi = analysis.rois[name]
        assert roi.fit.status == "ok", (name, roi.fit.reason)
        for parameter in AMPLITUDES:
            error = abs(roi.parameters[parameter] / expected[parameter] - 1)
            if error > AMPLITUDE_TOLERANCE:
                failures.append(f"{name} {parameter}: {roi.parameters[parameter]:.4g} vs {expected[parameter]:.4g}")
        for parameter in TIMES:
            error = abs(roi.parameters[parameter] - expected[parameter])
            if error > max(TIME_TOLERANCE * abs(expected[parameter]), TIME_TOLERANCE_S):
                failures.append(f"{name} {parameter}: {roi.parameters[parameter]:.3f} vs {expected[parameter]:.3f} s")
    for parameter in RATIO_PARAMETERS:
        expected_ratio = truth["lesion"][parameter] / truth["liver"][parameter]
        measured_ratio = analysis.rois["lesion"].relative[parameter]
        if abs(measured_ratio / expected_ratio - 1) > RATIO_TOLERANCE:
            failures.append(f"lesion/liver {parameter}: {measured_ratio:.4f} vs {expected_ratio:.4f}")
    assert analysis.rois["necrosis"].fit.status == "no_enhancement", analysis.rois["necrosis"].fit
    assert analysis.rois["necrosis"].parameters["PE"] is None
    assert not failures, "\n".join(failures)


REPRESENTATIVE = [
    dict(display="single", colour="gray", dynamic_range_db=50.0, jitter=0.0),
    dict(display="dual", colour="gold", dynamic_range_db=40.0, jitter=0.3, contrast_side="left", roi_format="seg"),
    dict(display="single", colour="gold", dynamic_range_db=60.0, jitter=0.0, timing="frame-time"),
    dict(display="dual", colour="gray", dynamic_range_db=50.0, jitter=0.3, transfer_syntax="jpeg-baseline"),
]


@pytest.mark.parametrize("case", REPRESENTATIVE, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_parameters_match_the_truth(tmp_path, case):
    clip, analysis = run_case(tmp_path, **case)
    assert analysis.layout.display == case["display"]
    check_against_truth(clip, analysis)


# The full matrix samples at 4 Hz (a slow CEUS frame rate; scanners record 8-15 Hz). At the CI
# cases' 1.33 Hz with +-30 % jitter, one noise realisation (seed 1) misses the lesion's WiR by
# 10-12 % and the lesion/liver PE and mTTl ratios by 5-5.5 %: a handful of frames on a 4 s wash-in
# cannot pin its slope down better than that.
FULL_MATRIX = [dict(display=d, colour=c, dynamic_range_db=r, jitter=j, transfer_syntax=t, seed=s,
                    frame_interval_s=0.25, n_frames=480)
               for d, c, r, j, t, s in itertools.product(("single", "dual"), ("gray", "gold"), (40.0, 50.0, 60.0),
                                                         (0.0, 0.3), ("explicit", "jpeg-baseline"), (1, 2))]


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL_MATRIX, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_parameters_match_the_truth_full_matrix(tmp_path, case):
    clip, analysis = run_case(tmp_path, **case)
    check_against_truth(clip, analysis)


def test_demo_study_response_matches_the_truth(demo_run):
    """The demo's reference-normalised change of WiWoAUC is within 5 percentage points of the truth."""
    assert demo_run.returncode == 0, demo_run.stderr
    tmp_path = demo_run.out
    assert "responder" in demo_run.stdout
    truth = json.loads((tmp_path / "study" / "truth.json").read_text())
    response = json.loads((tmp_path / "response" / "response.json").read_text())
    exams = truth["exams"]
    for lesion in ("lesion1", "lesion2"):
        ratio = {exam: exams[exam][lesion]["parameters"]["WiWoAUC"] / exams[exam]["liver"]["parameters"]["WiWoAUC"]
                 for exam in ("baseline", "followup")}
        expected = 100 * (ratio["followup"] / ratio["baseline"] - 1)
        measured = response["rois"][lesion]["parameters"]["WiWoAUC"]["relative_delta_percent"]
        assert abs(measured - expected) < 5.0, (lesion, measured, expected)
    assert response["rois"]["lesion1"]["classification"] == "responder"
    assert response["rois"]["lesion2"]["classification"] == "non-responder"
    assert response["rois"]["necrosis"]["classification"] == "not-evaluable"
    # absolute values moved with the 30 % gain change; relative ones did not
    liver_delta = response["rois"]["liver"]["parameters"]["WiWoAUC"]["delta_percent"]
    assert abs(liver_delta - 30.0) < 8.0
    for exam in ("baseline", "followup"):
        results = json.loads((tmp_path / exam / "results.json").read_text())
        assert results["clip"]["display"] == "dual" and results["reference"] == "liver"
        assert set(results["rois"]) == {"liver", "lesion1", "necrosis", "lesion2"}
    assert (tmp_path / "summary.txt").exists()


def test_the_truth_check_catches_a_wrong_linearisation(tmp_path):
    """Negative control: the same clip read with the wrong dynamic range must fail the check."""
    clip = make_clip(display="single", colour="gray", dynamic_range_db=40.0, seed=5)
    path = str(tmp_path / "clip.dcm")
    write_clip(clip, path)
    masks = write_roi_masks(clip, str(tmp_path / "rois"))
    specs = [f"{name}={masks[name]}" for name in clip.roi_masks]
    right = analyze_files(path, specs, AnalysisOptions(dynamic_range_db=40.0, reference="liver"))
    check_against_truth(clip, right)
    wrong = analyze_files(path, specs, AnalysisOptions(dynamic_range_db=55.0, reference="liver"))
    with pytest.raises(AssertionError, match="PE"):
        check_against_truth(clip, wrong)
