"""A store that fails while training runs: labtrack warns once, keeps the points, and catches up.

The failure is real: another connection holds SQLite's exclusive lock, so every write of the run times
out with "database is locked" (the busy timeout is shortened to make that quick).
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import pytest

import labtrack as lt


@pytest.fixture
def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_SQLITE_BUSY_TIMEOUT", "0.2")
    monkeypatch.setenv("LABTRACK_FLUSH_INTERVAL", "3600")  # flushes happen when the test asks


def _lock(store_dir: Path) -> sqlite3.Connection:
    blocker = sqlite3.connect(store_dir / "labtrack.db", isolation_level=None, timeout=5)
    blocker.execute("BEGIN EXCLUSIVE")
    return blocker


@pytest.mark.usefixtures("quick_timeouts")
def test_a_locked_store_warns_once_loses_nothing_and_catches_up(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    lt.set_store(str(store_dir))
    run = lt.start_run("outage")
    for step in range(100):
        run.log_metric("loss", 1.0 / (step + 1), step=step)

    blocker = _lock(store_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(100, 200):
            run.log_metric("loss", 1.0 / (step + 1), step=step)  # training goes on: only buffered
        assert run.flush_in_background() is False  # the background write fails...
        assert run.flush_in_background() is False  # ...and fails again
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "kept in memory" in messages[0]  # warned once, not per attempt

    blocker.execute("ROLLBACK")
    blocker.close()
    run.end()
    history = lt.get_run(run.id).history("loss")
    assert history.steps == list(range(200))  # every point, in order, none twice
    assert lt.get_run(run.id).status == lt.RunStatus.FINISHED


@pytest.mark.usefixtures("quick_timeouts")
def test_ending_a_run_while_the_store_is_locked_raises_and_a_retry_keeps_every_point(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    lt.set_store(str(store_dir))
    run = lt.start_run("outage")
    for step in range(50):
        run.log_metric("acc", step / 50, step=step)
    blocker = _lock(store_dir)
    with pytest.raises(lt.StoreError, match="locked"):
        run.end()
    blocker.execute("ROLLBACK")
    blocker.close()
    run.end()  # the same call again, once the store is back
    assert lt.get_run(run.id).history("acc").steps == list(range(50))
