"""The quantification contract's views of one :class:`~DCEUSResponseLib.ceus.results.Analysis`:
``results.json`` (:func:`results_json`, also what the Slicer tables and Compare use), ``parameters.csv``,
``tic.csv``, and :func:`write_analysis`, which writes them (and the maps) atomically; for ``fuse`` it
also writes ``rois/<NAME>.png`` and records ``clip.source_path``.

Every text cell of the CSVs (ROI names in rows and headers, reasons) goes through
:func:`~DCEUSResponseLib.export.csv_cells.csv_safe`, so a segment named ``=HYPERLINK(...)`` is not a
formula in a spreadsheet; ``results.json`` keeps the names as they are. Of the clip's DICOM
attributes only :func:`~DCEUSResponseLib.clip.shareable_uids` are written.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.clip import shareable_uids
from DCEUSResponseLib.kinetics.replenishment import SegmentedFit
from DCEUSResponseLib.ceus.results import Analysis, RoiResult
from DCEUSResponseLib.ceus.table_fit import TableFit
from DCEUSResponseLib.export.csv_cells import csv_text
from DCEUSResponseLib.export.dicom_common import dicom_output_patterns
from DCEUSResponseLib.export.map_files import map_underlay, map_writers
from DCEUSResponseLib.export.tic_plot import TicPanel, analysis_panel, matplotlib_available, tic_plot_writer
from DCEUSResponseLib.export.staging import StagedFiles, json_text
from DCEUSResponseLib.kinetics.parameters import _finite_or_none
from DCEUSResponseLib.kinetics.replenishment import replenishment_parameters
from DCEUSResponseLib.io.masks import roi_png_path


def _number(value) -> float | None:
    """A CSV number cell's value: a float (``repr`` reads back exactly), None for missing/non-finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def results_json(analysis: Analysis) -> dict:
    """The contract's ``results.json`` content of ``analysis``."""
    clip, layout = analysis.clip, analysis.layout
    motion = analysis.motion.to_json() if analysis.motion is not None else {
        "compensated": False, "method": None,
        "reason": "disabled (--no-motion-compensation)" if not analysis.options.motion_compensation else None}
    return {
        "clip": {
            "source": clip.source,
            # the clip's absolute path, for fuse (None when the clip came from a Slicer scene, not a file)
            "source_path": os.path.abspath(clip.source) if clip.source and os.path.exists(clip.source) else None,
            "frames": clip.n_frames,
            "rows": clip.rows,
            "columns": clip.columns,
            "frame_times_s": [round(float(t), 6) for t in clip.frame_times_s],
            "display": layout.display,
            "dynamic_range_db": analysis.options.resolved_dynamic_range_db,
            "dynamic_range_source": analysis.options.dynamic_range_source,
            "linear_scale": ("I = 10**((g/255*DR - DR)/10) a.u., DR = "
                             f"{analysis.options.resolved_dynamic_range_db:g} dB; g: "
                             f"{analysis.colour_mapping.describe()}"),
            "colour_map": analysis.colour_mapping.to_json(),
            "motion": motion,
            "excluded_frames": analysis.excluded_frames,
            "excluded_frame_reasons": [e.to_json() for e in analysis.excluded],
            "warnings": list(analysis.warnings),
            "timing_source": clip.timing_source,
            "injection_time_s": float(analysis.options.injection_time_s),
            "reference_frame": int(analysis.options.reference_frame),
            "photometric_interpretation": clip.photometric,
            "pixel_spacing_mm": list(layout.contrast.spacing_mm) if layout.contrast.spacing_mm else None,
            "contrast_region": _region_box(layout.contrast),
            "bmode_region": _region_box(layout.bmode) if layout.bmode is not None else None,
            "uids": shareable_uids(clip.uids, analysis.options.keep_identifiers),
        },
        "rois": {name: _roi_json(roi, analysis.parameter_names) for name, roi in analysis.rois.items()},
        "reference": analysis.options.reference,
        "model": analysis.options.model,
        "maps": analysis.maps.summary() if analysis.maps is not None else None,
        "software": {"name": SOFTWARE_NAME, "version": __version__},
    }


def _region_box(region) -> dict:
    return {"x0": region.x0, "y0": region.y0, "x1": region.x1, "y1": region.y1}


