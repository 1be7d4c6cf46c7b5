"""The MLflow side of each workload, with MLflow's SQLite backend (``sqlite:///DIR/mlflow.db``).

A standalone script (stdlib + mlflow only) run by the MLflow virtualenv's python:

    .bench/mlflow-venv/bin/python bench/workloads_mlflow.py NAME --dir TMPDIR --args '{"n": 500}'

It prints one JSON line of measurements, with the same keys as ``bench.workloads_labtrack``.
The database is created (MLflow's migrations) before any timing starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def _setup(directory: str, name: str = "mlflow.db") -> Any:
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{os.path.join(directory, name)}")
    mlflow.set_experiment("bench")
    return mlflow


def _count(run_id: str, keys: list[str]) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return sum(len(client.get_metric_history(run_id, key)) for key in keys)


def log_metric(directory: str, n: int, **_: Any) -> Result:
    mlflow = _setup(directory)
    with mlflow.start_run():
        mlflow.log_metric("warm", 0.0, step=0)
    run = mlflow.start_run()
    t0 = time.perf_counter()
    for i in range(n):
        mlflow.log_metric("loss", float(i % 997) / 997.0, step=i)
    t1 = time.perf_counter()
    mlflow.end_run()
    t2 = time.perf_counter()
    stored = _count(run.info.run_id, ["loss"])
    return {"n": n, "per_call_us": (t1 - t0) / n * 1e6, "end_s": t2 - t1, "stored": stored, "lost": n - stored}


def batch(directory: str, keys: int, steps: int, metrics_steps: int, **_: Any) -> Result:
    mlflow = _setup(directory)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    names = [f"metric_{k:03d}" for k in range(keys)]
    points = keys * steps
    now = int(time.time() * 1000)
    metrics = [Metric(name, float(s) * 0.001, now, s) for name in names for s in range(steps)]
    result: Result = {"n": points, "lost": 0}

    run = mlflow.start_run()
    t0 = time.perf_counter()
    for start in range(0, len(metrics), 1000):  # MLflow's limit per log_batch call
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
    mlflow.end_run()
    result["batch_pts_s"] = points / (time.perf_counter() - t0)
    result["lost"] += points - _count(run.info.run_id, names)

    metrics_points = keys * metrics_steps
    result["log_metrics_n"] = metrics_points
    run = mlflow.start_run()
    t0 = time.perf_counter()
    for s in range(metrics_steps):
        mlflow.log_metrics({name: float(s) * 0.001 for name in names}, step=s)
    mlflow.end_run()
    result["log_metrics_pts_s"] = metrics_points / (time.perf_counter() - t0)
    result["lost"] += metrics_points - _count(run.info.run_id, names)
    return result


def runs(directory: str, n: int, **_: Any) -> Result:
    mlflow = _setup(directory)
    params = {f"param_{i}": i * 0.1 for i in range(10)}
    tags = {f"tag_{i}": f"value {i}" for i in range(3)}
    metrics = {f"metric_{i}": i * 0.5 for i in range(5)}
    with mlflow.start_run():
        mlflow.log_params(params)
    t0 = time.perf_counter()
    for _ in range(n):
        with mlflow.start_run():
            mlflow.log_params(params)
            mlflow.set_tags(tags)
            mlflow.log_metrics(metrics)
    elapsed = time.perf_counter() - t0
    return {"n": n, "runs_s": n / elapsed, "seconds": elapsed}


IMPORT_SNIPPET = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_(directory: str, n: int, **_: Any) -> Result:
    samples = []
    for i in range(n + 1):
        out = subprocess.run([sys.executable, "-c", IMPORT_SNIPPET.format(module="mlflow")], capture_output=True,
                             text=True, check=True, timeout=120)
        if i:
            samples.append(float(out.stdout.strip().splitlines()[-1]))
    return {"n": n, "import_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3,
            "max_ms": max(samples) * 1e3}


def concurrency_child(directory: str, n: int, barrier: str, **_: Any) -> Result:
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{os.path.join(directory, 'mlflow.db')}")
    errors: list[str] = []
    try:
        mlflow.set_experiment("bench")  # open the store before the race starts
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    Path(barrier, f"ready-{os.getpid()}").touch()  # ready: wait until every sibling is, then start together
    go, deadline = Path(barrier, "go"), time.time() + _CHILD_TIMEOUT
    while not go.exists() and time.time() < deadline:
        time.sleep(0.002)
    t0 = time.time()
    run_id = None
    try:
        run = mlflow.start_run()
        run_id = run.info.run_id
        for i in range(n):
            try:
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        mlflow.end_run()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return {"run_id": run_id, "start": t0, "end": time.time(), "errors": errors}


def concurrency(directory: str, procs: int, n: int, **_: Any) -> Result:
    _setup(directory)
    barrier = tempfile.mkdtemp(prefix="barrier-", dir=directory)
    command = [sys.executable, os.path.abspath(__file__), "concurrency_child", "--dir", directory, "--args"]
    children = [
        subprocess.Popen([*command, json.dumps({"n": n, "barrier": barrier})], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=directory)
        for _ in range(procs)
    ]
    deadline = time.time() + 120
    while time.time() < deadline:
        ready = len(list(Path(barrier).glob("ready-*")))
        if ready + sum(c.poll() is not None for c in children) >= procs:
            break
        time.sleep(0.01)
    Path(barrier, "go").touch()
    errors, messages, outputs = 0, [], []
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=_CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
        if child.returncode != 0 or not stdout.strip():
            errors += 1
            messages.append(stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {child.returncode}")
            continue
        output = json.loads(stdout.strip().splitlines()[-1])
        errors += len(output["errors"])
        messages.extend(output["errors"])
        outputs.append(output)
    stored = sum(_count(o["run_id"], ["loss"]) for o in outputs if o["run_id"])
    wall = max(o["end"] for o in outputs) - min(o["start"] for o in outputs) if outputs else float("nan")
    result: Result = {"n": f"{procs}×{n:,}", "procs": procs, "errors": errors, "lost": procs * n - stored,
                      "wall_s": wall, "pts_s": stored / wall}
    if messages:
        counts: dict[str, int] = {}
        for message in messages:
            counts[message] = counts.get(message, 0) + 1
        result["problems"] = [f"{count}× {message}" for message, count in sorted(counts.items())]
    return result


WORKLOADS: dict[str, Callable[..., Result]] = {
    "log_metric": log_metric,
    "batch": batch,
    "runs": runs,
    "import": import_,
    "concurrency": concurrency,
    "concurrency_child": concurrency_child,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--args", default="{}")
    options = parser.parse_args()
    os.chdir(options.dir)  # MLflow's default artifact root (./mlruns) lands in the temporary directory
    result = WORKLOADS[options.workload](options.dir, **json.loads(options.args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
