"""Running a study's clips: one task per manifest row, content-hash caching, per-clip status.

A :class:`ClipTask` is what one row needs, as the command lines of the contract: the ``analyze``
arguments and, when the row has a CT, the ``fuse`` arguments, with every input path listed for
hashing. :func:`execute_clip` runs in a worker process (local or on a Dask worker): it hashes the
inputs (SHA-256 of every file; a folder is hashed file by file in sorted order), and when the
clip's ``inputs.json`` records the same *fingerprint* (the hashes and the command lines with each
input path replaced by its role) and the outputs are complete (``results.json``, and
``fusion/fusion.json`` when fused), the clip is reused untouched. Otherwise its folder is emptied,
the commands run, and ``inputs.json`` is written last (atomically): a clip interrupted anywhere
before that has no matching record and runs again, so an interrupted study resumes.

The commands are run through a ``run_command(argv) -> (exit status, stderr text)`` given by the
caller (the application's command line, called in-process), so this module depends only on the
contract's stable outside view, not on how the command line is built.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.longitudinal.manifest import Manifest
from DCEUSResponseLib.longitudinal.response import read_results
from DCEUSResponseLib.longitudinal.records import ClipRow

INPUTS_FILE = "inputs.json"
INPUTS_FORMAT = "dceus-study-inputs/1"
FUSION_FOLDER = "fusion"
#: With ``--scenes``: each clip's Slicer scene bundle, in its folder (``fuse``'s, holding the analysis
#: scene too, in ``fusion/`` when the row has a CT), where the module's Follow-up section opens it.
ANALYSIS_SCENE, FUSED_SCENE = "scene.mrb", "fused.mrb"
STATUS_DONE, STATUS_REUSED, STATUS_FAILED = "done", "reused", "failed"
_CHUNK_BYTES = 1 << 20

RunCommand = Callable[[list[str]], tuple[int, str]]


@dataclass(frozen=True)
class StudyOptions:
    """Study-wide options that change what each clip's commands compute (part of the fingerprint)."""

    maps: bool = False
    scenes: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClipTask:
    """One manifest row as the commands to run; picklable, so it travels to any worker.

    ``analyze_argv`` / ``fuse_argv`` are the contract's command lines (``fuse_argv`` None without a
    CT); ``inputs`` maps each input role (``clip``, ``roi:NAME``, ``ct`` ...) to its absolute path;
    ``folder`` is the clip's absolute output folder.
    """

    key: tuple[str, str, int]
    line: int
    folder: str
    relative_folder: str
    analyze_argv: tuple[str, ...]
    fuse_argv: tuple[str, ...] | None
    inputs: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """How the clip is named to a person: ``line 3 (P1 C2 #1)``."""
        patient, exam, injection = self.key
        return f"line {self.line} ({patient} {exam} #{injection})"


@dataclass
class ClipOutcome:
    """What became of one clip: ``status`` done / reused / failed, the one-line ``error`` if failed."""

    key: tuple[str, str, int]
    line: int
    folder: str
    status: str
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (STATUS_DONE, STATUS_REUSED)

    def to_json(self) -> dict:
        patient, exam, injection = self.key
        return {"line": self.line, "patient": patient, "exam": exam, "injection": injection,
                "folder": self.folder, "status": self.status, "error": self.error, "warnings": self.warnings,
                "seconds": round(self.seconds, 3), "fingerprint": self.fingerprint}


# ----------------------------------------------------------------------------------------------
# Planning (in the study's process)


def plan_tasks(manifest: Manifest, out_dir: str, options: StudyOptions = StudyOptions()) -> list[ClipTask]:
    """One :class:`ClipTask` per manifest row, in manifest order."""
    out_dir = os.path.abspath(out_dir)
    return [_task(row, out_dir, options) for row in manifest.rows]


