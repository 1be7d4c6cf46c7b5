"""The labtrack side of each workload.

Run one workload in this (fresh) process and print its measurements as one JSON line:

    python -m bench.workloads_labtrack NAME --dir TMPDIR --args '{"n": 200000}'

Every function gets a fresh directory to put stores in and the size arguments from ``bench.spec``;
it returns a flat dict of numbers (plus ``n``-style sizes and an optional ``problems`` list).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]

_CHILD_TIMEOUT = 240.0


def _store(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    os.makedirs(path, exist_ok=True)
    return path


def _stored_points(run: Any, keys: list[str]) -> int:
    return sum(len(run.history(key)) for key in keys)


# -- 1. log_metric --------------------------------------------------------------------------------


def log_metric(directory: str, n: int, **_: Any) -> Result:
    import labtrack as lt

    lt.set_store(_store(directory, "store"))
    result: Result = {"n": n}
    with lt.start_run("bench") as warm:  # opens the store (schema) outside the timings
        warm.log_metric("warm", 0.0, step=0)

    run = lt.start_run("bench")
    log = run.log_metric
    values = [float(i % 997) / 997.0 for i in range(n)]
    t0 = time.perf_counter()
    for i in range(n):
        log("loss", values[i], step=i)
    t1 = time.perf_counter()
    run.end()
    t2 = time.perf_counter()
    result["per_call_us"] = (t1 - t0) / n * 1e6
    result["end_s"] = t2 - t1
    stored = len(lt.get_run(run.id).history("loss"))
    result["stored"] = stored
    result["lost"] = n - stored

    run = lt.start_run("bench")
    module_log = lt.log_metric
    t0 = time.perf_counter()
    for i in range(n):
        module_log("loss", values[i], step=i)
    t1 = time.perf_counter()
    run.end()
    result["module_per_call_us"] = (t1 - t0) / n * 1e6
    result["lost"] += n - len(lt.get_run(run.id).history("loss"))
    return result


# -- 2. batch ingestion ---------------------------------------------------------------------------


def batch(directory: str, keys: int, steps: int, repeats: int, **_: Any) -> Result:
    import numpy as np

    import labtrack as lt

    lt.set_store(_store(directory, "store"))
    with lt.start_run("bench") as warm:
        warm.log_batch({"warm": [0.0]}, steps=[0])
    names = [f"metric_{k:03d}" for k in range(keys)]
    points = keys * steps
    rng = np.random.default_rng(0)
    arrays = {name: rng.random(steps) for name in names}
    lists = {name: arr.tolist() for name, arr in arrays.items()}
    step_array = np.arange(steps, dtype=np.int64)
    result: Result = {"n": points, "log_metrics_n": points, "lost": 0}
    problems: list[str] = []

    def measure(label: str, body: Callable[[Any], None]) -> float:
        rates = []
        for _ in range(repeats):
            run = lt.start_run("bench")
            t0 = time.perf_counter()
            body(run)
            run.end()
            rates.append(points / (time.perf_counter() - t0))
            stored = _stored_points(lt.get_run(run.id), names)
            if stored != points:
                problems.append(f"{label}: {stored} of {points} points stored")
                result["lost"] += points - stored
        return statistics.median(rates)

    result["batch_numpy_pts_s"] = measure("log_batch numpy", lambda r: r.log_batch(arrays, steps=step_array))
    result["batch_list_pts_s"] = measure("log_batch lists", lambda r: r.log_batch(lists, steps=range(steps)))
    rows = [{name: lists[name][s] for name in names} for s in range(steps)]

    def per_step(run: Any) -> None:
        for s, row in enumerate(rows):
            run.log_metrics(row, step=s)

    result["log_metrics_pts_s"] = measure("log_metrics per step", per_step)
    if problems:
        result["problems"] = problems
    return result


# -- 3. memory of a 10M-point run -----------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def memory_child(directory: str, n: int, mode: str, **_: Any) -> Result:
    """In its own process: log ``n`` points, report peak RSS growth over the post-import baseline."""
    import numpy as np

    import labtrack as lt

    lt.set_store(_store(directory, f"store-{mode}"))
    with lt.start_run("bench") as warm:
        warm.log_metric("warm", 0.0, step=0)
    baseline = _rss_mb()
    run = lt.start_run("bench")
    t0 = time.perf_counter()
    half_peak = baseline
    if mode == "metric":
        log = run.log_metric
        for i in range(n):
            log("loss", 0.001 * (i % 1000), step=i)
            if i == n // 2:
                half_peak = _rss_mb()
    else:
        chunk = 100_000
        values = np.random.default_rng(0).random(chunk)
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            run.log_batch({"loss": values[:size]}, steps=np.arange(start, start + size, dtype=np.int64))
            if start <= n // 2 < start + chunk:
                half_peak = _rss_mb()
    run.end()
    elapsed = time.perf_counter() - t0
    peak = _rss_mb()
    stored = lt.get_run(run.id).metric_summaries["loss"].count
    return {"baseline_mb": baseline, "peak_mb": peak, "growth_mb": peak - baseline, "seconds": elapsed,
            "second_half_mb": peak - half_peak, "n": n, "stored": stored}


def memory(directory: str, n: int, **_: Any) -> Result:
    result: Result = {"lost": 0, "n": n}
    for mode in ("metric", "batch"):
        child = _run_child("memory_child", directory, {"n": n, "mode": mode})
        result[f"{mode}_n"] = n
        result[f"{mode}_rss_growth_mb"] = child["growth_mb"]
        result[f"{mode}_baseline_mb"] = child["baseline_mb"]
        result[f"{mode}_seconds"] = child["seconds"]
        result[f"{mode}_per_point_us"] = child["seconds"] / n * 1e6
        result[f"{mode}_second_half_mb"] = child["second_half_mb"]
        result["lost"] += n - child["stored"]
    result["second_half_mb"] = max(result["metric_second_half_mb"], result["batch_second_half_mb"])
    return result


# -- 4. run creation ------------------------------------------------------------------------------


def runs(directory: str, n: int, **_: Any) -> Result:
    import labtrack as lt

    lt.set_store(_store(directory, "store"))
    params = {f"param_{i}": i * 0.1 for i in range(10)}
    tags = {f"tag_{i}": f"value {i}" for i in range(3)}
    metrics = {f"metric_{i}": i * 0.5 for i in range(5)}
    with lt.start_run("bench", params=params, tags=tags) as warm:
        warm.log_metrics(metrics)
    t0 = time.perf_counter()
    for _ in range(n):
        with lt.start_run("bench", params=params, tags=tags) as run:
            run.log_metrics(metrics)
    elapsed = time.perf_counter() - t0
    found = len(lt.search_runs("bench"))
    result: Result = {"n": n, "runs_s": n / elapsed, "seconds": elapsed}
    if found != n + 1:
        result["problems"] = [f"{found} runs in the store, expected {n + 1}"]
    last = lt.search_runs("bench", max_results=1)[0]
    if len(last.params) != 10 or len(last.tags) < 3 or len(last.metrics) != 5:
        result.setdefault("problems", []).append(
            f"last run has {len(last.params)} params, {len(last.tags)} tags, {len(last.metrics)} metrics"
        )
    return result


# -- 5. import time -------------------------------------------------------------------------------

IMPORT_SNIPPET = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_time(module: str, n: int, python: str = sys.executable, env: dict[str, str] | None = None) -> Result:
    """Median in-process import time of ``module`` over ``n`` fresh interpreters (after one warm-up)."""
    samples = []
    for i in range(n + 1):
        out = subprocess.run([python, "-c", IMPORT_SNIPPET.format(module=module)], capture_output=True, text=True,
                             check=True, timeout=120, env=env)
        if i:  # the first one writes the bytecode caches
            samples.append(float(out.stdout.strip().splitlines()[-1]))
    return {"n": n, "import_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3,
            "max_ms": max(samples) * 1e3}


def import_(directory: str, n: int, **_: Any) -> Result:
    return import_time("labtrack", n, env=_child_env(directory))


# -- 6. concurrency -------------------------------------------------------------------------------


def wait_for_go(barrier: str) -> None:
    """Say "ready", then wait until every sibling is ready and the parent says "go"."""
    Path(barrier, f"ready-{os.getpid()}").touch()
    go = Path(barrier, "go")
    deadline = time.time() + _CHILD_TIMEOUT
    while not go.exists() and time.time() < deadline:
        time.sleep(0.002)


def release(barrier: str, children: list[subprocess.Popen[str]], timeout: float = 120.0) -> None:
    """Say "go" once every child is ready (or has exited, or ``timeout`` passed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready = len(list(Path(barrier).glob("ready-*")))
        if ready + sum(c.poll() is not None for c in children) >= len(children):
            break
        time.sleep(0.01)
    Path(barrier, "go").touch()


def concurrency_child(directory: str, store: str, n: int, barrier: str, **_: Any) -> Result:
    import labtrack as lt

    lt.set_store(store)
    lt.list_experiments()  # open the store (imports SQLAlchemy, ~0.2 s of CPU) before the race starts
    wait_for_go(barrier)
    t0 = time.time()
    run = lt.start_run("bench", params={"pid": os.getpid()})
    t1 = time.time()
    for i in range(n):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
    t2 = time.time()
    run.end()
    t3 = time.time()
    return {"run_id": run.id, "start": t0, "end": t3, "start_run_s": t1 - t0, "loop_s": t2 - t1, "end_s": t3 - t2}


def _concurrent(directory: str, store: str, procs: int, n: int) -> Result:
    barrier = tempfile.mkdtemp(prefix="barrier-", dir=directory)  # every child imported and waiting: all start at once
    children = [
        _spawn_child("concurrency_child", directory, {"store": store, "n": n, "barrier": barrier})
        for _ in range(procs)
    ]
    release(barrier, children)
    errors, outputs, messages = 0, [], []
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=_CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
            stderr += "\n(timed out)"
        if child.returncode != 0 or not stdout.strip():
            errors += 1
            messages.append(stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {child.returncode}")
            continue
        if "Error" in stderr or "Warning" in stderr:  # warnings reach the user too (e.g. a retried write)
            errors += 1
            messages.append(next(line for line in stderr.splitlines() if "Error" in line or "Warning" in line))
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    import labtrack as lt

    stored = 0
    for run in lt.search_runs("bench", store=store):
        summary = run.metric_summaries.get("loss")
        stored += summary.count if summary else 0
        if run.status is not lt.RunStatus.FINISHED:
            messages.append(f"run {run.id[:8]} is {run.status.value}")
    wall = max(o["end"] for o in outputs) - min(o["start"] for o in outputs) if outputs else float("nan")
    slowest = {k: max((o[k] for o in outputs), default=float("nan")) for k in ("start_run_s", "loop_s", "end_s")}
    return {"errors": errors, "lost": procs * n - stored, "wall_s": wall, "pts_s": stored / wall,
            "messages": messages, **{f"slowest_{k}": v for k, v in slowest.items()}}


def concurrency(directory: str, procs: int, n: int, cold_n: int, **_: Any) -> Result:
    import labtrack as lt

    warm_store = _store(directory, "warm")
    lt.set_store(warm_store)
    with lt.start_run("init"):  # the store exists before the children start
        pass
    warm = _concurrent(directory, warm_store, procs, n)
    cold = _concurrent(directory, os.path.join(directory, "cold"), procs, cold_n)
    result: Result = {"n": f"{procs}×{n:,}", "cold_n": f"{procs}×{cold_n:,}", "procs": procs, **warm,
                      "cold_errors": cold["errors"] + (1 if cold["lost"] else 0), "cold_lost": cold["lost"]}
    problems = [f"warm store: {m}" for m in warm.pop("messages")] + [f"new store: {m}" for m in cold["messages"]]
    if cold["lost"]:
        problems.append(f"new store: {cold['lost']} points lost")
    result.pop("messages", None)
    if problems:
        result["problems"] = sorted(set(problems))
    return result


# -- plumbing -------------------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[..., Result]] = {
    "log_metric": log_metric,
    "batch": batch,
    "memory": memory,
    "runs": runs,
    "import": import_,
    "concurrency": concurrency,
    # internal: run in child processes by the workloads above
    "memory_child": memory_child,
    "concurrency_child": concurrency_child,
}


def _child_env(directory: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LABTRACK_STORE"}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spawn_child(name: str, directory: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.workloads_labtrack", name, "--dir", directory, "--args", json.dumps(args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=directory,
                            env=_child_env(directory))


def _run_child(name: str, directory: str, args: dict[str, Any]) -> Result:
    child = _spawn_child(name, directory, args)
    stdout, stderr = child.communicate(timeout=_CHILD_TIMEOUT)
    if child.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {child.returncode}): {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--dir", required=True, help="a fresh directory for this workload's stores")
    parser.add_argument("--args", default="{}", help="JSON object of size arguments")
    options = parser.parse_args(argv)
    os.chdir(options.dir)  # no labtrack.toml / pyproject.toml of the caller is picked up
    result = WORKLOADS[options.workload](options.dir, **json.loads(options.args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
