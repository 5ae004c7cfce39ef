"""Analysis results as Slicer tables (TIC, parameters) and a chart of measured and fitted TICs; the
response of a follow-up as a table. The one place the package builds MRML tables."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.catalogue import unit
from DCEUSResponseLib.ceus.results import Analysis
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.contract import extrapolated_cell, results_json
from DCEUSResponseLib.export.staging import json_text
from DCEUSResponseLib.kinetics.base import STATUS_OK
from DCEUSResponseLib.longitudinal.response import DEFAULT_RULE, ResponseRule
from DCEUSResponseLib.scene.nodes import (
    ROI_COLOURS,
    TIC_X_AXIS_TITLE,
    TIC_Y_AXIS_TITLE,
    add_new_node,
)

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions
    import slicer


@dataclass
class ResultNodes:
    """The nodes :func:`add_analysis_results` adds."""

    tic_table: Any  # vtkMRMLTableNode, the columns of tic.csv
    parameter_table: Any  # vtkMRMLTableNode, the rows of parameters.csv
    chart: Any  # vtkMRMLPlotChartNode
    measured_series: dict[str, Any]  # ROI name -> vtkMRMLPlotSeriesNode (markers)
    fitted_series: dict[str, Any]  # ROI name -> vtkMRMLPlotSeriesNode (line), ROIs with a fit only

    @property
    def series(self) -> list[Any]:
        return [*self.measured_series.values(), *self.fitted_series.values()]


@dataclass
class _ResultColumns:
    """What the result tables show, from an :class:`Analysis` or from an analysis folder's files."""

    names: list[str]
    times_s: np.ndarray
    measured: dict[str, np.ndarray]
    fitted: dict[str, np.ndarray]
    clip_times_s: np.ndarray
    excluded: np.ndarray
    rois: dict[str, dict]  # as results.json's: status, model, parameters, relative, pixels, reason, extrapolated
    parameter_names: list[str]
    provenance: dict[str, str]
    results_text: str


def add_analysis_results(scene: "slicer.vtkMRMLScene", analysis: "Analysis", name_prefix: str = "", *,
                         segmentation_node: "slicer.vtkMRMLSegmentationNode | None" = None) -> ResultNodes:
    """TIC and parameter tables and a chart of measured (markers) and fitted (lines) TICs.

    The TIC table has the columns of ``tic.csv`` (``time_s`` since injection, ``NAME_measured``,
    ``NAME_fitted`` in linear a.u., NaN where there is no fit; ``frame``, ``clip_time_s``,
    ``excluded``); the parameter table the rows of ``parameters.csv`` (numbers as double columns
    with units, NaN for null). A curve takes the colour of the segment named after its ROI in
    ``segmentation_node`` when given, else :data:`ROI_COLOURS`.
    """
    times = np.asarray(analysis.times_s, dtype=np.float64)
    results = results_json(analysis)
    columns = _ResultColumns(
        list(analysis.rois), times,
        {name: np.asarray(roi.tic, dtype=np.float64) for name, roi in analysis.rois.items()},
        {name: np.asarray(roi.fit.curve(times), dtype=np.float64) for name, roi in analysis.rois.items()},
        np.asarray(analysis.clip.frame_times_s, dtype=np.float64), ~np.asarray(analysis.frame_use, dtype=bool),
        results["rois"], list(analysis.parameter_names), provenance_attributes(analysis), json_text(results))
    return _add_result_nodes(scene, columns, name_prefix, segmentation_node)


def add_folder_results(scene: "slicer.vtkMRMLScene", folder: str, results: dict, name_prefix: str = "", *,
                       segmentation_node: "slicer.vtkMRMLSegmentationNode | None" = None) -> ResultNodes:
    """:func:`add_analysis_results` of an ``analyze`` output folder (``fuse --scene``): the TIC columns
    from ``tic.csv`` (by position: the ROIs in ``results``' order, as analyze writes them), the
    parameters from ``results`` (its ``results.json`` as read), ``DCEUS.Results`` the file's text."""
    import csv

    names = list(results["rois"])
    try:  # as written: a reader may have turned its nulls into NaN
        with open(os.path.join(folder, "results.json"), encoding="utf-8") as stream:
            results_text = stream.read()
    except OSError as error:
        raise InputError(f"cannot read the analysis' results ({error.strerror or error})", folder) from None
    path = os.path.join(folder, "tic.csv")
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))[1:]
        table = np.array([[float(cell) if cell else math.nan for cell in row[:2 * len(names) + 4]] for row in rows])
    except (OSError, ValueError, IndexError) as error:
        raise InputError(f"cannot read the analysis' TIC table ({error})", path) from None
    if table.ndim != 2 or table.shape[1] != 2 * len(names) + 4:
        raise InputError(f"the TIC table does not hold the {len(names)} ROIs of results.json", path)
    first = next(iter(results["rois"].values()), {})
    provenance = _provenance(str((results.get("clip") or {}).get("source_path") or ""), results.get("reference"))
    columns = _ResultColumns(
        names, table[:, 0], {name: table[:, 1 + 2 * k] for k, name in enumerate(names)},
        {name: table[:, 2 + 2 * k] for k, name in enumerate(names)}, table[:, 2 * len(names) + 2],
        table[:, 2 * len(names) + 3] != 0, results["rois"], list(first.get("parameters") or ()), provenance,
        results_text)
    return _add_result_nodes(scene, columns, name_prefix, segmentation_node)


