"""How many threads this process's numerical work may use (map chunks, FFTs, file writers).

The cores this process may run on, unless ``DCEUS_THREADS`` says fewer: ``study`` sets it to 1 in each
of its local worker processes, so that N workers on N cores do not each start N threads.

The engine's parallel work runs on its own threads (map chunks, motion features beside the matches),
so the BLAS library must not add threads of its own there: :func:`single_threaded_blas`.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

THREADS_VARIABLE = "DCEUS_THREADS"


def worker_threads() -> int:
    """Threads for this process's parallel numerical work (1 or more)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    try:
        limit = int(os.environ.get(THREADS_VARIABLE, "") or cores)
    except ValueError:
        limit = cores
    return max(1, min(cores, limit))


class _SingleThreadedBlas:
    """The process's one BLAS limit, shared by every thread inside a :func:`single_threaded_blas` block.

    threadpoolctl's limit is process-wide, so two threads each setting and restoring their own would
    undo each other (a Dask worker runs clips on threads at once): the first to enter sets the limit,
    the last to leave restores the count from before. threadpoolctl 3.8 lets one thread at a time
    change a pthreads OpenBLAS (the first that did, while it lives), so the last to leave, whichever
    thread it is, takes that control (``OpenBLASController.clear_controlling_thread(force=True)``: no
    other block is running, the lock says so) to restore the count, and hands it back after.
    With an OpenMP-built BLAS the limit is per thread, so it holds on the entering thread only (the
    pip wheels and Slicer ship pthreads OpenBLAS).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limiter = None

    def enter(self, threadpoolctl) -> None:
        with self._lock:
            if self._holders == 0:
                self._limiter = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
            self._holders += 1

    def leave(self, threadpoolctl) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                release = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
                if release is not None:  # threadpoolctl 3.8 and newer
                    release(force=True)
                self._limiter.restore_original_limits()
                self._limiter = None
                if release is not None:
                    release(force=True)


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS (OpenBLAS, MKL, ...) on one thread while the block runs, through ``threadpoolctl``.

    Why: with the engine's own threads busy, a BLAS product that starts a thread per core puts two
    or more threads on each core, and OpenBLAS's threads spin while they wait: motion estimation of a
    320 x 240 x 720 clip took 7-13 s instead of 2.4-3.2 s on a machine with two other busy processes.
    It also makes the numbers independent of the machine's BLAS thread count (a threaded product
    rounds differently, about 1e-9 relative). Blocks may nest and run on several threads at once; the
    count from before is restored when the last one ends. Without ``threadpoolctl`` (a dependency of
    the engine and of the Slicer module) the block runs unchanged.
    """
    try:
        import threadpoolctl
    except ImportError:
        yield
        return
    _SINGLE_THREADED_BLAS.enter(threadpoolctl)
    try:
        yield
    finally:
        _SINGLE_THREADED_BLAS.leave(threadpoolctl)
