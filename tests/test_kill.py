"""Nothing acknowledged is lost when the process dies: a real SIGKILL at a random moment of a fast logging
loop, then every point whose ``log_metric`` returned is in the store, exactly once — written by the next
process that opens the store, from the dead process's spool — and the run is CRASHED.

The child acknowledges each point after ``log_metric`` returns by writing the count into a shared file
(mapped, so the count survives the kill); the point after the last acknowledged one may or may not have
made it, nothing else may be missing or doubled.

The count is also read just before the kill (and the child says on its stdout once 1,000 points are
acknowledged): on the development VM (a Firecracker guest), a killed
process's last writes to a page it kept rewriting were now and then gone afterwards (the page read back
as it was before, even on tmpfs; ~1 kill in 30 in a loop of nothing but such writes), while the spool's
pages, each written once in turn, never were in hundreds of kills. When the count read after the kill is
below the one read before it, or disagrees with itself (one batch every 5,000 points), the one before is
the floor of what was acknowledged and the store must hold every step from 0 up without a gap or a double.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import labtrack as lt
from labtrack.store import open_store
from labtrack.verbs import tracking

CHILD = """
import mmap, struct, sys
import labtrack as lt
lt.set_store(sys.argv[1])
acks = open(sys.argv[2], "r+b")
ack = mmap.mmap(acks.fileno(), 16)
note = struct.Struct("<qq").pack_into
run = lt.start_run("kill", params={"lr": 0.1})
run.set_tag("phase", "training")
print(run.id, flush=True)
batches = 0
for step in range(10**9):
    run.log_metric("x", float(step), step=step)
    if step % 5000 == 4999:
        run.log_batch({"b": [float(batches)] * 10}, steps=list(range(batches * 10, batches * 10 + 10)))
        batches += 1
    note(ack, 0, step + 1, batches)
    if step == 999:
        print("logging", flush=True)  # a floor of what was acknowledged that needs no shared page
"""


def kill_at_random(store: str, tmp_path: Path, env: dict[str, str], seconds: float) -> tuple[str, int, int]:
    """Run the child, SIGKILL it after ``seconds``; returns (run id, points acknowledged, batches acknowledged)."""
    script, acks = tmp_path / "child.py", tmp_path / "acks"
    script.write_text(CHILD)
    acks.write_bytes(b"\0" * 16)
    child = subprocess.Popen([sys.executable, str(script), store, str(acks)], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert len(run_id) == 32, run_id
    assert child.stdout.readline().strip() == "logging"  # 1,000 points acknowledged
    time.sleep(seconds)
    before = max(struct.unpack("<qq", acks.read_bytes()), (1000, 0))
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    points, batches = struct.unpack("<qq", acks.read_bytes())
    if points < before[0] or batches != points // 5000:  # the page lost writes with the process (see above)
        return run_id, -before[0], before[1]
    return run_id, points, batches


def assert_exactly_once(run_id: str, points: int, batches: int) -> None:
    """``points`` < 0: only a floor of what was acknowledged is known (-points; see the module docstring)."""
    run = lt.get_run(run_id)  # this process opened the store: it recovered the dead child's spool first
    history = run.history("x")
    floor = abs(points)
    assert history.steps[:floor] == list(range(floor))  # everything acknowledged, in order, once
    assert history.steps == list(range(len(history)))  # no gap, no double after it either
    if points >= 0:
        assert len(history) in (points, points + 1)  # and at most the one point being logged at the kill
    else:
        assert len(history) >= floor
    assert history.values == [float(s) for s in history.steps]
    stored_batches = run.history("b")
    if points >= 0:
        assert len(stored_batches) in (batches * 10, batches * 10 + 10)
    else:
        assert len(stored_batches) >= batches * 10
    assert stored_batches.steps == list(range(len(stored_batches)))
    assert run.status is lt.RunStatus.CRASHED
    assert run.params == {"lr": 0.1} and run.tags == {"phase": "training"}


@pytest.mark.parametrize("flush_interval", ["0.05", "3600"], ids=["writer-busy", "all-in-the-spool"])
@pytest.mark.parametrize("seed", range(3))
def test_sigkill_at_a_random_moment_loses_no_acknowledged_point_on_sqlite(
    seed: int, flush_interval: str, tmp_path: Path, python_env: dict[str, str]
) -> None:
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": flush_interval}
    store = str(tmp_path / "store")
    run_id, points, batches = kill_at_random(store, tmp_path, env, random.Random(seed).uniform(0.2, 1.5))
    assert points != 0
    lt.set_store(store)
    assert_exactly_once(run_id, points, batches)


@pytest.mark.postgres
@pytest.mark.parametrize("seed", range(2))
def test_sigkill_at_a_random_moment_loses_no_acknowledged_point_on_postgres(
    seed: int, postgres_url: str, tmp_path: Path, python_env: dict[str, str]
) -> None:
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "0.05", "LABTRACK_ARTIFACTS": str(tmp_path / "artifacts")}
    run_id, points, batches = kill_at_random(postgres_url, tmp_path, env, random.Random(seed).uniform(0.2, 1.5))
    lt.set_store(postgres_url)
    assert_exactly_once(run_id, points, batches)


def test_a_recovery_killed_half_way_is_finished_by_the_next_one_exactly_once(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    """Everything of the dead child is still in its spool (the writer never ran); the first recovery is
    killed while it stores it; the second finishes it: still every point exactly once."""
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "3600", "LABTRACK_FLUSH_POINTS": str(10**9)}
    store = str(tmp_path / "store")
    run_id, points, batches = kill_at_random(store, tmp_path, env, 2.0)
    recovering = subprocess.Popen([sys.executable, "-c", f"import labtrack as lt; lt.Client({store!r})"], env=env)
    stored = 0
    deadline = time.monotonic() + 60
    while not stored and time.monotonic() < deadline:  # read the store as it is, without recovering
        time.sleep(0.01)
        with contextlib.suppress(lt.LabtrackError):
            raw = open_store(store)
            try:
                stored = len(raw.get_metric_history(run_id, "x"))
            finally:
                raw.close()
    recovering.kill()  # the recovery has stored its first cut (a million points) of the spool, not all of it
    recovering.wait(timeout=60)
    assert 0 < stored < abs(points) or (points < 0 and stored > 0)  # killed half way (or: floor only)
    tracking.reset()
    lt.set_store(store)
    assert_exactly_once(run_id, points, batches)
    assert list(Path(os.environ["LABTRACK_SPOOL_DIR"]).glob("*/*/meta.json")) == []  # recovered: removed


def test_labtrack_recover_stores_a_dead_process_spool_and_says_what_it_did(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "3600", "LABTRACK_FLUSH_POINTS": str(10**9)}  # all in the spool
    store = str(tmp_path / "store")
    run_id, points, batches = kill_at_random(store, tmp_path, env, 0.5)
    done = subprocess.run([sys.executable, "-m", "labtrack", "recover", "--json", "--store", store], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["spools"] == 1 and report["runs"] == [run_id] and report["crashed"] == [run_id]
    assert report["problems"] == []
    again = subprocess.run([sys.executable, "-m", "labtrack", "recover", "--store", store], env=env,
                           capture_output=True, text=True, timeout=120)
    assert "Nothing to recover" in again.stdout
    lt.set_store(store)
    assert_exactly_once(run_id, points, batches)
    run = lt.get_run(run_id)
    assert report["points"] == len(run.history("x")) + len(run.history("b"))  # all of it came from the spool
    last_point = max(run.history("x").timestamps)
    assert run.end_time is not None and run.end_time >= last_point  # crashed after its last point, not at its start
