"""How many threads this process's numerical work may use (map chunks, FFTs, file writers).

The cores this process may run on, unless ``DCEUS_THREADS`` says fewer: ``study`` sets it to 1 in each
of its local worker processes, so that N workers on N cores do not each start N threads.
"""
from __future__ import annotations

import os

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
