"""Metric chunks carry a crc32: damaged points raise DataDamaged naming the run and key instead of being
returned as data, writes never give damaged points a fresh checksum, and `labtrack db check` lists what is
damaged (issue 12, item 4)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import checkpointed_bytes
from sqlalchemy import create_engine, text

import labtrack as lt
from labtrack.cli import main
from labtrack.store import resolve_location
from labtrack.verbs import tracking


def _values(n: int) -> list[float]:
    return [1 / (s + 1) for s in range(n)]


def _two_metrics(location: str) -> str:
    lt.set_store(location)
    with lt.start_run("damage") as run:
        for step, value in enumerate(_values(100)):
            run.log_metrics({"loss": value, "acc": 1 - value}, step=step)
    tracking.reset()  # drained and closed: the file holds everything
    return run.id


def _flip_stored_values(location: str, run_id: str, key: str, *, cut: bool = False) -> None:
    """Damage one chunk through SQL, as a bad sector or a hand edit would leave it (the file-level flip below
    needs a quiet store; this one works on either backend and next to a live writer)."""
    url, _, _ = resolve_location(location)
    engine = create_engine(url)
    with engine.begin() as conn:
        data = bytearray(conn.execute(text("SELECT value_data FROM metric_chunks WHERE run_id = :r AND key = :k"),
                                      {"r": run_id, "k": key}).scalar_one())
        if cut:
            del data[-8:]
        else:
            data[400:416] = bytes(b ^ 0x5A for b in data[400:416])
        conn.execute(text("UPDATE metric_chunks SET value_data = :d WHERE run_id = :r AND key = :k"),
                     {"d": bytes(data), "r": run_id, "k": key})
    engine.dispose()


def test_sixteen_flipped_bytes_in_the_file_pass_sqlite_but_not_labtrack(tmp_path: Path) -> None:
    location = str(tmp_path / "store")
    run_id = _two_metrics(location)
    database = tmp_path / "store" / "labtrack.db"
    stored = checkpointed_bytes(database)
    target = struct.pack("<2d", *_values(100)[50:52])  # loss at steps 50 and 51, as the chunk packs them
    at = stored.find(target)
    assert at > 0 and stored.find(target, at + 1) == -1
    stored[at : at + 16] = bytes(b ^ 0xFF for b in stored[at : at + 16])
    database.write_bytes(bytes(stored))

    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:  # SQLite's own check cannot see it: the page is well formed
        assert conn.exec_driver_sql("PRAGMA integrity_check").all() == [("ok",)]
    engine.dispose()

    lt.set_store(location)
    run = lt.get_run(run_id)
    with pytest.raises(lt.DataDamaged) as caught:
        run.history("loss")
    message = str(caught.value)
    assert run_id in message and "'loss'" in message and "labtrack db check" in message
    assert isinstance(caught.value, lt.StoreError)
    assert run.history("acc").values == [1 - v for v in _values(100)]  # the run's other series are intact
    assert run.metrics["acc"] == pytest.approx(0.99)

    result = CliRunner().invoke(main, ["db", "check", "--store", location])
    assert result.exit_code == 1, result.output
    assert run_id[:8] in result.stdout and "loss" in result.stdout and "checksum" in result.stdout
    assert "Checked 2 metric chunks (200 points)" in result.stdout
    report = json.loads(CliRunner().invoke(main, ["db", "check", "--json", "--store", location]).stdout)
    assert [(d["run_id"], d["experiment"], d["key"], d["seq"]) for d in report["damaged"]] == [
        (run_id, "damage", "loss", 0)]
    assert report["database"] == [] and report["ok"] is False


def test_damage_is_reported_on_each_backend_and_new_points_never_launder_it(store_url: str) -> None:
    lt.set_store(store_url)
    run = lt.start_run("launder")
    for step in range(100):
        run.log_metric("loss", float(step), step=step)
    lt.flush()
    _flip_stored_values(store_url, run.id, "loss")
    for step in range(100, 150):  # the damaged chunk is the series' small tail, which writes extend
        run.log_metric("loss", float(step), step=step)
    run.end()
    with pytest.raises(lt.DataDamaged, match=f"metric 'loss' of run {run.id}: stored chunk 0 is damaged"):
        lt.get_run(run.id).history("loss")
    report = tracking.check_store()
    assert [(d.run_id, d.key, d.seq) for d in report.damaged] == [(run.id, "loss", 0)]
    assert (report.chunks, report.points, report.unchecked) == (2, 150, 0)
    assert not report.ok and report.advice


def test_a_chunk_cut_short_is_damaged_too(store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("cut") as run:
        for step in range(10):
            run.log_metric("m", float(step), step=step)
    lt.flush()
    _flip_stored_values(store_url, run.id, "m", cut=True)
    with pytest.raises(lt.DataDamaged, match="72 bytes for 10 points"):
        lt.get_run(run.id).history("m")


def test_an_undamaged_store_checks_clean(store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("clean") as run:
        for step in range(20_000):  # three chunks
            run.log_metric("m", float(step), step=step)
    result = CliRunner().invoke(main, ["db", "check", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert "(20,000 points)" in result.stdout and "No damage found." in result.stdout
    assert len(lt.get_run(run.id).history("m")) == 20_000
