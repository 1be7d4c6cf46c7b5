"""The labtrack side of each workload.

Run one workload in this (fresh) process and print its measurements as one JSON line:

    python -m bench.workloads_labtrack NAME --dir TMPDIR --args '{"n": 200000}'

Every function gets a fresh directory to put stores in and the size arguments from ``bench.spec``;
it returns a flat dict of numbers (plus ``n``-style sizes and an optional ``problems`` list).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from bench.children import child_env, run_child, spawn_child
from bench.faults import kill, kill_child, kill_count, outage
from bench.fixtures import (
    CHILD_TIMEOUT,
    median_ms,
    release,
    small_git_repo,
    store_dir,
    synthetic_run,
    time_log_metric,
    wait_for_go,
    workload_main,
)
from bench.memory import history_child, memory, memory_child
from bench.synthetic import EXPERIMENT, SyntheticStore
from bench.workloads_server import server_ingest, server_ingest_child, server_runs, server_runs_child, server_search

Result = dict[str, Any]



def _stored_points(run: Any, keys: list[str]) -> int:
    return sum(len(run.history(key)) for key in keys)


# -- 1. log_metric --------------------------------------------------------------------------------


def log_metric(directory: str, n: int, param_n: int, **_: Any) -> Result:
    import labtrack as lt

    lt.set_store(store_dir(directory, "store"))
    result: Result = {"n": n, "param_n": param_n}
    run, loop_s, end_s = time_log_metric(lt.start_run, "bench", n)
    result["per_call_us"] = loop_s / n * 1e6
    result["end_s"] = end_s
    stored = len(lt.get_run(run.id).history("loss"))
    result["stored"] = stored
    result["lost"] = n - stored

    run = lt.start_run("bench")
    module_log = lt.log_metric
    values = [float(i % 997) / 997.0 for i in range(n)]
    t0 = time.perf_counter()
    for i in range(n):
        module_log("loss", values[i], step=i)
    t1 = time.perf_counter()
    run.end()
    result["module_per_call_us"] = (t1 - t0) / n * 1e6
    result["lost"] += n - len(lt.get_run(run.id).history("loss"))

    # Params are immutable: a new key each call (values as a config would have them); tags the same way.
    keys = [f"param_{i:06d}" for i in range(param_n)]
    param_values = [i * 0.001 for i in range(param_n)]
    tag_values = [f"value {i}" for i in range(param_n)]
    run = lt.start_run("bench")
    log_param, set_tag = run.log_param, run.set_tag
    t0 = time.perf_counter()
    for i in range(param_n):
        log_param(keys[i], param_values[i])
    t1 = time.perf_counter()
    for i in range(param_n):
        set_tag(keys[i], tag_values[i])
    t2 = time.perf_counter()
    run.end()
    result["param_per_call_us"] = (t1 - t0) / param_n * 1e6
    result["tag_per_call_us"] = (t2 - t1) / param_n * 1e6
    stored_run = lt.get_run(run.id)
    stored_params = sum(k in stored_run.params for k in keys)
    stored_tags = sum(k in stored_run.tags for k in keys)
    if stored_params != param_n or stored_tags != param_n:
        result["problems"] = [f"{stored_params} of {param_n} params and {stored_tags} of {param_n} tags stored"]
    return result


# -- 2. batch ingestion ---------------------------------------------------------------------------


def batch(directory: str, keys: int, steps: int, repeats: int, **_: Any) -> Result:
    import numpy as np

    import labtrack as lt

    lt.set_store(store_dir(directory, "store"))
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


# -- 2b. small batches: log_batch with 10 points per call -----------------------------------------

# The writer held off: nothing leaves the spool until the run's end, so the last calls find it holding
# every point logged before them.
_WRITER_HELD_OFF = {"LABTRACK_FLUSH_INTERVAL": "3600", "LABTRACK_FLUSH_POINTS": str(10**12)}


def small_batches_child(directory: str, calls: int, keys: int, points: int, segments: int, **_: Any) -> Result:
    """In this process: ``calls`` log_batch calls of ``points`` points, one key per call in turn; the
    per-call time of each of ``segments`` equal parts of the calls, and what the store has at the end."""
    import labtrack as lt

    lt.set_store(store_dir(directory, f"store-{os.getpid()}"))
    with lt.start_run("bench") as warm:
        warm.log_batch({"warm": [0.0] * points}, steps=range(points))
    names = [f"metric_{k:03d}" for k in range(keys)]
    values = [[(k * points + j) * 0.001 for j in range(points)] for k in range(keys)]
    per_segment = calls // segments
    run = lt.start_run("bench")
    log = run.log_batch
    times = []
    t0 = last = time.perf_counter()
    for i in range(per_segment * segments):
        k = i % keys
        first = (i // keys) * points
        log({names[k]: values[k]}, steps=range(first, first + points))
        if (i + 1) % per_segment == 0:
            now = time.perf_counter()
            times.append((now - last) / per_segment * 1e6)
            last = now
    elapsed = last - t0
    run.end()
    run.flush()
    stored = sum(s.count for s in lt.get_run(run.id).metric_summaries.values())
    return {"segments_us": times, "per_call_us": elapsed / (per_segment * segments) * 1e6,
            "points": per_segment * segments * points, "stored": stored}


def small_batches(directory: str, calls: int, keys: int, points: int, segments: int = 10, **_: Any) -> Result:
    """As users run it (the writer drains the spool every second, in the same process), then with the writer
    held off (the spool keeps everything): the first and last tenth of the calls cost the same?"""
    args = {"calls": calls, "keys": keys, "points": points, "segments": segments}
    running = run_child("small_batches_child", directory, args)
    held = run_child("small_batches_child", directory, args, env=_WRITER_HELD_OFF)
    result: Result = {
        "n": calls, "per_call_us": running["per_call_us"],
        "running_first_us": running["segments_us"][0], "running_last_us": running["segments_us"][-1],
        "first_us": held["segments_us"][0], "last_us": held["segments_us"][-1],
        "held_per_call_us": held["per_call_us"], "segments_us": running["segments_us"],
        "held_segments_us": held["segments_us"], "lost": 0,
        "size": f"{calls:,} calls of {points} points, {keys} keys in turn",
    }
    result["running_ratio"] = result["running_last_us"] / result["running_first_us"]
    result["ratio"] = result["last_us"] / result["first_us"]
    problems = []
    for label, side in (("writer running", running), ("writer held off", held)):
        if side["stored"] != side["points"]:
            problems.append(f"{label}: {side['stored']} of {side['points']} points stored")
            result["lost"] += side["points"] - side["stored"]
    if problems:
        result["problems"] = problems
    return result


# -- 3. memory of a 10M-point run -----------------------------------------------------------------


# -- 4. run creation ------------------------------------------------------------------------------


PARAMS = {f"param_{i}": i * 0.1 for i in range(10)}
TAGS = {f"tag_{i}": f"value {i}" for i in range(3)}
METRICS = {f"metric_{i}": i * 0.5 for i in range(5)}


def _create_runs(n: int, *, logged_after: bool = False) -> float:
    """Seconds to start, log 5 metrics to and end ``n`` runs with 10 params and 3 tags (given to ``start_run``,
    or ``logged_after`` it with ``log_params``/``set_tags``), until the store has them all (``lt.flush()``)."""
    import labtrack as lt

    with lt.start_run("bench", params=PARAMS, tags=TAGS) as warm:
        warm.log_metrics(METRICS)
    lt.flush()
    t0 = time.perf_counter()
    if logged_after:
        for _ in range(n):
            with lt.start_run("bench") as run:
                run.log_params(PARAMS)
                run.set_tags(TAGS)
                run.log_metrics(METRICS)
    else:
        for _ in range(n):
            with lt.start_run("bench", params=PARAMS, tags=TAGS) as run:
                run.log_metrics(METRICS)
    lt.flush()
    return time.perf_counter() - t0


def _check_runs(expected: int) -> list[str]:
    import labtrack as lt

    problems = []
    found = len(lt.search_runs("bench"))
    if found != expected:
        problems.append(f"{found} runs in the store, expected {expected}")
    last = lt.search_runs("bench", max_results=1)[0]
    if last.params != PARAMS or any(last.tags.get(k) != v for k, v in TAGS.items()) or last.metrics != METRICS:
        problems.append(f"last run has {len(last.params)} params, {len(last.tags)} tags, {len(last.metrics)} metrics")
    return problems


def runs(directory: str, n: int, **_: Any) -> Result:
    """Run creation where a small project would be (outside any git repository: each run's code version
    is then the entry script's hash), and inside this checkout, where every run stat-checks the git work
    tree (~130 entries here) so that its code version is exact."""
    import labtrack as lt

    problems: list[str] = []

    def measured(name: str, logged_after: bool = False) -> float:
        lt.set_store(store_dir(directory, name))  # a new store for each case, as MLflow's side has
        elapsed = _create_runs(n, logged_after=logged_after)
        problems.extend(f"{name}: {problem}" for problem in _check_runs(n + 1))
        return elapsed

    repo_elapsed = measured("store-repo")  # cwd: this checkout
    with _outside_git():
        elapsed = measured("store-given")
        after_elapsed = measured("store-after", logged_after=True)
    result: Result = {"n": n, "runs_s": n / elapsed, "seconds": elapsed, "after_runs_s": n / after_elapsed,
                      "repo_runs_s": n / repo_elapsed}
    if problems:
        result["problems"] = problems
    return result


def runs_pg(directory: str, pg: str, n: int, **_: Any) -> Result:
    """Run creation on PostgreSQL (a database of its own), outside any git repository."""
    import labtrack as lt

    lt.set_store(_pg_database(directory, pg, "labtrack_runs"))
    with _outside_git():
        elapsed = _create_runs(n)
    result: Result = {"n": n, "runs_s": n / elapsed, "seconds": elapsed}
    problems = _check_runs(n + 1)
    if problems:
        result["problems"] = problems
    return result


def _pg_database(directory: str, server: str, name: str) -> str:
    """A new database ``name`` on the benchmark's PostgreSQL server (``host:port``); its store URL. The spool
    of a store without a directory would go to ~/.cache: it goes to ``directory`` instead."""
    from sqlalchemy import create_engine

    os.environ["LABTRACK_SPOOL_DIR"] = os.path.join(directory, "spools")
    admin = create_engine(f"postgresql+psycopg://postgres@{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"postgresql+psycopg://postgres@{server}/{name}"


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
    return import_time("labtrack", n, env=child_env())


# -- 6. concurrency -------------------------------------------------------------------------------


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
        spawn_child("concurrency_child", directory, {"store": store, "n": n, "barrier": barrier})
        for _ in range(procs)
    ]
    release(barrier, children)
    errors, outputs, messages = 0, [], []
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT)
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

    warm_store = store_dir(directory, "warm")
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


# -- 7. environment capture -----------------------------------------------------------------------

# The entry script of the capture processes, committed in a small git repository like a user's train.py.
ENV_SCRIPT = '''\
import json, statistics, sys, time
t0 = time.perf_counter()
import labtrack
t1 = time.perf_counter()
env = labtrack.capture_environment()
t2 = time.perf_counter()
samples = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    labtrack.capture_environment()
    samples.append(time.perf_counter() - start)
from importlib.metadata import distributions
git = env.snapshot.get("git") or {}
print(json.dumps({
    "import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3,
    "repeat_ms": statistics.median(samples) * 1e3 if samples else None,
    "dists": len({d.metadata["Name"].lower() for d in distributions()}),
    "captured_dists": len((env.snapshot.get("packages") or {}).get("distributions") or {}),
    "dirty": bool(git.get("dirty")), "diff_bytes": git.get("diff_bytes"),
    "errors": sorted(k for k, v in env.snapshot.items() if isinstance(v, dict) and "error" in v),
}))
'''

def synthetic_distributions(directory: str, count: int) -> str:
    """A directory of ``count`` installed-looking distributions (``*.dist-info`` with a METADATA file)."""
    site = os.path.join(directory, "site-extra")
    body = "A synthetic distribution for the benchmark.\n" * 40  # real METADATA files carry a long description
    for i in range(count):
        name, version = f"bench-pkg-{i:03d}", f"{1 + i % 4}.{i % 17}.{i % 5}"
        info = Path(site, f"{name.replace('-', '_')}-{version}.dist-info")
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                       f"Summary: benchmark package {i}\n\n{body}")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    return site


def _count_spawns(repo: str, env: dict[str, str]) -> dict[str, Any]:
    """The processes a first capture (plus three repeats) starts, seen by ``strace -f -e trace=execve``."""
    trace = os.path.join(repo, "..", "strace.txt")
    command = ["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-s", "256", "-o", trace,
               sys.executable, "train.py", "3"]
    subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True, timeout=CHILD_TIMEOUT)
    programs: list[str] = []
    for line in Path(trace).read_text().splitlines():
        if "execve(" in line and "= 0" in line.rsplit(")", 1)[-1]:
            argv = line.split("[", 1)[1].split("]", 1)[0] if "[" in line else ""
            programs.append(argv)
    spawned = programs[1:]  # the first is the python process itself
    forbidden = [argv for argv in spawned if "pip" in argv or "cpuinfo" in argv]
    names: dict[str, int] = {}
    for argv in spawned:
        program = os.path.basename(argv.split(",", 1)[0].strip().strip('"'))
        names[program] = names.get(program, 0) + 1
    listed = ", ".join(f"{name}×{count}" for name, count in sorted(names.items())) or "none"
    return {"forbidden_spawns": len(forbidden), "spawned": len(spawned),
            "spawn_note": f"first + 3 repeat captures started {len(spawned)} processes: {listed}",
            "forbidden_argv": forbidden[:5]}


def env(directory: str, n: int, repeats: int, dists: int, freeze_n: int, **_: Any) -> Result:
    repo = small_git_repo(directory, ENV_SCRIPT)
    base = child_env()
    probe = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; "
                            "print(len({d.metadata['Name'].lower() for d in m.distributions()}))"],
                           capture_output=True, text=True, check=True, env=base, cwd=repo, timeout=120)
    installed = int(probe.stdout.strip())
    extra = max(0, dists - installed)
    extended = dict(base, PYTHONPATH=base["PYTHONPATH"] + os.pathsep + synthetic_distributions(directory, extra))
    result: Result = {"venv_dists": installed, "synthetic_dists": extra, "problems": []}

    freeze = []
    for _ in range(freeze_n):  # W&B-style: a `pip freeze` subprocess in the same environment
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--disable-pip-version-check"], cwd=repo,
                             env=extended, capture_output=True, text=True, check=True, timeout=CHILD_TIMEOUT)
        freeze.append(time.perf_counter() - t0)
    result["pip_freeze_ms"] = statistics.median(freeze) * 1e3
    result["freeze_lines"] = len(out.stdout.splitlines())
    result["freeze_n"] = f"median of {freeze_n}, {result['freeze_lines']} lines"

    # git's cache of a repeat capture is bypassed for files changed < 2 s before ("racy"): start later.
    newest = max(p.stat().st_mtime for p in Path(repo).rglob("*"))
    time.sleep(max(0.0, newest + 2.5 - time.time()))
    samples = []
    for _ in range(n + 1):  # the first one writes labtrack's bytecode caches
        out = subprocess.run([sys.executable, "train.py", str(repeats)], cwd=repo, env=extended, capture_output=True,
                             text=True, check=True, timeout=CHILD_TIMEOUT)
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    samples = samples[1:]
    last = samples[-1]
    result.update(
        n=n, repeat_n=f"median of {repeats} × {n} processes",
        first_ms=statistics.median(s["first_ms"] for s in samples),
        first_max_ms=max(s["first_ms"] for s in samples),
        repeat_ms=statistics.median(s["repeat_ms"] for s in samples),
        import_ms=statistics.median(s["import_ms"] for s in samples),
        dists=last["dists"], captured_dists=last["captured_dists"], diff_bytes=last["diff_bytes"],
    )
    result["size"] = f"{last['dists']} dists, dirty git repo; {n} processes"
    result["dists_note"] = f"{installed} in .venv + {extra} synthetic *.dist-info on PYTHONPATH"
    if not last["dirty"]:
        result["problems"].append("the capture did not see the repository's uncommitted change")
    if last["captured_dists"] < last["dists"]:
        result["problems"].append(f"the capture recorded {last['captured_dists']} of {last['dists']} distributions")
    if last["errors"]:
        result["problems"].append(f"sections that failed: {', '.join(last['errors'])}")
    if shutil.which("strace"):
        try:
            result.update(_count_spawns(repo, extended))
            if result["forbidden_spawns"]:
                result["problems"].append(f"a capture started pip or py-cpuinfo: {result['forbidden_argv']}")
        except (subprocess.SubprocessError, OSError) as exc:  # e.g. ptrace not permitted in this container
            result["problems"].append(f"strace failed, spawn row skipped: {exc}")
    if not result["problems"]:
        del result["problems"]
    return result


# -- 8. exists() and search over many runs --------------------------------------------------------

@contextmanager
def _outside_git() -> Iterator[None]:
    """Work in an empty directory outside any git repository (the workload's is inside labtrack's checkout):
    the code version in the run keys is then the entry script's hash, fixed for the whole process."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="labtrack-bench-") as empty:
        os.chdir(empty)
        try:
            yield
        finally:
            os.chdir(here)


def exists(directory: str, sizes: list[int], calls: int, **_: Any) -> Result:
    with _outside_git():
        return _exists(directory, sizes, calls)


def _exists(directory: str, sizes: list[int], calls: int) -> Result:
    import labtrack as lt

    store = SyntheticStore(store_dir(directory, "store"))
    result: Result = {"problems": []}
    for label, size in zip(("small", "mid", "large"), sizes):
        store.grow(size)
        picks = [synthetic_run(i)[0] for i in random.Random(size).sample(range(size), calls)]
        for p in picks[:10]:
            if lt.compute_key(EXPERIMENT, p) != store.key(p):
                result["problems"].append(f"run key mismatch: compute_key differs from the stored key for {p}")
                break
        lt.exists(EXPERIMENT, picks[0])  # warm: the store is open, the capture cached
        found = 0
        samples = []
        for p in picks:
            t0 = time.perf_counter()
            found += lt.exists(EXPERIMENT, p)
            samples.append(time.perf_counter() - t0)
        missing = dict(picks[0], seed=-1)
        if found != calls or lt.exists(EXPERIMENT, missing):
            result["problems"].append(f"{size:,} runs: exists() found {found} of {calls} runs that exist")
        result[f"{label}_ms"] = statistics.median(samples) * 1e3
        result[f"{label}_p99_ms"] = sorted(samples)[int(len(samples) * 0.99)] * 1e3
        result[f"{label}_n"] = size
        result[f"{label}_miss_ms"] = median_ms(partial(lt.exists, EXPERIMENT, missing), calls // 4)
    result["compute_key_ms"] = median_ms(partial(lt.compute_key, EXPERIMENT, picks[0]), calls)
    result["build_s"] = store.build_s
    result["n"] = sizes[-1]
    result["calls"] = calls
    if not result["problems"]:
        del result["problems"]
    return result


# The filter of `search` (3 clauses, ~2.5% of runs) and of `search_pg`'s target row (2 clauses, ~7.5%).
SEARCH_FILTERS = {3: "metrics.acc > 0.9 and params.lr = 0.01 and tags.team = 'cv'",
                  2: "metrics.acc > 0.9 and params.lr = 0.01"}


def _filter_at(size: int, clauses: int, calls: int, problems: list[str]) -> Result:
    """The filter query (order by acc, top 100) on a store holding runs 0..size-1, checked against Python's."""
    import labtrack as lt

    matching = []
    for i in range(size):
        p, t, m = synthetic_run(i)
        if m["acc"] > 0.9 and p["lr"] == 0.01 and (clauses < 3 or t["team"] == "cv"):
            matching.append(m["acc"])
    matching.sort(reverse=True)

    def query() -> Any:
        return lt.search_runs(EXPERIMENT, filter=SEARCH_FILTERS[clauses], order_by=["metrics.acc desc"],
                              max_results=100)

    found = query()
    if [r.metrics["acc"] for r in found] != matching[:100]:
        problems.append(f"{size:,} runs, {clauses} clauses: the filter returned {len(found)} runs, not the top "
                        f"{min(100, len(matching))} of {len(matching)} matching runs by acc")
    suffix = "" if clauses == 3 else str(clauses)
    return {f"filter{suffix}_ms": median_ms(query, calls), f"matching{suffix}": len(matching)}


def _frames_at(size: int, calls: int, problems: list[str]) -> Result:
    """All runs into a DataFrame (median of ``calls``), on a store holding runs 0..size-1."""
    import labtrack as lt

    searches, frames = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        runs = lt.search_runs(EXPERIMENT, max_results=None)
        t1 = time.perf_counter()
        frame = runs.to_pandas()
        searches.append(t1 - t0)
        frames.append(time.perf_counter() - t0)
        if frame.shape[0] != size:
            problems.append(f"{size:,} runs: the DataFrame has {frame.shape[0]} rows")
        del runs, frame
    return {"all_search_s": statistics.median(searches), "all_df_s": statistics.median(frames)}


def search(directory: str, n: int, compare_n: int, filter_calls: int, frame_calls: int, **_: Any) -> Result:
    return _search(store_dir(directory, "store"), n, compare_n, filter_calls, frame_calls, (3,))


def search_pg(directory: str, pg: str, n: int, compare_n: int, filter_calls: int, **_: Any) -> Result:
    """The filter queries on PostgreSQL (a database of its own, built by COPY, then ANALYZE)."""
    return _search(_pg_database(directory, pg, "labtrack_search"), n, compare_n, filter_calls, 0, (2, 3))


def _search(location: str, n: int, compare_n: int, filter_calls: int, frame_calls: int,
            filters: tuple[int, ...]) -> Result:
    problems: list[str] = []
    result: Result = {}
    with _outside_git():
        store = SyntheticStore(location)
        for size, prefix in ((compare_n, "cmp_"), (n, "")):  # first at the size of MLflow's store, side by side
            store.grow(size)
            measured: Result = {}
            for clauses in filters:
                measured.update(_filter_at(size, clauses, filter_calls, problems))
            if frame_calls:
                measured.update(_frames_at(size, frame_calls, problems))
            result.update({f"{prefix}{k}": v for k, v in measured.items()})
    result.update(n=n, cmp_n=compare_n, build_s=store.build_s)
    if frame_calls:
        result["frame_n"] = f"{n:,}" + (f" (median of {frame_calls})" if frame_calls > 1 else "")
    if problems:
        result["problems"] = problems
    return result


# -- 9. diff --------------------------------------------------------------------------------------


def diff(directory: str, packages: int, changes: int, calls: int, **_: Any) -> Result:
    import labtrack as lt
    from labtrack.core.environment import Environment
    from labtrack.store import open_store

    path = store_dir(directory, "store")
    lt.set_store(path)
    ids = []
    for lr in (0.01, 0.02):
        with lt.start_run("bench", params={"lr": lr, "epochs": 3, "optimizer": "adam"}, tags={"team": "cv"}) as run:
            run.log_metrics({"acc": 0.9 + lr, "loss": 0.3 - lr})
            ids.append(run.id)
    # Two shared snapshots like the real one, with `packages` distributions each and `changes` versions apart.
    real = lt.get_run(ids[0]).environment
    assert real is not None, "the run recorded no environment"
    per_run = real.per_run()
    shared = {k: v for k, v in real.snapshot.items() if k not in per_run}
    store = open_store(path)
    for index, run_id in enumerate(ids):
        dists = {f"bench-pkg-{i:03d}": {"version": f"{1 + i % 4}.{i % 17}.{i % 5}", "source": "index"}
                 for i in range(packages)}
        if index:
            for i in range(0, packages, packages // changes)[:changes]:
                old = dists[f"bench-pkg-{i:03d}"]["version"].split(".")
                bumped = [old[0], str(int(old[1]) + 1), "0"] if i % 3 else [str(int(old[0]) + 1), "0", "0"]
                dists[f"bench-pkg-{i:03d}"]["version"] = ".".join(bumped)
        snapshot = json.loads(json.dumps(shared))
        snapshot["packages"] = dict(snapshot.get("packages") or {}, distributions=dists)
        fingerprint = Environment(snapshot).fingerprint
        store.put_environment(fingerprint, snapshot)
        store.merge_context(run_id, {}, env_fingerprint=fingerprint)
    store.close()
    a, b = (lt.get_run(i) for i in ids)
    found = lt.diff(a, b)
    changed = sum(len(s.changes) for s in found.sections if s.name in ("packages", "numerical packages"))
    result: Result = {"n": f"{packages} packages each, {changes} changed", "changed_found": changed}
    result["diff_ms"] = median_ms(lambda: lt.diff(ids[0], ids[1]), calls)
    result["diff_runs_ms"] = median_ms(lambda: lt.diff(a, b), calls)
    if changed != changes:
        result["problems"] = [f"diff reported {changed} package changes, expected {changes}"]
    return result


# -- plumbing -------------------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[..., Result]] = {
    "log_metric": log_metric,
    "batch": batch,
    "small_batches": small_batches,
    "memory": memory,
    "runs": runs,
    "import": import_,
    "concurrency": concurrency,
    "env": env,
    "exists": exists,
    "search": search,
    "diff": diff,
    "kill": kill,
    "outage": outage,
    "runs_pg": runs_pg,
    "search_pg": search_pg,
    "server_ingest": server_ingest,
    "server_runs": server_runs,
    "server_search": server_search,
    # internal: run in child processes by the workloads above
    "memory_child": memory_child,
    "history_child": history_child,
    "concurrency_child": concurrency_child,
    "small_batches_child": small_batches_child,
    "kill_child": kill_child,
    "kill_count": kill_count,
    "server_ingest_child": server_ingest_child,
    "server_runs_child": server_runs_child,
}


def main(argv: list[str] | None = None) -> None:
    workload_main(WORKLOADS, __doc__, argv)


if __name__ == "__main__":
    main()
