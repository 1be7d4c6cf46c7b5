"""Ctrl-C in a sweep and resuming it (issue 13, finding 7): one clean line instead of a traceback per worker;
the interrupted runs end KILLED and free their configurations at once, so the rerun does not wait for
leases; a sweep that does wait says why, and takes over a dead local worker's configuration at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import labtrack as lt

SWEEP = """
import os, sys, time
import labtrack as lt
lt.set_store(sys.argv[1])

def train(i):
    print("started", i, flush=True)
    time.sleep(float(os.environ.get("SLOW", "0")) if i >= int(os.environ.get("SLOW_FROM", "0")) else 0)
    return i

result = lt.sweep(train, grid={"i": list(range(int(sys.argv[3])))}, workers=int(sys.argv[2]), experiment="ctrl-c",
                  lease=float(os.environ.get("LEASE", "60")), progress=bool(os.environ.get("PROGRESS")))
print("ran", sorted(c["i"] for c in result.ran), "skipped", len(result.skipped), flush=True)
"""


def _start(store: Path, workers: int, n: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SWEEP, str(store), str(workers), str(n)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_started(process: subprocess.Popen[str], count: int) -> list[str]:
    assert process.stdout is not None
    lines = []
    while len([line for line in lines if line.startswith("started")]) < count:
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        lines.append(line.strip())
    return lines


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_prints_one_line_and_the_rerun_starts_at_once(tmp_path: Path, python_env: dict[str, str],
                                                             workers: int) -> None:
    store = tmp_path / "store"
    env = {**python_env, "SLOW": "60", "SLOW_FROM": "2"}
    sweep = _start(store, workers, 6, env)
    try:
        _wait_started(sweep, 2 + workers)  # 0 and 1 ran; the workers sit in slow configurations now
        os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: every process of the group
        _, err = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode != 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    (line,) = [text for text in err.splitlines() if text.strip()]
    assert line.startswith("labtrack: sweep ctrl-c interrupted — 2 ran, 0 skipped") and "(KILLED)" in line
    with sqlite3.connect(store / "labtrack.db") as db:  # no claim left to wait for
        assert db.execute("SELECT count(*) FROM claims WHERE state = 'running'").fetchone() == (0,)
    lt.set_store(str(store))
    statuses = sorted(r.status.value for r in lt.search_runs("ctrl-c"))
    assert statuses == ["FINISHED", "FINISHED", *["KILLED"] * workers]

    rerun = subprocess.run([sys.executable, "-c", SWEEP, str(store), str(workers), "6"], env=python_env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[-1] == "ran [2, 3, 4, 5] skipped 2"


def test_a_waiting_sweep_says_why_and_takes_over_a_dead_local_workers_configuration_at_once(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    store = tmp_path / "store"
    holder = _start(store, 1, 1, {**python_env, "SLOW": "600", "LEASE": "600"})
    try:
        _wait_started(holder, 1)
        waiter = _start(store, 1, 1, {**python_env, "LEASE": "600", "PROGRESS": "1", "COLUMNS": "300"})
        assert waiter.stdout is not None
        seen = []
        while not any("waiting for 1 configuration(s)" in text for text in seen):
            text = waiter.stdout.readline()
            assert text, waiter.stderr.read() if waiter.stderr else ""
            seen.append(text)
        assert any("at once if that worker ran on this machine" in text for text in seen)
        os.killpg(holder.pid, signal.SIGKILL)  # the holder dies; its lease has ten minutes left
        out, err = waiter.communicate(timeout=60)
    finally:
        for process in (holder,):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert waiter.returncode == 0, err
    assert out.splitlines()[-1] == "ran [0] skipped 0"
