"""Processes forked while a run is active (DataLoader workers, sweep workers, os.fork): the child never
writes the parent's buffered points, and the parent's run still ends normally."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, sys
import labtrack as lt
lt.set_store(sys.argv[1])
parent = lt.start_run("p")
parent.log_metric("loss", 1.0)
pid = os.fork()
if pid == 0:
    if sys.argv[2] == "child-runs":
        with lt.start_run("child") as c:
            c.log_metric("x", 2.0)
    sys.exit(0)  # a normal exit: the exit hook runs in the child too
os.waitpid(pid, 0)
parent.log_metric("loss", 0.5)
parent.end()
run = lt.get_run(parent.id)
print(run.status, run.history("loss").values.tolist(), len(lt.search_runs("child")))
with lt.start_run("after"):
    pass
print("next run ok")
"""


@pytest.mark.parametrize("child", ["child-exits", "child-runs"])
def test_a_forked_child_leaves_the_parents_run_alone(child: str, tmp_path: Path, python_env: dict[str, str]) -> None:
    script = tmp_path / "fork.py"
    script.write_text(SCRIPT)
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "30"}  # the parent's point is still buffered at the fork
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store"), child], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    runs_of_child = 1 if child == "child-runs" else 0
    assert lines == [f"FINISHED [1.0, 0.5] {runs_of_child}", "next run ok"]


pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


MP_SCRIPT = """
import multiprocessing as mp, sys
import labtrack as lt

def log_to_parent_run(run, flush):
    for step in range(10):
        run.log_metric("b", float(step), step=step)
    if flush:
        run.flush()

def log_by_id(store, run_id):
    lt.set_store(store)
    handle = lt.get_run(run_id)
    for step in range(10):
        handle.log_metric("c", float(step), step=step)
    own = lt.start_run("child-own")  # never ended by the child: ended at its exit
    own.log_metric("x", 1.0)

if __name__ == "__main__":
    store, method, flush = sys.argv[1], sys.argv[2], sys.argv[3] == "flush"
    lt.set_store(store)
    run = lt.start_run("mp")
    for step in range(100):
        run.log_metric("a", float(step), step=step)
    ctx = mp.get_context(method)
    if method == "spawn":
        lt.flush()  # a spawned child is a new interpreter: it finds the run once the store has it
    child = (ctx.Process(target=log_to_parent_run, args=(run, flush)) if method == "fork"
             else ctx.Process(target=log_by_id, args=(store, run.id)))
    child.start()
    child.join()
    for step in range(100, 200):
        run.log_metric("a", float(step), step=step)
    run.end()
    got = lt.get_run(run.id)
    own = lt.search_runs("child-own")
    print(child.exitcode, got.status.value, got.history("a").steps == list(range(200)),
          {k: got.history(k).steps.tolist() for k in ("b", "c") if k in got.metrics},
          [r.status.value for r in own])
"""


@pytest.mark.parametrize(("method", "flush"), [("fork", "no-flush"), ("fork", "flush"), ("spawn", "no-flush")])
def test_multiprocessing_children_write_what_they_log_once_and_never_the_parents_points(
    method: str, flush: str, tmp_path: Path, python_env: dict[str, str]
) -> None:
    """A multiprocessing child ends with os._exit (no atexit): its writes still reach the store, through
    its own spool, before it exits; the parent's buffered points are written once, by the parent."""
    script = tmp_path / "mp_children.py"
    script.write_text(MP_SCRIPT)
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "30"}  # everything still in the spools at the fork
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store"), method, flush],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    steps = list(range(10))
    expected = (f"0 FINISHED True {{'b': {steps}}} []" if method == "fork"
                else f"0 FINISHED True {{'c': {steps}}} ['FINISHED']")
    assert done.stdout.strip() == expected, done.stderr


