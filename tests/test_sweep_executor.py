"""Sweeps on executors people already run (issue 16, §5): ``sweep(fn, grid, executor=...)`` with a real
``ProcessPoolExecutor`` on SQLite, and a real ``dask.distributed`` cluster of worker processes on PostgreSQL
and on a labtrack server process. Each execution of a configuration leaves a file behind (``mark``), so
"exactly once" is counted where it happens, not only in the store.

The Slurm job-array recipe of docs/sweeps.md is tested without Slurm: array tasks are plain processes with
SLURM_ARRAY_TASK_ID set, running examples/sweep_array_task.py on one store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from framework_helpers import need
from server_helpers import ServerProcess, start_server_process

import labtrack as lt

REPO = Path(__file__).resolve().parent.parent
GRID_SIZE = 6


def mark(i: int, marks: str) -> int:
    """A trial: leaves one file per execution in ``marks`` (so a second execution shows), returns i²."""
    Path(marks, f"{i}-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
    time.sleep(0.05)
    return i * i


def mark_or_fail(i: int, marks: str) -> int:
    if i == 2:
        raise ValueError("config 2 diverged")
    return mark(i, marks)


def set_environ(name: str, value: str) -> None:
    """Set an environment variable in a Dask worker (``Client.run``; a bound ``os.environ`` method would be
    pickled with a copy of the environment)."""
    os.environ[name] = value


def executions(marks: Path) -> Counter[int]:
    return Counter(int(name.split("-")[0]) for name in os.listdir(marks))


def grid(marks: Path, n: int = GRID_SIZE) -> dict[str, list[Any]]:
    marks.mkdir(exist_ok=True)
    return {"i": list(range(n)), "marks": [str(marks)]}


def assert_each_ran_once(client: lt.Client, experiment: str, marks: Path, n: int = GRID_SIZE) -> None:
    assert executions(marks) == Counter(range(n)), "every configuration executed, none twice"
    runs = client.search_runs(experiment, max_results=10 * n)
    assert sorted(run.params["i"] for run in runs) == list(range(n))
    assert {run.status for run in runs} == {lt.RunStatus.FINISHED}


TRIAL_STARTED = threading.Event()


def slow_mark(i: int, marks: str) -> int:
    TRIAL_STARTED.set()
    time.sleep(1.0)
    return mark(i, marks)


def test_an_executor_shut_down_with_tasks_pending_ends_the_sweep_with_those_failed(tmp_path: Path) -> None:
    # shutdown(cancel_futures=True) cancels the queued tasks without telling as_completed/wait: the sweep used
    # to wait for them forever. (A thread pool: the same executor code as any other, in this process.)
    marks = tmp_path / "marks"
    pool = ThreadPoolExecutor(1)
    TRIAL_STARTED.clear()

    def shut_down_when_a_trial_runs() -> None:
        TRIAL_STARTED.wait(30)
        pool.shutdown(wait=False, cancel_futures=True)

    threading.Thread(target=shut_down_when_a_trial_runs, daemon=True).start()
    outcome: dict[str, lt.SweepResult] = {}

    def sweep() -> None:
        outcome["result"] = lt.sweep(slow_mark, grid(marks, 4), executor=pool, progress=False)

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the sweep waited forever for tasks the executor had cancelled"
    result = outcome["result"]
    assert len(result.ran) == 1 and len(result.failed) == 3
    assert all("cancelled" in error for _, error in result.failed)
    again = lt.sweep(slow_mark, grid(marks, 4), progress=False)  # the next sweep runs only those
    assert len(again.ran) == 3 and len(again.skipped) == 1
    assert executions(marks) == Counter(range(4))


# -- a process pool on SQLite ----------------------------------------------------------------------------


class CountingPool(ProcessPoolExecutor):
    """A process pool that counts the tasks it was given."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_process_pool_runs_each_configuration_once_and_a_second_sweep_skips_them(tmp_path: Path) -> None:
    client = lt.Client(str(tmp_path / "store"))
    marks = tmp_path / "marks"
    with CountingPool(2) as pool:
        first = client.sweep(mark, grid(marks), executor=pool, progress=False)
        assert sorted(c["i"] for c in first.ran) == list(range(GRID_SIZE)) and first.complete
        assert_each_ran_once(client, "mark", marks)
        assert pool.submitted == GRID_SIZE
        second = client.sweep(mark, grid(marks), executor=pool, progress=False)
    assert second.ran == [] and len(second.skipped) == GRID_SIZE and second.complete
    assert pool.submitted == GRID_SIZE, "no task for a configuration finished before the sweep"
    assert executions(marks) == Counter(range(GRID_SIZE)), "the second sweep executed nothing"
    run = client.search_runs("mark", filter="params.i = 3")[0]
    assert run.load_result() == 9  # the result recorded by the worker process


