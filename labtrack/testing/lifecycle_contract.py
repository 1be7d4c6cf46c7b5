"""The Store contract's promises about deleting, restoring and collecting runs (see ``labtrack.store.base``),
as a mixin of ``StoreContract``: each test gets a new, empty ``store``."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from labtrack.core.errors import ExperimentNotFound, RunNotFound
from labtrack.core.filters import parse_filter
from labtrack.core.model import ArtifactInfo, ClaimState, Lifecycle, RunEnd, RunStatus, RunWrite, Search
from labtrack.core.series import Chunk
from labtrack.store import Store

__all__ = ["LifecycleContract"]


def _run(store: Store, experiment: str, name: str, *, key: str | None = None, end: bool = True,
         artifact: bytes | None = None) -> str:
    """A run with a param, a tag, a metric, an ingest mark and (optionally) an artifact, FINISHED unless
    ``end`` is False."""
    from labtrack.core.model import IngestMark, NewRun

    run_id = os.urandom(16).hex()
    items = []
    if artifact is not None:
        sha, size = store.put_artifact_bytes(artifact)
        items.append(ArtifactInfo(path="model.bin", sha256=sha, size=size))
    store.write([RunWrite(run_id, create=NewRun(id=run_id, experiment=experiment, start_time=time.time(), name=name,
                                                params={"lr": 0.1}, tags={"t": name}, run_key=key,
                                                artifacts=items),
                          metrics={"acc": Chunk.from_points([(0, time.time(), 0.5), (1, time.time(), 0.9)])},
                          mark=IngestMark("spool-" + name, 10, 20),
                          end=RunEnd(RunStatus.FINISHED, time.time()) if end else None)])
    return run_id


def _names(store: Store, lifecycle: Lifecycle = Lifecycle.ACTIVE, **fields: Any) -> list[str]:
    return sorted(r.name or "" for r in store.search_runs(Search(lifecycle=lifecycle, **fields)))


class LifecycleContract:
    def test_a_deleted_run_is_hidden_from_every_search_but_read_by_id(self, store: Store) -> None:
        kept, gone = _run(store, "exp", "kept"), _run(store, "exp", "gone")
        assert store.delete_runs([gone, "f" * 32]) == [gone]  # an unknown id is left out
        assert store.delete_runs([gone]) == []  # deleted already
        assert _names(store) == ["kept"]
        assert _names(store, experiments=["exp"], max_results=10) == ["kept"]
        assert _names(store, filter=parse_filter("metrics.acc > 0.1"), order_by=_order("metrics.acc desc"),
                      max_results=5) == ["kept"]  # the plan that walks a metric's index
        assert _names(store, Lifecycle.DELETED) == ["gone"]
        assert _names(store, Lifecycle.ALL) == ["gone", "kept"]
        record = store.get_run(gone)
        assert record.deleted_time is not None and record.params == {"lr": 0.1}
        assert store.get_run(kept).deleted_time is None
        table = store.run_table([], Search(experiments=["exp"]))  # the runs as columns, as listings load them
        assert table.ids == [kept]
        assert store.run_table([], Search(lifecycle=Lifecycle.DELETED)).ids == [gone]
        assert store.list_experiments()[0][1] == 1  # live runs only

    def test_restoring_a_run_brings_it_back_as_it_was(self, store: Store) -> None:
        run_id = _run(store, "exp", "r")
        store.delete_runs([run_id])
        assert store.restore_runs([run_id]) == [run_id]
        assert store.restore_runs([run_id]) == []  # not deleted
        assert _names(store) == ["r"] and store.get_run(run_id).deleted_time is None

    def test_a_deleted_finished_run_does_not_count_as_run(self, store: Store) -> None:
        key = "k" * 64
        run_id = _run(store, "exp", "r", key=key)
        now = store.now()
        assert store.claim(key, "sweep1/h/1", 60.0, now) is ClaimState.DONE
        store.delete_runs([run_id])
        assert store.find_finished_run(key) is None
        assert store.finished_keys([key]) == set()
        assert store.claim(key, "sweep2/h/2", 60.0, now) is ClaimState.CLAIMED  # runs again
        store.release_claim(key, "sweep2/h/2", done=True, run_id=_run(store, "exp", "again", key=key))
        store.restore_runs([run_id])
        assert store.find_finished_run(key) is not None

    def test_a_sweeps_done_claim_is_dropped_with_its_run(self, store: Store) -> None:
        key = "d" * 64
        now = store.now()
        assert store.claim(key, "sweep1/h/1", 60.0, now) is ClaimState.CLAIMED
        run_id = _run(store, "exp", "r", key=key)
        store.release_claim(key, "sweep1/h/1", done=True, run_id=run_id)
        assert store.claim(key, "sweep2/h/2", 60.0, now) is ClaimState.DONE
        store.delete_runs([run_id])
        assert store.claim(key, "sweep3/h/3", 60.0, now) is ClaimState.CLAIMED

    def test_deleting_an_experiment_deletes_its_runs_and_restoring_brings_back_those(self, store: Store) -> None:
        before = _run(store, "exp", "deleted-before")
        _run(store, "exp", "a")
        _run(store, "exp", "b")
        _run(store, "other", "c")
        store.delete_runs([before])
        time.sleep(0.01)  # deletion times differ
        assert store.delete_experiment("exp") == 2
        assert store.delete_experiment("exp") == 0  # deleted already
        assert [e.name for e, _ in store.list_experiments()] == ["other"]
        deleted = store.list_experiments(Lifecycle.DELETED)
        assert [(e.name, n) for e, n in deleted] == [("exp", 2)] and deleted[0][0].deleted_time is not None
        assert _names(store) == ["c"]
        assert store.restore_experiment("exp") == 2
        assert store.restore_experiment("exp") is None  # not deleted
        assert _names(store) == ["a", "b", "c"]  # the run deleted before stays deleted
        with pytest.raises(ExperimentNotFound):
            store.delete_experiment("nope")

    def test_a_run_started_in_a_deleted_experiment_brings_it_back_alone(self, store: Store) -> None:
        _run(store, "exp", "old")
        store.get_or_create_experiment("exp")  # cached by this store object, as a training process has it
        store.delete_experiment("exp")
        _run(store, "exp", "new")
        assert [(e.name, n) for e, n in store.list_experiments()] == [("exp", 1)]
        assert _names(store, experiments=["exp"]) == ["new"]
        store.delete_experiment("exp")
        assert store.get_or_create_experiment("exp").name == "exp"  # asked for by name: back too
        assert [e.name for e, _ in store.list_experiments()] == ["exp"]

    def test_gc_removes_deleted_runs_and_experiments_for_good(self, store: Store) -> None:
        live = _run(store, "exp", "live", artifact=b"shared bytes")
        gone = _run(store, "exp", "gone", artifact=b"shared bytes")  # the same content: one blob, still listed
        alone = _run(store, "old", "alone")
        store.delete_runs([gone])
        store.delete_experiment("old")
        now = store.now()
        dry = store.collect_garbage(now + 1, stale_before=now - 60, dry_run=True)
        assert (dry.runs, dry.experiments, dry.dry_run) == (2, 1, True)
        assert store.get_run(gone).deleted_time is not None  # nothing removed
        done = store.collect_garbage(now + 1, stale_before=now - 60)
        assert (done.runs, done.experiments, done.dry_run) == (2, 1, False)
        for run_id in (gone, alone):
            with pytest.raises(RunNotFound):
                store.get_run(run_id)
            assert store.list_artifacts(run_id) == [] and store.ingest_mark(run_id, "spool-gone") is None
        assert [e.name for e, _ in store.list_experiments(Lifecycle.ALL)] == ["exp"]
        assert store.get_run(live).metrics["acc"].count == 2
        with store.open_artifact(store.list_artifacts(live)[0].sha256) as handle:
            assert handle.read() == b"shared bytes"  # another run's deletion leaves the content it shares
        assert store.collect_garbage(now + 1, stale_before=now - 60).runs == 0  # nothing left to do

    def test_gc_keeps_what_is_recent_or_still_running(self, store: Store) -> None:
        old = _run(store, "exp", "old")
        running = _run(store, "exp", "running", end=False)
        store.heartbeat(running, store.now())
        store.delete_runs([old, running])
        now = store.now()
        report = store.collect_garbage(now - 3600, stale_before=now - 60)  # deleted more than an hour ago: none
        assert (report.runs, report.kept_running) == (0, 0)
        report = store.collect_garbage(now + 1, stale_before=now - 60)
        assert (report.runs, report.kept_running) == (1, 1)
        assert store.get_run(running).deleted_time is not None
        store.put_artifact_bytes(b"just stored, not listed yet")
        report = store.collect_garbage(now + 1, stale_before=now - 60)
        assert (report.blobs, report.kept_recent_blobs) == (0, 1)
        store.end_run(running, RunStatus.KILLED, time.time())
        assert store.collect_garbage(now + 1, stale_before=now - 60).runs == 1  # ended: collected


def _order(text: str) -> Any:
    from labtrack.core.query import parse_order_by

    return parse_order_by(text)
