"""The dynamic range (issue 9 item 3): a missing ``--dynamic-range`` is said, not silently assumed,
and absurd values are one-line errors before anything is read or written."""
import json
import os

import numpy as np
import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.ceus.linearize import DEFAULT_DYNAMIC_RANGE_DB, check_dynamic_range, linear_from_gray
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks

CLIP_DYNAMIC_RANGE_DB = 50.0


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynamic_range")
    clip = make_clip(panel_shape=(60, 80), n_frames=60, frame_interval_s=1.0, seed=5,
                     dynamic_range_db=CLIP_DYNAMIC_RANGE_DB)
    path = str(folder / "clip.dcm")
    write_clip(clip, path)
    masks = write_roi_masks(clip, str(folder / "rois"), names=["lesion", "liver"])
    return folder, path, [f"--roi=lesion={masks['lesion']}", f"--roi=liver={masks['liver']}"]


def _run(capsys, study, out, *extra):
    folder, path, rois = study
    code = main(["analyze", path, *rois, "--reference", "liver", "--no-motion-compensation",
                 "--out", str(folder / out), *extra])
    return code, capsys.readouterr()


def test_without_the_option_the_default_is_warned_about_and_recorded(capsys, study):
    code, captured = _run(capsys, study, "default")
    assert code == 0
    assert f"warning: no --dynamic-range given: assuming {DEFAULT_DYNAMIC_RANGE_DB:g} dB" in captured.err
    results = json.load(open(study[0] / "default" / "results.json"))
    assert results["clip"]["dynamic_range_source"] == "default"
    assert results["clip"]["dynamic_range_db"] == DEFAULT_DYNAMIC_RANGE_DB
    assert any("no --dynamic-range given" in w for w in results["clip"]["warnings"])


def test_a_given_dynamic_range_is_an_option_without_warning_and_changes_the_values(capsys, study):
    code, captured = _run(capsys, study, "given", "--dynamic-range", f"{CLIP_DYNAMIC_RANGE_DB:g}")
    assert code == 0 and "--dynamic-range" not in captured.err
    given = json.load(open(study[0] / "given" / "results.json"))
    assert given["clip"]["dynamic_range_source"] == "option"
    assert given["clip"]["dynamic_range_db"] == CLIP_DYNAMIC_RANGE_DB
    assert not any("dynamic-range" in w for w in given["clip"]["warnings"])
    default = json.load(open(study[0] / "default" / "results.json"))
    # The wrong (default) range changes even the reference-normalised areas: why the warning matters.
    right, wrong = (r["rois"]["lesion"]["relative"]["WiWoAUC"] for r in (given, default))
    assert abs(wrong / right - 1) > 0.05


def test_options_built_by_programs_count_as_given():
    """The Slicer module and scripts pass a number: it is the user's choice, not the default."""
    assert AnalysisOptions(dynamic_range_db=55.0).dynamic_range_source == "option"
    assert AnalysisOptions().dynamic_range_source == "default"
    assert AnalysisOptions().resolved_dynamic_range_db == DEFAULT_DYNAMIC_RANGE_DB


@pytest.mark.parametrize("value", ["1000", "1e-300", "9.99", "120.5", "0", "-50", "nan", "inf"])
def test_absurd_dynamic_ranges_are_one_line_errors_before_anything_is_written(capsys, study, value):
    out = f"bad_{value}"
    code, captured = _run(capsys, study, out, f"--dynamic-range={value}")
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "dynamic range must be 10 to 120 dB" in lines[0], captured.err
    assert not os.path.exists(study[0] / out / "results.json")


def test_the_limits_themselves_are_accepted_and_stay_finite_in_float32():
    for value in (10.0, 120.0):
        check_dynamic_range(value)
        linear = linear_from_gray(np.arange(256), value)
        assert linear.dtype == np.float32 and np.all(linear > 0) and np.all(np.isfinite(linear))
        assert np.isclose(linear[0], 10 ** (-value / 10), rtol=1e-5) and np.isclose(linear[-1], 1.0)
    for value in (9.999, 120.001, float("nan"), None, "60"):
        if value == "60":
            check_dynamic_range(value)  # numbers as text (a manifest cell) are numbers
            continue
        with pytest.raises(InputError):
            check_dynamic_range(value)
