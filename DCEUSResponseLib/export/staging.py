"""The contract's output files, written so that a failure never leaves half-written results.

Every file is first written completely into a staging folder inside the output folder and then
moved into place with :func:`os.replace` (atomic on one file system); ``results.json`` (or
``response.json``) moves last, so its presence means the whole set is there.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Callable, Iterable

from DCEUSResponseLib.errors import InputError

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


