"""The MLflow side of each workload, with MLflow's SQLite backend (``sqlite:///DIR/mlflow.db``).

A standalone script (stdlib + mlflow only) run by the MLflow virtualenv's python:

    .bench/mlflow-venv/bin/python bench/workloads_mlflow.py NAME --dir TMPDIR --args '{"n": 500}'

It prints one JSON line of measurements, with the same keys as ``bench.workloads_labtrack``.
The database is created (MLflow's migrations) before any timing starts.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from fixtures import (  # bench/fixtures.py: this script's folder is on sys.path
    CHILD_TIMEOUT,
    median_ms,
    release,
    small_git_repo,
    synthetic_run,
    wait_for_go,
    workload_main,
)

Result = dict[str, Any]


def _setup(directory: str, name: str = "mlflow.db", url: str | None = None) -> Any:
    """MLflow on ``url`` (default: a SQLite file in ``directory``), its database created (migrations run)."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(url or f"sqlite:///{os.path.join(directory, name)}")
    mlflow.set_experiment("bench")
    return mlflow


def _pg_database(server: str, name: str) -> str:
    """A new database ``name`` on the benchmark's PostgreSQL server (``host:port``); MLflow's URL for it.

    The driver is named: SQLAlchemy 2.1 made psycopg (3) the default for ``postgresql://``, MLflow's
    documented driver is psycopg2."""
    import sqlalchemy

    admin = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"postgresql+psycopg2://postgres@{server}/{name}"


def _count(run_id: str, keys: list[str]) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return sum(len(client.get_metric_history(run_id, key)) for key in keys)


def log_metric(directory: str, n: int, param_n: int, **_: Any) -> Result:
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
    result: Result = {"n": n, "per_call_us": (t1 - t0) / n * 1e6, "end_s": t2 - t1, "stored": stored,
                      "lost": n - stored, "param_n": param_n}

    keys = [f"param_{i:06d}" for i in range(param_n)]
    run = mlflow.start_run()
    t0 = time.perf_counter()
    for i in range(param_n):
        mlflow.log_param(keys[i], i * 0.001)
    t1 = time.perf_counter()
    for i in range(param_n):
        mlflow.set_tag(keys[i], f"value {i}")
    t2 = time.perf_counter()
    mlflow.end_run()
    result["param_per_call_us"] = (t1 - t0) / param_n * 1e6
    result["tag_per_call_us"] = (t2 - t1) / param_n * 1e6
    return result


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


def small_batches(directory: str, calls: int, keys: int, points: int, segments: int = 10, **_: Any) -> Result:
    """client.log_batch with ``points`` Metric objects of one key per call, the keys in turn."""
    mlflow = _setup(directory)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    names = [f"metric_{k:03d}" for k in range(keys)]
    per_segment = calls // segments
    calls = per_segment * segments
    run = mlflow.start_run()
    run_id = run.info.run_id
    times = []
    t0 = last = time.perf_counter()
    for i in range(calls):
        k = i % keys
        first = (i // keys) * points
        now_ms = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(names[k], (k * points + j) * 0.001, now_ms, first + j)
                                          for j in range(points)])
        if (i + 1) % per_segment == 0:
            now = time.perf_counter()
            times.append((now - last) / per_segment * 1e6)
            last = now
    elapsed = last - t0
    mlflow.end_run()
    stored = _count(run_id, names)
    return {"n": calls, "per_call_us": elapsed / calls * 1e6, "first_us": times[0], "last_us": times[-1],
            "ratio": times[-1] / times[0], "segments_us": times, "lost": calls * points - stored,
            "pts_s": calls * points / elapsed}


def runs(directory: str, n: int, pg: str | None = None, **_: Any) -> Result:
    mlflow = _setup(directory, url=_pg_database(pg, "mlflow_runs") if pg else None)
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
    wait_for_go(barrier)  # ready: wait until every sibling is, then start together
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
    release(barrier, children)
    errors, messages, outputs = 0, [], []
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT)
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


# -- environment capture: what start_run records about where it runs (MLflow has no package capture) ----

ENV_SCRIPT = '''\
import json, statistics, sys, time
t0 = time.perf_counter()
import mlflow
from mlflow.tracking.context.registry import resolve_tags
t1 = time.perf_counter()
tags = resolve_tags()
t2 = time.perf_counter()
samples = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    resolve_tags()
    samples.append(time.perf_counter() - start)
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3,
                  "repeat_ms": statistics.median(samples) * 1e3, "tags": sorted(tags)}))
'''