def _task(row: ClipRow, out_dir: str, options: StudyOptions) -> ClipTask:
    folder = os.path.join(out_dir, row.output_dir)
    inputs: dict[str, str] = {"clip": row.clip}
    analyze = ["analyze", row.clip]
    for index, spec in enumerate(row.roi_specs):
        name, sep, path = spec.partition("=")
        role = f"roi:{name}" if sep else f"rois:{index + 1}"
        inputs[role] = path if sep else spec
        analyze += ["--roi", spec]
    for flag, value in (("--reference", row.reference), ("--dynamic-range", row.dynamic_range_db),
                        ("--injection-time", row.injection_time_s), ("--model", row.model),
                        ("--reference-frame", row.reference_frame)):
        if value is not None:
            analyze += [flag, repr(value) if isinstance(value, float) else str(value)]
    if options.maps:
        analyze.append("--maps")
    if options.scenes and not row.fused:
        analyze += ["--scene", ANALYSIS_SCENE]
    analyze += ["--out", folder]
    fuse = _fuse_argv(row, folder, inputs, FUSED_SCENE if options.scenes else None)
    return ClipTask(row.key, row.line, folder, row.output_dir, tuple(analyze), fuse, tuple(inputs.items()))


def _fuse_argv(row: ClipRow, folder: str, inputs: dict[str, str], scene: str | None = None) -> tuple[str, ...] | None:
    """The contract's ``fuse ANALYSIS_DIR --ct ... [--scene SCENE] --out ANALYSIS_DIR/fusion`` (None without a CT)."""
    if not row.fused:
        return None
    argv = ["fuse", folder]
    for flag, role, value in (("--ct", "ct", row.ct), ("--pet", "pet", row.pet),
                              ("--transform", "transform", row.transform),
                              ("--pet-segmentation", "pet_segmentation", row.pet_segmentation)):
        if value is not None:
            inputs[role] = value.partition("::")[0]
            argv += [flag, value]
    if row.landmarks is not None:
        inputs["landmarks:ceus"], inputs["landmarks:ct"] = row.landmarks
        argv += ["--landmarks", f"{row.landmarks[0]}={row.landmarks[1]}"]
    if scene is not None:
        argv += ["--scene", scene]
    return tuple(argv + ["--out", os.path.join(folder, FUSION_FOLDER)])


# ----------------------------------------------------------------------------------------------
# Hashing and the inputs record


def hash_path(path: str) -> dict:
    """``{sha256, bytes, files}`` of a file, or of every file under a folder (sorted relative paths,
    each path and content hashed), so renaming, adding or changing any file changes the hash."""
    digest = hashlib.sha256()
    total, count = 0, 0
    if os.path.isdir(path):
        files = sorted(os.path.relpath(os.path.join(root, name), path)
                       for root, _, names in os.walk(path) for name in names)
        for relative in files:
            digest.update(relative.replace(os.sep, "/").encode("utf-8") + b"\0")
            total += _hash_file(os.path.join(path, relative), digest)
            count += 1
    else:
        total, count = _hash_file(path, digest), 1
    return {"sha256": digest.hexdigest(), "bytes": total, "files": count}


def _hash_file(path: str, digest) -> int:
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size


def fingerprint(task: ClipTask, hashes: dict[str, dict]) -> tuple[str, dict]:
    """``(hex digest, canonical content)``: the inputs' hashes and the command lines with each input
    path (and the output folder) replaced by its role, so moving a study keeps its clips reusable."""
    replacements = sorted(((path, f"<{role}>") for role, path in task.inputs), key=lambda p: -len(p[0]))
    replacements.append((task.folder, "<out>"))

    def template(argv):
        if argv is None:
            return None
        out = []
        for arg in argv:
            for path, token in replacements:
                arg = arg.replace(path, token)
            out.append(arg)
        return out

    content = {"inputs": {role: hashes[role]["sha256"] for role, _ in task.inputs},
               "analyze": template(task.analyze_argv), "fuse": template(task.fuse_argv)}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), content