def test_a_failing_configuration_comes_back_failed_and_the_others_run(tmp_path: Path) -> None:
    client = lt.Client(str(tmp_path / "store"))
    marks = tmp_path / "marks"
    with ProcessPoolExecutor(2) as pool:
        result = client.sweep(mark_or_fail, grid(marks), executor=pool, progress=False)
    assert [(config["i"], error) for config, error in result.failed] == [(2, "ValueError: config 2 diverged")]
    assert sorted(c["i"] for c in result.ran) == [0, 1, 3, 4, 5] and not result.complete
    statuses = {run.params["i"]: run.status for run in client.search_runs("mark_or_fail")}
    assert statuses[2] == lt.RunStatus.FAILED and statuses[0] == lt.RunStatus.FINISHED


def test_a_thread_pool_runs_trials_one_at_a_time_without_nesting_their_runs(tmp_path: Path) -> None:
    client = lt.Client(str(tmp_path / "store"))
    marks = tmp_path / "marks"
    with ThreadPoolExecutor(3) as pool:
        result = client.sweep(mark, grid(marks), executor=pool, progress=False)
    assert len(result.ran) == GRID_SIZE
    assert_each_ran_once(client, "mark", marks)
    assert all("labtrack.parent" not in run.tags for run in client.search_runs("mark"))


@pytest.mark.parametrize(("options", "field", "words"), [
    ({"workers": 2, "executor": "POOL"}, "executor", "workers= or executor="),
    ({"workers": 1, "executor": "POOL"}, "executor", "workers= or executor="),
    ({"executor": object()}, "executor", "concurrent.futures.Executor"),
], ids=["workers-and-executor", "workers-one-and-executor", "not-an-executor"])
def test_bad_executor_options_name_the_field(tmp_path: Path, options: dict[str, Any], field: str, words: str) -> None:
    client = lt.Client(str(tmp_path / "store"))
    with ProcessPoolExecutor(1) as pool:
        options = {k: (pool if v == "POOL" else v) for k, v in options.items()}
        with pytest.raises(lt.InvalidInput, match=words) as caught:
            client.sweep(mark, grid(tmp_path / "marks"), progress=False, **options)
    assert caught.value.field == field
    assert client.search_runs() == []


def test_a_function_plain_pickle_cannot_send_is_refused_before_anything_runs(tmp_path: Path) -> None:
    client = lt.Client(str(tmp_path / "store"))

    def local(i: int) -> int:  # a local function: plain pickle sends functions by module and name only
        return i

    with ProcessPoolExecutor(1) as pool, pytest.raises(lt.InvalidInput, match="top level of a module") as caught:
        client.sweep(local, {"i": [1, 2]}, executor=pool, progress=False)
    assert caught.value.field == "fn"
    assert client.search_runs() == []


