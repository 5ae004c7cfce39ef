"""The quantification contract's files of one analysis: ``results.json``, ``parameters.csv``, ``tic.csv``,
and, for ``fuse``, ``rois/<NAME>.png`` with ``clip.source_path``."""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Callable, Iterable

from DCEUSResponseLib.export.staging import json_text, write_staged
from DCEUSResponseLib.io.masks import roi_png_path


def _csv_number(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return repr(value) if math.isfinite(value) else ""


def parameters_csv(analysis) -> str:
    """One row per ROI: status, the model's parameters, then ``rel_`` parameters, then the reason."""
    names = analysis.parameter_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["roi", "status", "model", *names, *(f"rel_{p}" for p in names), "pixels", "reason"])
    for roi in analysis.rois.values():
        writer.writerow([roi.name, roi.fit.status, roi.fit.model,
                         *(_csv_number(roi.parameters.get(p)) for p in names),
                         *(_csv_number(roi.relative.get(p)) for p in names),
                         roi.pixels, roi.fit.reason or ""])
    return buffer.getvalue()


def tic_csv(analysis) -> str:
    """``time_s`` (since injection), then per ROI measured and fitted mean linear intensity (a.u.).

    Trailing columns: ``frame`` index, ``clip_time_s`` (clip clock), ``excluded`` (1 when the frame
    was kept out of the fits) and ``exclusion_reason``; with motion compensation also the
    displacement of the anatomy (``motion_row_px``, ``motion_col_px``, and in mm when the clip is
    calibrated) and the match score ``motion_score``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(analysis.rois)
    motion = analysis.motion
    motion_columns = []
    if motion is not None:
        motion_columns = ["motion_row_px", "motion_col_px"]
        if motion.displacement_mm is not None:
            motion_columns += ["motion_row_mm", "motion_col_mm"]
        motion_columns.append("motion_score")
    writer.writerow(["time_s", *(f"{n}_{kind}" for n in names for kind in ("measured", "fitted")),
                     "frame", "clip_time_s", "excluded", "exclusion_reason", *motion_columns])
    fitted = {n: analysis.rois[n].fit.curve(analysis.times_s) for n in names}
    reasons = analysis.exclusion_reasons()
    for k, time_s in enumerate(analysis.times_s):
        row = [_csv_number(time_s)]
        for n in names:
            row += [_csv_number(analysis.rois[n].tic[k]), _csv_number(fitted[n][k])]
        row += [k, _csv_number(analysis.clip.frame_times_s[k]), 0 if analysis.frame_use[k] else 1, reasons.get(k, "")]
        if motion is not None:
            row += [_csv_number(v) for v in motion.displacement_px[k]]
            if motion.displacement_mm is not None:
                row += [_csv_number(v) for v in motion.displacement_mm[k]]
            row.append(_csv_number(motion.score[k]))
        writer.writerow(row)
    return buffer.getvalue()


def _roi_png_writer(mask):
    def write(path: str) -> None:
        from PIL import Image

        Image.fromarray(((mask != 0) * 255).astype("uint8"), mode="L").save(path, format="PNG")
    return write


def analysis_results(analysis) -> dict:
    """``results.json``: the analysis' results plus ``clip.source_path``, the clip's absolute path (for ``fuse``)."""
    results = analysis.results()
    results["clip"]["source_path"] = os.path.abspath(analysis.clip.source)
    return results


def write_analysis(analysis, out_dir: str, extra_writers: Iterable[tuple[str, Callable[[str], None]]] = ()) -> list[str]:
    """Write ``results.json``, ``parameters.csv``, ``tic.csv``, ``rois/<NAME>.png`` (each ROI as given: the
    full frame, on the reference frame, 255 inside) and extras atomically into ``out_dir``."""
    results = json_text(analysis_results(analysis))
    parameters = parameters_csv(analysis)
    tic = tic_csv(analysis)

    def text_writer(text):
        def write(path):
            with open(path, "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
        return write

    writers = [("parameters.csv", text_writer(parameters)), ("tic.csv", text_writer(tic)), *extra_writers]
    writers += [(roi_png_path(roi.name), _roi_png_writer(roi.mask)) for roi in analysis.roi_masks]
    if analysis.maps is not None:
        from DCEUSResponseLib.export.map_files import map_writers

        writers += map_writers(analysis.maps)
    writers.append(("results.json", text_writer(results)))
    return write_staged(out_dir, writers, last="results.json")
