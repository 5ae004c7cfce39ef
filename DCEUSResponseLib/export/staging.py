"""The contract's output files, written so that no failure or signal leaves a mixed set.

The invariant: **a contract file that names the set (``results.json``, ``response.json``, the SR)
is present in the output folder only beside the files its own run wrote.**

How (:class:`StagedFiles`): every file is written completely into a staging folder
``DIR/.dceus-staging-<pid>-<random>/``; nothing is in place yet. The commit then writes a journal
(``.commit``: the files, in the order they move) into the staging folder — the commit point — removes
the old last file, moves every other file into place with :func:`os.replace` and moves the last
file last. A run stopped before the commit point leaves ``DIR`` as it was; one stopped (even by
SIGKILL) after it leaves ``DIR`` without the last file, i.e. visibly incomplete, and the next run in
``DIR`` (:func:`recover_output_dir`, called when staging starts) finishes its moves. Staging folders
of dead processes without a journal are removed. SIGINT and SIGTERM raise :class:`Interrupted` (once
:func:`handle_termination_signals` is installed), except during a commit, which they wait for.

Nothing is written outside ``DIR``: every target's real path (symbolic links resolved) must lie
inside ``DIR``'s, and :meth:`StagedFiles.scratch` gives caches (Slicer's bundle scratch,
matplotlib's config) a folder inside the staging folder. ``DIR`` is created when staging starts and
removed again if the run fails and ``DIR`` was created by it.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.parallel import worker_threads

STAGING_PREFIX = ".dceus-staging-"
JOURNAL = ".commit"
SCRATCH = ".scratch"
#: Test hook (read only here): ``DCEUS_TEST_PAUSE_AT=<step>`` makes a commit print
#: ``DCEUS_TEST_PAUSED <step>`` on stderr and wait there for a minute, so that a test can send a
#: signal at that exact moment. Steps: ``staged`` (all written, before the commit point),
#: ``committed`` (journal written), ``removed-last`` (old last file removed), ``moved:<relative path>``.
TEST_PAUSE_VARIABLE = "DCEUS_TEST_PAUSE_AT"
_PROCESS_START = time.time()


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM; ``results_written`` when it arrived during a commit that then completed."""

    def __init__(self, signum: int, results_written: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.results_written = results_written


_deferred_signals: list[int] | None = None  # not None while a commit is under way


def _on_signal(signum, frame) -> None:
    if _deferred_signals is not None:
        _deferred_signals.append(signum)
        return
    raise Interrupted(signum)


def handle_termination_signals() -> dict[int, object]:
    """SIGINT and SIGTERM raise :class:`Interrupted` (so staging is cleaned up), not during a commit.

    Call from the main thread; returns the previous handlers (give them to :func:`restore_signals`).
    """
    return {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def check_output_dir(out_dir: str) -> str:
    """The absolute output folder, if it is a folder or could be created; creates nothing."""
    out_dir = os.path.abspath(out_dir)
    existing = out_dir
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "output path exists and is not a folder" if existing == out_dir else \
            f"output folder is not writable ({existing} is not a folder)"
        raise InputError(what, out_dir)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("output folder is not writable (permission denied)", out_dir)
    return out_dir


def prepare_output_dir(out_dir: str) -> str:
    """Check, then create ``out_dir`` (for callers that write into it directly, e.g. the demo)."""
    out_dir = check_output_dir(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise InputError(f"output folder is not writable ({error.strerror or error})", out_dir) from None
    return out_dir


def inside(path: str, folder: str) -> bool:
    """Whether ``path``'s real path (links resolved) lies inside ``folder``'s real path."""
    real_folder = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), real_folder]) == real_folder


