"""Decoding in parallel: a function mapped over items by threads or worker processes, the
results given back in the items' order, with a bounded window of items in flight.

The process pool is gntkit's own, not concurrent.futures.ProcessPoolExecutor: the executor's
manager and queue-feeder threads and its exit hook hung the parent (workers killed while the
call queue was full) or printed tracebacks (its wake-up pipe closed before the exit hook ran)
when a conversion was interrupted or its writer failed on a full disk, and its workers, started
through multiprocessing, import the caller's main module and print tracebacks of their own when
a Ctrl-C lands while they start. Here the parent drives every worker over pipes of its own and
waits on them itself: there are no threads, and stopping is a kill and a wait.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing.connection
import os
import pickle
import signal
import subprocess
import sys
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection

from gntkit.errors import GntkitError

_HELD = (signal.SIGINT, signal.SIGTERM)  # ignored by worker processes


class WorkerLost(GntkitError):
    """A worker process ended without giving back its result."""


def ordered_map(function: Callable, items: Iterable, *, workers: int, parallel: str = "threads",
                initializer: Callable | None = None, window: int | None = None) -> Iterator:
    """function(*item) for every item, computed by `workers` threads or processes, yielded in order.

    An exception raised for an item is raised here when that item's turn comes (the results
    before it are yielded first). Closing the generator early, or an exception in the caller
    (Ctrl-C included), stops the pool at once: worker processes are killed, not waited for.

    Args:
        function: a module-level function (processes pickle it by name).
        items: tuples of arguments.
        workers: threads or processes, at least 1.
        parallel: "threads" or "processes" (fresh interpreters that import gntkit only).
        initializer: run once in each worker process before its first item.
        window: items in flight or waiting to be yielded at most (default 2 x workers).
    """
    if workers < 1:
        raise GntkitError(f"workers must be at least 1, found {workers}.")
    window = window or 2 * workers
    if parallel == "threads":
        return _thread_map(function, items, workers, window)
    if parallel == "processes":
        return _process_map(function, items, workers, initializer, window)
    raise GntkitError(f"parallel must be threads or processes, found {parallel!r}.")


def _thread_map(function, items, workers, window) -> Iterator:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gntkit-decode")
    pending: list = []
    queue = iter(items)
    finished = False
    try:
        for item in queue:
            pending.append(pool.submit(function, *item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.pop(0).result()
            item = next(queue, None)
            if item is not None:
                pending.append(pool.submit(function, *item))
            yield result
        finished = True
    finally:
        for future in pending:
            future.cancel()
        # Stopped early (an error, an interrupt, a generator closed, perhaps by the garbage
        # collector in one of the pool's own threads): do not wait for the items in flight.
        pool.shutdown(wait=finished, cancel_futures=True)


def _process_map(function, items, workers, initializer, window) -> Iterator:
    pool = _ProcessPool(workers, initializer)
    try:
        yield from pool.ordered(function, items, window)
        pool.close()
    finally:
        pool.kill()


class _ProcessPool:
    """Worker processes, each a fresh interpreter fed one item at a time over a pipe of its own.

    A worker imports gntkit only, from where the parent has it (-P: the current folder cannot
    shadow it), never the caller's main module (the functions mapped are
    gntkit's own), so a script needs no main guard. Its stdout and stderr go nowhere: everything
    it has to say, an exception included, comes back over its pipe, so nothing a worker prints
    can interleave with the command's own message (an interrupt that lands while a worker is
    still starting ends that worker silently; the parent handles the interrupt).
    """

    def __init__(self, workers: int, initializer):
        home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds gntkit/
        self.processes, self.sends, self.receives = [], [], []
        try:
            for _ in range(workers):
                jobs_read, jobs_write = os.pipe()
                results_read, results_write = os.pipe()
                process = subprocess.Popen(
                    [sys.executable, "-P", "-c", _WORKER_MAIN, home, str(jobs_read), str(results_write)],
                    pass_fds=(jobs_read, results_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                os.close(jobs_read)  # our copies of their ends: a worker that dies then reads as end-of-file
                os.close(results_write)
                self.processes.append(process)
                self.sends.append(Connection(jobs_write, readable=False))
                self.receives.append(Connection(results_read, writable=False))
                self.sends[-1].send(initializer)
        except BaseException:
            self.kill()
            raise
        # A generator never closed must not leave workers behind when the interpreter exits.
        self._finalizer = weakref.finalize(self, _kill_all, list(self.processes))

    def ordered(self, function, items, window: int) -> Iterator:
        idle = list(range(len(self.processes)))
        busy: dict[int, int] = {}  # worker -> position of its item
        done: dict[int, tuple] = {}  # position -> (ok, value), waiting for its turn
        queue = iter(items)
        submitted = given = 0
        exhausted = False
        while True:
            while idle and not exhausted and submitted - given < window:
                item = next(queue, None)
                if item is None:
                    exhausted = True
                    break
                worker = idle.pop()
                self._send(worker, (function, item))
                busy[worker] = submitted
                submitted += 1
            if given in done:
                ok, value = done.pop(given)
                given += 1
                if not ok:
                    raise value
                yield value
                continue
            if not busy:
                return
            ready = multiprocessing.connection.wait([self.receives[w] for w in busy])
            for worker in [w for w in busy if self.receives[w] in ready]:
                try:
                    done[busy.pop(worker)] = self.receives[worker].recv()
                except (EOFError, OSError):
                    self._lost(worker)
                idle.append(worker)

    def _send(self, worker: int, message) -> None:
        try:
            self.sends[worker].send(message)
        except OSError:
            self._lost(worker)

    def _lost(self, worker: int):
        process = self.processes[worker]
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        raise WorkerLost(f"worker process {worker} ended with exit code {code} before giving back its result") from None

    def close(self) -> None:
        """Let every worker finish and exit (all items are done)."""
        for connection in self.sends:
            with contextlib.suppress(OSError):
                connection.send(None)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def kill(self) -> None:
        """End every worker now and release the pipes."""
        _kill_all(self.processes)
        for connection in self.sends + self.receives:
            connection.close()
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()


def _kill_all(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


_WORKER_MAIN = ("import sys; sys.path.insert(0, sys.argv[1]); from gntkit.samples.workers import serve; "
                "serve(int(sys.argv[2]), int(sys.argv[3]))")


def serve(jobs_fd: int, results_fd: int) -> None:
    """A worker process's life: an initializer, then items in, (ok, result or exception) out,
    until told to stop or the parent goes away."""
    # Ctrl-C (and a SIGTERM to the group) reaches every process: the parent alone handles them
    # (it kills the workers), so a worker never ends on its own before the parent knows why.
    for held in _HELD:
        signal.signal(held, signal.SIG_IGN)
    jobs, results = Connection(jobs_fd, writable=False), Connection(results_fd, readable=False)
    try:
        initializer = jobs.recv()
        if initializer is not None:
            initializer()
        while True:
            job = jobs.recv()
            if job is None:
                return
            _answer(results, *job)
    except (EOFError, BrokenPipeError):
        return  # the parent went away


def _answer(results, function, item) -> None:
    try:
        answer = (True, function(*item))
    except BaseException as exc:  # noqa: BLE001 - given back to the parent, raised there
        if not isinstance(exc, GntkitError):
            exc.add_note("in a worker process:\n" + "".join(traceback.format_exception(exc)))
        answer = (False, exc)
    try:
        results.send(answer)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        results.send((False, RuntimeError(f"a worker's result could not be sent back: {exc}")))
