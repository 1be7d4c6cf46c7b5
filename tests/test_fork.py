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
