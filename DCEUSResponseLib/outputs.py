"""The contract's output files, written so that a failure never leaves half-written results.

Every file is first written completely into a staging folder inside the output folder and then
moved into place with :func:`os.replace` (atomic on one file system); ``results.json`` (or
``response.json``) moves last, so its presence means the whole set is there.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from typing import Callable, Iterable

from .errors import InputError

STAGING_PREFIX = ".dceus-staging-"


def prepare_output_dir(out_dir: str) -> str:
    """Create ``out_dir`` if missing and check it is writable, before any work is done."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError("output path exists and is not a folder", out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=STAGING_PREFIX):
            pass
    except OSError as error:
        raise InputError(f"output folder is not writable ({error.strerror or error})", out_dir) from None
    return out_dir


class StagedFiles:
    """Collects output files in a staging folder; :meth:`commit` moves them all into place."""

    def __init__(self, out_dir: str):
        self.out_dir = prepare_output_dir(out_dir)
        self.staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir)
        self.relative_paths: list[str] = []

    def path(self, relative_path: str) -> str:
        """Where to write ``relative_path`` now; it reaches the output folder on :meth:`commit`."""
        staged = os.path.join(self.staging, relative_path)
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        self.relative_paths.append(relative_path)
        return staged

    def commit(self, last: str) -> None:
        """Move every staged file into the output folder, ``last`` after all others."""
        order = [p for p in self.relative_paths if p != last] + [last]
        for relative_path in order:
            target = os.path.join(self.out_dir, relative_path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(self.staging, relative_path), target)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.discard()


def write_staged(out_dir: str, writers: Iterable[tuple[str, Callable[[str], None]]], last: str) -> list[str]:
    """Run each ``(relative path, writer(path))`` into staging, then move all into ``out_dir``."""
    from concurrent.futures import ThreadPoolExecutor

    with StagedFiles(out_dir) as staged:
        jobs = [(writer, staged.path(relative_path)) for relative_path, writer in writers]
        # Compression (zlib, PNG) releases the GIL: the files are written on all cores.
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            for _ in pool.map(lambda job: job[0](job[1]), jobs):
                pass
        staged.commit(last)
        return [os.path.join(staged.out_dir, p) for p in staged.relative_paths]


def json_text(content: dict) -> str:
    return json.dumps(_json_safe(content), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


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


def write_analysis(analysis, out_dir: str, extra_writers: Iterable[tuple[str, Callable[[str], None]]] = ()) -> list[str]:
    """Write ``results.json``, ``parameters.csv``, ``tic.csv`` (and extras) atomically into ``out_dir``."""
    results = json_text(analysis.results())
    parameters = parameters_csv(analysis)
    tic = tic_csv(analysis)

    def text_writer(text):
        def write(path):
            with open(path, "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
        return write

    writers = [("parameters.csv", text_writer(parameters)), ("tic.csv", text_writer(tic)), *extra_writers]
    if analysis.maps is not None:
        from .maps import map_writers

        writers += map_writers(analysis.maps)
    writers.append(("results.json", text_writer(results)))
    return write_staged(out_dir, writers, last="results.json")
