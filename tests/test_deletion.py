"""Delete and restore runs and experiments, then `labtrack gc` (issue 13, finding 8): what MLflow users expect,
on SQLite and PostgreSQL. The store-level promises are in labtrack.testing.lifecycle_contract (run by
tests/test_store_contract.py for every backend); these go through the API and the CLI as a user does."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

import labtrack as lt
from labtrack.cli import main
from labtrack.verbs import tracking


def cli(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(main, list(args), env={"COLUMNS": "160"})
    return done.exit_code, " ".join(done.stdout.split()), " ".join(done.stderr.split())


def _train(experiment: str, lr: float, content: bytes | None = None) -> lt.Run:
    with lt.start_run(experiment, params={"lr": lr}, tags={"stage": "try"}) as run:
        for step in range(3):
            run.log_metric("acc", lr * step, step=step)
        if content is not None:
            Path("model.bin").write_bytes(content)
            run.log_artifact("model.bin")
    return run


def _rows(store_url: str, run_id: str) -> dict[str, int]:
    """Rows the run still has in each table, read with SQL beside labtrack."""
    store = tracking.client().store
    url = store._engine.url  # type: ignore[attr-defined]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {table: conn.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = :i"), {"i": run_id}).scalar_one()
                    for table, column in (("runs", "id"), ("params", "run_id"), ("tags", "run_id"),
                                          ("metrics", "run_id"), ("metric_chunks", "run_id"), ("artifacts", "run_id"),
                                          ("ingest_marks", "run_id"), ("claims", "run_id"))}
    finally:
        engine.dispose()


def _blob_files() -> list[Path]:
    lt.flush()  # artifacts reach the store in the background
    root = Path(tracking.client().store.blobs.root)  # type: ignore[attr-defined]
    return sorted((root / "sha256").glob("*/*"))


def _age_blobs(seconds: float = 7200.0) -> None:
    """Make every stored blob look stored two hours ago: older than gc's grace period for unlisted blobs."""
    for path in _blob_files():
        os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_a_deleted_run_leaves_every_listing_and_is_restored_as_it_was(store_url: str) -> None:
    lt.set_store(store_url)
    kept, gone = _train("mnist", 0.1), _train("mnist", 0.01)
    assert lt.delete_run(gone.name or "") is True  # a name stands for the id, as everywhere
    assert lt.delete_run(gone.id) is False  # deleted already
    assert [r.id for r in lt.search_runs("mnist")] == [kept.id]
    assert [r.id for r in lt.search_runs(filter="metrics.acc >= 0")] == [kept.id]
    assert [r.id for r in lt.search_runs("mnist", lifecycle="deleted")] == [gone.id]
    assert len(lt.search_runs("mnist").to_pandas()) == 1  # the runs as columns, as listings load them
    assert lt.list_experiments()[0][1] == 1
    code, out, _ = cli("runs", "mnist")
    assert code == 0 and kept.id[:8] in out and gone.id[:8] not in out
    code, out, _ = cli("runs", "mnist", "--group-by", "params.lr")
    assert code == 0 and "0.01" not in out
    code, out, _ = cli("runs", "--deleted")
    assert code == 0 and gone.id[:8] in out and kept.id[:8] not in out
    code, out, _ = cli("show", gone.id[:8])  # still readable by id, and says so
    assert code == 0 and "deleted" in out and f"labtrack restore {gone.id[:8]}" in out
    assert lt.get_run(gone.id).history("acc").values == [0.0, 0.01, 0.02]
    assert lt.restore_run(gone.id) is True and lt.restore_run(gone.id) is False
    assert {r.id for r in lt.search_runs("mnist")} == {kept.id, gone.id}


def test_a_deleted_result_runs_again_and_a_restored_one_is_skipped_again(store_url: str) -> None:
    lt.set_store(store_url)
    calls: list[float] = []

    @lt.track("cached")
    def train(lr: float) -> float:
        calls.append(lr)
        return lr * 2

    assert train(0.5) == 1.0 and train(0.5) == 1.0 and calls == [0.5]  # the second call is skipped
    [done] = lt.search_runs("cached")
    assert train.exists(lr=0.5)
    lt.delete_run(done.id)
    assert not train.exists(lr=0.5)  # a deleted result does not count as done
    assert train(0.5) == 1.0 and calls == [0.5, 0.5]
    result = lt.sweep(train, grid={"lr": [0.5, 0.25]})
    assert [c["lr"] for c in result.skipped] == [0.5] and [c["lr"] for c in result.ran] == [0.25]
    swept = [r for r in lt.search_runs("cached") if r.params["lr"] == 0.25]
    lt.delete_run(swept[0].id)  # the sweep's claim on it was done: the next sweep runs it again
    assert [c["lr"] for c in lt.sweep(train, grid={"lr": [0.25]}).ran] == [0.25]


