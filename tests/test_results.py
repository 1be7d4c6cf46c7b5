"""A tracked function's result is stored as data: JSON, tagged containers and numpy arrays (``.npy``, read
without pickle). Nothing from a store is unpickled unless the caller says it trusts the store
(``trust_pickle=True``): anyone who can write runs to a shared store could otherwise run code in every
reader's process."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import labtrack as lt
from labtrack.verbs import tracking


class _Exploit:
    """Unpickling this creates ``path``: proof that stored data was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


class Model:
    """A result only pickle can store (module level: pickle finds it by name)."""

    def __init__(self, w: float) -> None:
        self.w = w

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.w == self.w


def _forge(experiment: str, params: dict[str, Any], marker: Path, tmp_path: Path,
           entry: dict[str, Any] | None = None) -> str:
    """What an attacker with write access to a shared store does, through the public API only: a FINISHED
    run whose result claims to be a pickled artifact, and the artifact (with ``entry``: under the run key of
    a tracked function's call, which the attacker can compute from its source)."""
    payload = tmp_path / "result.pkl"
    payload.write_bytes(pickle.dumps(_Exploit(marker)))
    with tracking.client().start_run(experiment, params=params, entry=entry) as run:
        run.log_artifact(str(payload), "labtrack")
        run.set_result({"__labtrack__": "pickled", "artifact": "labtrack/result.pkl", "preview": "harmless"})
    return run.id


def test_reading_a_forged_pickled_result_executes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    run_id = _forge("victim", {"lr": 0.1}, marker, tmp_path)
    with pytest.raises(lt.InvalidInput, match="trust_pickle"):
        _ = lt.get_run(run_id).result
    assert not marker.exists()


def test_a_skipped_tracked_call_never_unpickles_a_forged_result(tmp_path: Path) -> None:
    marker = tmp_path / "executed"

    @lt.track
    def train(lr: float) -> float:
        return lr * 2

    _forge("train", {"lr": 0.1}, marker, tmp_path, entry=train.entry)  # the call's very run key
    with pytest.raises(lt.InvalidInput, match="trust_pickle"):
        train(0.1)
    assert not marker.exists()


def test_trust_pickle_is_the_explicit_opt_in_for_ones_own_store(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    run_id = _forge("mine", {"lr": 0.1}, marker, tmp_path)
    lt.get_run(run_id).load_result(trust_pickle=True)
    assert marker.exists()  # the caller asked for it


@pytest.mark.parametrize("value", [
    (1, "two", 3.0), {1: "int key", (2, 3): "tuple key"}, {"a", "b"}, frozenset({1}), [(1, 2), {"x": (3,)}],
    {"__labtrack__": "pickled", "artifact": "x"},  # a user's own dict that looks like a tag
    np.float32(1.5), np.int64(-7), np.bool_(True), float("nan"), -0.0, b"\x00\xffraw",
], ids=repr)
def test_results_that_json_cannot_hold_come_back_exactly_without_pickle(value: Any) -> None:
    calls = []

    @lt.track
    def compute(seed: int) -> Any:
        calls.append(seed)
        return value

    first = compute(1)
    again = compute(1)  # skipped: the recorded result
    assert calls == [1]
    for got in (first, again):
        assert type(got) is type(value)
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == value
            if not isinstance(value, set | frozenset):  # a set's repr order depends on its insertion history
                assert repr(got) == repr(value)
    run = compute.find(1)
    assert run is not None
    assert not any(a.path.endswith(".pkl") for a in run.artifacts)


def test_numpy_arrays_are_stored_as_npy_and_read_without_pickle() -> None:
    @lt.track
    def embed(n: int) -> dict[str, Any]:
        return {"vectors": np.arange(n * 3, dtype=np.float32).reshape(n, 3), "ids": np.arange(n), "n": n}

    first = embed(4)
    again = embed(4)
    assert again.keys() == first.keys() and again["n"] == 4
    for key in ("vectors", "ids"):
        assert again[key].dtype == first[key].dtype and np.array_equal(again[key], first[key])
    run = embed.find(4)
    assert run is not None
    assert sorted(a.path for a in run.artifacts if a.path.startswith("labtrack/")) == [
        "labtrack/result.0.npy", "labtrack/result.1.npy"]


def test_an_object_array_or_any_other_object_is_refused_unless_the_caller_trusts_pickle(tmp_path: Path) -> None:
    @lt.track
    def fit(w: float) -> Model:
        return Model(w)

    with pytest.raises(lt.InvalidInput, match="trust_pickle"):
        fit(1.0)

    @lt.track(trust_pickle=True)
    def fit_trusted(w: float) -> Model:
        return Model(w)

    assert fit_trusted(2.0) == Model(2.0)
    assert fit_trusted(2.0) == Model(2.0)  # the skip loads the pickle: this caller trusts its store
    run = fit_trusted.find(2.0)
    assert run is not None and run.load_result(trust_pickle=True) == Model(2.0)
    with pytest.raises(lt.InvalidInput, match="trust_pickle"):
        _ = run.result
