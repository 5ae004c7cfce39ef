"""A study's per-patient report: ``patients/<patient>/report.html`` and its figures as PNG beside it.

The page is self-contained (styles inline, every image a base64 PNG ``data:`` URI), so it can be
mailed or archived as one file. Per lesion: the parameter trajectories over the exams (days from
baseline; absolute and reference-normalised WiWoAUC, PE and AUC, PET SUVmax and TLR when fused; a
line through the exam means, a dot per clip), the TICs of every exam overlaid (from each clip's
``tic.csv``), a table of the exam values and the response table. Per exam: the PE map
(``maps/png/PE.png``, when the clips were analysed with maps) and the fused views
(``fusion/**/png/*.png``, when fused).

Figures are drawn with matplotlib's object API (no pyplot state, safe in threads), imported inside
the functions; before the first import ``MPLCONFIGDIR`` points inside the output folder, so that
matplotlib's font cache is written there and nowhere else. Without matplotlib the report still has
the tables, maps and fused views, and says how to get the figures.
"""
from __future__ import annotations

import base64
import csv
import glob
import html
import io
import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from DCEUSResponseLib import SOFTWARE_NAME, __version__

if TYPE_CHECKING:  # export sits below longitudinal: the study's objects come in as arguments
    from DCEUSResponseLib.export.staging import StagedFiles
    from DCEUSResponseLib.longitudinal.aggregate import StudyTables
    from DCEUSResponseLib.longitudinal.manifest import Manifest
    from DCEUSResponseLib.longitudinal.records import LesionExam

TRAJECTORY_PARAMETERS = ("WiWoAUC", "PE", "AUC")
PET_TRAJECTORY = (("pet_SUVmax", "SUVmax", "PET SUVmax"), ("pet_TLR", "TLR", "PET TLR (SUVmax / reference SUVmean)"))
MATPLOTLIB_CACHE = ".matplotlib-cache"


@dataclass(frozen=True)
class Series:
    """One trajectory: exam means (days, value) and every clip's value (days, value), one parameter."""

    title: str
    unit: str
    means: tuple[tuple[int, float], ...]
    clips: tuple[tuple[int, float], ...]


def _unit_of(tables: "StudyTables", parameter: str) -> str:
    """The unit ``measurements.csv`` gives ``parameter`` ("" when it has no value)."""
    return next((m.unit for m in tables.measurements if m.parameter == parameter), "")


def lesion_trajectories(tables: "StudyTables", patient: str, lesion: str) -> list[tuple[Series, Series | None]]:
    """``(absolute, reference-normalised or None)`` per plotted quantity, as the report draws them."""
    exams = [le for le in tables.lesions if (le.patient, le.lesion) == (patient, lesion)]
    measured = [m for m in tables.measurements if (m.patient, m.roi) == (patient, lesion)]
    shown = [p for p in TRAJECTORY_PARAMETERS if p in tables.parameters] or \
        [p for p in tables.parameters if p != "QOF"][:3]
    out = []
    for parameter in shown:
        clips = [m for m in measured if m.modality == "CEUS" and m.parameter == parameter and m.status == "ok"]
        absolute = _series(parameter, _unit_of(tables, parameter), exams, lambda le: le.values.get(parameter),
                           [(m.days_from_baseline, m.value) for m in clips])
        relative = _series(f"{parameter} / reference", "1", exams, lambda le: le.relative.get(parameter),
                           [(m.days_from_baseline, m.relative_value) for m in clips])
        # The reference ROI's own normalised values are 1 by definition: nothing to show.
        is_reference = any(le.is_reference for le in exams)
        out.append((absolute, relative if relative.means and not is_reference else None))
    pet = [_series(title, _unit_of(tables, name), exams, lambda le, c=column: le.values.get(c),
                   [(m.days_from_baseline, m.value) for m in measured if m.modality == "PET" and m.parameter == name])
           for column, name, title in PET_TRAJECTORY if column in tables.fusion_columns]
    if pet and pet[0].means:
        out.append((pet[0], pet[1] if len(pet) > 1 and pet[1].means else None))
    return out


def _series(title: str, unit: str, exams: list["LesionExam"], value, clips) -> Series:
    means = tuple((le.days_from_baseline, value(le)) for le in exams if value(le) is not None)
    return Series(title, unit, means, tuple((d, v) for d, v in clips if v is not None))