def _roi_json(roi: RoiResult, parameter_names: Sequence[str]) -> dict:
    fit = roi.fit
    out = {
        "pixels": roi.pixels,
        "status": fit.status,
        "reason": fit.reason,
        "model": fit.model,
        "fit": {name: float(value) for name, value in fit.params.items()},
        "parameters": {name: _finite_or_none(roi.parameters.get(name)) for name in parameter_names},
        "relative": {name: _finite_or_none(roi.relative.get(name)) for name in parameter_names},
        "frames_fitted": int(fit.n_frames_used),
        "extrapolated": list(roi.extrapolated),
        "relative_extrapolated": list(roi.relative_extrapolated),
    }
    if isinstance(fit, SegmentedFit):
        out["segments"] = [{"flash_frames": [int(k) for k in segment.flash_frames],
                            "t_flash_s": float(fit_k.t_flash_s), "first_frame": int(segment.frames[0]),
                            "last_frame": int(segment.frames[-1]), "status": fit_k.status, "reason": fit_k.reason,
                            "fit": {k: float(v) for k, v in fit_k.params.items()},
                            "parameters": replenishment_parameters(fit_k)}
                           for segment, fit_k in zip(fit.segment_frames, fit.segments)]
    if roi.clipping is not None:
        out["clipping"] = {"saturated_fraction": roi.clipping.saturated_fraction,
                           "floor_fraction": roi.clipping.floor_fraction,
                           "peak_saturated_fraction": roi.clipping.peak_saturated_fraction}
    return out


def parameters_csv(analysis: Analysis) -> str:
    """One row per ROI: status, the model's parameters, then ``rel_`` parameters, the reason, and the
    extrapolated values (:func:`extrapolated_cell`, the last column)."""
    return _parameters_csv(analysis.rois.values(), analysis.parameter_names)


def _parameters_csv(rois: Iterable[RoiResult], names: Sequence[str]) -> str:
    header = ["roi", "status", "model", *names, *(f"rel_{p}" for p in names), "pixels", "reason", "extrapolated"]
    rows = ([roi.name, roi.fit.status, roi.fit.model, *(_number(roi.parameters.get(p)) for p in names),
             *(_number(roi.relative.get(p)) for p in names), roi.pixels, roi.fit.reason or "",
             extrapolated_cell(roi.extrapolated, roi.relative_extrapolated)]
            for roi in rois)
    return csv_text(header, rows)


def extrapolated_cell(extrapolated: Iterable[str], relative_extrapolated: Iterable[str]) -> str:
    """The ``extrapolated`` cell of an ROI's row: its extrapolated parameters, then ``rel_PARAM`` for
    each relative value that rests on an extrapolated value (the ROI's or the reference's), by ``;``."""
    return ";".join([*extrapolated, *(f"rel_{name}" for name in relative_extrapolated)])


def tic_csv(analysis: Analysis) -> str:
    """``time_s`` (since injection), then per ROI measured and fitted mean linear intensity (a.u.).

    Trailing columns: ``frame`` index, ``clip_time_s`` (clip clock), ``excluded`` (1 when the frame
    was kept out of the fits) and ``exclusion_reason``; with motion compensation also the
    displacement of the anatomy (``motion_row_px``, ``motion_col_px``, and in mm when the clip is
    calibrated) and the match score ``motion_score``.
    """
    names = list(analysis.rois)
    motion = analysis.motion
    motion_columns = []
    if motion is not None:
        motion_columns = ["motion_row_px", "motion_col_px"]
        if motion.displacement_mm is not None:
            motion_columns += ["motion_row_mm", "motion_col_mm"]
        motion_columns.append("motion_score")
    header = ["time_s", *(f"{n}_{kind}" for n in names for kind in ("measured", "fitted")),
              "frame", "clip_time_s", "excluded", "exclusion_reason", *motion_columns]
    fitted = {n: analysis.rois[n].fit.curve(analysis.times_s) for n in names}
    reasons = analysis.exclusion_reasons()
    rows = []
    for k, time_s in enumerate(analysis.times_s):
        row = [_number(time_s)]
        for n in names:
            row += [_number(analysis.rois[n].tic[k]), _number(fitted[n][k])]
        row += [k, _number(analysis.clip.frame_times_s[k]), 0 if analysis.frame_use[k] else 1, reasons.get(k, "")]
        if motion is not None:
            row += [_number(v) for v in motion.displacement_px[k]]
            if motion.displacement_mm is not None:
                row += [_number(v) for v in motion.displacement_mm[k]]
            row.append(_number(motion.score[k]))
        rows.append(row)
    return csv_text(header, rows)


def _roi_png_writer(mask):
    def write(path: str) -> None:
        from PIL import Image

        Image.fromarray(((mask != 0) * 255).astype("uint8"), mode="L").save(path, format="PNG")
    return write