def _add_result_nodes(scene, columns: _ResultColumns, name_prefix: str, segmentation_node) -> ResultNodes:
    names, rois = columns.names, [columns.rois[name] for name in columns.names]
    tic_table = add_new_node(scene, "vtkMRMLTableNode", f"{name_prefix}TIC")
    add_double_column(tic_table, "time_s", columns.times_s, "s", "time since injection")
    for name in names:
        add_double_column(tic_table, f"{name}_measured", columns.measured[name], "a.u.",
                          f"{name}: measured mean linear intensity")
        add_double_column(tic_table, f"{name}_fitted", columns.fitted[name], "a.u.",
                          f"{name}: fitted {columns.rois[name]['model']} model")
    add_int_column(tic_table, "frame", np.arange(columns.times_s.size), "frame index")
    add_double_column(tic_table, "clip_time_s", columns.clip_times_s, "s", "time on the clip clock (first frame 0)")
    add_int_column(tic_table, "excluded", columns.excluded.astype(np.int64), "1 when the frame was kept out of the fit")

    parameter_table = add_new_node(scene, "vtkMRMLTableNode", f"{name_prefix}Parameters")
    add_string_column(parameter_table, "roi", names)
    add_string_column(parameter_table, "status", [roi["status"] for roi in rois])
    add_string_column(parameter_table, "model", [roi["model"] for roi in rois])
    for parameter in columns.parameter_names:
        add_double_column(parameter_table, parameter, [nan_for_none(r["parameters"].get(parameter)) for r in rois],
                          unit(parameter), parameter)
    for parameter in columns.parameter_names:
        add_double_column(parameter_table, f"rel_{parameter}",
                          [nan_for_none((r.get("relative") or {}).get(parameter)) for r in rois], "",
                          f"{parameter} relative to the reference ROI")
    add_int_column(parameter_table, "pixels", [roi["pixels"] for roi in rois], "ROI size in pixels")
    add_string_column(parameter_table, "reason", [roi.get("reason") or "" for roi in rois])
    # the values that depend on the fitted curve beyond the fitted frames (as in parameters.csv)
    add_string_column(parameter_table, "extrapolated", [extrapolated_cell(roi.get("extrapolated") or (),
                                                                          roi.get("relative_extrapolated") or ())
                                                        for roi in rois])
    parameter_table.SetUseFirstColumnAsRowHeader(True)

    for table in (tic_table, parameter_table):
        for key, value in columns.provenance.items():
            table.SetAttribute(key, value)
    parameter_table.SetAttribute("DCEUS.Results", columns.results_text)

    chart = add_new_node(scene, "vtkMRMLPlotChartNode", f"{name_prefix}TIC chart")
    chart.SetTitle(f"{name_prefix}Time-intensity curves")
    chart.SetXAxisTitle(TIC_X_AXIS_TITLE)
    chart.SetYAxisTitle(TIC_Y_AXIS_TITLE)
    chart.SetLegendVisibility(True)
    measured, fitted = {}, {}
    for index, name in enumerate(names):
        colour = _segment_colour(segmentation_node, name) or ROI_COLOURS[index % len(ROI_COLOURS)]
        series = add_new_node(scene, "vtkMRMLPlotSeriesNode", f"{name_prefix}{name} measured")
        _configure_series(series, tic_table, f"{name}_measured", colour, markers=True)
        measured[name] = series
        if columns.rois[name]["status"] == STATUS_OK:
            series = add_new_node(scene, "vtkMRMLPlotSeriesNode", f"{name_prefix}{name} fitted")
            _configure_series(series, tic_table, f"{name}_fitted", colour, markers=False)
            fitted[name] = series
    for series in [*measured.values(), *fitted.values()]:
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    for node in (chart, *measured.values(), *fitted.values()):
        for key, value in columns.provenance.items():
            node.SetAttribute(key, value)
    return ResultNodes(tic_table, parameter_table, chart, measured, fitted)


