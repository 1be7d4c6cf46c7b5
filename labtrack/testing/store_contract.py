"""The Store contract (``labtrack.store.base``) as a reusable test class: a backend proves it keeps the
contract by subclassing ``StoreContract`` in a test module and giving a ``store_url`` fixture.

    class TestMyBackend(StoreContract):
        @pytest.fixture
        def store_url(self, tmp_path):
            return "mybackend://..."   # a new, empty store for each test

Store-level tests talk to ``open_store(store_url)`` directly; API-level tests go through ``labtrack``
with ``set_store(store_url)``. Needs pytest (``pip install 'labtrack[dev]'``).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import labtrack as lt
from labtrack.core.errors import AmbiguousRunId, ParamConflict, RunNotFound, StoreConflict, StoreError
from labtrack.core.model import (
    ArtifactInfo,
    ClaimState,
    IngestMark,
    NewRun,
    RunEnd,
    RunRecord,
    RunStatus,
    RunWrite,
    Search,
)
from labtrack.core.query import OrderTerm, parse_order_by
from labtrack.core.series import Chunk
from labtrack.store import Store, open_store
from labtrack.store.points import CHUNK_MAX, TAIL_MERGE_BELOW
from labtrack.testing.lifecycle_contract import LifecycleContract

__all__ = ["StoreContract", "chunk", "new_run", "same_floats", "search"]

_INF = math.inf


def new_run(store: Store, experiment: str = "exp", run_id: str | None = None, start: float | None = None,
            **fields: Any) -> str:
    run_id = run_id or uuid.uuid4().hex
    store.create_run(NewRun(id=run_id, experiment=experiment, start_time=time.time() if start is None else start,
                            **fields))
    return run_id


def chunk(*points: tuple[int, float]) -> Chunk:
    """Points as (step, value); timestamps are the point's index, so logging order is visible."""
    return Chunk.from_points((step, float(i), value) for i, (step, value) in enumerate(points))


