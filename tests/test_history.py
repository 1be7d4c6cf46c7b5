"""A metric history is read straight into compact arrays (issue 12, item 9: 10M points took 4.1 s and 1.9 GB
as lists; `make bench` measures the read): the columns still behave as the lists they replaced, numpy wraps
them without a copy, and out-of-order steps come back ordered, stably, with or without numpy."""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import pytest

import labtrack as lt
from labtrack.core.series import SeriesArray, SeriesFiller, by_step


def test_history_columns_behave_as_the_lists_they_replaced(store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("columns") as run:
        for step in range(5):
            run.log_metric("loss", 1 / (step + 1), step=step * 10)
    history = lt.get_run(run.id).history("loss")
    assert history.steps == [0, 10, 20, 30, 40] and history.steps == (0, 10, 20, 30, 40)
    assert history.values[1:3] == [0.5, 1 / 3] and history.values[-1] == 0.2
    assert history.steps != [0, 10, 20, 30] and history.steps != [0, 10, 20, 30, 41]
    assert isinstance(history.steps[0], int) and isinstance(history.values[0], float)
    assert json.dumps(history.values.tolist()) == json.dumps([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert list(history) == list(zip([0, 10, 20, 30, 40], history.timestamps, history.values))
    steps = np.asarray(history.steps)
    assert steps.dtype == np.int64 and np.shares_memory(steps, np.frombuffer(history.steps, dtype=np.int64))
    assert history.to_numpy()["value"].tolist() == history.values.tolist()
    assert history == lt.get_run(run.id).history("loss")


def _packed(steps: list[int]) -> tuple[bytes, bytes, bytes]:
    n = len(steps)
    return struct.pack(f"<{n}q", *steps), struct.pack(f"<{n}d", *map(float, steps)), struct.pack(f"<{n}d", *range(n))


@pytest.mark.parametrize("expected", [0, 2, 5, 50])
def test_the_filler_grows_or_trims_when_the_chunks_disagree_with_the_count(expected: int) -> None:
    filler = SeriesFiller(expected)  # the summary's count, read before chunks that a write changed since
    filler.add(*_packed([1, 2, 3]))
    filler.add(*_packed([4, 5]))
    steps, timestamps, values = filler.finish()
    assert steps == [1, 2, 3, 4, 5] and timestamps == [1.0, 2.0, 3.0, 4.0, 5.0] and values == [0, 1, 2, 0, 1]


@pytest.mark.parametrize("numpy_installed", [True, False])
@pytest.mark.parametrize("n", [7, 150_001])
def test_out_of_order_steps_come_back_ordered_keeping_logging_order_within_a_step(
        monkeypatch: pytest.MonkeyPatch, numpy_installed: bool, n: int) -> None:
    if not numpy_installed:
        monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` raises ImportError
    steps = [(i * 7919) % (n // 2 + 1) for i in range(n)]  # every step about twice, scattered
    got_steps, got_order, _ = by_step(SeriesArray("q", steps), SeriesArray("d", range(n)), SeriesArray("d", range(n)))
    expected = sorted(range(n), key=steps.__getitem__)
    assert got_steps == [steps[i] for i in expected]
    assert got_order == [float(i) for i in expected]


def test_a_history_logged_out_of_order_reads_back_by_step(store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("order") as run:
        for step, value in ((5, 0.5), (1, 0.1), (5, 0.55), (3, 0.3)):
            run.log_metric("m", value, step=step)
    history = lt.get_run(run.id).history("m")
    assert history.steps == [1, 3, 5, 5] and history.values == [0.1, 0.3, 0.5, 0.55]
