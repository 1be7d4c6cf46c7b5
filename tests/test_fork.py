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
print(run.status, run.history("loss").values, len(lt.search_runs("child")))
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
