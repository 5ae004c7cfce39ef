"""A progress bar on stderr: items done / total, failures, and the time left.

On a terminal the bar redraws one line in place; otherwise (a log file, CI, a pipe) each finished
item prints one plain line, so logs stay readable. The time left is the mean time per item that
actually ran (reused items finish at once and are left out of the estimate) times the items left,
divided by the workers running in parallel.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``1:05:09``, ``5:09`` or ``9 s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs} s"


class ProgressBar:
    """``update(ok, reused)`` once per finished item; ``close()`` at the end."""

    def __init__(self, total: int, parallel: int = 1, label: str = "clips", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.parallel, self.label = total, max(1, parallel), label
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.done = self.failed = self.reused = 0
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._ran_seconds = 0.0
        self._last = self.started

    def seconds_left(self) -> float | None:
        """Estimated seconds until every item is done (None before any item ran)."""
        ran = self.done - self.reused
        if ran <= 0:
            return None
        per_item = self._ran_seconds / ran
        return per_item * (self.total - self.done) / min(self.parallel, max(1, self.total - self.done))

    def text(self) -> str:
        left = self.seconds_left()
        eta = "" if self.done == self.total else (", time left " + (format_duration(left) if left is not None
                                                                    else "unknown"))
        extra = [f"{n} {what}" for n, what in ((self.reused, "reused"), (self.failed, "failed")) if n]
        detail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.done}/{self.total} {self.label} done{detail}{eta}"

    def update(self, ok: bool = True, reused: bool = False) -> None:
        now = self.clock()
        self.done += 1
        self.failed += 0 if ok else 1
        self.reused += 1 if reused else 0
        if not reused:
            # Wall time between finishes, times the workers, is the time one item took on one worker.
            self._ran_seconds += (now - self._last) * min(self.parallel, self.total)
        self._last = now
        if self.interactive:
            filled = BAR_WIDTH * self.done // max(1, self.total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.text()}\033[K")
        else:
            self.stream.write(f"progress: {self.text()}\n")
        self.stream.flush()

    def message(self, line: str) -> None:
        """Print ``line`` (a failure) without breaking the bar."""
        if self.interactive:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        if self.interactive and self.done:
            filled = BAR_WIDTH * self.done // max(1, self.total)
            self.stream.write(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.text()}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
