"""A ``study`` folder's course of one lesion as Slicer nodes: the trajectory table and chart (Plots)
and the response table, from ``lesions.csv``, ``response.csv`` and ``study.json`` (the fusion and
follow-up contract). Qt-free: the Slicer module's Follow-up section passes ``slicer.mrmlScene``.

The chart has one series per quantity (``rel_WiWoAUC``, ``WiWoAUC``, ``rel_PE``, ... as far as
``lesions.csv`` has them): x the days from baseline, y the percent change of the exam mean from the
baseline's, so quantities of different units share one axis. The trajectory table holds the
``lesions.csv`` values themselves beside those changes.
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.longitudinal.records import FUSION_MEASURES, unit_of
from DCEUSResponseLib.scene.nodes import ROI_COLOURS, add_new_node
from DCEUSResponseLib.scene.tables import add_double_column, add_int_column, add_string_column, nan_for_none

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions
    import slicer

#: The quantities charted, in this order, when ``lesions.csv`` has values for them (the report's).
TRAJECTORY_COLUMNS = ("rel_WiWoAUC", "WiWoAUC", "rel_PE", "PE", "rel_AUC", "AUC", "pet_SUVmax", "pet_TLR")
DAYS_AXIS_TITLE = "days from baseline"
CHANGE_AXIS_TITLE = "change from baseline (%)"
CHANGE_SUFFIX = " change"
#: response.csv columns shown, with their table titles ("%" marks a percent column).
RESPONSE_COLUMNS = (
    ("exam", "Exam", None), ("days_from_baseline", "Days", "d"), ("rule", "Rule", None),
    ("parameter", "Parameter", None), ("classification", "Classification", None),
    ("delta_percent", "Change", "%"), ("relative_delta_percent", "Rel. change", "%"),
    ("delta_previous_percent", "Change vs previous", "%"),
    ("relative_delta_previous_percent", "Rel. change vs previous", "%"),
    ("beyond_repeatability", "Beyond repeatability", None), ("reason", "Reason", None),
)


@dataclass(frozen=True)
class StudyFolder:
    """The tables of a ``study`` output folder, as text rows (``csv.DictReader``)."""

    folder: str
    lesions: list[dict[str, str]]
    response: list[dict[str, str]]
    clips: list[dict[str, Any]]  # study.json "clips": patient, exam, injection, folder, status

    def patients(self) -> list[str]:
        """The patients, in the order of ``lesions.csv``."""
        return list(dict.fromkeys(row["patient"] for row in self.lesions))

    def lesion_names(self, patient: str) -> list[str]:
        """The patient's ROIs, lesions first (``lesions.csv`` order), the reference ROI last."""
        rows = [row for row in self.lesions if row["patient"] == patient]
        names = list(dict.fromkeys(row["lesion"] for row in rows))
        reference = {row["lesion"] for row in rows if _true(row.get("is_reference"))}
        return [n for n in names if n not in reference] + [n for n in names if n in reference]

    def exams(self, patient: str) -> list[str]:
        """The patient's exams by days from baseline."""
        rows = sorted((float(r["days_from_baseline"]), r["exam"]) for r in self.lesions if r["patient"] == patient)
        return list(dict.fromkeys(exam for _, exam in rows))

    def lesion_rows(self, patient: str, lesion: str) -> list[dict[str, str]]:
        rows = [r for r in self.lesions if r["patient"] == patient and r["lesion"] == lesion]
        return sorted(rows, key=lambda r: float(r["days_from_baseline"]))

    def response_rows(self, patient: str, lesion: str) -> list[dict[str, str]]:
        return [r for r in self.response if r["patient"] == patient and r["lesion"] == lesion]

    def exam_scenes(self, patient: str, exam: str) -> list[str]:
        """The Slicer scene bundles (``*.mrb``) in the exam's clip folders (and their ``fusion/``), sorted;
        empty when the clips were analysed without ``--scene``."""
        found = []
        for clip in self.clips:
            if clip.get("patient") == patient and clip.get("exam") == exam and clip.get("folder"):
                folder = os.path.join(self.folder, clip["folder"])
                found += glob.glob(os.path.join(glob.escape(folder), "**", "*.mrb"), recursive=True)
        return sorted(found)


