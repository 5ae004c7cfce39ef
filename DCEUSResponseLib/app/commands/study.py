"""``dceus study MANIFEST.csv --out DIR``: every clip of a trial, the study tables and the reports.

Each manifest row becomes a task that runs the contract's ``analyze`` (and ``fuse``) command line
in-process in a worker (local processes, or a Dask cluster with ``--scheduler``), into
``DIR/exams/<patient>/<exam>/<k>/``; :mod:`DCEUSResponseLib.longitudinal.study` decides what can be
reused. Then the tables (:mod:`DCEUSResponseLib.longitudinal.aggregate`), the reports
(:mod:`DCEUSResponseLib.export.report`) and ``study.json`` are staged and moved into place, ``study.json``
last. Exit status 1 when any clip failed (after the rest went on) or on bad input.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
import threading
import time
from typing import Callable, Sequence

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.app.extras import require_extra
from DCEUSResponseLib.app.progress import ProgressBar, format_duration
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.report import write_reports
from DCEUSResponseLib.export.staging import StagedFiles, json_text, prepare_output_dir
from DCEUSResponseLib.longitudinal.aggregate import aggregate, read_clip_outputs
from DCEUSResponseLib.longitudinal.executors import (
    DEFAULT_SCHEDULER_TIMEOUT_S,
    default_workers,
    check_scheduler,
    run_dask,
    run_local,
)
from DCEUSResponseLib.longitudinal.manifest import read_manifest, read_outcomes
from DCEUSResponseLib.longitudinal.response import (
    DEFAULT_STUDY_RULES,
    EXPLORATORY_NOTE,
    ResponseRule,
)
from DCEUSResponseLib.longitudinal.study import (
    STATUS_FAILED,
    STATUS_REUSED,
    ClipOutcome,
    ClipTask,
    StudyOptions,
    execute_clip,
    plan_tasks,
)

CommandMain = Callable[[Sequence[str]], int]


def add_subparser(commands: argparse._SubParsersAction, summary: str) -> argparse.ArgumentParser:
    """The ``study`` subcommand on the CLI's subparsers."""

    study = commands.add_parser("study", help=summary,
                                description="Analyse (and fuse) every clip of MANIFEST.csv into DIR/exams/, then "
                                "write measurements.csv, lesions.csv, response.csv, repeatability.csv, "
                                "statistics.csv (with --outcomes), patients/<patient>/report.html and study.json. "
                                "A rerun reuses clips whose inputs and options are unchanged.")
    study.add_argument("manifest", metavar="MANIFEST.csv", help="one row per clip (see the fusion and follow-up "
                       "contract); paths relative to the manifest")
    study.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    study.add_argument("--workers", type=int, metavar="N",
                       help=f"clips in parallel on N local processes (default: the cores, here {default_workers()})")
    study.add_argument("--scheduler", metavar="ADDRESS", help="run the clips on an existing Dask distributed "
                       "cluster, e.g. tcp://host:8786 (needs the 'cluster' extra)")
    study.add_argument("--scheduler-timeout", type=float, default=DEFAULT_SCHEDULER_TIMEOUT_S, metavar="S",
                       help="seconds to wait for the scheduler before giving up (default %(default)g)")
    study.add_argument("--rule", action="extend", nargs="+", metavar="RULE",
                       help="response rules, repeatable: lassau2014, lassau2014-auc, "
                       "[absolute|relative]:PARAM:PERCENT, pet:MEASURE:PERCENT "
                       f"(default: {' '.join(DEFAULT_STUDY_RULES)}; all exploratory)")
    study.add_argument("--outcomes", metavar="OUTCOMES.csv", help="reference standard (patient[, lesion], outcome) "
                       "for statistics.csv")
    study.add_argument("--maps", action="store_true", help="also write each clip's parametric maps (slower); the "
                       "reports then show the PE map per exam")
    study.add_argument("--scenes", action="store_true", help="also write each clip's Slicer scene bundle "
                       "(scene.mrb, or fusion/fused.mrb with a CT) for the module's Follow-up section (slower; "
                       "needs the 'slicer' extra)")
    study.set_defaults(run=run)
    return study


