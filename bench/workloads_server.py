"""The labtrack side of the tracking-server workloads: `labtrack server` on the benchmark's PostgreSQL (a
database of its own), clients in other processes pointing ``LABTRACK_STORE`` at it over real HTTP on
127.0.0.1 with an admin token (``LABTRACK_TOKEN``), as a team runs it.

- ``server_ingest``: spawn-to-``/ready`` of the server (a few fresh starts); then ``procs`` client processes
  logging ``n`` points each with ``run.log_metric`` at once (total points/s until every client's
  ``run.end()`` + ``run.flush()`` returned, i.e. the server stored everything), the server's memory meanwhile;
  then ``run.log_metric`` per call in one process whose store is the server.
- ``server_runs``: ``procs`` client processes creating runs through the server at once (10 params, 3 tags,
  5 metrics, end; each loop ends with ``lt.flush()``).
- ``server_search``: a store of ``n`` runs built by bulk inserts (``bench.synthetic``), served; the filter
  query of ``search`` and ``get_run`` through the server, first at MLflow's store size.

Every server and client process is stopped when its workload ends, failed or not. Run by
``bench.workloads_labtrack`` (the functions are in its ``WORKLOADS``); the MLflow side is
``bench/workloads_mlflow_server.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.children import child_env, spawn_child
from bench.fixtures import CHILD_TIMEOUT, median_ms, release, store_dir, synthetic_run, time_log_metric, wait_for_go
from bench.serving import (
    MemoryWatch,
    ServerProcess,
    collect,
    free_port,
    http_get,
    on_parent_death,
    stop_all,
    summarise_errors,
)
from bench.synthetic import EXPERIMENT, SyntheticStore

__all__ = ["server_ingest", "server_ingest_child", "server_runs", "server_runs_child", "server_search"]

Result = dict[str, Any]

# What a run of `server_runs` holds (as `runs` and `runs_pg`).
PARAMS = {f"param_{i}": i * 0.1 for i in range(10)}
TAGS = {f"tag_{i}": f"value {i}" for i in range(3)}
METRICS = {f"metric_{i}": i * 0.5 for i in range(5)}
SEARCH_FILTER = "metrics.acc > 0.9 and params.lr = 0.01 and tags.team = 'cv'"  # `search`'s, ~2.5% of runs


# -- the server -----------------------------------------------------------------------------------


def _database(pg: str, name: str) -> str:
    """A new database ``name`` on the benchmark's PostgreSQL server (``host:port``); its store URL."""
    from sqlalchemy import create_engine

    admin = create_engine(f"postgresql+psycopg://postgres@{pg}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"postgresql+psycopg://postgres@{pg}/{name}"


def _admin_token(url: str, artifacts: str) -> str:
    """An admin token on the store at ``url`` (opening it creates the schema, as `labtrack server` would)."""
    from labtrack.core.tokens import Role
    from labtrack.store import open_store

    store = open_store(url, artifacts=artifacts)
    try:
        return store.create_token("bench", Role.ADMIN)[0]
    finally:
        store.close()


def _server(directory: str, url: str, workers: int, artifacts: str) -> ServerProcess:
    """`labtrack server` for the store ``url`` on a free loopback port (not started yet)."""
    port = free_port()
    command = [sys.executable, "-m", "labtrack", "server", "--store", url, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--artifacts", artifacts]
    env = {k: v for k, v in child_env().items() if k not in _CLIENT_ONLY}
    return ServerProcess(command, port=port, log=os.path.join(directory, "server.log"), env=env, cwd=directory)


@contextmanager
def _served(directory: str, pg: str, name: str, workers: int) -> Iterator[tuple[ServerProcess, str, str]]:
    """A new database served by a started `labtrack server`: (server, token, store URL); stopped at the end."""
    url = _database(pg, name)
    artifacts = store_dir(directory, "artifacts")
    token = _admin_token(url, artifacts)
    server = _server(directory, url, workers, artifacts)
    try:
        server.start()
        yield server, token, url
    finally:
        server.stop()


_CLIENT_ONLY = ("LABTRACK_TOKEN", "LABTRACK_SPOOL_DIR")  # what this process sets for itself as a client


def _client_env(directory: str, server: ServerProcess, token: str) -> dict[str, str]:
    return {"LABTRACK_STORE": server.url, "LABTRACK_TOKEN": token,
            "LABTRACK_SPOOL_DIR": os.path.join(directory, "spools")}


def _use_server(directory: str, server: ServerProcess, token: str) -> None:
    """Point this process's labtrack at the server (as a client's environment would)."""
    import labtrack as lt

    os.environ.update(_client_env(directory, server, token))
    lt.set_store(server.url)


def _server_errors(server: ServerProcess) -> list[str]:
    """Requests the server failed on (it logs each with a traceback), from its log."""
    try:
        with open(server.log, errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return [line.strip()[:300] for line in text.splitlines()
            if (line.startswith("labtrack server: ") and line.rstrip().endswith(" failed"))
            or "Exception in ASGI application" in line]


def _server_counters(server: ServerProcess, token: str) -> dict[str, float]:
    """Counters of ``/metrics`` (the worker that answers: all of them with one worker)."""
    status, body = http_get(server.url + "/metrics", {"Authorization": f"Bearer {token}"})
    if status != 200:
        return {}
    counters: dict[str, float] = {}
    for line in body.decode().splitlines():
        found = re.match(r'labtrack_requests_total\{.*status="(\d+)"\} (\S+)', line)
        if found:
            key = f"status_{found.group(1)}"
            counters[key] = counters.get(key, 0) + float(found.group(2))
        elif line.startswith(("labtrack_points_ingested_total", "labtrack_requests_refused_busy_total")):
            name, value = line.split()
            counters[name] = float(value)
    return counters


@contextmanager
def _elsewhere() -> Iterator[str]:
    """An empty directory outside any git repository (the workload's is inside this checkout) for clients to
    work in: each run's code version is then its entry script's hash, as a small project's would be."""
    path = tempfile.mkdtemp(prefix="labtrack-bench-clients-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _clients(name: str, directory: str, env: dict[str, str], procs: int, args: Result) -> tuple[list[Result], list[str],
                                                                                              int]:
    """``procs`` children ``name`` started together (each imported and connected before "go"); their outputs,
    error messages and number of failures. None is left running, whatever happens."""
    barrier = tempfile.mkdtemp(prefix="barrier-", dir=directory)
    children = []
    try:
        children = [spawn_child(name, directory, {**args, "barrier": barrier}, env=env,
                                preexec_fn=on_parent_death(signal.SIGKILL)) for _ in range(procs)]
        release(barrier, children)
        return collect(children, CHILD_TIMEOUT, json.loads)
    finally:
        stop_all(children)


# -- 1. ingestion: many clients logging metrics through one server --------------------------------


def server_ingest_child(directory: str, n: int, barrier: str, **_: Any) -> Result:
    import labtrack as lt

    lt.list_experiments()  # connect (and import httpx) before the race starts
    wait_for_go(barrier)
    t0 = time.time()
    run = lt.start_run("ingest", params={"pid": os.getpid()})
    log = run.log_metric
    for i in range(n):
        log("loss", 1.0 / (i + 1), step=i)
    t1 = time.time()
    run.end()
    run.flush()  # the server has every point
    t2 = time.time()
    return {"run_id": run.id, "start": t0, "end": t2, "loop_s": t1 - t0, "flush_s": t2 - t1}


def _per_call(directory: str, server: ServerProcess, token: str, n: int) -> Result:
    """``run.log_metric`` per call in this process, its store the server; then until the server has them."""
    import labtrack as lt

    _use_server(directory, server, token)
    run, loop_s, end_s = time_log_metric(lt.start_run, "per-call", n)
    stored = len(lt.get_run(run.id).history("loss"))
    return {"per_call_us": loop_s / n * 1e6, "per_call_end_s": end_s, "per_call_lost": n - stored,
            "per_call_n": n}


def server_ingest(directory: str, pg: str, procs: int, n: int, workers: int, starts: int, per_call_n: int,
                  **_: Any) -> Result:
    import labtrack as lt

    url = _database(pg, "labtrack_server_ingest")
    artifacts = store_dir(directory, "artifacts")
    token = _admin_token(url, artifacts)
    result: Result = {"n": f"{procs}×{n:,}", "procs": procs, "workers": workers}
    problems: list[str] = []

    startups = []  # fresh processes on an existing store, as a restart finds it
    for _ in range(starts):
        with _server(directory, url, workers, artifacts) as server:
            startups.append(server.start())
    result.update(startup_s=statistics.median(startups), startup_max_s=max(startups),
                  startup_n=f"median of {starts}, {workers} worker{'s' * (workers > 1)}")

    with _server(directory, url, workers, artifacts) as server, _elsewhere() as elsewhere:
        server.start()
        env = _client_env(directory, server, token)
        with MemoryWatch(server) as memory:
            outputs, messages, failed = _clients("server_ingest_child", elsewhere, env, procs, {"n": n})
        result.update(memory.result())
        counters = _server_counters(server, token)
        _use_server(directory, server, token)
        stored = 0
        for run in lt.search_runs("ingest"):
            summary = run.metric_summaries.get("loss")
            stored += summary.count if summary else 0
            if run.status is not lt.RunStatus.FINISHED:
                messages.append(f"run {run.id[:8]} is {run.status.value}")
                failed += 1
        wall = max(o["end"] for o in outputs) - min(o["start"] for o in outputs) if outputs else float("nan")
        server_failed = _server_errors(server)
        result.update(errors=failed + len(server_failed), lost=max(0, procs * n - stored), stored=stored, wall_s=wall,
                      pts_s=stored / wall, slowest_loop_s=max((o["loop_s"] for o in outputs), default=float("nan")),
                      slowest_flush_s=max((o["flush_s"] for o in outputs), default=float("nan")),
                      server_counters=counters)
        if stored > procs * n:
            problems.append(f"{stored - procs * n} points more than were logged (stored twice?)")
        busy = counters.get("labtrack_requests_refused_busy_total", 0)
        if busy:
            problems.append(f"the server refused {busy:.0f} requests as busy (503, retried by the clients)")
        problems += summarise_errors(messages) + [f"server: {line}" for line in summarise_errors(server_failed)]

        result.update(_per_call(directory, server, token, per_call_n))
        if result["per_call_lost"]:
            problems.append(f"one process: {result['per_call_lost']} of {per_call_n} points not stored")
    if problems:
        result["problems"] = problems
    return result


# -- 2. run creation through the server -----------------------------------------------------------


def server_runs_child(directory: str, n: int, barrier: str, **_: Any) -> Result:
    import labtrack as lt

    with lt.start_run("bench", params=PARAMS, tags=TAGS) as warm:  # connects, stores the environment once
        warm.log_metrics(METRICS)
    lt.flush()
    wait_for_go(barrier)
    t0 = time.time()
    for _ in range(n):
        with lt.start_run("bench", params=PARAMS, tags=TAGS) as run:
            run.log_metrics(METRICS)
    lt.flush()  # the server has every run
    return {"start": t0, "end": time.time()}


def server_runs(directory: str, pg: str, procs: int, n: int, workers: int, **_: Any) -> Result:
    import labtrack as lt

    result: Result = {"n": f"{procs}×{n:,}", "procs": procs, "workers": workers}
    problems: list[str] = []
    with _served(directory, pg, "labtrack_server_runs", workers) as (server, token, _), _elsewhere() as elsewhere:
        env = _client_env(directory, server, token)
        outputs, messages, failed = _clients("server_runs_child", elsewhere, env, procs, {"n": n})
        wall = max(o["end"] for o in outputs) - min(o["start"] for o in outputs) if outputs else float("nan")
        _use_server(directory, server, token)
        found = lt.search_runs("bench")
        expected = procs * (n + 1)
        if len(found) != expected:
            problems.append(f"{len(found)} runs in the store, expected {expected}")
        last = found[0] if len(found) else None
        if last is not None and (last.params != PARAMS or last.metrics != METRICS
                                 or any(last.tags.get(k) != v for k, v in TAGS.items())):
            problems.append(f"last run has {len(last.params)} params, {len(last.tags)} tags, {len(last.metrics)} "
                            "metrics")
        server_failed = _server_errors(server)
        result.update(runs_s=procs * n / wall, wall_s=wall, errors=failed + len(server_failed),
                      stored=len(found) - procs)
        problems += summarise_errors(messages) + [f"server: {line}" for line in summarise_errors(server_failed)]
    if problems:
        result["problems"] = problems
    return result


# -- 3. search and get_run through the server -----------------------------------------------------


def _search_at(size: int, calls: int, problems: list[str]) -> Result:
    """The filter query through the server, and with the 100 runs' metrics read (what a user looks at)."""
    import labtrack as lt

    matching = sorted((m["acc"] for p, t, m in map(synthetic_run, range(size))
                       if m["acc"] > 0.9 and p["lr"] == 0.01 and t["team"] == "cv"), reverse=True)

    def query() -> Any:
        return lt.search_runs(EXPERIMENT, filter=SEARCH_FILTER, order_by=["metrics.acc desc"], max_results=100)

    def query_read() -> list[float]:
        return [r.metrics["acc"] for r in query()]

    found = query_read()
    if found != matching[:100]:
        problems.append(f"{size:,} runs: the filter returned {len(found)} runs, not the top {min(100, len(matching))} "
                        f"of {len(matching)} matching runs by acc")
    return {"filter_ms": median_ms(query_read, calls), "filter_ids_ms": median_ms(query, calls),
            "matching": len(matching)}


def _get_run_at(store: SyntheticStore, calls: int, problems: list[str]) -> Result:
    """``lt.get_run`` of random runs through the server, each checked against what was stored."""
    import labtrack as lt

    with store.engine.connect() as conn:
        picks = conn.exec_driver_sql(f"SELECT id, name FROM runs ORDER BY random() LIMIT {calls + 1}").fetchall()
    lt.get_run(picks[0][0])  # warm
    samples, wrong = [], 0
    for run_id, name in picks[1:]:
        t0 = time.perf_counter()
        run = lt.get_run(run_id)
        samples.append(time.perf_counter() - t0)
        params, tags, metrics = synthetic_run(int(name.removeprefix("run-")))
        wrong += run.params != params or run.tags != tags or run.metrics != metrics
    if wrong:
        problems.append(f"get_run: {wrong} of {calls} runs differ from what was stored")
    return {"get_run_ms": statistics.median(samples) * 1e3}


def server_search(directory: str, pg: str, n: int, compare_n: int, calls: int, workers: int, **_: Any) -> Result:
    problems: list[str] = []
    result: Result = {"n": n, "cmp_n": compare_n, "workers": workers}
    url = _database(pg, "labtrack_server_search")
    artifacts = store_dir(directory, "artifacts")
    os.environ["LABTRACK_ARTIFACTS"] = artifacts  # the fixture's own client: no warning about local artifacts
    with _elsewhere() as elsewhere:
        here = os.getcwd()
        os.chdir(elsewhere)
        try:
            store = SyntheticStore(url)
        finally:
            os.chdir(here)
    token = _admin_token(url, artifacts)
    with _server(directory, url, workers, artifacts) as server:
        server.start()
        _use_server(directory, server, token)
        for size, prefix in ((compare_n, "cmp_"), (n, "")):  # first at the size of MLflow's store, side by side
            store.grow(size)
            measured = {**_search_at(size, calls, problems), **_get_run_at(store, calls, problems)}
            result.update({f"{prefix}{k}": v for k, v in measured.items()})
        server_failed = _server_errors(server)
    store.engine.dispose()
    result["build_s"] = store.build_s
    result["calls"] = calls
    problems += [f"server: {line}" for line in summarise_errors(server_failed)]
    if problems:
        result["problems"] = problems
    return result
