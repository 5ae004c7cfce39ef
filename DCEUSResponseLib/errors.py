"""Errors raised by the engine.

Every problem with what the user gave us (a file, a mask, an option) is an :class:`InputError`
whose message is one line naming the file and the problem, so the command line can print it as is.
"""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: ``str(error)`` is one line, ``"<file>: <problem>"`` (or just the problem)."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = " ".join(str(problem).split())
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)

