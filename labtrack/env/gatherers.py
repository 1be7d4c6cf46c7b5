"""The registry of section gatherers and the runner that isolates them.

Each gatherer runs in its own daemon thread and all run at once, so the slow ones (git's processes,
the first package scan) overlap, and one that hangs costs at most ``timeout`` before the capture goes
on without it. A thread cannot be killed: a hung gatherer is abandoned (daemon, so it never holds up
interpreter exit) and its late result is discarded. A gatherer that raises or times out leaves
``{"error": "..."}`` in place of its section; nothing a gatherer does can fail the user's run.
"""

from __future__ import annotations

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


def run_gatherers(names: Iterable[str], options: Any, timeout: float) -> dict[str, Any]:
    """Run the named gatherers concurrently; ``{name: result | {"error": ...}}``."""
    results: dict[str, Any] = {}
    lock = threading.Lock()

    def work(name: str, fn: Callable[[Any], Any]) -> None:
        try:
            value = fn(options)
        except BaseException as e:  # isolation is the point: record, never raise
            value = {"error": f"{type(e).__name__}: {e}"}
        with lock:
            results.setdefault(name, value)

    threads = []
    for name in names:
        fn = GATHERERS.get(name)
        if fn is None:
            results[name] = {"error": f"unknown section {name!r}"}
            continue
        t = threading.Thread(target=work, args=(name, fn), name=f"labtrack-env-{name}", daemon=True)
        t.start()
        threads.append((name, t))
    deadline = time.monotonic() + timeout
    for _, t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for name, _ in threads:
            if name not in results:
                results[name] = {"error": f"timed out after {timeout:g} s"}
        return dict(results)