def env(directory: str, n: int, repeats: int, **_: Any) -> Result:
    repo = small_git_repo(directory, ENV_SCRIPT)
    samples = []
    for _ in range(n + 1):  # the first one writes the bytecode caches
        out = subprocess.run([sys.executable, "train.py", str(repeats)], cwd=repo, capture_output=True, text=True,
                             check=True, timeout=CHILD_TIMEOUT)
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    samples = samples[1:]
    result: Result = {
        "n": n, "size": f"{len(samples[-1]['tags'])} tags incl. git commit, no packages; {n} processes",
        "repeat_n": f"median of {repeats} × {n} processes",
        "first_ms": statistics.median(s["first_ms"] for s in samples),
        "repeat_ms": statistics.median(s["repeat_ms"] for s in samples),
        "import_ms": statistics.median(s["import_ms"] for s in samples),
    }
    if "mlflow.source.git.commit" not in samples[-1]["tags"]:
        result["problems"] = ["resolve_tags() did not record the git commit"]
    return result


# -- exists and search over many runs --------------------------------------------------------------

SEARCH_FILTER = "metrics.acc > 0.9 and params.lr = '0.01' and tags.team = 'cv'"
SEARCH_FILTER_2 = "metrics.acc > 0.9 and params.lr = '0.01'"  # search_pg's target row


_TABLES = {  # MLflow's tables and the columns written (the rest keep their defaults)
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status", "start_time",
             "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id"),
    "params": ("key", "value", "run_uuid"),
    "tags": ("key", "value", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}


class SyntheticStore:
    """An MLflow store filled with FINISHED runs by bulk inserts into its tables (``log_batch`` for each of
    100k runs would take hours): what ``start_run`` + ``log_params`` + ``set_tags`` + ``log_metrics`` (one
    point per metric) + ``end_run`` write, params as the strings MLflow stores. SQLite in ``directory``, or the
    PostgreSQL database ``url`` (rows by ``execute_values``, then ``ANALYZE``, as on the labtrack side)."""

    def __init__(self, directory: str, url: str | None = None) -> None:
        import sqlalchemy

        mlflow = _setup(directory, url=url)
        self.experiment_id = int(mlflow.get_experiment_by_name("bench").experiment_id)
        self.artifacts = os.path.join(directory, "mlruns", str(self.experiment_id))
        self.postgres = url is not None
        self.engine = sqlalchemy.create_engine(url or f"sqlite:///{os.path.join(directory, 'mlflow.db')}")
        self.ids = random.Random(20261123)
        self.n = 0
        self.build_s = 0.0

    def grow(self, total: int, batch: int = 25_000) -> None:
        t0 = time.perf_counter()
        base_ms = 1_700_000_000_000
        while self.n < total:
            rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _TABLES}
            for i in range(self.n, min(total, self.n + batch)):
                p, t, m = synthetic_run(i)
                run_id = f"{self.ids.getrandbits(128):032x}"
                start = base_ms + i * 30_000
                end = start + 600_000
                rows["runs"].append((run_id, f"run-{i}", "LOCAL", "train.py", "", "bench", "FINISHED", start, end, "",
                                     "active", f"{self.artifacts}/{run_id}/artifacts", self.experiment_id))
                rows["params"] += [(k, str(v), run_id) for k, v in p.items()]
                rows["tags"] += [(k, v, run_id) for k, v in t.items()]
                rows["latest_metrics"] += [(k, v, end, 99, False, run_id) for k, v in m.items()]
                rows["metrics"] += [(k, v, end, 99, False, run_id) for k, v in m.items()]
            with self.engine.begin() as conn:
                if self.postgres:
                    from psycopg2.extras import execute_values

                    cursor = conn.connection.dbapi_connection.cursor()
                    for name, table_rows in rows.items():
                        execute_values(cursor, f"INSERT INTO {name} ({', '.join(_TABLES[name])}) VALUES %s",
                                       table_rows, page_size=5000)
                else:
                    conn.exec_driver_sql("PRAGMA synchronous=OFF")  # building the fixture, not measured
                    for name, table_rows in rows.items():
                        cols = _TABLES[name]
                        conn.exec_driver_sql(f"INSERT INTO {name} ({', '.join(cols)}) VALUES "
                                             f"({', '.join('?' * len(cols))})", table_rows)
            self.n += len(rows["runs"])
        if self.postgres:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        self.build_s += time.perf_counter() - t0


