"""Errors raised by the engine.

Every problem with what the user gave us (a file, a mask, an option) is an :class:`InputError`
whose message is one line naming the file and the problem, so the command line can print it as is.
"""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: ``str(error)`` is one line, ``"<file>: <problem>"`` (or just the problem).

    ``path`` keeps the file name exactly as given; the message shows it with control characters
    escaped (a newline in a file name must not split the message, nor an escape sequence reach the
    terminal).
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = printable(" ".join(str(problem).split()))
        self.path = os.fspath(path) if path is not None else None
        shown = printable(os.fsdecode(self.path)) if self.path is not None else None
        super().__init__(f"{shown}: {self.problem}" if shown else self.problem)


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, escape, lone surrogate...) escaped as
    Python would spell it, e.g. ``"a\\nb"`` for a newline; printable text, accents included, is kept."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