def analysis_writers(analysis: Analysis, extra_writers: Iterable[tuple[str, Callable[[str], None]]] = ()
                     ) -> list[tuple[str, Callable[[str], None]]]:
    """``(relative path, writer(path))`` of every file of the analysis: ``parameters.csv``, ``tic.csv``,
    ``rois/<NAME>.png`` (each ROI as given: the full frame, on the reference frame, 255 inside), the
    colour map, the maps, the extras, and ``results.json`` last."""
    results = json_text(results_json(analysis))
    parameters = parameters_csv(analysis)
    tic = tic_csv(analysis)

    writers = [("parameters.csv", _text_writer(parameters)), ("tic.csv", _text_writer(tic)), *extra_writers]
    writers += [(roi_png_path(roi.name), _roi_png_writer(roi.mask)) for roi in analysis.roi_masks]
    if matplotlib_available():
        writers.append(("tic.png", tic_plot_writer([analysis_panel(analysis)])))
    colour_table = analysis.colour_mapping.table_csv()
    if colour_table is not None:  # the recovered (or given) display map, in --colormap format, for checking
        from DCEUSResponseLib.ceus.linearize import COLOUR_MAP_FILE

        writers.append((COLOUR_MAP_FILE, _text_writer(colour_table)))
    if analysis.maps is not None:
        writers += map_writers(analysis.maps, map_underlay(analysis))
    writers.append(("results.json", _text_writer(results)))
    return writers


def results_have_maps(results: Mapping) -> bool:
    """Whether the run of ``results`` (a results.json) computed maps: its ``maps`` summary is there
    (an earlier run's ``maps/`` may stay beside a later run's results, which it does not describe)."""
    return isinstance(results.get("maps"), Mapping) and bool(results["maps"])


def commit_analysis(staged: StagedFiles) -> list[str]:
    """Commit an analysis' staged files (``analyze``'s or ``fit-tic``'s): ``results.json`` last, which
    names the set, and an earlier run's DICOM objects in ``dicom/`` removed (they describe it)."""
    return staged.commit("results.json", replaces=dicom_output_patterns())


def write_analysis(analysis: Analysis, out_dir: str, extra_writers: Iterable[tuple[str, Callable[[str], None]]] = ()) -> list[str]:
    """Write ``results.json``, ``parameters.csv``, ``tic.csv`` (and extras) atomically into ``out_dir``."""
    with StagedFiles(out_dir) as staged:
        staged.write(analysis_writers(analysis, extra_writers))
        return commit_analysis(staged)


def _text_writer(text: str) -> Callable[[str], None]:
    def write(path):
        with open(path, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
    return write


# -- fit-tic: a TIC given as a table ------------------------------------------------------------------

def table_results_json(result: TableFit) -> dict:
    """``results.json`` of ``fit-tic``: the table's description (``table``, in place of ``clip``), one ROI."""
    table, options = result.table, result.options
    return {
        "table": {
            "source": table.source,
            "rows": len(table.times_s),
            "time_column": table.time_column,
            "time_unit": "ms" if table.time_scale != 1.0 else "s",
            "intensity_column": table.intensity_column,
            "intensity": "linear" if options.dynamic_range_db is None else "gray",
            "dynamic_range_db": None if options.dynamic_range_db is None else float(options.dynamic_range_db),
            "injection_time_s": float(options.injection_time_s),
            "times_s": [round(float(t), 6) for t in result.times_s],
            "excluded_rows": [int(table.rows[k]) for k in np.flatnonzero(~result.frame_use)],
            "excluded_data_rows": [int(k) for k in np.flatnonzero(~result.frame_use)],  # as the options count
            "warnings": list(result.warnings),
        },
        "rois": {result.roi.name: _roi_json(result.roi, result.parameter_names)},
        "reference": None,
        "model": result.roi.fit.model,
        "software": {"name": SOFTWARE_NAME, "version": __version__},
    }


def table_tic_csv(result: TableFit) -> str:
    """``time_s`` (since injection), the ROI's measured (linear) and fitted intensity, the table row,
    its own time (s) and whether the row was kept out of the fit."""
    name = result.roi.name
    fitted = result.roi.fit.curve(result.times_s)
    rows = ([_number(time_s), _number(result.roi.tic[k]), _number(fitted[k]), result.table.rows[k],
             _number(result.table.times_s[k]), 0 if result.frame_use[k] else 1]
            for k, time_s in enumerate(result.times_s))
    return csv_text(["time_s", f"{name}_measured", f"{name}_fitted", "row", "table_time_s", "excluded"], rows)


def table_fit_writers(result: TableFit) -> list[tuple[str, Callable[[str], None]]]:
    """``(relative path, writer(path))`` of ``fit-tic``'s ``parameters.csv``, ``tic.csv``, ``tic.png`` (when
    matplotlib is there) and ``results.json`` (written last)."""
    writers = [("parameters.csv", _text_writer(_parameters_csv([result.roi], result.parameter_names))),
               ("tic.csv", _text_writer(table_tic_csv(result)))]
    if matplotlib_available():
        panel = TicPanel(os.path.basename(result.table.source), result.times_s, [result.roi], result.frame_use)
        writers.append(("tic.png", tic_plot_writer([panel])))
    writers.append(("results.json", _text_writer(json_text(table_results_json(result)))))
    return writers