def same_floats(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all((x != x and y != y) or x == y for x, y in zip(a, b))


def search(store: Store, experiments: Sequence[str] | None = None, order: str | Sequence[OrderTerm] | None = None,
           **fields: Any) -> list[RunRecord]:
    terms = parse_order_by(order) if isinstance(order, str) else list(order or ())
    return store.search_runs(Search(experiments=experiments, order_by=terms, **fields))


def _names(records: list[RunRecord]) -> list[str | None]:
    return [r.name for r in records]


_APPEND_PATTERNS = {
    "one past a chunk": [CHUNK_MAX + 1],
    "small tail then a full chunk": [TAIL_MERGE_BELOW - 1, CHUNK_MAX],
    "many tiny appends then big ones": [1] * 200 + [CHUNK_MAX - 200, 2, CHUNK_MAX * 2 + 5],
    "tails at the merge limit": [TAIL_MERGE_BELOW, TAIL_MERGE_BELOW, 1, TAIL_MERGE_BELOW - 1, 3 * CHUNK_MAX],
    "many small appends": [137] * 80,
}


_ORDERS = {
    "metrics.acc desc": ["c", "a", "e", "b", "d"],
    "metrics.acc asc": ["b", "e", "a", "c", "d"],
    "metrics.loss": ["b", "e", "a", "c", "d"],
    "metrics.loss desc": ["a", "e", "b", "c", "d"],
    "metrics.acc.count desc": ["a", "b", "c", "e", "d"],
    "params.lr desc": ["c", "a", "b", "e", "d"],
    "params.lr": ["e", "b", "a", "c", "d"],
    "params.opt": ["e", "b", "a", "c", "d"],
    "attributes.start_time": ["a", "b", "c", "d", "e"],
    "start_time desc": ["e", "d", "c", "b", "a"],
}


class StoreContract(LifecycleContract):
    """Every promise of the Store contract, as tests. Subclasses give the ``store_url`` fixture."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError("a StoreContract subclass gives a store_url fixture: a new, empty store")

    @pytest.fixture
    def artifacts(self) -> str | None:
        """Where the store under test keeps artifact content, when not its default (e.g. an s3:// location)."""
        return None

    @pytest.fixture
    def store(self, store_url: str, artifacts: str | None) -> Iterator[Store]:
        opened = open_store(store_url, artifacts=artifacts)
        try:
            yield opened
        finally:
            opened.close()

    # -- experiments ----------------------------------------------------------------------------------
    def test_get_or_create_experiment_returns_the_same_experiment_twice(self, store: Store) -> None:
        first = store.get_or_create_experiment("mnist")
        again = store.get_or_create_experiment("mnist")
        other = store.get_or_create_experiment("cifar")
        assert first == again
        assert other.id != first.id
        assert [e.name for e, _ in store.list_experiments()] == ["mnist", "cifar"]

    def test_get_or_create_experiment_sees_an_experiment_created_by_another_handle(self, store_url: str) -> None:
        a, b = open_store(store_url), open_store(store_url)
        try:
            created = a.get_or_create_experiment("shared")
            assert b.get_or_create_experiment("shared").id == created.id
            assert len(b.list_experiments()) == 1
        finally:
            a.close()
            b.close()

    def test_list_experiments_counts_runs_per_experiment(self, store: Store) -> None:
        store.get_or_create_experiment("empty")
        for _ in range(3):
            new_run(store, "three")
        new_run(store, "one")
        counts = {e.name: n for e, n in store.list_experiments()}
        assert counts == {"empty": 0, "three": 3, "one": 1}

    # -- runs -----------------------------------------------------------------------------------------
    def test_create_run_then_get_run_returns_what_was_created(self, store: Store) -> None:
        run_id = new_run(
            store, "exp", start=1000.5, name="first", host="box", pid=4242,
            params={"lr": 0.01, "epochs": 3, "opt": "adam", "flag": True, "none": None, "layers": [64, 32],
                    "nested": {"a": 1}, "whole": 1.0},
            tags={"team": "cv"}, note="hello",
        )
        record = store.get_run(run_id)
        assert record.id == run_id
        assert record.experiment == "exp"
        assert record.status is RunStatus.RUNNING
        assert record.start_time == 1000.5
        assert record.end_time is None
        assert (record.name, record.host, record.pid, record.note) == ("first", "box", 4242, "hello")
        assert record.params == {"lr": 0.01, "epochs": 3, "opt": "adam", "flag": True, "none": None,
                                 "layers": [64, 32], "nested": {"a": 1}, "whole": 1.0}
        assert type(record.params["whole"]) is float and type(record.params["epochs"]) is int
        assert record.tags == {"team": "cv"}
        assert record.metrics == {}

    def test_get_run_of_an_unknown_id_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            store.get_run(uuid.uuid4().hex)

    def test_get_runs_keeps_the_requested_order_and_skips_unknown_ids(self, store: Store) -> None:
        a, b = new_run(store), new_run(store)
        assert [r.id for r in store.get_runs([b, uuid.uuid4().hex, a])] == [b, a]

    def test_resolve_run_id_accepts_the_full_id_and_a_unique_prefix(self, store: Store) -> None:
        run_id = new_run(store, run_id="abcdef" + "0" * 26)
        new_run(store, run_id="abc1" + "1" * 28)
        assert store.resolve_run_id(run_id) == run_id
        assert store.resolve_run_id("abcd") == run_id
        assert store.resolve_run_id("ABCDEF") == run_id  # ids are hex: case does not matter

    def test_resolve_run_id_with_an_ambiguous_prefix_raises_ambiguous_run_id(self, store: Store) -> None:
        first = new_run(store, run_id="abc0" + "0" * 28)
        second = new_run(store, run_id="abc1" + "1" * 28)
        with pytest.raises(AmbiguousRunId) as caught:
            store.resolve_run_id("abc")
        assert first in str(caught.value) and second in str(caught.value)

    def test_resolve_run_id_of_an_unknown_or_malformed_id_raises_run_not_found(self, store: Store) -> None:
        new_run(store, run_id="abc0" + "0" * 28)
        cases = {"unknown prefix": "0123", "unknown full id": "f" * 32, "non-hex": "zzzz", "punctuation": "abc-",
                 "empty": "", "too long": "a" * 33}
        for case, text in cases.items():
            with pytest.raises(RunNotFound) as caught:
                store.resolve_run_id(text)
            assert type(caught.value) is RunNotFound, case

    # -- params ---------------------------------------------------------------------------------------
    def test_log_params_accepts_the_same_value_again_including_1_and_1_0(self, store: Store) -> None:
        run_id = new_run(store, params={"lr": 0.01, "epochs": 3})
        store.log_params(run_id, {"lr": 0.01, "epochs": 3.0, "batch": 32})
        store.log_params(run_id, {"batch": 32})
        assert store.get_run(run_id).params == {"lr": 0.01, "epochs": 3, "batch": 32}

    def test_log_params_with_a_different_value_raises_param_conflict_and_writes_nothing_of_the_batch(self,
        store: Store,
    ) -> None:
        run_id = new_run(store, params={"lr": 0.01})
        with pytest.raises(ParamConflict) as caught:
            store.log_params(run_id, {"new_key": 1, "lr": 0.02, "other": "x"})
        assert "lr" in str(caught.value)
        assert store.get_run(run_id).params == {"lr": 0.01}

    def test_log_params_on_an_unknown_run_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            store.log_params(uuid.uuid4().hex, {"a": 1})

    # -- tags -----------------------------------------------------------------------------------------
    def test_set_tags_overwrites_and_delete_tag_removes(self, store: Store) -> None:
        run_id = new_run(store, tags={"stage": "dev", "team": "cv"})
        store.set_tags(run_id, {"stage": "prod", "extra": "1"})
        assert store.get_run(run_id).tags == {"stage": "prod", "team": "cv", "extra": "1"}
        store.delete_tag(run_id, "team")
        store.delete_tag(run_id, "never-set")
        assert store.get_run(run_id).tags == {"stage": "prod", "extra": "1"}

    def test_set_tags_on_an_unknown_run_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            store.set_tags(uuid.uuid4().hex, {"a": "b"})

    # -- metrics --------------------------------------------------------------------------------------
    def test_log_metrics_keeps_history_and_summary_per_key(self, store: Store) -> None:
        run_id = new_run(store)
        store.log_metrics(run_id, {"loss": chunk((0, 3.0), (1, 2.0)), "acc": chunk((0, 0.5))})
        store.log_metrics(run_id, {"loss": chunk((2, 1.0), (3, 1.5))})
        history = store.get_metric_history(run_id, "loss")
        assert history.steps == [0, 1, 2, 3]
        assert history.values == [3.0, 2.0, 1.0, 1.5]
        summary = store.get_run(run_id).metrics["loss"]
        assert (summary.last, summary.last_step, summary.min, summary.max, summary.count) == (1.5, 3, 1.0, 3.0, 4)
        assert store.get_run(run_id).metrics["acc"].count == 1

    def test_last_is_the_highest_step_and_among_equal_steps_the_latest_logged(self, store: Store) -> None:
        run_id = new_run(store)
        store.log_metrics(run_id, {"m": chunk((10, 1.0), (2, 2.0))})
        store.log_metrics(run_id, {"m": chunk((5, 3.0))})
        summary = store.get_run(run_id).metrics["m"]
        assert (summary.last, summary.last_step) == (1.0, 10)

        store.log_metrics(run_id, {"t": chunk((4, 1.0), (4, 2.0), (1, 9.0))})
        assert store.get_run(run_id).metrics["t"].last == 2.0
        store.log_metrics(run_id, {"t": chunk((4, 3.0))})
        assert store.get_run(run_id).metrics["t"].last == 3.0

    def test_history_is_ordered_by_step_then_logging_order_when_logged_out_of_order(self, store: Store) -> None:
        run_id = new_run(store)
        store.log_metrics(run_id, {"m": Chunk.from_points([(5, 0.0, 50.0), (1, 1.0, 10.0), (3, 2.0, 30.0)])})
        store.log_metrics(run_id, {"m": Chunk.from_points([(1, 3.0, 11.0), (0, 4.0, 0.0), (5, 5.0, 51.0)])})
        history = store.get_metric_history(run_id, "m")
        assert history.steps == [0, 1, 1, 3, 5, 5]
        assert history.values == [0.0, 10.0, 11.0, 30.0, 50.0, 51.0]
        assert history.timestamps == [4.0, 1.0, 3.0, 2.0, 0.0, 5.0]

    def test_min_and_max_ignore_nan_and_count_includes_it(self, store: Store) -> None:
        run_id = new_run(store)
        store.log_metrics(run_id, {"m": chunk((0, math.nan), (1, 2.0), (2, -1.0), (3, math.nan))})
        summary = store.get_run(run_id).metrics["m"]
        assert (summary.min, summary.max, summary.count) == (-1.0, 2.0, 4)
        assert math.isnan(summary.last)
        store.log_metrics(run_id, {"m": chunk((4, 7.0))})
        summary = store.get_run(run_id).metrics["m"]
        assert (summary.last, summary.min, summary.max, summary.count) == (7.0, -1.0, 7.0, 5)

        store.log_metrics(run_id, {"only_nan": chunk((0, math.nan), (1, math.nan))})
        summary = store.get_run(run_id).metrics["only_nan"]
        assert math.isnan(summary.last) and math.isnan(summary.min) and math.isnan(summary.max)
        assert summary.count == 2

    def test_nan_and_infinities_round_trip_exactly_in_history_and_summary(self, store: Store) -> None:
        run_id = new_run(store)
        values = [math.nan, _INF, -_INF, 0.0, -0.0, 1e-308, 5e-324, 1.7976931348623157e308, -_INF]
        store.log_metrics(run_id, {"m": chunk(*enumerate(values))})
        history = store.get_metric_history(run_id, "m")
        assert same_floats(history.values, values)
        assert math.copysign(1.0, history.values[4]) == -1.0  # -0.0 keeps its sign
        summary = store.get_run(run_id).metrics["m"]
        assert (summary.last, summary.min, summary.max) == (-_INF, -_INF, _INF)
        store.log_metrics(run_id, {"m": chunk((100, _INF))})
        assert store.get_run(run_id).metrics["m"].last == _INF

    def test_large_series_across_chunk_boundaries_round_trip_exactly(self, store: Store) -> None:
        for case, sizes in _APPEND_PATTERNS.items():
            run_id = new_run(store)
            step = 0
            for size in sizes:
                points = [(step + i, float(step + i), (step + i) * 0.5) for i in range(size)]
                store.log_metrics(run_id, {"m": Chunk.from_points(points), "other": chunk((step, 1.0))})
                step += size
            history = store.get_metric_history(run_id, "m")
            assert history.steps == list(range(step)), case
            assert history.values == [s * 0.5 for s in range(step)], case
            assert history.timestamps == [float(s) for s in range(step)], case
            summary = store.get_run(run_id).metrics["m"]
            assert (summary.count, summary.last_step, summary.last, summary.min) == (
                step, step - 1, (step - 1) * 0.5, 0.0), case
            assert len(store.get_metric_history(run_id, "other")) == len(sizes), case

    def test_log_metrics_on_an_unknown_run_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            store.log_metrics(uuid.uuid4().hex, {"m": chunk((0, 1.0))})

    def test_history_of_a_key_never_logged_is_empty_and_of_an_unknown_run_raises(self, store: Store) -> None:
        run_id = new_run(store)
        assert len(store.get_metric_history(run_id, "nothing")) == 0
        with pytest.raises(RunNotFound):
            store.get_metric_history(uuid.uuid4().hex, "m")

    def test_threads_logging_to_one_run_at_once_lose_nothing(self, store: Store) -> None:
        """The contract says a Store may be called from several threads at once: here every round, all threads
        append to one shared key and race to create a new one."""
        run_id = new_run(store)
        threads_n, per_thread, rounds = 4, 50, 8
        barrier = threading.Barrier(threads_n)
        errors: list[BaseException] = []

        def work(t: int) -> None:
            for r in range(rounds):
                try:
                    barrier.wait(timeout=60)
                    base = (r * threads_n + t) * per_thread
                    points = chunk(*((base + i, 1.0) for i in range(per_thread)))
                    store.log_metrics(run_id, {"shared": points, f"new{r}": chunk((t, float(t)))})
                except BaseException as exc:  # reported below
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        total = threads_n * per_thread * rounds
        assert store.get_metric_history(run_id, "shared").steps == list(range(total))
        summaries = store.get_run(run_id).metrics
        assert summaries["shared"].count == total
        for r in range(rounds):
            assert sorted(store.get_metric_history(run_id, f"new{r}").steps) == list(range(threads_n))
            assert summaries[f"new{r}"].count == threads_n

    # -- search ---------------------------------------------------------------------------------------
    @pytest.fixture
    def ranked(self, store: Store) -> dict[str, str]:
        """Five runs of experiment "s" (and one of "other"), started a second apart.

        Their ids are their names repeated ("aaa...", "bbb..."), so ties (which sort by id) are predictable.
        """
        ids = {}
        specs = {
            "a": ({"acc": 0.9, "loss": 0.3}, {"lr": 0.1, "opt": "sgd"}),
            "b": ({"acc": 0.7, "loss": 0.1}, {"lr": 0.01, "opt": "adam"}),
            "c": ({"acc": 0.95}, {"lr": 1.0}),
            "d": ({}, {}),
            "e": ({"acc": 0.8, "loss": 0.2}, {"lr": 0.001, "opt": "adagrad"}),
        }
        for n, (name, (metrics, params)) in enumerate(specs.items()):
            run_id = new_run(store, "s", run_id=name * 32, start=1000.0 + n, name=name, params=params)
            if metrics:
                store.log_metrics(run_id, {k: chunk((0, v)) for k, v in metrics.items()})
            ids[name] = run_id
        new_run(store, "other", start=2000.0, name="x")
        return ids

    def test_search_runs_defaults_to_newest_first_within_the_experiments(self, store: Store, ranked: dict) -> None:
        assert _names(search(store, ["s"])) == ["e", "d", "c", "b", "a"]
        assert len(search(store, None)) == 6
        assert _names(search(store, ["s", "other"]))[0] == "x"
        assert search(store, ["nope"]) == []

    def test_search_runs_order_by_sorts_and_puts_missing_keys_last(self, store: Store, ranked: dict) -> None:
        got = {order: _names(search(store, ["s"], order)) for order in _ORDERS}
        assert got == _ORDERS

    def test_search_runs_max_results_and_offset_page_through_the_order(self, store: Store, ranked: dict) -> None:
        order = "metrics.acc desc"
        assert _names(search(store, ["s"], order, max_results=2)) == ["c", "a"]
        assert _names(search(store, ["s"], order, max_results=2, offset=2)) == ["e", "b"]
        assert _names(search(store, ["s"], order, max_results=10, offset=4)) == ["d"]
        assert search(store, ["s"], order, max_results=0) == []

    def test_search_runs_returns_full_records(self, store: Store, ranked: dict) -> None:
        top = search(store, ["s"], "metrics.acc desc", max_results=1)[0]
        assert top.params == {"lr": 1.0}
        assert top.metrics["acc"].last == 0.95

    # -- status ---------------------------------------------------------------------------------------
    def test_end_run_records_status_end_time_and_error(self, store: Store) -> None:
        for status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED):
            run_id = new_run(store)
            error = {"type": "ValueError", "message": "bad"} if status is RunStatus.FAILED else None
            store.end_run(run_id, status, 1234.5, error=error, metrics={"m": chunk((0, 1.0), (1, 2.0))})
            record = store.get_run(run_id)
            assert (record.status, record.end_time, record.error) == (status, 1234.5, error)
            assert store.get_metric_history(run_id, "m").values == [1.0, 2.0]

    def test_end_run_of_an_unknown_run_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            store.end_run(uuid.uuid4().hex, RunStatus.FINISHED, time.time())

    def test_mark_crashed_only_when_the_observed_heartbeat_still_matches(self, store: Store) -> None:
        run_id = new_run(store, start=100.0)
        beat = store.get_run(run_id).heartbeat_time
        store.heartbeat(run_id, 200.0)
        assert store.mark_crashed(run_id, beat) is False  # the run was seen alive since
        assert store.get_run(run_id).status is RunStatus.RUNNING
        assert store.mark_crashed(run_id, 200.0) is True
        record = store.get_run(run_id)
        assert (record.status, record.end_time) == (RunStatus.CRASHED, 200.0)

        ended = new_run(store, start=100.0)
        store.end_run(ended, RunStatus.FINISHED, 150.0)
        assert store.mark_crashed(ended, 100.0) is False  # never touches an ended run
        assert store.get_run(ended).status is RunStatus.FINISHED

    def test_a_new_runs_first_heartbeat_is_the_stores_clock_not_its_start_time(self, store: Store) -> None:
        before = store.now()
        run_id = new_run(store, start=100.0)  # a start time from a machine whose clock is far off
        beat = store.get_run(run_id).heartbeat_time
        assert beat is not None and before - 1.0 <= beat <= store.now() + 1.0

        ahead = new_run(store, start=store.now() + 300.0)  # a writer whose clock is 300 s ahead, then died
        assert store.mark_crashed(ahead, store.get_run(ahead).heartbeat_time)
        record = store.get_run(ahead)
        assert record.end_time == record.start_time  # never a negative duration

    def test_heartbeat_revives_a_run_marked_crashed_but_not_an_ended_one(self, store: Store) -> None:
        run_id = new_run(store, start=100.0)
        assert store.mark_crashed(run_id, store.get_run(run_id).heartbeat_time)
        store.heartbeat(run_id, 300.0)
        record = store.get_run(run_id)
        assert (record.status, record.heartbeat_time, record.end_time) == (RunStatus.RUNNING, 300.0, None)

        finished = new_run(store, start=100.0)
        store.end_run(finished, RunStatus.FINISHED, 150.0)
        store.heartbeat(finished, 300.0)  # a finished run stays finished
        assert store.get_run(finished).status is RunStatus.FINISHED

    # -- environments and artifacts -------------------------------------------------------------------
    def test_put_environment_is_idempotent_and_get_environment_returns_it(self, store: Store) -> None:
        snapshot = {"python": "3.11", "packages": {"numpy": "2.0"}, "gpus": []}
        store.put_environment("f" * 64, snapshot)
        store.put_environment("f" * 64, snapshot)
        assert store.get_environment("f" * 64) == snapshot
        assert store.get_environment("0" * 64) is None

    def test_artifacts_are_added_listed_and_opened(self, store: Store) -> None:
        run_id = new_run(store)
        sha, size = store.put_artifact_bytes(b"hello")
        sha2, _ = store.put_artifact_bytes(b"hello")
        assert (sha, size) == ("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", 5)
        assert sha2 == sha
        store.add_artifacts(run_id, [ArtifactInfo("b/x.txt", sha, size), ArtifactInfo("a.txt", sha, size)])
        assert [a.path for a in store.list_artifacts(run_id)] == ["a.txt", "b/x.txt"]
        with store.open_artifact(sha) as handle:
            assert handle.read() == b"hello"
        other, other_size = store.put_artifact_bytes(b"bye")
        store.add_artifacts(run_id, [ArtifactInfo("a.txt", other, other_size)])  # same path: replaced
        assert {a.path: a.sha256 for a in store.list_artifacts(run_id)} == {"a.txt": other, "b/x.txt": sha}

    def test_add_artifacts_on_an_unknown_run_raises_run_not_found(self, store: Store) -> None:
        sha, size = store.put_artifact_bytes(b"x")
        with pytest.raises(RunNotFound):
            store.add_artifacts(uuid.uuid4().hex, [ArtifactInfo("x", sha, size)])

    # -- the same contract through the public API -----------------------------------------------------
    def test_api_round_trip_on_every_backend(self, store_url: str) -> None:
        lt.set_store(store_url)
        with lt.start_run("api", params={"lr": 0.1}, tags={"t": "1"}) as run:
            for step in range(100):
                run.log_metric("loss", 1 / (step + 1), step=step)
            run.log_metric("nan", math.nan)
            lt.log_metrics({"acc": 0.5})
            lt.log_text("hi", "notes/hello.txt")
        got = lt.get_run(run.id[:10])
        assert got.id == run.id
        assert got.status is lt.RunStatus.FINISHED
        assert got.params == {"lr": 0.1}
        assert got.tags == {"t": "1"}
        assert got.metrics["loss"] == 0.01
        assert math.isnan(got.metrics["nan"])
        assert got.history("loss").values == [1 / (s + 1) for s in range(100)]
        assert got.open_artifact("notes/hello.txt").read() == b"hi"

    def test_api_search_runs_orders_and_limits_on_every_backend(self, store_url: str) -> None:
        lt.set_store(store_url)
        for acc in (0.3, 0.9, 0.6):
            with lt.start_run("search", params={"acc": acc}) as run:
                run.log_metric("acc", acc)
        with lt.start_run("search"):
            pass
        found = lt.search_runs("search", order_by=["metrics.acc desc"], max_results=3)
        assert [r.metrics["acc"] for r in found] == [0.9, 0.6, 0.3]
        everything = lt.search_runs("search", order_by="metrics.acc")
        assert [r.metrics.get("acc") for r in everything] == [0.3, 0.6, 0.9, None]
        assert [e.name for e, n in lt.list_experiments()] == ["search"]
        assert lt.list_experiments()[0][1] == 4

    def test_api_get_run_with_an_ambiguous_or_unknown_prefix_raises(self, store_url: str) -> None:
        lt.set_store(store_url)
        ids = []
        for _ in range(17):  # 17 runs, 16 hex digits: two are sure to share the first one
            with lt.start_run("p") as run:
                pass
            ids.append(run.id)
        shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
        with pytest.raises(lt.AmbiguousRunId):
            lt.get_run(shared)
        with pytest.raises(lt.RunNotFound):
            lt.get_run("not-a-run")

    # -- the write path: one transaction, hints, retries, marks --------------------------------------

    def test_a_short_run_is_one_write_created_ended_and_framed(self, store: Store) -> None:
        run_id = uuid.uuid4().hex
        store.write([RunWrite(
            run_id, create=NewRun(id=run_id, experiment="short", start_time=100.0, params={"lr": 0.1},
                                  tags={"a": "1"}, context={"process": {"pid": 1}}),
            params={"epochs": 3}, tags={"b": "2"}, note="n", artifacts=[],
            metrics={"loss": chunk((0, 2.0), (1, 1.0)), "acc": chunk((0, math.nan))},
            new_keys=frozenset({"loss", "acc"}), end=RunEnd(RunStatus.FINISHED, 101.0),
        )])
        record = store.get_run(run_id)
        assert (record.status, record.start_time, record.end_time, record.note) == (RunStatus.FINISHED, 100.0, 101.0, "n")
        assert record.params == {"lr": 0.1, "epochs": 3} and record.tags == {"a": "1", "b": "2"}
        assert record.metrics["loss"].last == 1.0 and record.metrics["loss"].count == 2
        assert store.get_context(run_id) == {"process": {"pid": 1}}
        table = store.run_table([run_id])  # an ended run is read from its frame
        assert table.ids == [run_id]
        assert table.params() == {"epochs": [3], "lr": [0.1]}
        assert list(table.metrics()["loss"]) == [1.0] and math.isnan(table.metrics()["acc"][0])

    def test_creating_a_run_again_is_a_conflict_and_a_retry_stores_everything_once(self, store: Store) -> None:
        run_id = uuid.uuid4().hex
        mark = IngestMark("spool-a", 3, 2)
        write = RunWrite(run_id, create=NewRun(id=run_id, experiment="twice", start_time=1.0, params={"x": 1}),
                         metrics={"m": chunk((0, 1.0), (1, 2.0))}, new_keys=frozenset({"m"}), mark=mark)
        store.write([write])
        with pytest.raises(StoreConflict):
            store.write([write])  # trusting the hint "this run is new" is wrong now
        store.write([write], retry=True)  # an attempt whose outcome was unknown, retried
        assert store.get_metric_history(run_id, "m").values == [1.0, 2.0]
        assert store.get_run(run_id).params == {"x": 1}
        assert store.ingest_mark(run_id, "spool-a") == mark
        assert store.ingest_mark(run_id, "spool-b") is None

    def test_a_retried_write_skips_the_points_its_mark_covers_and_takes_newer_ones(self, store: Store) -> None:
        run_id = new_run(store)
        first = RunWrite(run_id, metrics={"m": chunk((0, 1.0))}, mark=IngestMark("s", 1, 1))
        store.write([first])
        store.write([first], retry=True)
        store.write([RunWrite(run_id, metrics={"m": chunk((1, 2.0))}, mark=IngestMark("s", 1, 2))])
        store.write([RunWrite(run_id, metrics={"m": chunk((2, 3.0))}, mark=IngestMark("other", 1, 1))])
        assert store.get_metric_history(run_id, "m").values == [1.0, 2.0, 3.0]
        assert store.ingest_mark(run_id, "s") == IngestMark("s", 1, 2)

    def test_a_wrong_new_keys_hint_is_a_conflict_and_the_retry_appends(self, store: Store) -> None:
        run_id = new_run(store)
        store.log_metrics(run_id, {"m": chunk((0, 1.0))})
        write = RunWrite(run_id, metrics={"m": chunk((1, 2.0))}, new_keys=frozenset({"m"}))
        with pytest.raises(StoreConflict):
            store.write([write])
        store.write([write], retry=True)
        assert store.get_metric_history(run_id, "m").values == [1.0, 2.0]
        assert store.get_run(run_id).metrics["m"].count == 2

    def test_a_write_of_several_runs_is_all_or_nothing(self, store: Store) -> None:
        a, b = new_run(store, params={"lr": 0.1}), new_run(store, params={"lr": 0.1})
        with pytest.raises(ParamConflict):
            store.write([RunWrite(a, tags={"t": "1"}, metrics={"m": chunk((0, 1.0))}),
                         RunWrite(b, params={"lr": 0.2})])
        assert store.get_run(a).tags == {} and store.get_run(a).metrics == {}
        store.write([RunWrite(a, tags={"t": "1"}), RunWrite(b, tags={"t": "2"})])
        assert (store.get_run(a).tags, store.get_run(b).tags) == ({"t": "1"}, {"t": "2"})

    def test_writing_to_an_ended_run_updates_what_loading_as_columns_reads(self, store: Store) -> None:
        run_id = new_run(store, params={"a": 1})
        store.end_run(run_id, RunStatus.FINISHED, time.time())
        store.write([RunWrite(run_id, params={"b": 2}, tags={"t": "x"}, metrics={"m": chunk((0, 5.0))})])
        table = store.run_table([run_id])
        assert table.params() == {"a": [1], "b": [2]} and table.tags() == {"t": ["x"]}
        assert list(table.metrics()["m"]) == [5.0]

    def test_merge_context_replaces_its_sections_and_keeps_the_others(self, store: Store) -> None:
        run_id = new_run(store, context={"process": {"argv": ["a"]}, "git": {"commit": "1"}})
        store.merge_context(run_id, {"git": {"commit": "2"}, "seeds": {"seed": 3}})
        assert store.get_context(run_id) == {"process": {"argv": ["a"]}, "git": {"commit": "2"}, "seeds": {"seed": 3}}
        errors: list[BaseException] = []

        def merge(n: int) -> None:
            try:
                for i in range(10):
                    store.merge_context(run_id, {f"section{n}": i})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=merge, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        context = store.get_context(run_id) or {}
        assert {k: v for k, v in context.items() if k.startswith("section")} == {f"section{n}": 9 for n in range(4)}

    def test_merge_context_and_results_of_an_unknown_run_raise_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            store.merge_context(uuid.uuid4().hex, {"a": 1})
        with pytest.raises(RunNotFound):
            store.set_result(uuid.uuid4().hex, 1)

    # -- claims ------------------------------------------------------------------------------------

    def test_claims_answer_typed_states(self, store: Store) -> None:
        now = time.time()
        assert store.claim("k" * 64, "sweep1/h/1", 60.0, now) is ClaimState.CLAIMED
        assert store.claim("k" * 64, "sweep1/h/2", 60.0, now) is ClaimState.BUSY
        assert store.claim("k" * 64, "sweep2/h/3", 60.0, now + 120) is ClaimState.CLAIMED  # lease expired
        store.release_claim("k" * 64, "sweep2/h/3", done=False)
        assert store.claim("k" * 64, "sweep2/h/4", 60.0, now + 121) is ClaimState.FAILED  # same sweep
        assert store.claim("k" * 64, "sweep3/h/5", 60.0, now + 122) is ClaimState.CLAIMED  # the next sweep
        store.release_claim("k" * 64, "sweep3/h/5", done=True)
        assert store.claim("k" * 64, "sweep4/h/6", 60.0, now + 123) is ClaimState.DONE

    def test_a_claim_asked_again_by_its_owner_is_still_its_own(self, store: Store) -> None:
        """A claim request retried after its answer was lost (a remote store over a flaky network)."""
        now = store.now()
        assert store.claim("r" * 64, "sweep1/h/1", 60.0, now) is ClaimState.CLAIMED
        assert store.claim("r" * 64, "sweep1/h/1", 60.0, now + 1) is ClaimState.CLAIMED
        assert store.claim("r" * 64, "sweep1/h/2", 60.0, now + 2) is ClaimState.BUSY
        run_id = new_run(store, run_key="d" * 64)
        store.end_run(run_id, RunStatus.FINISHED, now)
        assert store.claim("d" * 64, "sweep5/h/7", 60.0, now) is ClaimState.DONE

    # -- blobs -------------------------------------------------------------------------------------

    def test_blobs_are_content_addressed_and_a_moved_file_is_taken_over(self, store: Store, tmp_path: Any) -> None:
        source = tmp_path / "model.bin"
        source.write_bytes(b"weights" * 1000)
        sha, size = store.blobs.put_file(source)
        assert source.exists() and size == 7000 and store.blobs.exists(sha)
        staged = tmp_path / "staged.bin"
        staged.write_bytes(b"weights" * 1000)
        assert store.blobs.put_file(staged, move=True) == (sha, size)
        assert not staged.exists()  # given up by the caller: taken over or removed
        with store.blobs.open(sha) as handle:
            assert handle.read() == b"weights" * 1000
        with pytest.raises(StoreError):
            store.blobs.open("0" * 64)
        assert not store.blobs.exists("0" * 64)