def write_reports(staged: "StagedFiles", manifest: "Manifest", tables: "StudyTables", out_dir: str,
                  failures: dict[tuple[str, str, int], str] | None = None, note: str = "") -> list[str]:
    """Stage ``patients/<patient>/report.html`` and its PNGs for every patient; the relative paths.

    ``failures``: the one-line error of each failed clip by its key; ``note``: a caution shown on
    top of every report (the rules' exploratory status).
    """
    plotting = _matplotlib(out_dir)
    written = []
    for patient in manifest.patients:
        written += _write_patient(staged, manifest, tables, out_dir, patient, plotting, failures or {}, note)
    return written


def _write_patient(staged, manifest: "Manifest", tables, out_dir: str, patient: str, plotting,
                   failures: dict, note: str) -> list[str]:
    folder = os.path.join("patients", patient)
    names = _FileNames()
    images: list[tuple[str, bytes]] = []  # (file name, PNG) written beside the report

    def keep(stem: str, png: bytes | None) -> str | None:
        if png is None:
            return None
        images.append((names.take(stem), png))
        return _data_uri(png)

    lesions = list(dict.fromkeys(le.lesion for le in tables.lesions if le.patient == patient))
    sections = [_header(manifest, patient, failures, note)]
    for lesion in lesions:
        exams = [le for le in tables.lesions if (le.patient, le.lesion) == (patient, lesion)]
        trajectory = keep(f"trajectory_{lesion}", plotting and _trajectory_png(
            plotting, lesion, lesion_trajectories(tables, patient, lesion)))
        tics = keep(f"tic_{lesion}", plotting and _tic_png(plotting, lesion, _lesion_tics(manifest, out_dir,
                                                                                         patient, lesion)))
        rows = [r for r in tables.response if (r.patient, r.lesion) == (patient, lesion)]
        sections.append(_lesion_section(lesion, exams, tables, trajectory, tics, rows, plotting is not None))
    sections.append(_exam_views(manifest, out_dir, patient, keep))
    page = _page(f"{patient}: DCE-US follow-up", "\n".join(sections))
    written = []
    for name, png in images:
        with open(staged.path(os.path.join(folder, name)), "wb") as stream:
            stream.write(png)
        written.append(os.path.join(folder, name))
    with open(staged.path(os.path.join(folder, "report.html")), "w", encoding="utf-8") as stream:
        stream.write(page)
    return written + [os.path.join(folder, "report.html")]


class _FileNames:
    """File names safe on every system, unique within one patient folder."""

    def __init__(self):
        self.used: set[str] = set()

    def take(self, stem: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "figure"
        name, k = f"{safe}.png", 2
        while name.lower() in self.used:
            name, k = f"{safe}-{k}.png", k + 1
        self.used.add(name.lower())
        return name


# ----------------------------------------------------------------------------------------------
# Figures


def _matplotlib(out_dir: str):
    """``(Figure, FigureCanvasAgg)`` or None without matplotlib; the first import caches in ``out_dir``."""
    if "matplotlib" not in sys.modules:
        previous = os.environ.get("MPLCONFIGDIR")
        os.environ["MPLCONFIGDIR"] = os.path.join(out_dir, MATPLOTLIB_CACHE)
    else:
        previous = os.environ.get("MPLCONFIGDIR", "")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    finally:
        if previous is None:
            os.environ.pop("MPLCONFIGDIR", None)
        elif previous:
            os.environ["MPLCONFIGDIR"] = previous
    return Figure, FigureCanvasAgg


def _png(plotting, figure) -> bytes:
    _, canvas_class = plotting
    canvas_class(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _trajectory_png(plotting, lesion: str, pairs: list[tuple[Series, Series | None]]) -> bytes | None:
    if not pairs:
        return None
    figure_class, _ = plotting
    rows = 2 if any(relative is not None for _, relative in pairs) else 1
    height = 2.6 * rows + 0.5
    figure = figure_class(figsize=(3.3 * len(pairs), height))
    # Fixed margins: a constrained layout costs as much as drawing the figure.
    figure.subplots_adjust(left=0.3 / len(pairs), right=0.98, top=1 - 0.55 / height, bottom=0.45 / height,
                           wspace=0.35, hspace=0.55)
    axes = figure.subplots(rows, len(pairs), squeeze=False)
    for column, pair in enumerate(pairs):
        for row in range(rows):
            series, axis = pair[row], axes[row][column]
            if series is None:
                axis.set_axis_off()
                continue
            axis.plot(*zip(*series.clips), "o", color="0.55", markersize=3.5, label="clips") if series.clips else None
            axis.plot(*zip(*series.means), "-o", color=f"C{column}", markersize=5, label="exam mean")
            axis.set_title(series.title, fontsize=10)
            axis.set_ylabel(series.unit, fontsize=9)
            axis.set_xlabel("days from baseline", fontsize=9)
            axis.grid(alpha=0.3)
            axis.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"{lesion}: parameters over the exams")
    return _png(plotting, figure)


def _lesion_tics(manifest: "Manifest", out_dir: str, patient: str, lesion: str) -> list[tuple[str, int, dict]]:
    """``(exam label, injection, {time_s, measured, fitted})`` of every clip whose tic.csv has the lesion."""
    out = []
    for exam in manifest.exams_of(patient):
        for row in exam.clips:
            curve = _read_tic(os.path.join(out_dir, row.output_dir, "tic.csv"), lesion)
            if curve is not None:
                out.append((f"{exam.exam} (day {exam.days_from_baseline})", row.injection, curve))
    return out


def _read_tic(path: str, lesion: str) -> dict | None:
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError:
        return None
    if not rows or f"{lesion}_measured" not in rows[0]:
        return None

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    return {"time_s": column("time_s"), "measured": column(f"{lesion}_measured"),
            "fitted": column(f"{lesion}_fitted")}


def _tic_png(plotting, lesion: str, curves: list[tuple[str, int, dict]]) -> bytes | None:
    if not curves:
        return None
    figure_class, _ = plotting
    figure = figure_class(figsize=(7.5, 3.6))
    figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.14)
    axis = figure.subplots()
    colours = {label: f"C{k}" for k, label in enumerate(dict.fromkeys(label for label, _, _ in curves))}
    styles = ("-", "--", ":", "-.")
    for label, injection, curve in curves:
        colour = colours[label]
        axis.plot(curve["time_s"], curve["measured"], ".", color=colour, markersize=2.5, alpha=0.45)
        name = label if injection == 1 else f"{label}, injection {injection}"
        axis.plot(curve["time_s"], curve["fitted"], styles[(injection - 1) % len(styles)], color=colour,
                  linewidth=1.6, label=name)
    axis.set_title(f"{lesion}: time-intensity curves of every exam (dots measured, lines fitted)", fontsize=10)
    axis.set_xlabel("time since injection [s]")
    axis.set_ylabel("mean linear intensity [a.u.]")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(plotting, figure)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ----------------------------------------------------------------------------------------------
