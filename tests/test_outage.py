"""Real store outages while training runs: training goes on, labtrack warns once, and when the store is back
the run ends FINISHED with every point, param, tag, note and artifact.

The outages are real: another *process* holds SQLite's exclusive lock for 10 s; the test's own PostgreSQL
cluster (fsync on) is stopped and started again, or restarted with ``pg_ctl restart -m fast`` while a thread
logs. How fast logging stays during an outage is measured by the benchmark (``make bench``), not here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import labtrack as lt
from tests.conftest import Cluster

BLOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", time.time(), flush=True)
"""


def lock_in_another_process(db: Path, seconds: float, tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "blocker.py"
    script.write_text(BLOCKER)
    blocker = subprocess.Popen([sys.executable, str(script), str(db), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert blocker.stdout is not None and blocker.stdout.readline().strip() == "locked"
    return blocker


def log_everything(run: lt.Run, start: int, n: int, tmp_path: Path, tag: str) -> None:
    """One of each kind of write: points one by one and as a batch, params, tags, a note, artifacts."""
    for step in range(start, start + n):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_batch({f"batch_{tag}": [float(i) for i in range(100)]})
    run.log_params({f"param_{tag}": tag})
    run.set_tags({f"tag_{tag}": tag})
    run.set_note(f"note {tag}")
    run.log_text(f"text {tag}", f"notes/{tag}.txt")
    model = tmp_path / f"model_{tag}.bin"
    model.write_bytes(tag.encode() * 1000)
    run.log_artifact(model, "models")
    model.write_bytes(b"changed after logging")  # the artifact is what the file held at the call


def assert_everything(run_id: str, points: int, tags: list[str], tmp_path: Path) -> None:
    got = lt.get_run(run_id)
    assert got.status is lt.RunStatus.FINISHED
    history = got.history("loss")
    assert history.steps == list(range(points))  # every point, once, in order
    assert history.values == [1.0 / (s + 1) for s in range(points)]
    for tag in tags:
        assert got.history(f"batch_{tag}").values == [float(i) for i in range(100)]
        assert got.params[f"param_{tag}"] == tag and got.tags[f"tag_{tag}"] == tag
        assert got.open_artifact(f"notes/{tag}.txt").read() == f"text {tag}".encode()
        assert got.open_artifact(f"models/model_{tag}.bin").read() == tag.encode() * 1000
    assert got.note == f"note {tags[-1]}"


def outage_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "cannot write to store" in str(w.message)]


def test_sqlite_locked_by_another_process_for_10_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_SQLITE_BUSY_TIMEOUT", "0.2")  # each attempt fails fast, then backs off
    monkeypatch.setenv("LABTRACK_FLUSH_INTERVAL", "0.1")
    store = tmp_path / "store"
    lt.set_store(str(store))
    run = lt.start_run("outage", params={"lr": 0.1})
    log_everything(run, 0, 1000, tmp_path, "before")
    run.flush()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blocker = lock_in_another_process(store / "labtrack.db", 10.0, tmp_path)
        log_everything(run, 1000, 50_000, tmp_path, "during")  # training goes on: nothing waits for the store
        time.sleep(1.0)  # the writer tries, fails and backs off meanwhile
        assert blocker.poll() is None  # still locked
        run.end()  # returns at once: the end is crash-safe in the spool, with everything else
        assert blocker.poll() is None and lt.active_run() is None
        run.flush()  # waits until the store is back (LABTRACK_FLUSH_TIMEOUT, 60 s by default) and has it all
        flushed = time.time()
    out, _ = blocker.communicate(timeout=30)
    released = float(out.split()[-1])
    assert flushed >= released
    assert len(outage_warnings(caught)) == 1  # warned once, not per attempt
    assert_everything(run.id, 51_000, ["before", "during"], tmp_path)


def test_a_flush_that_outlasts_its_timeout_raises_and_everything_is_written_when_the_store_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_SQLITE_BUSY_TIMEOUT", "0.2")
    monkeypatch.setenv("LABTRACK_FLUSH_TIMEOUT", "1")
    store = tmp_path / "store"
    lt.set_store(str(store))
    run = lt.start_run("outage")
    blocker = lock_in_another_process(store / "labtrack.db", 4.0, tmp_path)
    log_everything(run, 0, 5000, tmp_path, "during")
    run.end()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the outage's warning
        with pytest.raises(lt.StoreError, match=r"unreachable .* is written when the store is back"):
            run.flush()  # gives up waiting after 1 s: the writes stay in the spool
    blocker.communicate(timeout=30)
    assert_everything(run.id, 5000, ["during"], tmp_path)  # reading settles: written now


def test_postgres_stopped_and_started_again_mid_run(durable_postgres: Cluster, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("LABTRACK_FLUSH_INTERVAL", "0.1")
    lt.set_store(f"postgresql+psycopg://postgres@127.0.0.1:{durable_postgres.port}/postgres")
    run = lt.start_run("outage", params={"lr": 0.1})
    log_everything(run, 0, 1000, tmp_path, "before")
    run.flush()  # the writer's connection is open and in use when the server goes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        durable_postgres.stop_server("fast")
        log_everything(run, 1000, 50_000, tmp_path, "during")
        time.sleep(1.0)
        durable_postgres.start_server()
        log_everything(run, 51_000, 1000, tmp_path, "after")
        run.end()
    assert len(outage_warnings(caught)) == 1
    assert_everything(run.id, 52_000, ["before", "during", "after"], tmp_path)


def test_postgres_restarted_while_a_thread_logs_as_fast_as_it_can(durable_postgres: Cluster,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("LABTRACK_FLUSH_INTERVAL", "0.05")
    lt.set_store(f"postgresql+psycopg://postgres@127.0.0.1:{durable_postgres.port}/postgres")
    run = lt.start_run("restart")
    logged: dict[str, Any] = {"n": 0}
    stop = threading.Event()

    def train() -> None:
        step = 0
        while not stop.is_set() or step < 20_000:
            run.log_metric("loss", float(step), step=step)
            step += 1
        logged["n"] = step

    trainer = threading.Thread(target=train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.start()
        try:
            time.sleep(0.5)
            durable_postgres.restart("fast")
            time.sleep(0.5)
        finally:
            stop.set()
            trainer.join(timeout=120)
        run.end()
    got = lt.get_run(run.id)
    assert got.status is lt.RunStatus.FINISHED
    assert got.history("loss").steps == list(range(logged["n"]))


def test_a_full_spool_drops_new_points_with_a_warning_and_keeps_what_came_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long outage at a high rate: past LABTRACK_SPOOL_MAX_MB (16 MB here: two files of 262,144 points)
    new points are given up, so neither the disk nor memory fills; nothing logged before is lost, nothing
    read back is garbage, and once the store takes what waits, logging is whole again."""
    monkeypatch.setenv("LABTRACK_SQLITE_BUSY_TIMEOUT", "0.2")
    monkeypatch.setenv("LABTRACK_SPOOL_MAX_MB", "16")
    store = tmp_path / "store"
    lt.set_store(str(store))
    run = lt.start_run("full")
    blocker = lock_in_another_process(store / "labtrack.db", 3.0, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1_000_000):
            run.log_metric("x", float(step), step=step)
    assert any("new points are dropped" in str(w.message) for w in caught)
    blocker.communicate(timeout=30)
    run.flush()
    # The store took what waited: the spool has room again from its next file on (the file being given up
    # when the store came back is given up whole: a reader skips whole files).
    for step in range(1_000_000, 1_300_000):
        run.log_metric("x", float(step), step=step)
    run.end()
    history = lt.get_run(run.id).history("x")
    assert history.values == [float(s) for s in history.steps]  # every point read back is a real one
    assert history.steps == sorted(set(history.steps))  # none twice
    assert history.steps[: 2 * 262_144 - 10] == list(range(2 * 262_144 - 10))  # the first 16 MB are whole
    assert history.steps[-100:] == list(range(1_299_900, 1_300_000))
    assert len(history) < 1_300_000
