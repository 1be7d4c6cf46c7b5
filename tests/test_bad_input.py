"""What labtrack refuses, and how: ``InvalidInput`` naming the offending field, and nothing lost.

Every case runs on a live run that already holds a param, a tag, a metric and an artifact; after the
rejected call the run must hold exactly those, and the rejected call must have written nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import labtrack as lt

Call = Callable[[lt.Run], Any]

# (id, call, text the message must contain)
BAD_CALLS: list[tuple[str, Call, str]] = [
    # metric values
    ("metric-bool", lambda r: r.log_metric("loss", True), "loss"),
    ("metric-str", lambda r: r.log_metric("loss", "0.5"), "loss"),
    ("metric-none", lambda r: r.log_metric("loss", None), "loss"),
    ("metric-complex", lambda r: r.log_metric("loss", 1 + 2j), "loss"),
    ("metric-list", lambda r: r.log_metric("loss", [1.0]), "loss"),
    ("metric-numpy-bool", lambda r: r.log_metric("loss", np.bool_(True)), "loss"),
    ("metric-numpy-array", lambda r: r.log_metric("loss", np.array([1.0, 2.0])), "loss"),
    ("metric-numpy-complex", lambda r: r.log_metric("loss", np.complex128(1 + 1j)), "loss"),
    ("log_metrics-one-bad-value", lambda r: r.log_metrics({"fine": 1.0, "acc": "high"}), "acc"),
    ("module-log_metric-bool", lambda r: lt.log_metric("flag", False), "flag"),
    # steps
    ("step-negative", lambda r: r.log_metric("loss", 1.0, step=-1), "step"),
    ("step-float", lambda r: r.log_metric("loss", 1.0, step=1.5), "step"),
    ("step-str", lambda r: r.log_metric("loss", 1.0, step="3"), "step"),
    ("step-bool", lambda r: r.log_metric("loss", 1.0, step=True), "step"),
    ("step-too-big", lambda r: r.log_metric("loss", 1.0, step=2**63), "step"),
    ("log_metrics-step-negative", lambda r: r.log_metrics({"fine": 1.0}, step=-5), "step"),
    ("timestamp-nan", lambda r: r.log_metric("loss", 1.0, timestamp=math.nan), "timestamp"),
    ("timestamp-str", lambda r: r.log_metric("loss", 1.0, timestamp="yesterday"), "timestamp"),
    # keys
    ("metric-key-empty", lambda r: r.log_metric("", 1.0), "metric key"),
    ("metric-key-251-chars", lambda r: r.log_metric("k" * 251, 1.0), "metric key"),
    ("metric-key-nul", lambda r: r.log_metric("lo\x00ss", 1.0), "metric key"),
    ("metric-key-newline", lambda r: r.log_metric("lo\nss", 1.0), "metric key"),
    ("metric-key-not-str", lambda r: r.log_metric(3, 1.0), "metric key"),  # type: ignore[arg-type]
    ("param-key-empty", lambda r: r.log_param("", 1), "param key"),
    ("param-key-251-chars", lambda r: r.log_params({"fine": 1, "p" * 251: 1}), "param key"),
    ("param-key-nul", lambda r: r.log_param("a\x00", 1), "param key"),
    ("param-key-newline", lambda r: r.log_param("a\nb", 1), "param key"),
    ("tag-key-empty", lambda r: r.set_tag("", "v"), "tag key"),
    ("tag-key-251-chars", lambda r: r.set_tags({"fine": "v", "t" * 251: "v"}), "tag key"),
    ("tag-key-nul", lambda r: r.set_tag("t\x00", "v"), "tag key"),
    ("tag-key-newline", lambda r: r.set_tag("t\n", "v"), "tag key"),
    # values
    ("param-value-too-long", lambda r: r.log_param("big", "x" * 5999), "big"),
    ("param-value-unserialisable", lambda r: r.log_params({"fine": 1, "obj": object()}), "obj"),
    ("param-value-nested-unserialisable", lambda r: r.log_param("cfg", {"a": [object()]}), "cfg"),
    ("param-value-changed", lambda r: r.log_params({"fine": 1, "lr": 0.2}), "lr"),
    ("tag-value-too-long", lambda r: r.set_tag("note", "x" * 8001), "note"),
    ("tag-value-not-a-string", lambda r: r.set_tags({"fine": "v", "obj": object()}), "obj"),
    # log_batch
    ("log_batch-length-mismatch", lambda r: r.log_batch({"fine": [1, 2], "series": [1.0, 2.0, 3.0]}, steps=[0, 1]),
     "series"),
    ("log_batch-bool-values", lambda r: r.log_batch({"series": [1.0, True]}), "series"),
    ("log_batch-str-values", lambda r: r.log_batch({"series": ["a", "b"]}), "series"),
    ("log_batch-negative-steps", lambda r: r.log_batch({"series": [1.0, 2.0]}, steps=[-1, 0]), "steps"),
    ("log_batch-2d-array", lambda r: r.log_batch({"series": np.zeros((2, 2))}), "series"),
    ("log_batch-int-too-big-for-a-float", lambda r: r.log_batch({"series": [1.0, 10**400]}), "series"),
    ("log_batch-float-steps", lambda r: r.log_batch({"series": [1.0, 2.0]}, steps=[0.5, 1.5]), "steps"),
    ("log_batch-nan-timestamp", lambda r: r.log_batch({"series": [1.0, 2.0]}, timestamps=[math.nan, 1.0]),
     "timestamp"),
    ("metric-int-too-big-for-a-float", lambda r: r.log_metric("loss", 10**400), "loss"),
    ("log_batch-timestamps-mismatch", lambda r: r.log_batch({"series": [1.0, 2.0]}, timestamps=[1.0]),
     "timestamps"),
    # artifact paths
    ("artifact-file-dotdot", lambda r: r.log_text("x", "../x"), "artifact_file"),
    ("artifact-file-absolute", lambda r: r.log_text("x", "/abs"), "artifact_file"),
    ("artifact-file-dotdot-inside", lambda r: r.log_text("x", "a/../b"), "artifact_file"),
    ("artifact-file-backslash", lambda r: r.log_text("x", "a\\b"), "artifact_file"),
    ("artifact-file-empty", lambda r: r.log_text("x", ""), "artifact_file"),
    ("artifact-file-dot", lambda r: r.log_text("x", "./a"), "artifact_file"),
    ("artifact-file-windows-drive", lambda r: r.log_text("x", "C:/x"), "artifact_file"),
    ("log_dict-dotdot", lambda r: r.log_dict({"a": 1}, "../a.json"), "artifact_file"),
    ("log_artifact-artifact-path-dotdot", lambda r: r.log_artifact(_a_file(), artifact_path="../up"), "artifact_path"),
    ("log_artifact-artifact-path-absolute", lambda r: r.log_artifact(_a_file(), artifact_path="/etc"),
     "artifact_path"),
    ("log_artifacts-artifact-path-dotdot", lambda r: r.log_artifacts(_a_dir(), artifact_path="a/../../b"),
     "artifact_path"),
    ("log_artifact-missing-file", lambda r: r.log_artifact("does-not-exist.txt"), "local_path"),
    ("open_artifact-dotdot", lambda r: r.open_artifact("../model.pt"), "path"),
    # ending
    ("end-status-running", lambda r: r.end("RUNNING"), "status"),
    ("end-status-crashed", lambda r: r.end("CRASHED"), "status"),
    ("end-status-bogus", lambda r: r.end("bogus"), "status"),
    ("module-end_run-bogus", lambda r: lt.end_run("bogus"), "status"),
]


def _a_file() -> Path:
    path = Path("input.txt")
    path.write_text("data")
    return path


def _a_dir() -> Path:
    path = Path("indir")
    path.mkdir(exist_ok=True)
    (path / "f.txt").write_text("data")
    return path


@pytest.fixture
def live_run() -> lt.Run:
    run = lt.start_run("bad-input", params={"lr": 0.1, "fine": 1}, tags={"stage": "dev"})
    for step in range(3):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_text("kept", "kept.txt")
    return run


def assert_nothing_lost_or_added(run: lt.Run) -> None:
    got = lt.get_run(run.id)
    assert got.params == {"lr": 0.1, "fine": 1}
    assert got.tags == {"stage": "dev"}
    assert sorted(got.metrics) == ["after", "loss"]  # "after" is logged after the rejected call
    assert got.metrics["after"] == 1.0
    assert got.history("loss").values == [1.0, 0.5, 1.0 / 3]
    assert [a.path for a in got.artifacts] == ["kept.txt"]


@pytest.mark.parametrize(("call", "field"), [pytest.param(c, f, id=i) for i, c, f in BAD_CALLS])
def test_a_bad_call_raises_invalid_input_naming_the_field_and_loses_nothing(
    live_run: lt.Run, call: Call, field: str
) -> None:
    with pytest.raises(lt.InvalidInput) as caught:
        call(live_run)
    message = str(caught.value)
    assert field in message, message
    assert caught.value.field, "InvalidInput.field names the offending field"
    assert lt.active_run() is live_run  # the run goes on
    live_run.log_metric("after", 1.0)  # and still takes good input
    assert lt.get_run(live_run.id).status is lt.RunStatus.RUNNING
    live_run.end()
    got = lt.get_run(live_run.id)
    assert got.status is lt.RunStatus.FINISHED
    assert_nothing_lost_or_added(live_run)


def test_an_invalid_start_run_creates_no_run() -> None:
    cases = [
        lambda: lt.start_run("", params={"a": 1}),
        lambda: lt.start_run("exp\n"),
        lambda: lt.start_run("exp", params={"a": object()}),
        lambda: lt.start_run("exp", params={"": 1}),
        lambda: lt.start_run("exp", tags={"t": "x" * 8001}),
        lambda: lt.start_run("exp", params=[1, 2]),  # type: ignore[arg-type]
        lambda: lt.start_run("exp", name="n" * 251),
    ]
    for case in cases:
        with pytest.raises(lt.InvalidInput):
            case()
    assert lt.active_run() is None
    assert lt.search_runs() == []


@pytest.mark.parametrize(
    "value",
    [np.float32(0.25), np.float64(0.1), np.int64(7), np.int8(-3), np.uint16(9), np.array(2.5), np.array(4),
     np.float16(1.5), 3, -0.0, 10**20],
    ids=["float32", "float64", "int64", "int8", "uint16", "0-d-float-array", "0-d-int-array", "float16",
         "int", "negative-zero", "big-int"],
)
def test_real_numbers_including_numpy_scalars_and_0d_arrays_are_accepted(value: Any) -> None:
    with lt.start_run("ok") as run:
        run.log_metric("m", value, step=np.int64(4))
        lt.log_metrics({"n": value}, step=np.int32(2))
    got = lt.get_run(run.id)
    assert got.history("m").values == [float(value)]
    assert got.history("m").steps == [4]
    assert got.history("n").values == [float(value)]
    assert got.history("n").steps == [2]
    assert type(got.metrics["m"]) is float


@pytest.mark.parametrize(
    ("kind", "length", "accepted"),
    [
        ("metric key", 250, True), ("metric key", 251, False),
        ("param value", 6000, True), ("param value", 6001, False),
        ("tag value", 8000, True), ("tag value", 8001, False),
    ],
    ids=["key-250-ok", "key-251-refused", "param-6000-ok", "param-6001-refused", "tag-8000-ok", "tag-8001-refused"],
)
def test_size_limits_are_exact(kind: str, length: int, accepted: bool) -> None:
    with lt.start_run("limits") as run:
        if kind == "metric key":
            call = lambda: run.log_metric("k" * length, 1.0)  # noqa: E731
        elif kind == "param value":
            call = lambda: run.log_param("p", "x" * (length - 2))  # noqa: E731  (JSON adds the quotes)
        else:
            call = lambda: run.set_tag("t", "x" * length)  # noqa: E731
        if accepted:
            call()
        else:
            with pytest.raises(lt.InvalidInput):
                call()
    got = lt.get_run(run.id)
    stored = {"metric key": len(got.metrics), "param value": len(got.params), "tag value": len(got.tags)}[kind]
    assert stored == (1 if accepted else 0)


def test_the_implicit_step_past_the_largest_is_refused_at_the_call_and_poisons_nothing() -> None:
    with lt.start_run("steps") as run:
        run.log_metric("x", 1.0, step=2**63 - 1)
        with pytest.raises(lt.InvalidInput, match=r"step of metric 'x'.*2\*\*63-1"):
            run.log_metric("x", 2.0)  # the next implicit step would be 2**63
        with pytest.raises(lt.InvalidInput, match="step"):
            run.log_batch({"x": [3.0]})
        run.log_metric("y", 5.0)
    stored = lt.get_run(run.id)
    assert stored.status is lt.RunStatus.FINISHED
    assert stored.history("x").steps == [2**63 - 1] and stored.metrics == {"x": 1.0, "y": 5.0}


@pytest.mark.parametrize("timestamp", [datetime(1, 1, 1), datetime(1, 1, 1, tzinfo=UTC), 1e20, -1e20,
                                       253402300800.0], ids=repr)
def test_a_timestamp_outside_the_years_1_to_9999_is_invalid_input_naming_the_range(timestamp: Any) -> None:
    with lt.start_run("times") as run:
        with pytest.raises(lt.InvalidInput, match=r"timestamp.*year 1.*9999") as caught:
            run.log_metric("x", 1.0, timestamp=timestamp)
        assert caught.value.field == "timestamp"
        run.log_metric("x", 2.0, timestamp=datetime(9999, 12, 30, tzinfo=UTC))
        run.log_metric("x", 3.0, timestamp=datetime(1, 1, 2, tzinfo=UTC))
    assert lt.get_run(run.id).history("x").values == [2.0, 3.0]


@pytest.mark.parametrize("clause", ["metrics.x > 18446744073709551616", "params.a = 18446744073709551616",
                                    "metrics.x.count < 18446744073709551616", "params.a = -99999999999999999999",
                                    "params.a IN (1, 18446744073709551616)"])
def test_a_filter_number_beyond_64_bits_compares_as_a_number_on_every_backend(clause: str, store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("big", params={"a": 2**64}) as run:
        run.log_metric("x", 1.0)
    found = [r.id for r in lt.search_runs("big", filter=clause)]
    expected = {"metrics.x > 18446744073709551616": [], "params.a = 18446744073709551616": [run.id],
                "metrics.x.count < 18446744073709551616": [run.id], "params.a = -99999999999999999999": [],
                "params.a IN (1, 18446744073709551616)": [run.id]}
    assert found == expected[clause]


def _nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def _cyclic() -> Any:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize("value", [_nested_list(500), _nested_dict(10_000), _cyclic(), _nested_list(33)],
                         ids=["list-500", "dict-10k", "cyclic", "list-33"])
def test_params_nested_deeper_than_32_levels_or_cyclic_are_invalid_input(value: Any) -> None:
    with lt.start_run("deep") as run:
        with pytest.raises(lt.InvalidInput, match=r"nested.*32") as caught:
            run.log_param("cfg", value)
        assert caught.value.field == "param 'cfg'"
        with pytest.raises(lt.InvalidInput, match=r"nested.*32"):
            lt.start_run("deep", params={"cfg": value}, nested=True)
        run.log_param("ok", _nested_list(32))
    assert lt.get_run(run.id).params == {"ok": _nested_list(32)}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_log_dict_of_a_cyclic_or_too_deep_dict_is_invalid_input(suffix: str) -> None:
    pytest.importorskip("yaml")
    with lt.start_run("deep") as run:
        for value in (_cyclic(), _nested_dict(10_000)):
            with pytest.raises(lt.InvalidInput, match=r"nested|cyclic") as caught:
                run.log_dict(value, f"config{suffix}")
            assert caught.value.field == "dictionary"


@pytest.mark.parametrize("call", [
    lambda r: r.log_param("p", "a\x00b"), lambda r: r.log_param("p", ["ok", {"k": "a\x00b"}]),
    lambda r: r.set_note("a\x00b"), lambda r: lt.start_run("nul", note="a\x00b", nested=True),
], ids=["param", "nested-param", "note", "start_run-note"])
def test_nul_in_a_param_value_or_a_note_is_invalid_input_on_every_backend(call: Any, store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("nul") as run:
        with pytest.raises(lt.InvalidInput, match="NUL"):
            call(run)
        run.log_param("fine", "a b")
    stored = lt.get_run(run.id)
    assert stored.status is lt.RunStatus.FINISHED and stored.params == {"fine": "a b"}


def test_a_note_is_limited_to_100k_characters() -> None:
    with lt.start_run("notes") as run:
        run.set_note("x" * 100_000)
        with pytest.raises(lt.InvalidInput, match="100,000") as caught:
            run.set_note("x" * 100_001)
        assert caught.value.field == "note"
        with pytest.raises(lt.InvalidInput, match="100,000"):
            lt.start_run("notes", note="x" * 10_000_000, nested=True)
    assert len(lt.get_run(run.id).note or "") == 100_000