def run(args) -> int:
    """``study`` from parsed arguments: the clips run the command line's own ``main`` (``args.cli_main``,
    set by :func:`DCEUSResponseLib.app.cli.main`)."""
    return run_study(args, args.cli_main)


def run_study(args, command_main: CommandMain) -> int:
    """Run the ``study`` command; 0 when every clip succeeded, 1 when any failed.

    ``command_main`` is the command line's ``main(argv) -> exit status``, which each clip task calls
    in its worker with the ``analyze`` / ``fuse`` arguments (given, not imported: the command line
    owns this module, so the import graph stays acyclic).
    """

    started = time.monotonic()
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be 1 or more, got {args.workers}")
    if args.workers is not None and args.scheduler:
        raise InputError("give --workers (local processes) or --scheduler (a Dask cluster), not both")
    if not args.scheduler_timeout > 0:
        raise InputError(f"--scheduler-timeout must be positive, got {args.scheduler_timeout:g}")
    if args.scenes:  # once, before DIR is created and any clip runs, not as every clip's own error
        require_extra("slicer", "slicer", "--scenes (Slicer scene bundles)", args.manifest)
    rules = [ResponseRule.parse(text, allow_pet=True) for text in (args.rule or DEFAULT_STUDY_RULES)]
    manifest = read_manifest(args.manifest)
    outcomes = read_outcomes(args.outcomes, manifest) if args.outcomes else None
    if args.scheduler:  # an unreachable cluster stops before DIR is created
        check_scheduler(args.scheduler, args.scheduler_timeout)
    out_dir = prepare_output_dir(args.out)
    options = StudyOptions(maps=args.maps, scenes=args.scenes)
    tasks = plan_tasks(manifest, out_dir, options)
    clips_started = time.monotonic()
    try:
        outcomes_by_clip, executor = _run_tasks(tasks, args, functools.partial(run_clip, command_main=command_main))
    except KeyboardInterrupt:
        print("dceus study: interrupted; the clips that finished are kept and a rerun resumes from them",
              file=sys.stderr)
        return 130
    executor["seconds"] = round(time.monotonic() - clips_started, 3)
    failures = {o.key: o.error for o in outcomes_by_clip if not o.ok}
    written = _write_study(manifest, out_dir, rules, outcomes, outcomes_by_clip, executor, options, args, started)
    ran = sum(o.status not in (STATUS_REUSED, STATUS_FAILED) for o in outcomes_by_clip)
    reused = sum(o.status == STATUS_REUSED for o in outcomes_by_clip)
    print(f"study: {len(tasks)} clips ({ran} analysed, {reused} reused, {len(failures)} failed) in "
          f"{format_duration(time.monotonic() - started)}; {len(written)} files written to {out_dir}")
    return 1 if failures else 0


def _run_tasks(tasks: list[ClipTask], args, function) -> tuple[list[ClipOutcome], dict]:
    if args.scheduler:
        executor = {"kind": "dask", "scheduler": args.scheduler, "timeout_s": args.scheduler_timeout}
        parallel = default_workers()
    else:
        parallel = min(args.workers or default_workers(), max(1, len(tasks)))
        executor = {"kind": "local", "workers": parallel}
    progress = ProgressBar(len(tasks), parallel=parallel)

    def on_done(index: int, outcome: ClipOutcome) -> None:
        if not outcome.ok:
            progress.message(f"dceus study: {tasks[index].label} failed: {outcome.error}")
        progress.update(ok=outcome.ok, reused=outcome.status == STATUS_REUSED)

    def on_failure(index: int, message: str) -> ClipOutcome:
        task = tasks[index]
        return ClipOutcome(task.key, task.line, task.relative_folder, STATUS_FAILED, error=message)

    try:
        if args.scheduler:
            results = run_dask(function, tasks, args.scheduler, on_done, on_failure, args.scheduler_timeout)
        else:
            results = run_local(function, tasks, parallel, on_done, on_failure)
    finally:
        progress.close()
    return results, executor