LATE_PARENT = """
import os, sys
import labtrack as lt
lt.set_store(sys.argv[1])
run = lt.start_run("late-parent")
run.log_metric("loss", 0.0, step=0)
print("ready", os.getpid(), flush=True)
sys.stdin.readline()  # the test has locked the store: the fork's flush gives up, the run is not stored
pid = os.fork()
if pid == 0:
    for step in range(1, 101):
        run.log_metric("loss", float(step), step=step)
    print("child logged", flush=True)
    run.flush(timeout=120)
    print("child flushed", flush=True)
    sys.exit(0)
os.waitpid(pid, 0)
run.end()
history = lt.get_run(run.id).history("loss")
print(len(history), len(set(history.steps)), flush=True)
"""


def test_a_childs_points_wait_for_a_parents_run_that_reaches_the_store_after_them(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    """The store is locked while the parent forks (its flush before the fork gives up), then the parent is
    stopped while the child's points reach the store: they must wait for the parent's run, not be dropped."""
    import signal
    import sqlite3
    import time

    location = tmp_path / "store"
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "3600", "LABTRACK_SQLITE_BUSY_TIMEOUT": "0.5"}
    parent = subprocess.Popen([sys.executable, "-c", LATE_PARENT, str(location)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert parent.stdin is not None and parent.stdout is not None
    try:
        ready = parent.stdout.readline().split()
        assert ready[:1] == ["ready"], parent.stderr.read() if parent.stderr else ""
        lock = sqlite3.connect(location / "labtrack.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "child logged"
        os.kill(int(ready[1]), signal.SIGSTOP)  # the parent cannot store its run now ...
        lock.execute("ROLLBACK")  # ... while the child can store its points
        lock.close()
        time.sleep(3)
        os.kill(int(ready[1]), signal.SIGCONT)
        out, err = parent.communicate(timeout=120)
    finally:
        if parent.poll() is None:
            os.kill(parent.pid, signal.SIGCONT)
            parent.kill()
    assert parent.returncode == 0, err
    assert out.split() == ["child", "flushed", "101", "101"], err  # every point, each once


BOTH_KILLED = """
import os, sys, time
import labtrack as lt
lt.set_store(sys.argv[1])
run = lt.start_run("both-killed")
run.log_metric("loss", 0.0, step=0)
print("ready", flush=True)
sys.stdin.readline()  # the store is locked: nothing of the parent's reaches it
if os.fork() == 0:
    for step in range(1, 101):
        run.log_metric("loss", float(step), step=step)
    print("child", os.getpid(), flush=True)
    time.sleep(600)
time.sleep(600)
"""


def test_recovery_stores_a_dead_parents_run_before_its_dead_childs_points(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    """Parent and child are SIGKILLed before anything reached the store; the child's spool is read first
    (renamed to sort first): its points wait for the parent's spool, which creates the run."""
    import signal
    import sqlite3

    import labtrack as lt

    location = tmp_path / "store"
    spools = tmp_path / "spools"
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "3600", "LABTRACK_SQLITE_BUSY_TIMEOUT": "0.5",
           "LABTRACK_SPOOL_DIR": str(spools)}
    parent = subprocess.Popen([sys.executable, "-c", BOTH_KILLED, str(location)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert parent.stdin is not None and parent.stdout is not None
    assert parent.stdout.readline().strip() == "ready", parent.stderr.read() if parent.stderr else ""
    lock = sqlite3.connect(location / "labtrack.db", isolation_level=None)
    child = 0
    try:
        lock.execute("BEGIN EXCLUSIVE")
        parent.stdin.write("go\n")
        parent.stdin.flush()
        line = parent.stdout.readline().split()
        assert line[:1] == ["child"], parent.stderr.read() if parent.stderr else ""
        child = int(line[1])
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
        lock.execute("ROLLBACK")
        lock.close()
    (found,) = [p for p in spools.rglob("*") if p.is_dir() and f"-{child}-" in p.name]
    found.rename(found.with_name(f"0-{found.name}"))  # sorts before the parent's spool

    lt.set_store(str(location))  # opening the store recovers both spools
    (run,) = lt.search_runs("both-killed")
    history = run.history("loss")
    assert (run.status, len(history), len(set(history.steps))) == (lt.RunStatus.CRASHED, 101, 101)
    assert not [p for p in spools.rglob("*") if p.is_dir() and p.parent.parent == spools]  # both recovered
