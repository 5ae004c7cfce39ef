"""Where a study's clip tasks run: local worker processes, or an existing Dask distributed cluster.

Both take the same picklable task function and tasks and call ``on_done(index, result)`` in the
calling thread as each task finishes, in completion order. The task function is expected to turn
its own problems into results; what it cannot (a worker process that died, a task the cluster
lost) becomes ``on_failure(index, message)``'s result, a one-line message, and the other tasks go on.

Local processes use the ``spawn`` start method: never ``fork``, which copies the caller's threads and
locks (Slicer's, Dask's) into the children. Each worker keeps its numerical libraries to one thread,
so N workers use N cores. The limits are in the environment the workers *start* with: a worker
re-imports the caller's main module before any initializer runs, and a main module that imports
numpy (a script, the benchmark) would otherwise start OpenBLAS with a thread per core in every worker
before the limit is set. Not ``forkserver``: its server outlives the study and would hand the limits
to every later forkserver child of the caller. While the workers start, the caller's environment
holds the limits (process-wide: its other threads see them then).

Dask is an optional extra (``pip install "DCEUSResponse[cluster]"``), imported only here, inside the
function. The workers must import this package and read the manifest's paths at the same paths.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.parallel import THREADS_VARIABLE

DEFAULT_SCHEDULER_TIMEOUT_S = 20.0
# Environment of each local worker: one thread per numerical library (the workers are the parallelism).
_SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                      "NUMEXPR_NUM_THREADS", THREADS_VARIABLE)

TaskFunction = Callable[[Any], Any]
OnDone = Callable[[int, Any], None]
OnFailure = Callable[[int, str], Any]


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _single_threaded_children():
    """The caller's environment says one thread per numerical library while its workers start (limits
    the user set are kept); the caller's own libraries are loaded already and keep their threads."""
    added = [name for name in _SINGLE_THREAD_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def run_local(function: TaskFunction, tasks: Sequence, workers: int, on_done: OnDone,
              on_failure: OnFailure) -> list:
    """Run ``function(task)`` for every task on ``workers`` local processes; results in task order."""
    results: list = [None] * len(tasks)
    if not tasks:
        return results
    context = multiprocessing.get_context("spawn")  # module docstring: why not fork, why not forkserver
    with _single_threaded_children():
        return _run_pool(function, tasks, workers, on_done, on_failure, context, results)


def _run_pool(function, tasks, workers, on_done, on_failure, context, results) -> list:
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(tasks))), mp_context=context)
    try:
        pending = {pool.submit(function, task): index for index, task in enumerate(tasks)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                try:
                    results[index] = future.result()
                except BrokenProcessPool:
                    results[index] = on_failure(index, "a worker process died while running this clip "
                                                "(out of memory or killed?); rerun the study to resume")
                except Exception as error:  # the task function's own bug: one line, the rest go on
                    results[index] = on_failure(index, _one_line(error))
                on_done(index, results[index])
    except BaseException:
        # Interrupted: drop the clips not started; the running ones finish their atomic writes.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def run_dask(function: TaskFunction, tasks: Sequence, address: str, on_done: OnDone, on_failure: OnFailure,
             timeout_s: float = DEFAULT_SCHEDULER_TIMEOUT_S) -> list:
    """Run ``function(task)`` for every task on the Dask cluster whose scheduler is at ``address``.

    An unreachable scheduler is an :class:`InputError` after ``timeout_s`` seconds.
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask distributed: pip install \"DCEUSResponse[cluster]\"") from None
    client = _connect(Client, address, timeout_s)
    results: list = [None] * len(tasks)
    try:
        futures = client.map(function, list(tasks), pure=False)
        index_of = {future: index for index, future in enumerate(futures)}
        for future in as_completed(futures, loop=client.loop):
            index = index_of[future]
            try:
                results[index] = future.result()
            except Exception as error:  # a lost worker (KilledWorker), a cancelled task, the task's bug
                results[index] = on_failure(index, f"on the Dask cluster: {_one_line(error)}")
            on_done(index, results[index])
    finally:
        client.close()
    return results


def check_scheduler(address: str, timeout_s: float = DEFAULT_SCHEDULER_TIMEOUT_S) -> None:
    """One-line :class:`InputError` unless a Dask scheduler answers at ``address`` within ``timeout_s``
    (for a command to call before it creates its output folder)."""
    try:
        import distributed  # noqa: F401 (only whether it is installed)
    except ImportError:
        raise InputError("--scheduler needs Dask distributed: pip install \"DCEUSResponse[cluster]\"") from None
    try:
        _probe_scheduler(address, timeout_s)
    except InputError:
        raise
    except Exception as error:
        raise _unreachable(address, timeout_s, error) from None


def _connect(client_class, address: str, timeout_s: float):
    # Dask logs each failed connection attempt; the user gets one line instead.
    quiet = [logging.getLogger(name) for name in ("distributed", "distributed.client", "distributed.comm")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        check_scheduler(address, timeout_s)
        return client_class(address, timeout=timeout_s, set_as_default=False)
    except InputError:
        raise
    except Exception as error:
        raise _unreachable(address, timeout_s, error) from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _probe_scheduler(address: str, timeout_s: float) -> None:
    """Ask ``address`` who it is, within ``timeout_s``: Dask's Client waits forever (its timeout not
    applied) on an address that accepts the connection but never answers the handshake (another
    server, a firewall's tarpit). Run on a thread of its own, so a caller's event loop is untouched."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    silent = object()
    # The connection arguments Client would use: TLS certificates from Dask's configuration.
    connection_args = Security().get_connection_args("client")

    async def identity():
        # connect() gives up by itself after timeout_s, with OSError when nothing accepts the
        # connection and TimeoutError when its handshake gets no answer; the margin lets it say which
        try:
            comm = await asyncio.wait_for(connect(address, timeout=timeout_s, **connection_args), timeout_s + 5.0)
        except (asyncio.TimeoutError, TimeoutError):
            return silent
        try:
            await asyncio.wait_for(comm.write({"op": "identity"}), timeout_s)
            return await asyncio.wait_for(comm.read(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return silent
        finally:
            comm.abort()

    with ThreadPoolExecutor(max_workers=1) as pool:
        reply = pool.submit(asyncio.run, identity()).result()
    if reply is silent:
        raise InputError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s (it accepts "
                         "connections but does not answer as a Dask scheduler)")
    if not (isinstance(reply, dict) and reply.get("type") == "Scheduler"):
        kind = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
        raise InputError(f"{address!r} is not a Dask scheduler (it answers as {kind!r}): give the scheduler's address")


def _unreachable(address: str, timeout_s: float, error: BaseException) -> InputError:
    return InputError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s ({_one_line(error)})")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