def test_deleting_an_experiment_and_restoring_it_from_the_cli(store_url: str) -> None:
    lt.set_store(store_url)
    early = _train("cifar", 0.3)
    later = [_train("cifar", 0.1), _train("cifar", 0.2)]
    _train("other", 0.1)
    assert cli("delete", early.id)[0] == 0
    code, out, _ = cli("delete", "--experiment", "cifar")
    assert code == 0 and "deleted experiment cifar with 2 run(s)" in out and "labtrack restore --experiment cifar" in out
    assert cli("delete", "--experiment", "cifar")[1].endswith("was deleted already")
    code, out, _ = cli("experiments")
    assert code == 0 and "other" in out and "cifar" not in out
    code, out, _ = cli("experiments", "--deleted")
    assert code == 0 and "cifar" in out
    code, _, err = cli("runs", "cifar")
    assert code == 1 and "is deleted" in err and "labtrack restore --experiment cifar" in err
    assert {r.experiment for r in lt.search_runs()} == {"other"}
    code, out, _ = cli("restore", "--experiment", "cifar")
    assert code == 0 and "restored experiment cifar with 2 run(s)" in out
    assert {r.id for r in lt.search_runs("cifar")} == {r.id for r in later}  # the run deleted before stays so
    code, _, err = cli("restore", "--experiment", "cifar")
    assert code == 1 and "not deleted" in err


def test_training_into_a_deleted_experiment_brings_it_back_with_only_the_new_run(store_url: str) -> None:
    lt.set_store(store_url)
    _train("mnist", 0.1)
    lt.delete_experiment("mnist")
    new = _train("mnist", 0.2)  # the client has the experiment cached from before: it is brought back anyway
    assert [(e.name, n) for e, n in lt.list_experiments()] == [("mnist", 1)]
    assert [r.id for r in lt.search_runs("mnist")] == [new.id]


def test_gc_removes_deleted_runs_everywhere_and_the_content_no_run_lists(store_url: str) -> None:
    lt.set_store(store_url)
    live = _train("mnist", 0.1, b"weights shared by two runs")
    gone = _train("mnist", 0.2, b"weights shared by two runs")
    alone = _train("mnist", 0.3, b"weights of one run only")
    _age_blobs()
    assert len(_blob_files()) == 2
    lt.delete_run(gone.id)
    lt.delete_run(alone.id)
    code, out, _ = cli("gc", "--older-than", "1h")  # deleted just now: not yet
    assert code == 0 and "removed 0 deleted run(s)" in out
    code, out, _ = cli("gc", "--dry-run")
    assert code == 0 and "would remove 2 deleted run(s), 0 deleted experiment(s) and 1 unreferenced artifact blob(s)" in out
    assert len(_blob_files()) == 2 and _rows(store_url, gone.id)["runs"] == 1
    code, out, _ = cli("gc")
    assert code == 0 and "removed 2 deleted run(s)" in out and "1 unreferenced artifact blob(s) (23 B)" in out
    for run in (gone, alone):
        assert set(_rows(store_url, run.id).values()) == {0}, run.name
    assert len(_blob_files()) == 1
    assert lt.get_run(live.id).download_artifacts(Path("out"))  # the shared content stays
    assert Path("out/model.bin").read_bytes() == b"weights shared by two runs"
    code, _, err = cli("show", gone.id)
    assert code == 1 and "no run" in err