def provenance_attributes(analysis: "Analysis") -> dict[str, str]:
    return _provenance(analysis.clip.source, analysis.options.reference)


def _provenance(source: str, reference: str | None) -> dict[str, str]:
    return {"DCEUS.Source": source, "DCEUS.SoftwareName": SOFTWARE_NAME, "DCEUS.SoftwareVersion": __version__,
            "DCEUS.Reference": reference or ""}


# Column helpers of every table node the scene rooms build (analysis, response, follow-up, PET/CT).


def nan_for_none(value) -> float:
    """A table cell's float: NaN for None and for non-finite values (vtkDoubleArray has no "missing")."""
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def add_double_column(table, name: str, values, unit: str, description: str) -> None:
    """A float64 column with its unit label (UCUM or plain) and description."""
    from vtkmodules.vtkCommonCore import vtkDoubleArray

    array = vtkDoubleArray()
    array.SetName(name)
    for value in np.asarray(values, dtype=np.float64):
        array.InsertNextValue(float(value))
    table.AddColumn(array)
    table.SetColumnType(name, array.GetDataType())
    if unit:
        table.SetColumnUnitLabel(name, unit)
    table.SetColumnDescription(name, description)


def add_int_column(table, name: str, values, description: str) -> None:
    """An integer column with its description."""
    from vtkmodules.vtkCommonCore import vtkIntArray

    array = vtkIntArray()
    array.SetName(name)
    for value in values:
        array.InsertNextValue(int(value))
    table.AddColumn(array)
    table.SetColumnDescription(name, description)


def add_string_column(table, name: str, values: Sequence[str]) -> None:
    """A text column."""
    from vtkmodules.vtkCommonCore import vtkStringArray

    array = vtkStringArray()
    array.SetName(name)
    for value in values:
        array.InsertNextValue(str(value))
    table.AddColumn(array)


def _segment_colour(segmentation_node, name: str) -> tuple[float, float, float] | None:
    if segmentation_node is None:
        return None
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(name)
    segment = segmentation.GetSegment(segment_id) if segment_id else None
    return tuple(segment.GetColor()) if segment is not None else None


def _configure_series(series, table, column: str, colour, *, markers: bool) -> None:
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("time_s")
    series.SetYColumnName(column)
    # Scatter: x from the time column (frame times may be irregular), points joined or not.
    series.SetPlotType(series.PlotTypeScatter)
    if markers:
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetMarkerSize(5)
        series.SetLineStyle(series.LineStyleNone)
    else:
        series.SetMarkerStyle(series.MarkerStyleNone)
        series.SetLineStyle(series.LineStyleSolid)
        series.SetLineWidth(2)
    series.SetColor(*map(float, colour))




#: Changes shown besides the rule's own, in this order (absolute and reference-normalised).
RESPONSE_TABLE_PARAMETERS = ("PE", "WiWoAUC", "mTTl")


def add_response_table(scene: "slicer.vtkMRMLScene", response: dict, table_node=None, name: str = "DCE-US response"):
    """A table of ``response.json``: one row per ROI, its classification, the changes (%) of the rule's
    parameter first, then of :data:`RESPONSE_TABLE_PARAMETERS`, and the reason.

    ``table_node`` is refilled when given (its columns replaced), else a new table named ``name``.
    """
    if table_node is None:
        table_node = add_new_node(scene, "vtkMRMLTableNode", name)
    rule = ResponseRule.parse(response.get("rule") or DEFAULT_RULE)
    changes = [(rule.parameter, "relative_delta_percent" if rule.scale == "relative" else "delta_percent")]
    for parameter in RESPONSE_TABLE_PARAMETERS:
        for key in ("relative_delta_percent", "delta_percent"):
            if (parameter, key) not in changes:
                changes.append((parameter, key))
    rois = response["rois"]
    was_modified = table_node.StartModify()
    table_node.RemoveAllColumns()
    add_string_column(table_node, "ROI", list(rois))
    add_string_column(table_node, "Classification", [roi["classification"] for roi in rois.values()])
    for parameter, key in changes:
        relative = key == "relative_delta_percent"
        values = [roi["parameters"].get(parameter, {}).get(key) for roi in rois.values()]
        add_double_column(table_node, f"{parameter} rel. change" if relative else f"{parameter} change",
                           [nan_for_none(value) for value in values], "%",
                           f"change of {parameter} relative to each exam's reference ROI" if relative
                           else f"change of the absolute {parameter}")
    add_string_column(table_node, "Reason", [roi.get("reason") or "" for roi in rois.values()])
    table_node.SetAttribute("DCEUSResponse.rule", response.get("rule_definition") or "")
    table_node.Modified()
    table_node.EndModify(was_modified)
    return table_node