def exists(directory: str, sizes: list[int], calls: int, **_: Any) -> Result:
    """exists() the MLflow way: search_runs for a FINISHED run with every param of the configuration."""
    from mlflow.tracking import MlflowClient

    store = SyntheticStore(directory)
    client = MlflowClient()
    experiment = [str(store.experiment_id)]
    result: Result = {"problems": []}
    for label, size in zip(("small", "mid", "large"), sizes):
        store.grow(size)
        filters = []
        for i in random.Random(size).sample(range(size), calls):
            clauses = [f"params.{k} = '{v}'" for k, v in synthetic_run(i)[0].items()]
            filters.append(" and ".join([*clauses, "attributes.status = 'FINISHED'"]))
        client.search_runs(experiment, filter_string=filters[0], max_results=1)
        found = 0
        samples = []
        for f in filters:
            t0 = time.perf_counter()
            found += len(client.search_runs(experiment, filter_string=f, max_results=1))
            samples.append(time.perf_counter() - t0)
        if found != calls:
            result["problems"].append(f"{size:,} runs: search_runs found {found} of {calls} runs that exist")
        result[f"{label}_ms"] = statistics.median(samples) * 1e3
        result[f"{label}_n"] = size
    result.update(build_s=store.build_s, n=sizes[-1], calls=calls)
    if not result["problems"]:
        del result["problems"]
    return result


def search(directory: str, n: int, filter_calls: int, frame_calls: int = 0, pg: str | None = None,
           **_: Any) -> Result:
    import mlflow
    from mlflow.tracking import MlflowClient

    store = SyntheticStore(directory, _pg_database(pg, "mlflow_search") if pg else None)
    store.grow(n)
    client = MlflowClient()
    experiment = [str(store.experiment_id)]
    result: Result = {"n": n, "cmp_n": n, "build_s": store.build_s}
    problems = []
    for clauses, text in ((3, SEARCH_FILTER), (2, SEARCH_FILTER_2)):
        if clauses == 2 and not pg:
            continue
        matching = sorted((m["acc"] for p, t, m in map(synthetic_run, range(n))
                           if m["acc"] > 0.9 and p["lr"] == 0.01 and (clauses < 3 or t["team"] == "cv")),
                          reverse=True)

        def query(text: str = text) -> Any:
            return client.search_runs(experiment, filter_string=text, order_by=["metrics.acc DESC"],
                                      max_results=100)

        found = query()
        suffix = "" if clauses == 3 else str(clauses)
        result[f"filter{suffix}_ms"] = median_ms(query, filter_calls)
        result[f"matching{suffix}"] = len(matching)
        if [r.data.metrics["acc"] for r in found] != matching[:100]:
            problems.append(f"{clauses} clauses: the filter returned {len(found)} runs, not the top 100 of "
                            f"{len(matching)} by acc")
    frames = []
    try:
        for _ in range(frame_calls):
            t0 = time.perf_counter()
            frame = mlflow.search_runs(experiment_ids=experiment, max_results=n + 1)
            frames.append(time.perf_counter() - t0)
            if frame.shape[0] != n:
                problems.append(f"the DataFrame has {frame.shape[0]} rows, not {n}")
            del frame
    except ImportError as exc:  # pandas: see bench.mlflow_env.ensure_extras
        problems.append(f"mlflow.search_runs: {exc}")
    if frames:
        result["all_df_s"] = statistics.median(frames)
    if problems:
        result["problems"] = problems
    return result


WORKLOADS: dict[str, Callable[..., Result]] = {
    "log_metric": log_metric,
    "batch": batch,
    "runs": runs,
    "import": import_,
    "concurrency": concurrency,
    "env": env,
    "exists": exists,
    "search": search,
    "small_batches": small_batches,
    "runs_pg": runs,  # with the PostgreSQL server's address as ``pg``
    "search_pg": search,
    "concurrency_child": concurrency_child,
}


def main(argv: list[str] | None = None) -> None:
    workload_main(WORKLOADS, __doc__, argv)


if __name__ == "__main__":
    main()