def test_gc_leaves_a_deleted_run_that_is_still_training(store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("live") as run:
        run.log_metric("loss", 1.0)
        run.flush()
        lt.delete_run(run.id)
        report = tracking.client().gc()
        assert (report.runs, report.kept_running) == (0, 1)
        run.log_metric("loss", 0.5)  # training goes on, its writes still land
    assert lt.get_run(run.id).history("loss").values == [1.0, 0.5]
    assert tracking.client().gc().runs == 1  # ended: collected


def test_gc_json_and_vacuum_give_the_space_back_on_sqlite(tmp_path: Path) -> None:
    lt.set_store(str(tmp_path / "store"))
    runs = []
    for i in range(40):
        with lt.start_run("big", params={"i": i}) as run:
            run.log_metrics({"loss": 1.0}, step=0)
            for step in range(1, 2000):
                run.log_metric("loss", 1.0 / step, step=step)
        runs.append(run)
    lt.flush()
    for run in runs:
        lt.delete_run(run.id)
    database = tmp_path / "store" / "labtrack.db"
    before = database.stat().st_size
    code, out, _ = cli("gc", "--vacuum", "--json")
    import json

    report = json.loads(out)
    assert code == 0 and report["runs"] == 40 and report["compacted_bytes"] > 0
    assert database.stat().st_size < before
    sqlite3.connect(database).execute("PRAGMA integrity_check").fetchone()


def test_mistakes_are_named_and_change_nothing(store_url: str) -> None:
    lt.set_store(store_url)
    run = _train("mnist", 0.1)
    code, _, err = cli("delete")
    assert code == 1 and "name the runs" in err
    code, _, err = cli("delete", run.id, "ffffffff")  # one unknown id: nothing is deleted
    assert code == 1 and "ffffffff" in err
    assert lt.get_run(run.id).record.deleted_time is None
    code, _, err = cli("delete", "--experiment", "mnsit")
    assert code == 1 and "did you mean 'mnist'" in err
    code, _, err = cli("delete", run.id, "--experiment", "mnist")
    assert code == 1 and "not both" in err
    code, _, err = cli("gc", "--older-than", "30 days")
    assert code == 1 and "older_than" in err and "30d" in err
    code, _, err = cli("restore", run.id)
    assert code == 0
    with pytest.raises(lt.InvalidInput, match="lifecycle"):
        lt.search_runs(lifecycle="gone")


def test_a_store_at_revision_0005_upgrades_and_keeps_its_runs(tmp_path: Path) -> None:
    location = str(tmp_path / "old")
    lt.set_store(location)
    run = _train("before", 0.1)
    tracking.reset()
    engine = create_engine(f"sqlite:///{tmp_path / 'old' / 'labtrack.db'}")
    with engine.begin() as conn:  # as revision 0005 left a store: no deletion times
        conn.execute(text("ALTER TABLE runs DROP COLUMN deleted_time"))
        conn.execute(text("ALTER TABLE experiments DROP COLUMN deleted_time"))
        conn.execute(text("DROP TABLE tokens"))  # (0007)
        conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
    engine.dispose()
    code, _, err = cli("runs", "--store", location)
    assert code == 1 and "labtrack db upgrade" in err
    assert cli("db", "upgrade", "--store", location)[0] == 0
    lt.set_store(location)
    assert [r.id for r in lt.search_runs("before")] == [run.id]
    assert lt.delete_run(run.id) and lt.search_runs("before") == []


def test_storing_content_again_protects_it_from_a_concurrent_gc(tmp_path: Path) -> None:
    from labtrack.store.blobs import LocalBlobStore

    blobs = LocalBlobStore(tmp_path / "artifacts")
    sha, _ = blobs.put_bytes(b"checkpoint")
    old = time.time() - 7200
    os.utime(blobs._blob_path(sha), (old, old))
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"checkpoint")
    os.utime(staged, (old, old))
    assert blobs.put_file(staged, move=True)[0] == sha  # a new run lists the same content
    [blob] = blobs.list_blobs()
    assert blob.modified > old + 3600
    assert not blobs.delete_blob(sha, unchanged_since=time.time() - 3600)  # stored again since: kept
    assert blobs.delete_blob(sha, unchanged_since=time.time() + 1) and not blobs.exists(sha)


def test_gc_touches_nothing_in_the_artifacts_directory_but_blobs(store_url: str) -> None:
    lt.set_store(store_url)
    run = _train("mnist", 0.1, b"weights")
    [blob] = _blob_files()
    strays = [blob.parent / "notes.txt", blob.parent.parent / "README"]
    for stray in strays:
        stray.write_text("not a blob")
    _age_blobs()
    lt.delete_run(run.id)
    assert tracking.client().gc().blobs == 1
    assert all(stray.read_text() == "not a blob" for stray in strays)
