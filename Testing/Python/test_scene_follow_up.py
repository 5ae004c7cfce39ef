"""A study folder's course in Slicer nodes (scene/follow_up.py), on a real MRML scene (slicer-core) and
a real ``study`` output: 1 patient x 3 exams (B, C2, C4), the baseline injected twice; lesion1 falls
to 45 % and 30 % of its baseline bolus area, lesion2 to 95 % and 85 % (synthetic/cohort.py)."""
import csv
import math
import os

import pytest

pytest.importorskip("slicer")

from DCEUSResponseLib.app.cli import main  # noqa: E402
from DCEUSResponseLib.errors import InputError  # noqa: E402
from DCEUSResponseLib.scene.application import create_headless_application  # noqa: E402
from DCEUSResponseLib.scene.follow_up import (  # noqa: E402
    CHANGE_AXIS_TITLE,
    DAYS_AXIS_TITLE,
    RESPONSE_COLUMNS,
    add_follow_up_nodes,
    read_study_folder,
)
from DCEUSResponseLib.synthetic.cohort import build_cohort  # noqa: E402

CHARTED = ["rel_WiWoAUC", "WiWoAUC", "rel_PE", "PE", "rel_AUC", "AUC"]  # no PET: the cohort is not fused


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    manifest, _ = build_cohort(str(tmp_path_factory.mktemp("cohort")), n_patients=1, n_exams=3, repeated=((0, 0),))
    out = tmp_path_factory.mktemp("study")
    assert main(["study", manifest, "--out", str(out), "--workers", "2"]) == 0
    return str(out)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def _column(table_node, name):
    array = table_node.GetTable().GetColumnByName(name)
    assert array is not None, name
    return [array.GetValue(k) for k in range(array.GetNumberOfTuples())]


def _float(text):
    return float(text) if text else math.nan


def _same(values, expected):
    assert len(values) == len(expected)
    for value, wanted in zip(values, expected):
        assert (math.isnan(value) and math.isnan(wanted)) or value == pytest.approx(wanted, rel=1e-12), (values, expected)


def test_the_study_folder_lists_patients_lesions_and_exams(study_folder):
    study = read_study_folder(study_folder)
    assert study.patients() == ["P1"]
    assert study.lesion_names("P1") == ["lesion1", "lesion2", "liver"]  # the reference ROI last
    assert study.exams("P1") == ["B", "C2", "C4"]
    assert study.exam_scenes("P1", "C2") == []  # study runs analyze without --scene
    scene_file = os.path.join(study_folder, "exams", "P1", "C2", "1", "C2.mrb")
    open(scene_file, "wb").close()
    try:
        assert read_study_folder(study_folder).exam_scenes("P1", "C2") == [scene_file]
        assert read_study_folder(study_folder).exam_scenes("P1", "B") == []
    finally:
        os.remove(scene_file)


def test_the_trajectory_and_response_of_a_lesion_equal_the_csvs(study_folder):
    study = read_study_folder(study_folder)
    lesions = [r for r in _rows(os.path.join(study_folder, "lesions.csv")) if r["lesion"] == "lesion1"]
    response = [r for r in _rows(os.path.join(study_folder, "response.csv")) if r["lesion"] == "lesion1"]
    with create_headless_application() as app:
        nodes = add_follow_up_nodes(app.scene, study, "P1", "lesion1")
        table, chart = nodes.trajectory_table, nodes.chart
        # 3 exams; exam, date, days, n_clips, then per charted column its value and its change
        assert table.GetNumberOfRows() == 3 and table.GetNumberOfColumns() == 4 + 2 * len(CHARTED)
        assert _column(table, "exam") == ["B", "C2", "C4"]
        assert _column(table, "n_clips") == [2, 1, 1]
        _same(_column(table, "days_from_baseline"), [0.0, 56.0, 112.0])
        assert table.GetColumnUnitLabel("days_from_baseline") == "d"
        assert table.GetColumnUnitLabel("WiWoAUC") == "a.u.*s" and table.GetColumnUnitLabel("rel_WiWoAUC") == ""
        for column in CHARTED:
            values = [_float(r[column]) for r in lesions]
            _same(_column(table, column), values)
            _same(_column(table, f"{column} change"), [100 * (v / values[0] - 1) for v in values])
        # the chart's change of rel_WiWoAUC is the response table's relative change at each follow-up
        rule = [r for r in response if r["rule"] == "relative:WiWoAUC:-40"]
        _same(_column(table, "rel_WiWoAUC change")[1:], [float(r["relative_delta_percent"]) for r in rule])

        assert chart.GetXAxisTitle() == DAYS_AXIS_TITLE and chart.GetYAxisTitle() == CHANGE_AXIS_TITLE
        assert chart.GetNumberOfPlotSeriesNodes() == len(CHARTED) == len(nodes.series)
        for index, column in enumerate(CHARTED):
            series = chart.GetNthPlotSeriesNode(index)
            assert series is nodes.series[column] and series.GetName() == f"P1 lesion1 {column}"
            assert series.GetTableNodeID() == table.GetID()
            assert (series.GetXColumnName(), series.GetYColumnName()) == ("days_from_baseline", f"{column} change")
            assert series.GetPlotType() == series.PlotTypeScatter
        assert chart.GetAttribute("DCEUS.Lesion") == "lesion1" and chart.GetAttribute("DCEUS.Patient") == "P1"

        answer = nodes.response_table
        assert answer.GetNumberOfRows() == len(response) == 4  # 2 follow-ups x 2 default rules
        assert answer.GetNumberOfColumns() == len(RESPONSE_COLUMNS)
        assert _column(answer, "Exam") == [r["exam"] for r in response]
        assert _column(answer, "Rule") == [r["rule"] for r in response]
        assert _column(answer, "Classification") == [r["classification"] for r in response]
        assert _column(answer, "Classification")[:2] == ["responder", "responder"]  # C2, both rules
        _same(_column(answer, "Rel. change"), [_float(r["relative_delta_percent"]) for r in response])
        _same(_column(answer, "Change vs previous"), [_float(r["delta_previous_percent"]) for r in response])
        assert answer.GetColumnUnitLabel("Rel. change") == "%"

        # another lesion refills the same nodes; its old series leave the scene
        old_ids = {series.GetID() for series in nodes.series.values()}
        before = app.scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode")
        again = add_follow_up_nodes(app.scene, study, "P1", "lesion2", nodes)
        assert again is nodes and again.trajectory_table is table and again.chart is chart
        assert app.scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == before == len(CHARTED)
        assert not any(app.scene.GetNodeByID(i) is not None and app.scene.GetNodeByID(i).GetName().endswith(
            "lesion1 " + c) for i in old_ids for c in CHARTED)
        lesion2 = [r for r in _rows(os.path.join(study_folder, "lesions.csv")) if r["lesion"] == "lesion2"]
        _same(_column(table, "PE"), [_float(r["PE"]) for r in lesion2])
        assert app.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2
        assert app.scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1


def test_a_folder_that_is_not_a_study_is_one_line(tmp_path, study_folder):
    with pytest.raises(InputError, match="no study.json"):
        read_study_folder(str(tmp_path))
    (tmp_path / "study.json").write_text('{"clips": []}')
    with pytest.raises(InputError, match="lesions.csv"):
        read_study_folder(str(tmp_path))
    study = read_study_folder(study_folder)
    with create_headless_application() as app, pytest.raises(InputError, match="no lesion 'lesion9'"):
        add_follow_up_nodes(app.scene, study, "P1", "lesion9")
