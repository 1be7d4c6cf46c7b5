"""The MLflow side of the tracking-server workloads: ``mlflow server --backend-store-uri postgresql+psycopg2://…``
on the benchmark's PostgreSQL (a database of its own), clients in other processes over real HTTP on 127.0.0.1.

A standalone script (stdlib + mlflow only) run by the MLflow virtualenv's python, with the server's
dependencies (``bench.mlflow_env.SERVER_EXTRAS``) and psycopg2 on its ``PYTHONPATH``:

    .bench/mlflow-venv/bin/python bench/workloads_mlflow_server.py NAME --dir TMPDIR --args '{"pg": …}'

It prints one JSON line of measurements, with the same keys as ``bench.workloads_server``. The server
runs as ``mlflow server`` starts it (uvicorn, ``--workers`` as the benchmark says: its default is 4), without
its job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: a pool of huey consumers for GenAI jobs that
the tracking API does not use). The database is migrated before any timing starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fixtures import CHILD_TIMEOUT, median_ms, release, synthetic_run, wait_for_go, workload_main  # (its folder)
from serving import MemoryWatch, ServerProcess, collect, free_port, on_parent_death, stop_all, summarise_errors
from workloads_mlflow import SEARCH_FILTER, SyntheticStore, _pg_database, _setup

Result = dict[str, Any]

PARAMS = {f"param_{i}": i * 0.1 for i in range(10)}
TAGS = {f"tag_{i}": f"value {i}" for i in range(3)}
METRICS = {f"metric_{i}": i * 0.5 for i in range(5)}
BATCH = 1000  # MLflow's limit of metrics per log_batch call


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def _server(directory: str, backend: str, workers: int) -> ServerProcess:
    """``mlflow server`` for the database ``backend`` on a free loopback port (not started yet)."""
    port = free_port()
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    command = [mlflow_cli, "server", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--artifacts-destination", os.path.join(directory, "mlartifacts")]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return ServerProcess(command, port=port, log=os.path.join(directory, "server.log"), env=env, cwd=directory,
                         ready_path="/health")


@contextmanager
def _elsewhere() -> Iterator[str]:
    """An empty directory outside any git repository for the clients (as on labtrack's side)."""
    path = tempfile.mkdtemp(prefix="mlflow-bench-clients-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _clients(name: str, directory: str, procs: int, args: Result) -> tuple[list[Result], list[str], int]:
    """``procs`` children of this script started together; their outputs, error messages (their own and
    the requests that failed in them) and number of failures. None is left running."""
    barrier = tempfile.mkdtemp(prefix="barrier-", dir=directory)
    command = [sys.executable, os.path.abspath(__file__), name, "--dir", directory, "--args",
               json.dumps({**args, "barrier": barrier})]
    children: list[subprocess.Popen[str]] = []
    try:
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=directory,
                                     preexec_fn=on_parent_death(signal.SIGKILL)) for _ in range(procs)]
        release(barrier, children)
        outputs, messages, failed = collect(children, CHILD_TIMEOUT, json.loads, warnings_count=False)
    finally:
        stop_all(children)
    for output in outputs:
        failed += len(output["errors"])
        messages += output["errors"]
    return outputs, messages, failed


def _scalar(url: str, sql: str) -> Any:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql).scalar()
    finally:
        engine.dispose()


# -- 1. ingestion: many clients logging metrics through one server --------------------------------