def read_inputs_record(folder: str) -> dict | None:
    """The clip folder's ``inputs.json``, or None when absent or unreadable (the clip then reruns)."""
    try:
        with open(os.path.join(folder, INPUTS_FILE), encoding="utf-8") as stream:
            record = json.load(stream)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == INPUTS_FORMAT else None


def outputs_complete(task: ClipTask) -> bool:
    """``results.json`` is there (``analyze`` moves it last) and reads as one, and ``fusion/fusion.json``
    when fused: outputs edited or damaged since their run (the fingerprint covers the inputs only)
    are analysed again instead of stopping the study when it aggregates them."""
    try:
        read_results(task.folder)
    except InputError:
        return False
    if task.fuse_argv is None:
        return True
    try:
        with open(os.path.join(task.folder, FUSION_FOLDER, "fusion.json"), encoding="utf-8") as stream:
            return isinstance(json.load(stream), dict)
    except (OSError, ValueError, RecursionError):
        return False


def _write_inputs_record(task: ClipTask, digest: str, content: dict, hashes: dict, seconds: float) -> None:
    record = {"format": INPUTS_FORMAT, "fingerprint": digest,
              "inputs": {role: {"path": path, **hashes[role]} for role, path in task.inputs},
              "commands": {"analyze": content["analyze"], "fuse": content["fuse"]},
              "software": {"name": SOFTWARE_NAME, "version": __version__},
              "seconds": round(seconds, 3),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = os.path.join(task.folder, INPUTS_FILE)
    staged = f"{path}.{os.getpid()}.part"
    with open(staged, "w", encoding="utf-8") as stream:
        json.dump(record, stream, indent=2)
        stream.write("\n")
    os.replace(staged, path)


# ----------------------------------------------------------------------------------------------
# Running one clip (in a worker process)


def execute_clip(task: ClipTask, run_command: RunCommand) -> ClipOutcome:
    """Reuse the clip's outputs when its fingerprint matches, else run ``analyze`` (and ``fuse``).

    Never raises for a problem of this clip: it is a ``failed`` outcome with a one-line error.
    """
    started = time.monotonic()
    outcome = ClipOutcome(task.key, task.line, task.relative_folder, STATUS_FAILED)
    try:
        hashes = {role: hash_path(path) for role, path in task.inputs}
    except OSError as error:
        outcome.error = f"cannot read an input: {error.filename}: {error.strerror or error}"
        return outcome
    digest, content = fingerprint(task, hashes)
    outcome.fingerprint = digest
    record = read_inputs_record(task.folder)
    if record is not None and record.get("fingerprint") == digest and outputs_complete(task):
        outcome.status, outcome.seconds = STATUS_REUSED, time.monotonic() - started
        return outcome
    # Stale outputs of other inputs must not survive next to the new ones (nor be aggregated if this
    # run fails): the clip's folder belongs to the study and is rebuilt whole.
    shutil.rmtree(task.folder, ignore_errors=True)
    os.makedirs(task.folder, exist_ok=True)
    for argv in (task.analyze_argv, task.fuse_argv):
        if argv is None:
            continue
        status, stderr = run_command(list(argv))
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        outcome.warnings += [line for line in lines if line.startswith("warning:")]
        if status != 0:
            outcome.error = _one_line_error(argv[0], lines)
            outcome.seconds = time.monotonic() - started
            return outcome
    outcome.seconds = time.monotonic() - started
    _write_inputs_record(task, digest, content, hashes, outcome.seconds)
    outcome.status = STATUS_DONE
    return outcome


def _one_line_error(command: str, lines: list[str]) -> str:
    """The command's one-line error; a command missing from this version says so plainly."""
    errors = [line for line in lines if not line.startswith("warning:")]
    if any(f"invalid choice: '{command}'" in line for line in errors):
        return (f"dceus {command}: not available in this version of {SOFTWARE_NAME} (no '{command}' command); "
                "the row's clip was not fused")
    return errors[-1] if errors else f"dceus {command}: failed without a message"