# -- a Dask cluster of worker processes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A `labtrack server` process on its own SQLite store, and an admin token for it."""
    from server_helpers import environ_without_labtrack

    home = tmp_path_factory.mktemp("server")
    env = {**environ_without_labtrack(), "PYTHONPATH": str(REPO)}
    store = str(home / "store")
    made = subprocess.run([sys.executable, "-m", "labtrack", "token", "create", "--name", "dask", "--json",
                           "--store", store], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    server = start_server_process(store, env, home / "server.log")
    try:
        yield server, json.loads(made.stdout)["token"]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dask_executor(server_store: tuple[ServerProcess, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Dask cluster of two single-threaded worker processes, for the whole module (they take seconds to
    start). Their working directory is not the tests' and their environment has no store setting: the store
    reaches them in the tasks. The server's token is in their environment, as a team sets it on its workers."""
    need("distributed")
    from distributed import Client, LocalCluster

    elsewhere = tmp_path_factory.mktemp("dask-cwd")
    before = os.getcwd()
    os.chdir(elsewhere)
    try:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"LABTRACK_TOKEN": server_store[1]})
    finally:
        os.chdir(before)
    client = Client(cluster)
    try:
        yield client.get_executor()
    finally:
        client.close()
        cluster.close()


@pytest.mark.postgres
def test_dask_cluster_on_postgres_runs_each_configuration_once_then_skips_all(
        tmp_path: Path, postgres_url: str, dask_executor: Any) -> None:
    client = lt.Client(postgres_url)
    marks = tmp_path / "marks"
    first = client.sweep(mark, grid(marks), executor=dask_executor, progress=False)
    assert len(first.ran) == GRID_SIZE and first.complete
    assert_each_ran_once(client, "mark", marks)
    pids = {name.split("-")[1] for name in os.listdir(marks)}
    assert str(os.getpid()) not in pids, "the trials ran in the cluster's worker processes"
    second = client.sweep(mark, grid(marks), executor=dask_executor, progress=False)
    assert second.ran == [] and len(second.skipped) == GRID_SIZE
    assert executions(marks) == Counter(range(GRID_SIZE))


@pytest.mark.postgres
def test_dask_and_a_process_pool_sweeping_one_grid_at_once_share_the_work(
        tmp_path: Path, postgres_url: str, dask_executor: Any) -> None:
    client = lt.Client(postgres_url)
    marks = tmp_path / "marks"
    n = 12
    results: dict[str, lt.SweepResult] = {}
    start = threading.Barrier(2)

    def sweep_on(name: str, executor: Any) -> None:
        start.wait()
        results[name] = client.sweep(mark, grid(marks, n), executor=executor, progress=False, poll=0.05)

    with ProcessPoolExecutor(2) as pool:
        threads = [threading.Thread(target=sweep_on, args=("dask", dask_executor)),
                   threading.Thread(target=sweep_on, args=("pool", pool))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert_each_ran_once(client, "mark", marks, n)
    ran = {name: {c["i"] for c in result.ran} for name, result in results.items()}
    assert ran["dask"] | ran["pool"] == set(range(n)) and not ran["dask"] & ran["pool"]
    for result in results.values():
        assert result.complete and len(result.ran) + len(result.done_elsewhere) == n


def test_dask_cluster_through_a_labtrack_server_runs_each_configuration_once(
        tmp_path: Path, server_store: tuple[ServerProcess, str], dask_executor: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, token = server_store
    monkeypatch.setenv("LABTRACK_TOKEN", token)
    client = lt.Client(server.url)
    marks = tmp_path / "marks"
    first = client.sweep(mark, grid(marks), executor=dask_executor, progress=False)
    assert len(first.ran) == GRID_SIZE and first.complete, first.failed
    assert_each_ran_once(client, "mark", marks)
    again = client.sweep(mark, grid(marks), executor=dask_executor, progress=False)
    assert len(again.skipped) == GRID_SIZE and again.ran == []


def test_a_worker_without_access_to_the_store_reports_failed_configurations(
        tmp_path: Path, server_store: tuple[ServerProcess, str], dask_executor: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep itself reaches the server; the workers' token is another: every trial fails, saying why, and
    the sweep returns instead of raising."""
    server, token = server_store
    monkeypatch.setenv("LABTRACK_TOKEN", token)
    # another spelling of the server's URL: a store a worker has not opened yet (it keeps a client per store)
    client = lt.Client(server.url.replace("127.0.0.1", "localhost"))
    dask = need("distributed")
    workers = dask.get_client()  # the module's cluster
    workers.run(set_environ, "LABTRACK_TOKEN", "lt_not-a-token")
    try:
        result = client.sweep(mark, grid(tmp_path / "marks", 2), executor=dask_executor, progress=False)
    finally:
        workers.run(set_environ, "LABTRACK_TOKEN", token)
    assert [c["i"] for c, _ in result.failed] == [0, 1], result
    assert all("could not claim it in the store" in error for _, error in result.failed)
    assert executions(tmp_path / "marks") == Counter()


# -- the Slurm job-array recipe, without Slurm ------------------------------------------------------------

ARRAY_TASK = REPO / "examples" / "sweep_array_task.py"


def array_task(task_id: int, store: str, env: dict[str, str], cwd: Path, *extra: str) -> subprocess.Popen[str]:
    """One array task as Slurm starts it: the same script and grid, its SLURM_ARRAY_TASK_ID in the environment."""
    task_env = {**env, "LABTRACK_STORE": store, "SLURM_ARRAY_TASK_ID": str(task_id), "SLURM_ARRAY_JOB_ID": "4242",
                "LABTRACK_HEARTBEAT_INTERVAL": "0.5"}
    return subprocess.Popen([sys.executable, str(ARRAY_TASK), *extra], env=task_env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.postgres
def test_slurm_array_tasks_share_the_grid_and_a_requeued_task_skips_finished_work(
        tmp_path: Path, postgres_url: str, python_env: dict[str, str]) -> None:
    env = {**python_env, "LABTRACK_EXAMPLE_MARKS": str(tmp_path / "marks"),
           "LABTRACK_ARTIFACTS": str(tmp_path / "artifacts")}
    (tmp_path / "marks").mkdir()
    tasks = [array_task(task_id, postgres_url, env, tmp_path) for task_id in range(3)]
    outputs = [summary(task) for task in tasks]
    done = executions(tmp_path / "marks")
    assert done == Counter(range(12)), "the array ran every configuration once between its tasks"
    assert sum(o["ran"] for o in outputs) == 12
    requeued = summary(array_task(1, postgres_url, env, tmp_path))
    assert requeued == {"ran": 0, "skipped": 12, "failed": 0, "task": "1"}
    assert executions(tmp_path / "marks") == done


def test_a_killed_array_task_s_configuration_is_taken_over_by_its_requeued_run(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    """SIGKILL (preemption) in the middle of a configuration: the requeued task runs it (its claim's process is
    gone: taken over at once on this host, after the lease elsewhere) and what finished stays finished."""
    store = str(tmp_path / "store")
    env = {**python_env, "LABTRACK_EXAMPLE_MARKS": str(tmp_path / "marks"), "LABTRACK_EXAMPLE_STALL_ON": "5"}
    (tmp_path / "marks").mkdir()
    task = array_task(0, store, env, tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "stalled").exists():
        assert task.poll() is None and time.monotonic() < deadline, task.communicate()
        time.sleep(0.05)
    task.send_signal(signal.SIGKILL)
    task.wait(10)
    before = executions(tmp_path / "marks")
    assert sorted(before) == [0, 1, 2, 3, 4, 5]  # 5 started, killed mid-run
    requeued = summary(array_task(0, store, {**env, "LABTRACK_EXAMPLE_STALL_ON": ""}, tmp_path))
    assert requeued["ran"] == 7 and requeued["skipped"] == 5
    after = executions(tmp_path / "marks")
    assert after == before + Counter(range(5, 12)), "only the killed one ran again, then the rest"
    statuses = Counter(run.status for run in lt.search_runs("array", store=store, max_results=100))
    assert statuses[lt.RunStatus.FINISHED] == 12


# -- Ctrl-C ------------------------------------------------------------------------------------------------

INTERRUPTED = """
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    import labtrack as lt

    marks = sys.argv[1]

    def slow(i):
        open(os.path.join(marks, f"{i}-{os.getpid()}"), "x").close()
        print("started", flush=True)
        time.sleep(1.5)
        return i

    if __name__ == "__main__":
        with ProcessPoolExecutor(1) as pool:
            result = lt.sweep(slow, grid={"i": list(range(6))}, executor=pool, progress=False)
        print("ran", len(result.ran), "skipped", len(result.skipped), flush=True)
"""


def test_ctrl_c_cancels_the_tasks_not_started_and_the_next_sweep_runs_only_those(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    import textwrap

    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**python_env, "LABTRACK_STORE": str(tmp_path / "store")}
    driver = subprocess.Popen([sys.executable, str(script), str(marks)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert driver.stdout is not None and driver.stdout.readline().strip() == "started", driver.communicate()
    driver.send_signal(signal.SIGINT)  # the driver only, as Ctrl-C where the pool's workers run elsewhere
    _, err = driver.communicate(timeout=60)
    assert driver.returncode != 0 and "interrupted" in err and "cancelled" in err, err
    started = executions(marks)
    assert 1 <= len(started) < 6 and max(started.values()) == 1  # those a worker had taken finished there
    again = subprocess.run([sys.executable, str(script), str(marks)], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == f"ran {6 - len(started)} skipped {len(started)}"
    assert executions(marks) == Counter(range(6)), "every configuration once, across the two sweeps"