def server_ingest_child(directory: str, url: str, n: int, barrier: str, **_: Any) -> Result:
    """``n`` points of one metric into a new run with ``MlflowClient.log_batch``, 1000 a call."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=url)
    errors: list[str] = []
    experiment_id = client.get_experiment_by_name("bench").experiment_id  # connected before the race
    now = int(time.time() * 1000)
    metrics = [Metric("loss", 1.0 / (i + 1), now, i) for i in range(n)]
    wait_for_go(barrier)
    t0 = time.time()
    run_id = None
    try:
        run_id = client.create_run(experiment_id).info.run_id
        for start in range(0, n, BATCH):
            try:
                client.log_batch(run_id, metrics=metrics[start : start + BATCH])
            except Exception as exc:
                errors.append(_error(exc))
        client.set_terminated(run_id)
    except Exception as exc:
        errors.append(_error(exc))
    return {"run_id": run_id, "start": t0, "end": time.time(), "errors": errors}


def _per_call(url: str, n: int) -> Result:
    """``mlflow.log_metric`` per call, the tracking URI the server (each call is a request)."""
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("per-call")
    with mlflow.start_run():
        mlflow.log_metric("warm", 0.0, step=0)
    run = mlflow.start_run()
    t0 = time.perf_counter()
    for i in range(n):
        mlflow.log_metric("loss", float(i % 997) / 997.0, step=i)
    t1 = time.perf_counter()
    mlflow.end_run()
    from mlflow.tracking import MlflowClient

    stored = len(MlflowClient().get_metric_history(run.info.run_id, "loss"))
    return {"per_call_us": (t1 - t0) / n * 1e6, "per_call_lost": n - stored, "per_call_n": n}


def server_ingest(directory: str, pg: str, procs: int, n: int, workers: int, starts: int, per_call_n: int,
                  **_: Any) -> Result:
    url = _pg_database(pg, "mlflow_server_ingest")
    _setup(directory, url=url)  # migrations, the experiment
    result: Result = {"n": f"{procs}×{n:,}", "procs": procs, "workers": workers}
    problems: list[str] = []
    startups = []
    for _ in range(starts):
        with _server(directory, url, workers) as server:
            startups.append(server.start())
    result.update(startup_s=statistics.median(startups), startup_max_s=max(startups),
                  startup_n=f"median of {starts}, {workers} worker{'s' * (workers > 1)}")
    with _server(directory, url, workers) as server, _elsewhere() as elsewhere:
        server.start()
        with MemoryWatch(server) as memory:
            outputs, messages, failed = _clients("server_ingest_child", elsewhere, procs, {"url": server.url, "n": n})
        result.update(memory.result())
        ids = [o["run_id"] for o in outputs if o["run_id"]]
        stored = _scalar(url, "SELECT count(*) FROM metrics WHERE key = 'loss' AND run_uuid IN ({})".format(
            ", ".join(f"'{i}'" for i in ids))) if ids else 0
        wall = max(o["end"] for o in outputs) - min(o["start"] for o in outputs) if outputs else float("nan")
        result.update(errors=failed, lost=max(0, procs * n - stored), stored=stored, wall_s=wall, pts_s=stored / wall)
        if stored > procs * n:
            problems.append(f"{stored - procs * n} points stored twice (requests retried by the client)")
        problems += summarise_errors(messages)
        result.update(_per_call(server.url, per_call_n))
    if problems:
        result["problems"] = problems
    return result


# -- 2. run creation through the server -----------------------------------------------------------


def server_runs_child(directory: str, url: str, n: int, barrier: str, **_: Any) -> Result:
    """``n`` runs with 10 params, 3 tags, 5 metrics (as the ``runs`` workload's MLflow side)."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench")
    with mlflow.start_run():  # connected, the experiment known, before the race
        mlflow.log_params(PARAMS)
    errors: list[str] = []
    wait_for_go(barrier)
    t0 = time.time()
    for _ in range(n):
        try:
            with mlflow.start_run():
                mlflow.log_params(PARAMS)
                mlflow.set_tags(TAGS)
                mlflow.log_metrics(METRICS)
        except Exception as exc:
            errors.append(_error(exc))
    return {"start": t0, "end": time.time(), "errors": errors}


def server_runs(directory: str, pg: str, procs: int, n: int, workers: int, **_: Any) -> Result:
    url = _pg_database(pg, "mlflow_server_runs")
    _setup(directory, url=url)
    result: Result = {"n": f"{procs}×{n:,}", "procs": procs, "workers": workers}
    with _server(directory, url, workers) as server, _elsewhere() as elsewhere:
        server.start()
        outputs, messages, failed = _clients("server_runs_child", elsewhere, procs, {"url": server.url, "n": n})
    wall = max(o["end"] for o in outputs) - min(o["start"] for o in outputs) if outputs else float("nan")
    stored = _scalar(url, "SELECT count(*) FROM runs WHERE status = 'FINISHED'") - procs
    result.update(runs_s=procs * n / wall, wall_s=wall, errors=failed, stored=stored)
    problems = summarise_errors(messages)
    if stored != procs * n:
        problems.append(f"{stored} runs FINISHED in the store, expected {procs * n}")
    if problems:
        result["problems"] = problems
    return result


# -- 3. search and get_run through the server -----------------------------------------------------


def server_search(directory: str, pg: str, n: int, calls: int, workers: int, **_: Any) -> Result:
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    url = _pg_database(pg, "mlflow_server_search")
    store = SyntheticStore(directory, url)
    store.grow(n)
    result: Result = {"n": n, "cmp_n": n, "workers": workers, "build_s": store.build_s, "calls": calls}
    problems: list[str] = []
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        picks = conn.exec_driver_sql(f"SELECT run_uuid, name FROM runs ORDER BY random() LIMIT {calls + 1}").fetchall()
    engine.dispose()
    matching = sorted((m["acc"] for p, t, m in map(synthetic_run, range(n))
                       if m["acc"] > 0.9 and p["lr"] == 0.01 and t["team"] == "cv"), reverse=True)
    with _server(directory, url, workers) as server:
        server.start()
        client = MlflowClient(tracking_uri=server.url)
        experiment = [str(store.experiment_id)]

        def query() -> list[float]:
            found = client.search_runs(experiment, filter_string=SEARCH_FILTER, order_by=["metrics.acc DESC"],
                                       max_results=100)
            return [r.data.metrics["acc"] for r in found]

        found = query()
        if found != matching[:100]:
            problems.append(f"the filter returned {len(found)} runs, not the top 100 of {len(matching)} by acc")
        result["filter_ms"] = median_ms(query, calls)
        result["matching"] = len(matching)

        client.get_run(picks[0][0])  # warm
        samples, wrong = [], 0
        for run_id, name in picks[1:]:
            t0 = time.perf_counter()
            run = client.get_run(run_id)
            samples.append(time.perf_counter() - t0)
            params, tags, metrics = synthetic_run(int(name.removeprefix("run-")))
            wrong += (run.data.params != {k: str(v) for k, v in params.items()} or run.data.metrics != metrics
                      or any(run.data.tags.get(k) != v for k, v in tags.items()))
        result["get_run_ms"] = statistics.median(samples) * 1e3
        if wrong:
            problems.append(f"get_run: {wrong} of {calls} runs differ from what was stored")
    if problems:
        result["problems"] = problems
    return result


WORKLOADS: dict[str, Callable[..., Result]] = {
    "server_ingest": server_ingest,
    "server_runs": server_runs,
    "server_search": server_search,
    # internal: the client processes of the workloads above
    "server_ingest_child": server_ingest_child,
    "server_runs_child": server_runs_child,
}


def main(argv: list[str] | None = None) -> None:
    workload_main(WORKLOADS, __doc__, argv)


if __name__ == "__main__":
    main()