# HTML

_STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1200px;color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:2px solid #ccd;
padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccd;padding:.25em .55em;text-align:right}th{background:#eef}td.t,th.t{text-align:left}
.responder{background:#dfd}.non-responder{background:#fdd}.not-evaluable{background:#eee}
.note{background:#fff6dd;border-left:4px solid #e0b000;padding:.5em .8em}img{max-width:100%;display:block}
figure{display:inline-block;margin:.4em 1em .8em 0;vertical-align:top}figcaption{font-size:.85em;color:#555}
.bad{color:#a00}"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _header(manifest: "Manifest", patient: str, failures: dict, note: str) -> str:
    rows = []
    for exam in manifest.exams_of(patient):
        failed = [failures[c.key] for c in exam.clips if c.key in failures]
        state = "" if not failed else "<span class=\"bad\">" + html.escape("; ".join(failed)) + "</span>"
        rows.append(f"<tr><td class=t>{html.escape(exam.exam)}</td><td>{exam.date.isoformat()}</td>"
                    f"<td>{exam.days_from_baseline}</td><td>{len(exam.clips)}</td><td class=t>{state}</td></tr>")
    return (f"<h1>Patient {html.escape(patient)}: DCE-US follow-up</h1>\n"
            f"<p class=note>{html.escape(note)} Lesions are followed by ROI name; relative values are "
            "normalised by each exam's reference ROI.</p>\n"
            "<table><tr><th class=t>exam</th><th>date</th><th>days from baseline</th><th>clips</th>"
            f"<th class=t>failed clips</th></tr>{''.join(rows)}</table>\n"
            f"<p>{html.escape(SOFTWARE_NAME)} {html.escape(__version__)}; source tables: measurements.csv, "
            "lesions.csv, response.csv in the study folder.</p>")


def _number(value, percent: bool = False) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:+.1f} %" if percent else f"{value:.4g}"


def _values_table(exams: list["LesionExam"], tables) -> str:
    shown = [p for p in TRAJECTORY_PARAMETERS if p in tables.parameters]
    pet = [c for c, _, _ in PET_TRAJECTORY if c in tables.fusion_columns]
    head = "".join(f"<th>{html.escape(p)} [{html.escape(_unit_of(tables, p))}]</th><th>rel {html.escape(p)}</th>"
                   f"<th>CV {html.escape(p)} [%]</th>" for p in shown)
    head += "".join(f"<th>{html.escape(c)}</th>" for c in pet)
    rows = []
    for le in exams:
        cells = "".join(f"<td>{_number(le.values.get(p))}</td><td>{_number(le.relative.get(p))}</td>"
                        f"<td>{_number(le.cv_percent.get(p))}</td>" for p in shown)
        cells += "".join(f"<td>{_number(le.values.get(c))}</td>" for c in pet)
        status = html.escape(le.status + (f": {le.reason}" if le.reason else ""))
        rows.append(f"<tr><td class=t>{html.escape(le.exam)}</td><td>{le.days_from_baseline}</td>"
                    f"<td>{le.n_clips}</td>{cells}<td class=t>{status}</td></tr>")
    return (f"<table><tr><th class=t>exam</th><th>days</th><th>clips</th>{head}<th class=t>status</th></tr>"
            f"{''.join(rows)}</table>")


def _response_table(rows) -> str:
    if not rows:
        return "<p>No follow-up exam.</p>"
    body = []
    for r in rows:
        body.append(f"<tr class=\"{html.escape(r.classification)}\"><td class=t>{html.escape(r.exam)}</td>"
                    f"<td>{r.days_from_baseline}</td><td class=t>{html.escape(r.rule)}</td>"
                    f"<td>{_number(r.delta_percent, True)}</td><td>{_number(r.relative_delta_percent, True)}</td>"
                    f"<td>{_number(r.delta_previous_percent, True)}</td>"
                    f"<td>{_number(r.relative_delta_previous_percent, True)}</td>"
                    f"<td>{_number(r.beyond_repeatability)}</td><td class=t>{html.escape(r.classification)}</td>"
                    f"<td class=t>{html.escape(r.reason)}</td></tr>")
    return ("<table><tr><th class=t>exam</th><th>days</th><th class=t>rule</th><th>change vs baseline</th>"
            "<th>relative change vs baseline</th><th>change vs previous</th><th>relative change vs previous</th>"
            "<th>beyond repeatability</th><th class=t>classification</th><th class=t>reason</th></tr>"
            f"{''.join(body)}</table>")


def _figure(uri: str | None, caption: str) -> str:
    if uri is None:
        return ""
    text = html.escape(caption)
    return f"<figure><img src=\"{uri}\" alt=\"{text}\"><figcaption>{text}</figcaption></figure>"


def _lesion_section(lesion: str, exams: list["LesionExam"], tables, trajectory: str | None, tics: str | None,
                    response_rows, plotting: bool) -> str:
    reference = " (reference ROI)" if any(le.is_reference for le in exams) else ""
    parts = [f"<h2>{html.escape(lesion)}{reference}</h2>", _figure(trajectory, f"{lesion}: trajectories"),
             _figure(tics, f"{lesion}: TICs of every exam")]
    if not plotting:
        parts.append("<p class=note>Figures need matplotlib: pip install \"DCEUSResponse[plot]\".</p>")
    parts += ["<h3>Values per exam (means over the exam's clips)</h3>", _values_table(exams, tables),
              "<h3>Response</h3>", _response_table(response_rows)]
    return "\n".join(parts)


def _exam_views(manifest: "Manifest", out_dir: str, patient: str, keep) -> str:
    parts = []
    for exam in manifest.exams_of(patient):
        figures = []
        for row in exam.clips:
            folder = os.path.join(out_dir, row.output_dir)
            tag = f"{exam.exam}_{row.injection}"
            pe = os.path.join(folder, "maps", "png", "PE.png")
            # A clip folder holds only its own run's outputs (a clip whose commands change is run
            # again in an emptied folder), so a PE map there is that run's.
            views = [(pe, f"PE_{tag}", f"PE map, injection {row.injection}")] if os.path.isfile(pe) else []
            for path in sorted(glob.glob(os.path.join(folder, "fusion", "**", "png", "*.png"), recursive=True)):
                name = os.path.splitext(os.path.basename(path))[0]
                views.append((path, f"fusion_{tag}_{name}", f"fused view {name}, injection {row.injection}"))
            for path, stem, caption in views:
                with open(path, "rb") as stream:
                    figures.append(_figure(keep(stem, stream.read()), caption))
        if figures:
            parts.append(f"<h3>{html.escape(exam.exam)} (day {exam.days_from_baseline})</h3>" + "".join(figures))
    if not parts:
        return ""
    return "<h2>Maps and fused views per exam</h2>\n" + "\n".join(parts)
