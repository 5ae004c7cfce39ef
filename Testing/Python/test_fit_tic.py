"""``dceus fit-tic`` (issue 9 item 23): a TIC given as a table gets the same fit and parameters as an
ROI of ``analyze``; bad tables are one-line errors naming the file and the row."""
import csv
import json
import os

import numpy as np
import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.ceus.linearize import gray_from_linear
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS
from DCEUSResponseLib.kinetics.parameters import bolus_parameters
from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks

TRUTH = {"O": 2e-3, "A": 0.5, "t0": 8.0, "mu": np.log(10.0), "sigma": 0.5}
TIMES_S = np.arange(0.0, 90.0, 0.5)


def _table(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _fit(tmp_path, table, *options, out="out"):
    code = main(["fit-tic", table, "--out", str(tmp_path / out), *options])
    results = json.load(open(tmp_path / out / "results.json")) if code == 0 else None
    return code, results


def test_a_noise_free_table_gives_the_true_parameters(tmp_path):
    values = BOLUS_MODELS["lognormal"].curve(TIMES_S, TRUTH)
    table = _table(tmp_path / "tic.csv", ["Time (s)", "Mean intensity"], zip(TIMES_S, values))
    code, results = _fit(tmp_path, table)
    assert code == 0
    roi = results["rois"]["Mean intensity"]
    truth = bolus_parameters("lognormal", TRUTH, None)
    for name in ("PE", "TTP", "TI", "TO", "mTTl", "WiWoAUC", "AUC"):
        assert roi["parameters"][name] == pytest.approx(truth[name], rel=1e-4), name
    assert roi["status"] == "ok" and roi["extrapolated"] == [] and roi["pixels"] is None
    assert results["table"]["time_column"] == "Time (s)" and results["table"]["intensity"] == "linear"
    header = next(csv.reader(open(tmp_path / "out" / "parameters.csv")))
    assert header[:4] == ["roi", "status", "model", "PE"] and header[-1] == "extrapolated"
    assert os.path.exists(tmp_path / "out" / "tic.csv")


def test_gray_levels_with_a_dynamic_range_and_an_injection_time(tmp_path):
    linear = BOLUS_MODELS["lognormal"].curve(TIMES_S, TRUTH)
    gray = gray_from_linear(linear, 45.0)
    assert gray.min() > 0 and gray.max() < 255
    table = _table(tmp_path / "gray.csv", ["t", "gray"], zip(TIMES_S + 5.0, gray))
    code, results = _fit(tmp_path, table, "--dynamic-range", "45", "--injection-time", "5", "--name", "lesion")
    assert code == 0
    roi = results["rois"]["lesion"]
    truth = bolus_parameters("lognormal", TRUTH, None)
    for name in ("PE", "TTP", "mTTl", "WiWoAUC"):
        assert roi["parameters"][name] == pytest.approx(truth[name], rel=1e-3), name
    assert results["table"]["intensity"] == "gray" and results["table"]["dynamic_range_db"] == 45.0


def test_a_table_cut_after_the_peak_reports_the_extrapolated_parameters(tmp_path, capsys):
    keep = TIMES_S < 20.0
    values = BOLUS_MODELS["lognormal"].curve(TIMES_S, TRUTH)[keep]
    code, results = _fit(tmp_path, _table(tmp_path / "short.csv", ["time_s", "intensity"],
                                          zip(TIMES_S[keep], values)))
    assert code == 0
    assert {"TO", "FT", "mTTl", "WoAUC", "AUC"} <= set(results["rois"]["intensity"]["extrapolated"])
    assert "extrapolated, not measured" in capsys.readouterr().err


def test_the_same_curve_as_an_roi_of_analyze_gives_the_same_parameters(tmp_path):
    clip = make_clip(panel_shape=(60, 80), n_frames=60, frame_interval_s=1.0, seed=5)
    path = str(tmp_path / "clip.dcm")
    write_clip(clip, path)
    masks = write_roi_masks(clip, str(tmp_path / "rois"), names=["lesion"])
    assert main(["analyze", path, f"--roi=lesion={masks['lesion']}", "--dynamic-range", "50",
                 "--injection-time", "1.5", "--out", str(tmp_path / "clip_out")]) == 0
    with open(tmp_path / "clip_out" / "tic.csv") as stream:
        rows = list(csv.DictReader(stream))
    used = [r for r in rows if r["excluded"] == "0"]
    table = _table(tmp_path / "exported.csv", ["clip_time_s", "lesion_measured"],
                   [(r["clip_time_s"], r["lesion_measured"]) for r in used])
    code, results = _fit(tmp_path, table, "--injection-time", "1.5")
    assert code == 0
    from_clip = json.load(open(tmp_path / "clip_out" / "results.json"))["rois"]["lesion"]["parameters"]
    from_table = results["rois"]["lesion_measured"]["parameters"]
    for name, value in from_clip.items():
        assert from_table[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("separator", [",", "\t", ";", " "], ids=["comma", "tab", "semicolon", "space"])
def test_a_two_column_table_without_a_header_is_time_then_intensity(tmp_path, separator):
    """The contract: "a header row names the columns (optional when there are exactly two: time,
    intensity)"; such a table was refused ("cannot tell which column is the time")."""
    values = BOLUS_MODELS["lognormal"].curve(TIMES_S, TRUTH)
    table = tmp_path / "tic.txt"
    table.write_text("".join(f"{t:.3f}{separator}{v:.9g}\n" for t, v in zip(TIMES_S, values)))
    code, results = _fit(tmp_path, str(table))
    assert code == 0
    assert results["table"]["time_column"] == "column 1"
    roi = next(iter(results["rois"].values()))
    assert roi["parameters"]["TTP"] == pytest.approx(bolus_parameters("lognormal", TRUTH, None)["TTP"], rel=1e-3)
    if separator == ",":  # --intensity-column 1 alone makes the other column the time
        swapped = tmp_path / "swapped.txt"
        swapped.write_text("".join(f"{v:.9g},{t:.3f}\n" for t, v in zip(TIMES_S, values)))
        code, results = _fit(tmp_path, str(swapped), "--intensity-column", "1", out="swapped")
        assert code == 0 and results["table"]["time_column"] == "column 2"


BAD_TABLES = [
    ("text", ["time_s", "intensity"], [(0, 1), (1, "abc")] + [(k, 1) for k in range(2, 12)], "row 3",
     "'abc' in column 'intensity' is not a number"),
    ("nan", ["time_s", "intensity"], [(k, 1) for k in range(5)] + [(5, "nan")] + [(k, 1) for k in range(6, 12)],
     "row 7", "not a finite number"),
    ("backwards", ["time_s", "intensity"], [(k, 1) for k in range(6)] + [(4, 1)] + [(k, 1) for k in range(7, 12)],
     "row 8", "times must increase"),
    ("repeated", ["time_s", "intensity"], [(0, 1), (0, 1)] + [(k, 1) for k in range(2, 12)], "row 3",
     "times must increase"),
    ("short", ["time_s", "intensity"], [(k, 1) for k in range(7)], "7 data rows", "at least 8"),
    ("missing_cell", ["time_s", "intensity"], [(k, 1) for k in range(5)] + [(5,)] + [(k, 1) for k in range(6, 12)],
     "row 7", "no value in column 'intensity'"),
    ("ambiguous", ["time_s", "a", "b"], [(k, 1, 2) for k in range(12)], "cannot tell which column is the intensity",
     "--intensity-column"),
    ("negative", ["time_s", "intensity"], [(k, 1) for k in range(5)] + [(5, -1)] + [(k, 1) for k in range(6, 12)],
     "row 7", "negative"),
]


@pytest.mark.parametrize("name,header,rows,where,what", BAD_TABLES, ids=[case[0] for case in BAD_TABLES])
def test_bad_tables_are_one_line_errors_naming_the_file_and_the_row(tmp_path, capsys, name, header, rows, where,
                                                                     what):
    table = _table(tmp_path / f"{name}.csv", header, rows)
    code, _ = _fit(tmp_path, table)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert table in err[0] and where in err[0] and what in err[0], err[0]
    assert not os.path.exists(tmp_path / "out")


def test_gray_levels_outside_the_display_scale_and_wrong_options_are_refused(tmp_path, capsys):
    table = _table(tmp_path / "g.csv", ["time_s", "gray"], [(k, 300 if k == 4 else 10) for k in range(12)])
    assert _fit(tmp_path, table, "--dynamic-range", "50")[0] == 1
    assert "row 6: gray level 300 is outside 0..255" in capsys.readouterr().err
    assert _fit(tmp_path, table, "--dynamic-range", "1000")[0] == 1
    assert "dynamic range must be 10 to 120 dB" in capsys.readouterr().err
    assert _fit(tmp_path, table, "--time-column", "when")[0] == 1
    assert "--time-column 'when' is not a column" in capsys.readouterr().err
    assert _fit(tmp_path, table, "--injection-time", "50")[0] == 1
    assert "not before the table's last time" in capsys.readouterr().err


def test_row_options_count_data_rows_from_zero_everywhere(tmp_path, capsys):
    """--exclude-frames counts data rows from 0; results.json gives the rows so counted as well as the
    file rows (header = row 1), and a row outside the table is an error naming the file and the rows."""
    values = BOLUS_MODELS["lognormal"].curve(TIMES_S, TRUTH)
    table = _table(tmp_path / "tic.csv", ["time_s", "intensity"], zip(TIMES_S, values))
    code, results = _fit(tmp_path, table, "--exclude-frames", "3-4,60")
    assert code == 0
    assert results["table"]["excluded_data_rows"] == [3, 4, 60]
    assert results["table"]["excluded_rows"] == [5, 6, 62]
    assert _fit(tmp_path, table, "--exclude-frames", "500", out="bad")[0] == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and table in err[0] and "outside the table (data rows are 0..179)" in err[0], err


def test_a_gray_column_fitted_as_linear_is_warned(tmp_path, capsys):
    """Display gray levels without --dynamic-range would be fitted as linear echo power (PE 112 'a.u.')."""
    gray = np.round(np.clip(200 + 10 * np.log10(BOLUS_MODELS["lognormal"].curve(TIMES_S, TRUTH)), 0, 255))
    table = _table(tmp_path / "g.csv", ["time_s", "Mean gray"], zip(TIMES_S, gray))
    assert _fit(tmp_path, table)[0] == 0
    assert "column 'Mean gray' is fitted as linear intensity" in capsys.readouterr().err
    assert _fit(tmp_path, table, "--dynamic-range", "50", out="with")[0] == 0
    assert "fitted as linear" not in capsys.readouterr().err
