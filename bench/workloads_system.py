"""The cost of system metrics (``system_metrics``): CPU time of the run monitor thread per wall second, on an
idle run, at the default interval (10 s) and at 1 s; and the whole process's, with system metrics off and on.

    python -m bench --only system_metrics

Each measurement runs in a fresh child process (``system_child``): an idle run (it logs nothing, prints
nothing: only the monitor and the background writer work) on a fresh SQLite store. The thread's CPU time
is read from its POSIX CPU clock (``time.pthread_getcpuclockid``, nanoseconds; psutil's clock ticks
elsewhere) once the first sample is taken — loading psutil and NVML is a one-off cost of the process, reported apart — and again
``seconds`` later. The console log is on, as by default: its once-a-second look at the captures is part of
the thread's cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.children import child_env
from bench.fixtures import CHILD_TIMEOUT, workload_main

__all__ = ["WORKLOADS", "system_child", "system_metrics"]

Result = dict[str, Any]


def _thread_cpu(thread: Any) -> float:
    """CPU seconds ``thread`` has used: from its POSIX CPU clock (nanoseconds), else psutil (clock ticks)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError):
        import psutil

        for found in psutil.Process().threads():
            if found.id == thread.native_id:
                return float(found.user_time + found.system_time)
    raise RuntimeError("the monitor thread is gone")


def system_child(directory: str, interval: str, seconds: float, **_: Any) -> Result:
    """An idle run for ``seconds`` after its first sample, with ``LABTRACK_SYSTEM_METRICS=interval``."""
    os.environ["LABTRACK_SYSTEM_METRICS"] = interval
    import labtrack as lt
    from labtrack.verbs import monitor

    lt.set_store(str(Path(directory) / "store"))
    with lt.start_run("warm"):  # opens the store, starts the writer: not the sampler's cost
        pass
    process_start = time.process_time()
    with lt.start_run("idle") as run:
        time.sleep(1.3)  # the first sample is taken 1 s after the start
        thread = monitor.monitor_thread()
        first = _thread_cpu(thread) if thread is not None else 0.0
        counted = len(run.history("system/cpu_percent").steps) if interval != "off" else 0
        process_before, wall_before = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        wall = time.perf_counter() - wall_before
        process_cpu = time.process_time() - process_before
        steady = (_thread_cpu(thread) - first) if thread is not None else 0.0
    samples = len(run.history("system/cpu_percent").steps) if interval != "off" else 0
    return {"thread_cpu_pct": 100 * steady / wall, "first_ms": 1000 * first, "process_cpu_pct": 100 * process_cpu / wall,
            "samples": samples, "sample_ms": 1000 * steady / max(1, samples - counted), "wall_s": wall,
            "process_total_s": time.process_time() - process_start}


def _child(directory: str, interval: str, seconds: float) -> Result:
    command = [sys.executable, "-m", "bench.workloads_system", "system_child", "--dir", directory, "--args",
               json.dumps({"interval": interval, "seconds": seconds})]
    done = subprocess.run(command, capture_output=True, text=True, cwd=directory, env=child_env(),
                          timeout=CHILD_TIMEOUT + seconds)
    if done.returncode != 0:
        raise RuntimeError(f"system_child {interval} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def system_metrics(directory: str, seconds_default: float, seconds_fast: float, **_: Any) -> Result:
    result: Result = {"n": f"{seconds_default:g} s", "fast_n": f"{seconds_fast:g} s"}
    for label, interval, seconds in (("off", "off", seconds_fast), ("default", "10", seconds_default),
                                     ("fast", "1", seconds_fast)):
        where = Path(directory) / label
        where.mkdir()
        measured = _child(str(where), interval, seconds)
        result[f"{label}_process_cpu_pct"] = round(measured["process_cpu_pct"], 3)
        if label != "off":
            result[f"{label}_thread_cpu_pct"] = round(measured["thread_cpu_pct"], 4)
            result[f"{label}_samples"] = measured["samples"]
            result[f"{label}_first_ms"] = round(measured["first_ms"], 2)
            result[f"{label}_sample_ms"] = round(measured["sample_ms"], 3)
    return result


WORKLOADS = {
    "system_metrics": system_metrics,
    # internal: run in child processes by the workload above
    "system_child": system_child,
}


def main(argv: list[str] | None = None) -> None:
    workload_main(WORKLOADS, __doc__, argv)


if __name__ == "__main__":
    main()