def _write_study(manifest, out_dir: str, rules, outcomes, results: list[ClipOutcome], executor: dict,
                 options: StudyOptions, args, started: float) -> list[str]:

    ok = {o.key for o in results if o.ok}
    clip_results, clip_fusion = read_clip_outputs(manifest, out_dir)
    # Only this run's successful clips count: a failed clip's folder was emptied, but be explicit.
    clip_results = {k: v for k, v in clip_results.items() if k in ok}
    clip_fusion = {k: v for k, v in clip_fusion.items() if k in ok}
    tables = aggregate(manifest, clip_results, clip_fusion, rules=rules, outcomes=outcomes)
    failures = {o.key: o.error for o in results if not o.ok}
    with StagedFiles(out_dir) as staged:
        written = tables.write_csvs(staged)
        written += write_reports(staged, manifest, tables, out_dir, failures,
                                 note=f"Response classifications are {EXPLORATORY_NOTE}.")
        record = {"software": {"name": SOFTWARE_NAME, "version": __version__},
                  "manifest": manifest.to_json(),
                  "options": {"rules": [r.name for r in rules], "rule_definitions": [r.describe() for r in rules],
                              "outcomes": os.path.abspath(args.outcomes) if args.outcomes else None,
                              **options.to_json()},
                  "executor": executor,
                  "clips": [o.to_json() for o in results],
                  "warnings": list(tables.warnings),
                  "summary": {"clips": len(results), "analysed": sum(o.status == "done" for o in results),
                              "reused": sum(o.status == STATUS_REUSED for o in results),
                              "failed": len(failures), "seconds": round(time.monotonic() - started, 3)},
                  "outputs": sorted(written + ["study.json"])}
        with open(staged.path("study.json"), "w", encoding="utf-8") as stream:
            stream.write(json_text(record))
        staged.commit(last="study.json")
    for warning in tables.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return written + ["study.json"]


# ----------------------------------------------------------------------------------------------
# In the worker: one clip through the command line's ``main``


def run_clip(task: ClipTask, command_main: CommandMain) -> ClipOutcome:
    """The task function (picklable as ``functools.partial(run_clip, command_main=main)``, both by
    reference): :func:`execute_clip` with the command line called in this process."""
    return execute_clip(task, functools.partial(run_cli, command_main))


def run_cli(command_main: CommandMain, argv: list[str]) -> tuple[int, str]:
    """``(exit status, stderr text)`` of ``command_main(argv)`` run in this process, its output captured.

    Dask runs tasks in threads of one worker process: the capture is per thread (a thread-local
    stream), so concurrent clips neither mix nor lose their messages.
    """
    main = command_main
    out, err = io.StringIO(), io.StringIO()
    _CAPTURE.install()
    _CAPTURE.local.streams = (out, err)
    try:
        try:
            status = main(argv)
        except SystemExit as stop:  # argparse: a usage error (exit 2), e.g. an unknown command
            status = stop.code if isinstance(stop.code, int) else 2
        except Exception as error:  # main turns its own errors into lines; this is a last resort
            status = 3
            print(f"dceus {argv[0]}: internal error: {type(error).__name__}: {' '.join(str(error).split())}",
                  file=err)
    finally:
        _CAPTURE.local.streams = None
    return int(status or 0), err.getvalue()


class _ThreadCapture:
    """Replaces ``sys.stdout`` / ``sys.stderr`` once by proxies that write to the calling thread's
    capture buffers when it has some, else to the original streams."""

    def __init__(self):
        self.local = threading.local()
        self.lock = threading.Lock()
        self.installed = False

    def install(self) -> None:
        with self.lock:
            if not self.installed:
                sys.stdout, sys.stderr = _Proxy(self, sys.stdout, 0), _Proxy(self, sys.stderr, 1)
                self.installed = True


class _Proxy(io.TextIOBase):
    def __init__(self, capture: _ThreadCapture, original, which: int):
        self._capture, self._original, self._which = capture, original, which

    def _target(self):
        streams = getattr(self._capture.local, "streams", None)
        return streams[self._which] if streams else self._original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._original.fileno()


_CAPTURE = _ThreadCapture()
