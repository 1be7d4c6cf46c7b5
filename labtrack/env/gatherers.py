"""The registry of section gatherers and the runner that isolates them.

Each gatherer runs in its own daemon thread and all run at once, so the slow ones (git's processes,
the first package scan) overlap, and one that hangs costs at most ``timeout`` before the capture goes
on without it. A thread cannot be killed: a hung gatherer is abandoned (daemon, so it never holds up
interpreter exit) and its late result is discarded. A gatherer that raises or times out leaves
``{"error": "..."}`` in place of its section; nothing a gatherer does can fail the user's run.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["GATHERERS", "run_gatherers"]


def _hardware(options: Any) -> Any:
    from labtrack.env import hardware

    return hardware.gather(options)


def _gpu(options: Any) -> Any:
    from labtrack.env import gpu

    return gpu.gather(options)


def _frameworks(options: Any) -> Any:
    from labtrack.env import frameworks

    return frameworks.gather(options)


def _packages(options: Any) -> Any:
    from labtrack.env import packages

    return packages.gather(options)


def _system(options: Any) -> Any:
    from labtrack.env import system

    return system.gather(options)


def _process(options: Any) -> Any:
    from labtrack.env import process

    return process.gather(options)


def _git(options: Any) -> Any:
    from labtrack.env import git

    return git.gather(options)  # (section, diff text)


# section name -> gatherer(options). Tests replace entries to prove the isolation.
GATHERERS: dict[str, Callable[[Any], Any]] = {
    "hardware": _hardware,
    "gpu": _gpu,
    "frameworks": _frameworks,
    "packages": _packages,
    "system": _system,
    "process": _process,
    "git": _git,
}


class _Task:
    def __init__(self, fn: Callable[[Any], Any], options: Any) -> None:
        self.fn, self.options = fn, options
        self.done = threading.Event()
        self.result: Any = None


class _DaemonPool:
    """Reusable daemon threads: most gatherers answer from their caches in microseconds, and starting
    seven threads per capture would cost more than the gathering. Daemon, unlike concurrent.futures'
    workers, so a gatherer stuck in a hung call can never hold up interpreter exit."""

    def __init__(self, size: int) -> None:
        self.queue: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._serve, name=f"labtrack-env-{i}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            task = self.queue.get()
            try:
                task.result = task.fn(task.options)
            except BaseException as e:  # isolation is the point: record, never raise
                task.result = {"error": f"{type(e).__name__}: {e}"}
            task.done.set()

    def submit(self, fn: Callable[[Any], Any], options: Any) -> _Task:
        task = _Task(fn, options)
        self.queue.put(task)
        return task


_pool: _DaemonPool | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> _DaemonPool:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # a forked child inherits no threads
            _pool = _DaemonPool(len(GATHERERS))
            _pool_pid = os.getpid()
        return _pool


# Gatherers (by function) whose last run took under _FAST_SECONDS: they answer from their caches, so they
# run inline — handing them to a thread would cost more than the work. A gatherer that ever runs slow
# again goes back to a thread, where the timeout protects the caller.
_fast: set[Callable[[Any], Any]] = set()  # filled below with the in-process readers
_FAST_SECONDS = 0.002


def _timed(fn: Callable[[Any], Any], options: Any) -> Any:
    start = time.perf_counter()
    try:
        result = fn(options)
    except BaseException as e:  # isolation is the point: record, never raise
        result = {"error": f"{type(e).__name__}: {e}"}
    if time.perf_counter() - start < _FAST_SECONDS:
        _fast.add(fn)
    else:
        _fast.discard(fn)
    return result


# In-process readers of /proc, sys.path and the environment start inline too: threads would only add
# start-up and GIL hand-offs to the first capture, while git's and NVML's calls (which can block) run in
# the pool meanwhile.
_fast.update({_hardware, _frameworks, _packages, _system, _process})


def run_gatherers(names: Iterable[str], options: Any, timeout: float) -> dict[str, Any]:
    """Run the named gatherers concurrently; ``{name: result | {"error": ...}}``.

    A gatherer still running after ``timeout`` is abandoned (its thread finishes on its own and the
    late result is dropped) and the pool is replaced, so later captures are not held up by it.
    """
    results: dict[str, Any] = {}
    tasks: dict[str, _Task] = {}
    pool = _executor()
    inline = []
    for name in names:
        fn = GATHERERS.get(name)
        if fn is None:
            results[name] = {"error": f"unknown section {name!r}"}
        elif fn in _fast:
            inline.append((name, fn))
        else:
            tasks[name] = pool.submit(functools.partial(_timed, fn), options)
    for name, fn in inline:
        results[name] = _timed(fn, options)
    deadline = time.monotonic() + timeout
    stuck = False
    for name, task in tasks.items():
        if task.done.wait(max(0.0, deadline - time.monotonic())):
            results[name] = task.result
        else:
            results[name] = {"error": f"timed out after {timeout:g} s"}
            stuck = True
    if stuck:
        global _pool
        with _pool_lock:
            _pool = None  # its threads may be stuck; the next capture starts fresh ones
    return results