def scene_path_inside(scene: str, out_dir: str) -> str:
    """``--scene`` (of ``analyze`` and ``fuse``) as a path relative to ``out_dir``; InputError unless its
    real path lies inside it.

    A relative path that already lies inside ``out_dir`` seen from the current folder (``--scene
    out/x.mrb --out out``) is taken as it is; any other relative path is relative to ``out_dir``.
    Symbolic links are resolved before the check, so a link inside ``out_dir`` cannot lead out of it.
    """
    if not scene.lower().endswith(".mrb"):
        raise InputError("--scene must name a .mrb file", scene)
    if os.path.isabs(scene) or inside(scene, out_dir):
        candidate = os.path.abspath(scene)
    else:
        candidate = os.path.join(out_dir, scene)
    if not inside(candidate, out_dir) or os.path.realpath(candidate) == os.path.realpath(out_dir):
        raise InputError(f"--scene is outside --out {out_dir} (symbolic links resolved); give a path inside it",
                         scene)
    return os.path.relpath(os.path.realpath(candidate), os.path.realpath(out_dir))


class StagedFiles:
    """Collects output files in a staging folder inside ``out_dir``; :meth:`commit` moves them in."""

    def __init__(self, out_dir: str):
        self.out_dir = check_output_dir(out_dir)
        self._created = _missing_folders(self.out_dir)
        self.relative_paths: list[str] = []
        self._saved_environment: dict[str, str | None] = {}
        self._saved_log_level: int | None = None
        self._journaled = False  # past the commit point, moves not finished: staging must stay
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            recover_output_dir(self.out_dir)
            self.staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.out_dir)
        except OSError as error:
            self._remove_created()
            raise InputError(f"output folder is not writable ({error.strerror or error})", self.out_dir) from None

    def path(self, relative_path: str) -> str:
        """Where to write ``relative_path`` now; it reaches the output folder on :meth:`commit`."""
        relative_path = os.path.normpath(relative_path)
        if os.path.isabs(relative_path) or relative_path.split(os.sep)[0] in (os.pardir, SCRATCH, JOURNAL):
            raise InputError(f"output file {relative_path!r} is not a path inside the output folder", self.out_dir)
        staged = os.path.join(self.staging, relative_path)
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        self.relative_paths.append(relative_path)
        return staged

    def scratch(self, name: str) -> str:
        """A folder for a library's caches and temporary files, inside staging, never committed."""
        folder = os.path.join(self.staging, SCRATCH, name)
        os.makedirs(folder, exist_ok=True)
        return folder

    def isolate_process_caches(self) -> None:
        """Point matplotlib's config/cache and the XDG cache (fontconfig) into :meth:`scratch`.

        For a process of its own (the command line), before matplotlib is imported; undone by
        :meth:`discard`. Without it matplotlib creates ``~/.config/matplotlib`` on import.
        """
        if "matplotlib" in sys.modules:
            return
        # With no font list to copy, matplotlib builds one and says so on stderr ("Matplotlib is
        # building the font cache"): a library's note in the middle of the command's own lines.
        font_manager = logging.getLogger("matplotlib.font_manager")
        self._saved_log_level = font_manager.level
        font_manager.setLevel(logging.ERROR)
        for variable, name in (("MPLCONFIGDIR", "matplotlib"), ("XDG_CACHE_HOME", "cache")):
            self._saved_environment.setdefault(variable, os.environ.get(variable))
            os.environ[variable] = self.scratch(name)
        _copy_font_list(self._saved_environment.get("MPLCONFIGDIR"), self._saved_environment.get("XDG_CACHE_HOME"),
                        self.scratch("matplotlib"))

    def write(self, writers: Iterable[tuple[str, Callable[[str], None]]]) -> None:
        """Run each ``(relative path, writer(path))`` into staging, on all cores."""
        jobs = [(writer, self.path(relative_path)) for relative_path, writer in writers]
        # Compression (zlib, PNG) releases the GIL: the files are written on all cores.
        pool = ThreadPoolExecutor(max_workers=max(1, min(len(jobs), worker_threads())))
        try:
            for _ in pool.map(lambda job: job[0](job[1]), jobs):
                pass
        finally:
            # On an error or a signal: start nothing more, wait for the running writers.
            pool.shutdown(wait=True, cancel_futures=True)

    def commit(self, last: str, replaces: Iterable[str] = ()) -> list[str]:
        """Move every staged file into the output folder, ``last`` after all others; the paths.

        ``replaces``: glob patterns (relative to the output folder) of files that belong to the set
        ``last`` names; those this run did not write (an earlier run's) are removed in the same
        commit, before ``last`` moves in.
        """
        last = os.path.normpath(last)
        order = [p for p in dict.fromkeys(self.relative_paths) if p != last] + [last]
        for relative_path in order:
            target = os.path.join(self.out_dir, relative_path)
            if not inside(os.path.dirname(target), self.out_dir):
                raise InputError(f"{relative_path} would be written outside the output folder (through a "
                                 "symbolic link)", target)
            if os.path.isdir(target) and not os.path.islink(target):
                raise InputError("a folder is in the way of an output file", target)
        obsolete = _obsolete_files(self.out_dir, replaces, set(order))
        for relative_path in obsolete:  # before the commit point: a refusal leaves DIR as it was
            folder = os.path.dirname(os.path.join(self.out_dir, relative_path))
            if not os.access(folder, os.W_OK | os.X_OK):
                raise InputError(f"the earlier run's {relative_path} cannot be removed (its folder is not "
                                 "writable), so it would stay beside this run's results", folder)
        _test_pause("staged")
        global _deferred_signals
        _deferred_signals = []
        try:
            _write_journal(self.staging, order, obsolete)
            self._journaled = True
            _test_pause("committed")
            _finish_commit(self.out_dir, self.staging, order, obsolete)
            self._journaled = False
        finally:
            pending, _deferred_signals = _deferred_signals, None
        self._created = []
        self.discard()
        if pending:
            raise Interrupted(pending[0], results_written=True)
        return [os.path.join(self.out_dir, p) for p in order]

    def discard(self) -> None:
        """Remove the staging folder (and ``out_dir`` if this run created it and it is empty); a
        commit that failed after its commit point keeps it, journal and all, for the next run to
        finish (:func:`recover_output_dir`)."""
        if not self._journaled:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._remove_created()
        for variable, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
        self._saved_environment = {}
        if self._saved_log_level is not None:
            logging.getLogger("matplotlib.font_manager").setLevel(self._saved_log_level)
            self._saved_log_level = None

    def _remove_created(self) -> None:
        for folder in self._created:  # deepest first
            try:
                os.rmdir(folder)
            except OSError:
                break
        self._created = []

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.discard()