def read_study_folder(folder: str) -> StudyFolder:
    """Read ``folder``'s ``study.json``, ``lesions.csv`` and ``response.csv``; InputError naming the
    file when one is missing or unreadable (not a finished ``study`` output)."""
    folder = os.path.abspath(folder)
    record_path = os.path.join(folder, "study.json")
    if not os.path.isfile(record_path):
        raise InputError("not a study output folder (no study.json; run `study MANIFEST.csv --out DIR`)", folder)
    try:
        with open(record_path, encoding="utf-8") as stream:
            record = json.load(stream)
        clips = list(record["clips"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"unreadable study.json ({type(error).__name__})", record_path) from None
    return StudyFolder(folder, _read_csv(os.path.join(folder, "lesions.csv"), ("patient", "lesion", "exam")),
                       _read_csv(os.path.join(folder, "response.csv"), ("patient", "lesion", "exam", "rule")), clips)


def _read_csv(path: str, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the table ({type(error).__name__})", path) from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"not a study table: no column {', '.join(missing)}", path)
    return rows


def _true(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "1", "yes")


def _number(text: str | None) -> float:
    """A CSV cell as a float: NaN when empty (a value the study could not measure)."""
    if text is None or not text.strip():
        return math.nan
    return nan_for_none(float(text))


@dataclass
class FollowUpNodes:
    """The nodes :func:`add_follow_up_nodes` made (or refilled)."""

    trajectory_table: Any  # vtkMRMLTableNode: one row per exam
    chart: Any             # vtkMRMLPlotChartNode
    response_table: Any    # vtkMRMLTableNode: the lesion's response.csv rows
    series: dict[str, Any] = field(default_factory=dict)  # lesions.csv column -> vtkMRMLPlotSeriesNode


def add_follow_up_nodes(scene: "slicer.vtkMRMLScene", study: StudyFolder, patient: str, lesion: str,
                        nodes: FollowUpNodes | None = None,
                        columns: Sequence[str] = TRAJECTORY_COLUMNS) -> FollowUpNodes:
    """The trajectory table and chart and the response table of ``lesion`` of ``patient``.

    Trajectory table: ``exam``, ``date``, ``days_from_baseline`` (d), ``n_clips``, then per charted
    column its ``lesions.csv`` value (unit of the parameter; ``rel_`` unitless) and ``<column> change``
    (%, ``100 (value / baseline value - 1)``, NaN where either is missing). ``nodes`` (from an earlier
    call) are refilled in place, their series replaced, so choosing another lesion reuses them.
    """
    rows = study.lesion_rows(patient, lesion)
    if not rows:
        raise InputError(f"no lesion {lesion!r} of patient {patient!r} in lesions.csv",
                         os.path.join(study.folder, "lesions.csv"))
    charted = [c for c in columns if rows[0].get(c) is not None and any(math.isfinite(_number(r.get(c))) for r in rows)]
    title = f"{patient} {lesion}"
    if nodes is None:
        nodes = FollowUpNodes(add_new_node(scene, "vtkMRMLTableNode", f"{title} trajectory"),
                              add_new_node(scene, "vtkMRMLPlotChartNode", f"{title} trajectory chart"),
                              add_new_node(scene, "vtkMRMLTableNode", f"{title} response"))
    _fill_trajectory_table(nodes.trajectory_table, rows, charted)
    _fill_response_table(nodes.response_table, study.response_rows(patient, lesion))
    chart = nodes.chart
    chart.RemoveAllPlotSeriesNodeIDs()
    for series in nodes.series.values():
        scene.RemoveNode(series)
    nodes.series = {}
    chart.SetTitle(f"{title}: change from baseline")
    chart.SetXAxisTitle(DAYS_AXIS_TITLE)
    chart.SetYAxisTitle(CHANGE_AXIS_TITLE)
    chart.SetLegendVisibility(True)
    for index, column in enumerate(charted):
        series = add_new_node(scene, "vtkMRMLPlotSeriesNode", f"{title} {column}")
        series.SetAndObserveTableNodeID(nodes.trajectory_table.GetID())
        series.SetXColumnName("days_from_baseline")
        series.SetYColumnName(column + CHANGE_SUFFIX)
        series.SetLabelColumnName("exam")
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetMarkerSize(8)
        # Absolute values dashed, reference-normalised ones solid: the pair of a parameter shares a colour.
        series.SetLineStyle(series.LineStyleSolid if column.startswith("rel_") else series.LineStyleDash)
        series.SetLineWidth(2)
        series.SetColor(*map(float, ROI_COLOURS[(index // 2) % len(ROI_COLOURS)]))
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        nodes.series[column] = series
    for node in (nodes.trajectory_table, chart, nodes.response_table, *nodes.series.values()):
        node.SetAttribute("DCEUS.StudyFolder", study.folder)
        node.SetAttribute("DCEUS.Patient", patient)
        node.SetAttribute("DCEUS.Lesion", lesion)
    return nodes


def _fill_trajectory_table(table, rows: list[dict[str, str]], charted: list[str]) -> None:
    was_modified = table.StartModify()
    table.RemoveAllColumns()
    add_string_column(table, "exam", [r["exam"] for r in rows])
    add_string_column(table, "date", [r.get("date", "") for r in rows])
    add_double_column(table, "days_from_baseline", [_number(r["days_from_baseline"]) for r in rows], "d",
                       DAYS_AXIS_TITLE)
    add_int_column(table, "n_clips", [int(_number(r.get("n_clips")) if r.get("n_clips") else 0) for r in rows],
                    "clips (injections) averaged at the exam")
    for column in charted:
        values = [_number(r.get(column)) for r in rows]
        parameter = column[4:] if column.startswith("rel_") else column
        relative = column.startswith("rel_")
        add_double_column(table, column, values, "" if relative else _unit_of(parameter),
                           f"{parameter}: exam mean" + (", relative to the reference ROI" if relative else ""))
        baseline = values[0] if float(rows[0]["days_from_baseline"]) == 0 else math.nan
        add_double_column(table, column + CHANGE_SUFFIX, [_change(baseline, v) for v in values], "%",
                           f"{column}: percent change of the exam mean from the baseline's")
    table.SetUseFirstColumnAsRowHeader(True)
    table.Modified()
    table.EndModify(was_modified)


def _unit_of(column: str) -> str:
    """The unit of a lesions.csv column stem: a CEUS parameter or a fusion measure's column."""
    return unit_of(next((m.name for m in FUSION_MEASURES if m.column == column), column))


def _change(baseline: float, value: float) -> float:
    if not (math.isfinite(baseline) and math.isfinite(value)) or baseline == 0:
        return math.nan
    return 100.0 * (value / baseline - 1.0)


def _fill_response_table(table, rows: list[dict[str, str]]) -> None:
    was_modified = table.StartModify()
    table.RemoveAllColumns()
    for key, title, cell_unit in RESPONSE_COLUMNS:
        if cell_unit is None:
            add_string_column(table, title, [r.get(key) or "" for r in rows])
        else:
            add_double_column(table, title, [_number(r.get(key)) for r in rows], cell_unit,
                               f"response.csv {key}")
    table.Modified()
    table.EndModify(was_modified)
