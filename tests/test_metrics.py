"""Logging metrics: in the spool at once, in the store once the run ends, readable exactly as logged.

The flush interval is set to an hour in these tests, so whatever the store holds was written by
``end``/``flush``/a read on the live run — not by the background writer racing the assertion.
"""

from __future__ import annotations

import math
import random
import struct
import time
from datetime import UTC, datetime

import numpy as np
import pytest

import labtrack as lt
from labtrack.store import open_store


@pytest.fixture(autouse=True)
def no_background_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_FLUSH_INTERVAL", "3600")


def bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def fresh_history(run_id: str, key: str) -> lt.MetricHistory:
    """Read through a new store handle, as another process would."""
    store = open_store(".labtrack")
    try:
        return store.get_metric_history(run_id, key)
    finally:
        store.close()


def test_points_are_in_the_store_once_the_ended_run_is_flushed() -> None:
    with lt.start_run("m") as run:
        for step in range(1500):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            lt.log_metric("acc", step / 1500)
        with pytest.raises(lt.RunNotFound):  # still in the spool: the run reaches the store with its writes
            fresh_history(run.id, "loss")
    lt.flush()  # ending hands it to the writer; flush waits until the store has it
    assert len(fresh_history(run.id, "loss")) == 1500
    assert len(fresh_history(run.id, "acc")) == 1500
    summaries = lt.get_run(run.id).metric_summaries
    assert summaries["loss"].count == 1500 and summaries["acc"].count == 1500


def test_run_metrics_are_the_last_values() -> None:
    with lt.start_run("m") as run:
        run.log_metric("loss", 0.9, step=0)
        run.log_metric("loss", 0.1, step=2)
        run.log_metric("loss", 0.5, step=1)  # logged last, but an earlier step
        run.log_metric("acc", 0.7)
        run.log_metric("acc", 0.8)
    got = lt.get_run(run.id)
    assert got.metrics == {"acc": 0.8, "loss": 0.1}
    summary = got.metric_summaries["loss"]
    assert (summary.min, summary.max, summary.count, summary.last_step) == (0.1, 0.9, 3, 2)


def test_log_metrics_puts_every_key_at_the_same_step() -> None:
    with lt.start_run("m") as run:
        lt.log_metrics({"a": 1.0, "b": 2.0}, step=5)
        run.log_metrics({"a": 3.0, "b": 4.0, "c": 5.0})
    got = lt.get_run(run.id)
    assert got.history("a").steps == [5, 6]
    assert got.history("b").steps == [5, 6]
    assert got.history("c").steps == [0]
    a, b = got.history("a"), got.history("b")
    assert a.timestamps == b.timestamps  # one call, one time


def test_default_step_increments_per_key() -> None:
    with lt.start_run("m") as run:
        for value in (1.0, 2.0, 3.0):
            run.log_metric("a", value)
        run.log_metric("b", 9.0)
        run.log_metric("a", 4.0, step=10)
        run.log_metric("a", 5.0)
    got = lt.get_run(run.id)
    assert got.history("a").steps == [0, 1, 2, 10, 11]
    assert got.history("b").steps == [0]


def test_explicit_timestamps_are_kept_as_floats_or_datetimes() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    with lt.start_run("m") as run:
        run.log_metric("a", 1.0, timestamp=1_700_000_000.25)
        run.log_metric("a", 2.0, timestamp=moment)
    assert lt.get_run(run.id).history("a").timestamps == [1_700_000_000.25, moment.timestamp()]