def write_staged(out_dir: str, writers: Iterable[tuple[str, Callable[[str], None]]], last: str,
                 replaces: Iterable[str] = ()) -> list[str]:
    """Run each ``(relative path, writer(path))`` into staging, then move all into ``out_dir``
    (``replaces``: as for :meth:`StagedFiles.commit`)."""
    with StagedFiles(out_dir) as staged:
        staged.write(writers)
        return staged.commit(last, replaces)


def recover_output_dir(out_dir: str) -> None:
    """Finish the commits of dead processes in ``out_dir`` and remove their other staging folders.

    A staging folder is stale when the process named in it has ended (or, for a folder without a
    process id, when it is older than this process). Folders of running processes are left alone.
    """
    try:
        names = os.listdir(out_dir)
    except OSError:
        return
    for name in sorted(names):
        if not name.startswith(STAGING_PREFIX):
            continue
        staging = os.path.join(out_dir, name)
        if not _is_stale(name, staging):
            continue
        journal = os.path.join(staging, JOURNAL)
        if os.path.isdir(staging) and os.path.isfile(journal):
            try:
                with open(journal, encoding="utf-8") as stream:
                    order = json.load(stream)
            except (OSError, ValueError):
                order = None
            order, obsolete = _journal_entries(order)
            if order:
                _finish_commit(out_dir, staging, order, obsolete)
        if os.path.isdir(staging) and not os.path.islink(staging):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            try:
                os.unlink(staging)
            except OSError:
                pass


def _is_stale(name: str, path: str) -> bool:
    pid_text = name[len(STAGING_PREFIX):].split("-", 1)[0]
    if pid_text.isdigit() and "-" in name[len(STAGING_PREFIX):]:
        pid = int(pid_text)
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's
            return False
        return False
    try:
        return os.lstat(path).st_mtime < _PROCESS_START
    except OSError:
        return False


def _obsolete_files(out_dir: str, patterns: Iterable[str], written: set[str]) -> list[str]:
    """Files under ``out_dir`` matching ``patterns`` (relative globs) that are not in ``written``."""
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), pattern))):
            relative = os.path.relpath(path, out_dir)
            if relative not in written and os.path.isfile(path) and inside(os.path.dirname(path), out_dir):
                found.append(relative)
    return list(dict.fromkeys(found))


def _write_journal(staging: str, order: list[str], obsolete: list[str]) -> None:
    path = os.path.join(staging, JOURNAL)
    with open(path + ".tmp", "w", encoding="utf-8") as stream:
        json.dump({"order": order, "remove": obsolete}, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(path + ".tmp", path)
    _fsync_folder(staging)


def _journal_entries(content) -> tuple[list[str], list[str]]:
    """(files to move, files to remove) of a journal; a bare list is the moves of an older journal."""
    if isinstance(content, dict):
        order, obsolete = content.get("order"), content.get("remove") or []
    else:
        order, obsolete = content, []
    def paths(value) -> bool:  # relative paths inside DIR only: a journal must not reach outside it
        return isinstance(value, list) and all(
            isinstance(p, str) and p and not os.path.isabs(p) and os.path.normpath(p) == p
            and p.split(os.sep)[0] != os.pardir for p in value)
    if not (paths(order) and order and paths(obsolete)):
        return [], []
    return order, obsolete


def _finish_commit(out_dir: str, staging: str, order: list[str], obsolete: Iterable[str] = ()) -> None:
    """The moves (and removals) after the commit point; repeatable (what is done already is skipped)."""
    last = order[-1]
    if os.path.lexists(os.path.join(staging, last)):
        try:
            os.unlink(os.path.join(out_dir, last))
        except FileNotFoundError:
            pass
        _fsync_folder(os.path.dirname(os.path.join(out_dir, last)))
    _test_pause("removed-last")
    for relative_path in obsolete:
        try:
            os.unlink(os.path.join(out_dir, relative_path))
        except OSError:  # gone already, or held open (checked removable before the commit point)
            pass
    for folder in sorted({os.path.dirname(p) for p in obsolete if os.path.dirname(p)}, reverse=True):
        try:
            os.rmdir(os.path.join(out_dir, folder))  # emptied (dicom/ of a run without --dicom)
        except OSError:
            pass
    for relative_path in order:
        source = os.path.join(staging, relative_path)
        if not os.path.lexists(source):
            continue
        target = os.path.join(out_dir, relative_path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if relative_path == last:
            _fsync_folder(out_dir)
        os.replace(source, target)
        _test_pause(f"moved:{relative_path}")
    _fsync_folder(out_dir)


def _missing_folders(folder: str) -> list[str]:
    """The folders ``os.makedirs(folder)`` would create, deepest first."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _copy_font_list(config_dir: str | None, xdg_cache: str | None, scratch: str) -> None:
    """Copy the user's matplotlib font list (``fontlist-v*.json``) into ``scratch``, when there is one.

    Only read: the user's cache is never written. Without it matplotlib scans the system's fonts
    again in every command (about 0.5 s); a list of another matplotlib version has another name
    and is ignored by it (it then scans, into ``scratch``).
    """
    if config_dir:
        candidates = [config_dir]
    else:
        home = os.path.expanduser("~")
        candidates = [os.path.join(xdg_cache or os.path.join(home, ".cache"), "matplotlib"),
                      os.path.join(home, ".matplotlib")]
    for folder in candidates:
        try:
            names = [n for n in os.listdir(folder) if n.startswith("fontlist-v") and n.endswith(".json")]
            for name in names:
                shutil.copyfile(os.path.join(folder, name), os.path.join(scratch, name))
        except OSError:  # no cache, unreadable, a file vanishing meanwhile: matplotlib scans, as before
            continue
        if names:
            return


def _test_pause(step: str) -> None:
    if os.environ.get(TEST_PAUSE_VARIABLE) != step:
        return
    print(f"DCEUS_TEST_PAUSED {step}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not _deferred_signals:
        time.sleep(0.05)


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