def test_log_batch_takes_lists_and_numpy_arrays() -> None:
    with lt.start_run("m") as run:
        run.log_batch({"loss": [3.0, 2.0, 1.0], "acc": np.array([0.1, 0.2, 0.3], dtype=np.float32)})
        run.log_batch({"loss": np.array([0.5, 0.25])}, steps=np.array([10, 20]), timestamps=123.0)
        run.log_batch({"ints": np.arange(4)}, steps=[7, 7, 8, 9], timestamps=[1.0, 2.0, 3.0, 4.0])
        run.log_metric("loss", 0.125)  # the next default step follows the batch
    got = lt.get_run(run.id)
    loss = got.history("loss")
    assert loss.steps == [0, 1, 2, 10, 20, 21]
    assert loss.values == [3.0, 2.0, 1.0, 0.5, 0.25, 0.125]
    assert loss.timestamps[3:5] == [123.0, 123.0]
    assert got.history("acc").values == [float(np.float32(v)) for v in (0.1, 0.2, 0.3)]
    ints = got.history("ints")
    assert (ints.steps, ints.values, ints.timestamps) == ([7, 7, 8, 9], [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert got.metrics["ints"] == 3.0
    assert got.metric_summaries["loss"].count == 6


def test_reading_a_live_run_writes_its_buffer_first() -> None:
    with lt.start_run("m") as run:
        for step in range(5):
            run.log_metric("x", float(step))
        assert run.metrics == {"x": 4.0}
        run.log_metric("x", 10.0)
        assert run.history("x").values == [0.0, 1.0, 2.0, 3.0, 4.0, 10.0]
        run.log_metric("y", 1.0)
        assert lt.get_run(run.id).metrics == {"x": 10.0, "y": 1.0}  # another handle on the live run
        assert run.status is lt.RunStatus.RUNNING


def test_more_than_ten_thousand_points_round_trip_exactly() -> None:
    rng = random.Random(7)
    n = 12_345
    special = [math.nan, math.inf, -math.inf, -0.0, 5e-324]
    values = [rng.choice(special) if i % 97 == 0 else rng.uniform(-1e6, 1e6) for i in range(n)]
    steps = [i * 3 for i in range(n)]
    stamps = [1_600_000_000.0 + i * 0.001 for i in range(n)]
    with lt.start_run("m") as run:
        for step, ts, value in zip(steps, stamps, values):
            run.log_metric("x", value, step=step, timestamp=ts)
    history = lt.get_run(run.id).history("x")
    assert history.steps == steps
    assert history.timestamps == stamps
    assert bits(history.values) == bits(values)  # bit for bit, NaN and -0.0 included
    summary = lt.get_run(run.id).metric_summaries["x"]
    finite = [v for v in values if not math.isnan(v)]
    assert (summary.count, summary.min, summary.max) == (n, min(finite), max(finite))
    assert bits([summary.last]) == bits([values[-1]])


def test_a_small_flush_points_setting_wakes_the_background_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_FLUSH_POINTS", "10")
    with lt.start_run("m") as run:
        for step in range(205):
            run.log_metric("x", float(step))
        deadline = time.monotonic() + 30  # the flush interval is an hour: only the points' count wakes it
        while time.monotonic() < deadline:
            try:
                if len(fresh_history(run.id, "x")) >= 200:
                    break
            except lt.RunNotFound:
                pass
            time.sleep(0.05)
        assert len(fresh_history(run.id, "x")) >= 200
    lt.flush()
    assert len(fresh_history(run.id, "x")) == 205


def test_metrics_logged_by_two_runs_stay_apart() -> None:
    with lt.start_run("m") as a:
        a.log_metric("x", 1.0)
        with lt.start_run("m", nested=True) as b:
            b.log_metric("x", 2.0)
            lt.log_metric("x", 3.0)  # the active run is b
        lt.log_metric("x", 4.0)  # a again
    assert lt.get_run(a.id).history("x").values == [1.0, 4.0]
    assert lt.get_run(b.id).history("x").values == [2.0, 3.0]


def test_a_history_iterates_as_points_and_converts_to_numpy_and_pandas() -> None:
    with lt.start_run("m") as run:
        run.log_batch({"x": [0.5, math.nan, -math.inf]}, steps=[2, 0, 1], timestamps=[10.0, 11.0, 12.0])
    history = lt.get_run(run.id).history("x")
    points = list(history)
    assert [p[0] for p in points] == [0, 1, 2] and [p[1] for p in points] == [11.0, 12.0, 10.0]
    assert bits([p[2] for p in points]) == bits([math.nan, -math.inf, 0.5])
    array = history.to_numpy()
    assert array.dtype.names == ("step", "timestamp", "value") and array["step"].tolist() == [0, 1, 2]
    assert bits(array["value"].tolist()) == bits([math.nan, -math.inf, 0.5])
    frame = history.to_pandas()
    assert list(frame.columns) == ["step", "timestamp", "value"] and frame["step"].tolist() == [0, 1, 2]
    assert str(frame["timestamp"].dt.tz) == "UTC" and frame["timestamp"].iloc[0].timestamp() == 11.0
    assert bits(frame["value"].tolist()) == bits([math.nan, -math.inf, 0.5])
