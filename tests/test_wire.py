"""core.wire: every record, run table, metric series, diff, verdict and error encodes to strict JSON and
decodes back to an equal object; NaN and ±inf survive everywhere; malformed bodies are InvalidInput naming
the field."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from array import array
from typing import Any

import pytest

from labtrack.core import errors
from labtrack.core.aggregate import Group, Grouping, MetricStats, group_runs
from labtrack.core.checks import (
    ArtifactCheck,
    DoctorReport,
    Finding,
    MetricCheck,
    Reason,
    Reproduction,
    Verdict,
)
from labtrack.core.diff import Change, MetricDelta, RunDiff, RunView, Section, diff_runs
from labtrack.core.environment import Environment
from labtrack.core.errors import InvalidInput, LabtrackError
from labtrack.core.filters import parse_filter
from labtrack.core.frame import RunTable
from labtrack.core.model import (
    ArtifactInfo,
    ClaimState,
    Experiment,
    IngestMark,
    MetricHistory,
    MetricSummary,
    NewRun,
    RunEnd,
    RunRecord,
    RunStatus,
    RunWrite,
    Search,
)
from labtrack.core.query import parse_order_by
from labtrack.core.series import Chunk
from labtrack.core.views import ColumnRow, ExperimentRuns, RunColumns, RunDetail
from labtrack.core.wire import dumps, error_from_wire, error_to_wire, from_wire, loads, to_wire

NAN, INF = math.nan, math.inf
# A NaN with a payload (quiet bit set, low bits 0xdead) and one with only a payload bit (signalling-ish):
# a packed series keeps their bits; free-form JSON can only say "NaN".
PAYLOAD_NAN_BITS = bytes.fromhex("adde00000000f87f")
SIGNALLING_NAN_BITS = bytes.fromhex("010000000000f07f")


def doubles(raw: bytes) -> array[float]:
    out = array("d")
    out.frombytes(raw)
    return out


def same(a: Any, b: Any) -> bool:
    """Deep equality of decoded values: the same types all the way down, NaN equal to NaN, -0.0 not equal
    to 0.0, arrays bit for bit (stricter than ==, which a NaN anywhere defeats)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, array):
        return a.typecode == b.typecode and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (set, frozenset)):
        return a == b
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, RunTable):
        return all(same(getattr(a, name), getattr(b, name))
                   for name in ("ids", "experiment", "name", "status", "start_time", "end_time")) and all(
            same(getattr(a, column)(), getattr(b, column)()) for column in ("params", "tags", "metrics"))
    if isinstance(a, Environment):
        return same(a.snapshot, b.snapshot) and a.fingerprint == b.fingerprint
    if isinstance(a, LabtrackError):
        return str(a) == str(b) and a.field == b.field and a.status_code == b.status_code
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def json_like(value: Any) -> Any:
    """What free-form data is after a trip through JSON: tuples are lists."""
    if isinstance(value, (list, tuple)):
        return [json_like(v) for v in value]
    if isinstance(value, dict):
        return {k: json_like(v) for k, v in value.items()}
    return value


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"bare {constant} in the wire format's JSON")

    return json.loads(text, parse_constant=refuse)


def test_same_tells_apart_what_round_trips_must_keep() -> None:
    """Guards the helper the round trips rely on: it can fail."""
    assert same([NAN, -0.0, {"a": (1, "x")}], [NAN, -0.0, {"a": (1, "x")}])
    assert not same(-0.0, 0.0)
    assert not same(1, 1.0) and not same(True, 1) and not same("NaN", NAN)
    assert not same((1,), [1]) and not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same(doubles(PAYLOAD_NAN_BITS), array("d", [NAN]))
    assert not same(MetricSummary("k", NAN, 1, 0.0, 0.0, 1.0, 2), MetricSummary("k", NAN, 1, 0.0, 0.0, 1.0, 3))


# -- values of every type ---------------------------------------------------------------------------

FREE_FORM = {
    "float nan": NAN, "float inf": INF, "float -inf": -INF, "float -0.0": -0.0, "string NaN": "NaN",
    "string Infinity": "Infinity", "user $float dict": {"$float": "NaN"}, "user $dict dict": {"$dict": 1},
    "nested $ keys": {"$x": {"$y": [NAN, {"$float": "Infinity"}]}}, "two $ keys": {"$a": 1, "$b": 2},
    "big int": 2**70, "bool": True, "null": None, "unicode": "ß→λ", "empty dict": {}, "empty key": {"": None},
    "list of mixed": [1, 1.5, "two", None, [INF], {"k": -INF}],
}


def record(**changes: Any) -> RunRecord:
    base = RunRecord(
        id="0123456789abcdef0123456789abcdef", experiment="mnist", status=RunStatus.FAILED, start_time=1_700_000_000.25,
        end_time=1_700_000_100.5, heartbeat_time=1_700_000_099.0, host="gpu-1", pid=4242, name="baseline",
        params={"lr": 0.01, "nan": NAN, "inf": INF, "ninf": -INF, "text": "NaN", "layers": [64, 32], **FREE_FORM},
        tags={"team": "cv", "empty": ""},
        metrics={"loss": MetricSummary("loss", NAN, 9, 1_700_000_050.0, -INF, INF, 10),
                 "acc": MetricSummary("acc", 0.9, 9, 1_700_000_050.0, 0.1, 0.9, 10)},
        error={"type": "ValueError", "message": "boom"}, run_key="k" * 64, env_fingerprint="f" * 64, note="a note",
        result={"best": NAN, "scores": [INF, -0.0], "$float": "not a tag: the dict has two keys", "x": 1},
    )
    return dataclasses.replace(base, **changes)


def chunk(*points: tuple[int, float, float]) -> Chunk:
    return Chunk.from_points(points)


def table() -> RunTable:
    first = record()
    second = record(id="f" * 32, name=None, status=RunStatus.RUNNING, end_time=None, params={"lr": NAN, "other": "x"},
                    tags={}, metrics={"new": MetricSummary("new", INF, 0, 0.0, INF, INF, 1)})
    built = RunTable()
    built.add_records([first])
    built.add_records([second, record(id="e" * 32, params={}, metrics={})])
    return built


def environment() -> Environment:
    return Environment({"schema": 1, "captured_at": 1.5, "hardware": {"arch": "x86_64", "flags": ["avx2"],
                                                                      "memory_total": 2**34},
                        "gpu": {"count": 0, "reason": "no driver", "devices": []},
                        "frameworks": {"torch": {"version": "2.3.1", "weird": NAN, "$meta": {"$float": 1}}},
                        "system": {"error": "RuntimeError: no /etc/os-release today"}})


def diff_result() -> RunDiff:
    a = RunView("a" * 32, params={"lr": 0.1, "nan": NAN, "same": 1}, tags={"t": "x"},
                metrics={"acc": 0.9, "loss": NAN, "gone": 1.0, "zero": 0.0, "inf": INF},
                artifacts={"model.pt": "ab" * 32, "config.json": "cd" * 32}, environment=environment().snapshot)
    b = RunView("b" * 32, params={"lr": 0.01, "nan": "NaN", "same": 1}, tags={"t": "y"},
                metrics={"acc": 0.95, "loss": NAN, "new": 2.0, "zero": 1.0, "inf": -INF},
                artifacts={"model.pt": "ab" * 32, "config.json": "ef" * 32}, environment={})
    return diff_runs(a, b)


FILTER = ("metrics.acc > 0.9 and (params.lr = 0.01 or params.opt IN ('adam', 'sgd')) and not tags.note IS NULL "
          "and env.gpu.name NOT ILIKE '%A100%' and params.flag = true and metrics.loss.min <= -1e-3 "
          "and params.`batch.size` != 32 and tags.team NOT IN (1, 2.5, 'x')")

CASES: dict[str, tuple[object, Any]] = {
    **{f"RunStatus.{s.name}": (RunStatus, s) for s in RunStatus},
    **{f"ClaimState.{s.name}": (ClaimState, s) for s in ClaimState},
    "Experiment": (Experiment, Experiment(3, "mnist", 1_700_000_000.5)),
    "MetricSummary finite": (MetricSummary, MetricSummary("acc", 0.5, 3, 12.5, 0.25, 0.75, 4)),
    "MetricSummary non-finite": (MetricSummary, MetricSummary("loss", NAN, 3, -INF, NAN, INF, 4)),
    "MetricHistory": (MetricHistory, MetricHistory("loss", [0, 1, 2, 2**62, -5], [0.0, 1.5, INF, -0.0, NAN],
                                                    [NAN, INF, -INF, -0.0, 1e-310])),
    "MetricHistory empty": (MetricHistory, MetricHistory("empty", [], [], [])),
    "ArtifactInfo": (ArtifactInfo, ArtifactInfo("model/weights.pt", "ab" * 32, 2**40)),
    "RunRecord": (RunRecord, record()),
    "RunRecord minimal": (RunRecord, RunRecord("a" * 32, "e", RunStatus.RUNNING, 0.0)),
    "RunRecord crashed, result a list": (RunRecord, record(status=RunStatus.CRASHED, result=[NAN, "NaN"])),
    "NewRun": (NewRun, NewRun("c" * 32, "mnist", 5.0, name="n", host="h", pid=1, params={"lr": NAN, "s": "NaN"},
                              tags={"a": "b"}, run_key="k", env_fingerprint="f", context={"seeds": {"seed": 1},
                                                                                          "$odd": {"$dict": []}},
                              note="x", artifacts=(ArtifactInfo("a.txt", "00" * 32, 0),))),
    "NewRun minimal": (NewRun, NewRun("c" * 32, "mnist", -INF)),
    "Search": (Search, Search(experiments=("mnist", "cifar"), order_by=tuple(parse_order_by(
        ["metrics.`val.loss`.min desc", "start_time", "params.lr asc"])), max_results=10, offset=5, run_key="k",
        filter=parse_filter(FILTER), stale_before=INF)),
    "Search default": (Search, Search()),
    **{f"Search filter {text!r}": (Search, Search(filter=parse_filter(text))) for text in (
        "metrics.acc >= -0.5", "not (metrics.acc <= 0.5)", "attributes.status = 'FINISHED'", "tags.x LIKE 'a%'",
        "params.opt IN ('adam')", "tags.x IS NOT NULL or params.y = 'NaN'")},
    "RunEnd": (RunEnd, RunEnd(RunStatus.KILLED, 12.5, {"type": "KeyboardInterrupt", "message": ""})),
    "IngestMark": (IngestMark, IngestMark("spool-1", 2**40, 7)),
    "RunWrite": (RunWrite, RunWrite(
        "d" * 32, create=NewRun("d" * 32, "e", 1.0), params={"nan": NAN, "$k": 1}, tags={"t": "v"}, note="n",
        context={"seeds": {"torch": 1}}, env_fingerprint="f" * 64, artifacts=[ArtifactInfo("x", "11" * 32, 3)],
        has_result=True, result={"$float": "Infinity"},
        metrics={"loss": chunk((0, 1.0, NAN), (1, 2.0, -0.0), (2, 3.0, INF)), "empty": Chunk.empty()},
        new_keys=frozenset({"loss", "b", "a"}), mark=IngestMark("s", 10, 3), end=RunEnd(RunStatus.FINISHED, 4.0))),
    "RunWrite minimal": (RunWrite, RunWrite("d" * 32)),
    "Chunk": (Chunk, chunk((0, 0.0, NAN), (-1, -INF, INF), (2**63 - 1, 1e308, -0.0))),
    "Chunk empty": (Chunk, Chunk.empty()),
    "RunTable": (RunTable, table()),
    "RunTable empty": (RunTable, RunTable()),
    "RunDiff": (RunDiff, diff_result()),
    "Section": (Section, Section("params", 1, [Change("lr", NAN, "NaN", "changed", "minor", "a note")], False)),
    "MetricDelta": (MetricDelta, MetricDelta("acc", NAN, -INF, None, None, True)),
    "Verdict": (Verdict, Verdict("at-risk", [Reason("at-risk", "numpy 1 → 2"), Reason("compatible", "os")])),
    "Reason": (Reason, Reason("incompatible", "no GPU")),
    "Finding": (Finding, Finding("error", "cuda", "driver too old")),
    "DoctorReport": (DoctorReport, DoctorReport([Finding("warning", "cuda", "no GPU")], "f" * 64)),
    "DoctorReport no fingerprint": (DoctorReport, DoctorReport([], None)),
    "Reproduction": (Reproduction, Reproduction(
        "a" * 32, "b" * 32, "differs", "/tmp/x",
        [MetricCheck("loss", NAN, NAN, True), MetricCheck("acc", INF, None, False), MetricCheck("z", -0.0, 0.0, True)],
        [ArtifactCheck("model.bin", "00" * 32, None, False)], ["a problem"])),
    "MetricStats": (MetricStats, MetricStats(3, NAN, INF, -INF, 0.5)),
    "Grouping": (Grouping, Grouping(["params.lr", "tags.team"], ["metrics.acc"], group_runs(
        [{"params.lr": 0.1, "tags.team": "cv", "metrics.acc": 0.5}, {"params.lr": NAN, "metrics.acc": 0.7},
         {"params.lr": "NaN", "tags.team": {"$float": "NaN"}, "metrics.acc": 0.9}],
        ["params.lr", "tags.team"], ["metrics.acc"]))),
    "Group": (Group, Group((0.1, None, NAN, "NaN", [1, {"$dict": 2}]), 3, {"metrics.acc": MetricStats(3, 1.0, 0.0, 1.0, 1.0)})),
    "Environment": (Environment, environment()),
    "Environment empty": (Environment, Environment({})),
    "ExperimentRuns": (ExperimentRuns, ExperimentRuns(1, "e", 2.5, 7)),
    "RunDetail": (RunDetail, RunDetail.of(record(), [ArtifactInfo("a", "00" * 32, 1)], environment())),
    "RunDetail without environment": (RunDetail, RunDetail.of(record(), [], None)),
    "RunColumns": (RunColumns, RunColumns(["params.lr", "metrics.acc"], [
        ColumnRow("a" * 32, {"params.lr": NAN, "metrics.acc": None}), ColumnRow("b" * 32, {"params.lr": "NaN"})])),
    "list[RunRecord]": (list[RunRecord], [record(), record(id="1" * 32, params={})]),
    "dict[str, MetricSummary]": (dict[str, MetricSummary], {"a": MetricSummary("a", INF, 0, 0.0, 0.0, 0.0, 1)}),
    **{f"error {cls.__name__}": (cls, cls("it went wrong")) for cls in (
        errors.LabtrackError, errors.NoActiveRunError, errors.RunNotFound, errors.AmbiguousRunId,
        errors.ExperimentNotFound, errors.StoreError, errors.SchemaOutdated)},
    "error InvalidInput with a field": (InvalidInput, InvalidInput("bad step", field="metrics.loss")),
    "error ParamConflict with a field": (errors.ParamConflict, errors.ParamConflict("lr differs", field="params.lr")),
}


@pytest.mark.parametrize(("tp", "original"), list(CASES.values()), ids=list(CASES))
def test_every_type_round_trips_through_strict_json(tp: object, original: Any) -> None:
    text = dumps(original, tp)
    strict_json(text)  # no bare NaN or Infinity: any JSON parser reads it
    decoded = loads(tp, text)
    assert same(decoded, original), (decoded, original)
    assert dumps(decoded, tp) == text  # and it encodes to the same text again


@pytest.mark.parametrize(("tp", "original"), list(CASES.values()), ids=list(CASES))
def test_the_type_is_found_from_the_object(tp: object, original: Any) -> None:
    assert to_wire(original) == to_wire(original, tp)


EQUAL_AFTER_ROUND_TRIP = ["Experiment", "MetricSummary finite", "ArtifactInfo", "RunRecord minimal", "NewRun minimal",
                          "Search", "Search default", "RunEnd", "IngestMark", "RunWrite minimal", "Chunk",
                          "Chunk empty", "Verdict", "Finding", "DoctorReport", "ExperimentRuns", "Environment empty",
                          "MetricHistory empty"]


@pytest.mark.parametrize("name", EQUAL_AFTER_ROUND_TRIP)
def test_records_without_a_free_form_nan_are_equal_after_a_round_trip(name: str) -> None:
    tp, original = CASES[name]
    assert loads(tp, dumps(original, tp)) == original


def test_a_chunk_equals_its_copy_bit_for_bit() -> None:
    assert chunk((0, 0.0, NAN)) == chunk((0, 0.0, NAN))  # NaN points: equal, which array == says they are not
    assert chunk((0, 0.0, -0.0)) != chunk((0, 0.0, 0.0))
    assert chunk((0, 0.0, 1.0)) != chunk((1, 0.0, 1.0))


# -- the shapes ---------------------------------------------------------------------------------------


def test_float_fields_carry_non_finite_values_as_strings() -> None:
    assert to_wire(MetricSummary("loss", NAN, 3, 2.5, -INF, INF, 4)) == {
        "key": "loss", "last": "NaN", "last_step": 3, "last_timestamp": 2.5, "min": "-Infinity", "max": "Infinity",
        "count": 4,
    }


@pytest.mark.parametrize(("value", "wire"), [
    (NAN, {"$float": "NaN"}),
    (INF, {"$float": "Infinity"}),
    (-INF, {"$float": "-Infinity"}),
    ("NaN", "NaN"),
    (-0.0, -0.0),
    ({"$float": "NaN"}, {"$dict": {"$float": "NaN"}}),
    ({"$dict": 1}, {"$dict": {"$dict": 1}}),
    ({"$x": NAN}, {"$dict": {"$x": {"$float": "NaN"}}}),
    ({"$a": 1, "$b": 2}, {"$a": 1, "$b": 2}),
    ({"a$": 1}, {"a$": 1}),
    ([NAN, (1, "x")], [{"$float": "NaN"}, [1, "x"]]),
], ids=["nan", "inf", "-inf", "string NaN", "-0.0", "user $float", "user $dict", "user $ key holding NaN",
        "two $ keys", "$ not first", "list and tuple"])
def test_free_form_values_tag_non_finite_floats_and_escape_dollar_keys(value: Any, wire: Any) -> None:
    assert to_wire(value, Any) == wire
    assert same(from_wire(Any, wire), json_like(value))


@pytest.mark.parametrize("name", list(FREE_FORM), ids=list(FREE_FORM))
def test_a_param_comes_back_as_itself(name: str) -> None:
    """The string "NaN" stays a string and a float NaN a float; a user dict shaped like a tag stays a dict."""
    run = RunRecord("a" * 32, "e", RunStatus.FINISHED, 0.0, params={"p": FREE_FORM[name]})
    back = loads(RunRecord, dumps(run)).params["p"]
    assert same(back, FREE_FORM[name])


def test_derived_properties_are_written_for_readers_and_ignored_when_read() -> None:
    result = diff_result()
    data = result.to_dict()
    assert data["identical"] is False
    assert all("identical" in s for s in data["sections"])
    assert Verdict("at-risk").to_dict()["exit_code"] == 1
    assert DoctorReport([Finding("error", "cuda", "x")], None).to_dict()["ok"] is False
    assert Reproduction("a", None, "failed", "/w").to_dict()["exit_code"] == 2
    data["identical"] = True  # a reader's claim does not override the fields
    assert from_wire(RunDiff, data).identical is False


def test_a_union_of_records_is_tagged_with_the_class_name() -> None:
    data = to_wire(Search(filter=parse_filter("not params.lr = 1")))
    assert isinstance(data, dict)
    assert data["filter"] == {"type": "Not", "item": {"type": "Compare", "field": {"kind": "params", "key": "lr",
                                                                                    "aggregate": "last"},
                                                      "op": "=", "value": 1}}


def test_sets_travel_sorted_and_sequences_come_back_as_tuples() -> None:
    data = to_wire(RunWrite("x", new_keys=frozenset({"b", "c", "a"})))
    assert isinstance(data, dict) and data["new_keys"] == ["a", "b", "c"]
    assert from_wire(Search, {"experiments": ["a", "b"]}).experiments == ("a", "b")


def test_metric_series_travel_packed_little_endian() -> None:
    data = to_wire(MetricHistory("loss", [1, 2], [0.0, 0.5], [NAN, -0.0]))
    assert data == {"key": "loss", "encoding": "le-base64", "steps": "AQAAAAAAAAACAAAAAAAAAA==",
                    "timestamps": "AAAAAAAAAAAAAAAAAADgPw==", "values": "AAAAAAAA+H8AAAAAAAAAgA=="}


@pytest.mark.parametrize("bits", [PAYLOAD_NAN_BITS, SIGNALLING_NAN_BITS, struct.pack("<d", -0.0),
                                  struct.pack("<d", 5e-324), struct.pack("<d", -INF)],
                         ids=["NaN with payload", "signalling NaN", "-0.0", "smallest subnormal", "-inf"])
def test_packed_series_keep_every_bit(bits: bytes) -> None:
    original = Chunk(array("q", [7]), doubles(bits), doubles(bits))
    back = loads(Chunk, dumps(original))
    assert back.values.tobytes() == bits and back.timestamps.tobytes() == bits
    history = loads(MetricHistory, dumps(MetricHistory("k", [7], doubles(bits).tolist(), doubles(bits).tolist())))
    assert struct.pack("<d", history.values[0]) == bits


def test_a_run_table_keeps_its_columns() -> None:
    original = table()
    back = loads(RunTable, dumps(original))
    assert back.ids == original.ids and back.status == original.status and back.name == original.name
    assert same(back.params(), original.params()) and back.tags() == original.tags()
    assert {k: v.tobytes() for k, v in back.metrics().items()} == {k: v.tobytes() for k, v in original.metrics().items()}
    assert same(back.params()["lr"], [0.01, NAN, None])  # a run without the param has None there


def test_an_environment_is_its_snapshot_with_the_fingerprint_beside_the_sections() -> None:
    env = environment()
    data = to_wire(env)
    assert isinstance(data, dict) and data["fingerprint"] == env.fingerprint
    assert data["hardware"] == {"arch": "x86_64", "flags": ["avx2"], "memory_total": 2**34}
    data["fingerprint"] = "0" * 64  # follows from the snapshot: computed again
    assert from_wire(Environment, data).fingerprint == env.fingerprint


def test_every_to_dict_is_the_wire_format() -> None:
    for original in (record(), diff_result(), Verdict("identical"), Finding("error", "cuda", "x"),
                     Reason("at-risk", "y"), DoctorReport([], None), Reproduction("a", None, "failed", "/w"),
                     Change("k", NAN, 1, "changed"), Section("s", 1)):
        assert original.to_dict() == to_wire(original), type(original).__name__


# -- errors -------------------------------------------------------------------------------------------


def test_an_error_is_its_code_message_field_and_status() -> None:
    assert error_to_wire(InvalidInput("step must be >= 0", field="step")) == {
        "error": {"code": "InvalidInput", "message": "step must be >= 0", "field": "step", "status": 400}}
    assert InvalidInput("x").to_dict() == {"error": {"code": "InvalidInput", "message": "x", "field": None,
                                                     "status": 400}}
    assert errors.RunNotFound("no run abc").to_dict()["error"] == {
        "code": "RunNotFound", "message": "no run abc", "field": None, "status": 404}


def every_error_class() -> list[type[LabtrackError]]:
    found, queue = [], [LabtrackError]
    while queue:
        cls = queue.pop(0)
        found.append(cls)
        queue.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__ == "labtrack.core.errors"]


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_every_error_class_comes_back_as_itself(cls: type[LabtrackError]) -> None:
    back = error_from_wire(json.loads(dumps(cls("message"))))
    assert type(back) is cls and str(back) == "message" and back.status_code == cls.status_code


def test_an_error_class_defined_later_is_found_by_its_name() -> None:
    class LaterConflict(errors.StoreError):
        status_code = 409

    back = error_from_wire({"error": {"code": "LaterConflict", "message": "taken", "field": None, "status": 409}})
    assert type(back) is LaterConflict


def test_an_unknown_error_code_is_a_labtrack_error_that_keeps_its_field() -> None:
    back = error_from_wire({"error": {"code": "FromTheFuture", "message": "hm", "field": "x", "status": 418}})
    assert type(back) is LabtrackError and str(back) == "hm" and back.field == "x"
    assert type(error_from_wire({"error": {"code": "ValueError", "message": "m"}})) is LabtrackError


# -- malformed input ----------------------------------------------------------------------------------


def with_change(tp: object, original: Any, path: list[Any], value: Any) -> Any:
    """The wire form of ``original`` with the value at ``path`` replaced (or removed, for ``...``)."""
    data = json.loads(dumps(original, tp))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


RUN = record()
SERIES = RunWrite("w", metrics={"loss": chunk((0, 0.0, 1.0), (1, 1.0, 2.0))})
MALFORMED: dict[str, tuple[object, Any, str]] = {
    "a metric's last as text": (RunRecord, with_change(RunRecord, RUN, ["metrics", "loss", "last"], "nan"),
                                "metrics.loss.last"),
    "a metric summary as a number": (RunRecord, with_change(RunRecord, RUN, ["metrics", "acc"], 0.5), "metrics.acc"),
    "an unknown status": (RunRecord, with_change(RunRecord, RUN, ["status"], "DONE"), "status"),
    "a status in lower case": (RunRecord, with_change(RunRecord, RUN, ["status"], "finished"), "status"),
    "a boolean start time": (RunRecord, with_change(RunRecord, RUN, ["start_time"], True), "start_time"),
    "a fractional pid": (RunRecord, with_change(RunRecord, RUN, ["pid"], 1.5), "pid"),
    "a missing id": (RunRecord, with_change(RunRecord, RUN, ["id"], ...), "id"),
    "an unknown field": (RunRecord, with_change(RunRecord, RUN, ["bogus"], 1), "bogus"),
    "a tag that is a number": (RunRecord, with_change(RunRecord, RUN, ["tags", "team"], 3), "tags.team"),
    "params as a list": (RunRecord, with_change(RunRecord, RUN, ["params"], [1]), "params"),
    "a $float that is not a non-finite name": (RunRecord, with_change(RunRecord, RUN, ["params", "x"],
                                                                      {"$float": "nan"}), "params.x.$float"),
    "a $float holding a number": (RunRecord, with_change(RunRecord, RUN, ["result"], {"$float": 1.0}),
                                  "result.$float"),
    "an unknown $ tag": (RunRecord, with_change(RunRecord, RUN, ["params", "x"], {"$what": 1}), "params.x.$what"),
    "a $dict holding a list": (RunRecord, with_change(RunRecord, RUN, ["params", "x"], {"$dict": [1]}),
                               "params.x.$dict"),
    "an artifact size as text": (NewRun, with_change(NewRun, CASES["NewRun"][1], ["artifacts", 0, "size"], "3"),
                                 "artifacts[0].size"),
    "an unknown filter node": (Search, with_change(Search, CASES["Search"][1], ["filter", "type"], "Xor"),
                               "filter.type"),
    "a filter node without a type": (Search, with_change(Search, CASES["Search"][1], ["filter", "type"], ...),
                                     "filter.type"),
    "a nested filter node without its field": (Search, with_change(Search, CASES["Search"][1],
                                                                   ["filter", "items", 0, "field"], ...),
                                               "filter.items[0].field"),
    "an order term that is a string": (Search, with_change(Search, CASES["Search"][1], ["order_by", 1], "start_time"),
                                       "order_by[1]"),
    "steps not a multiple of 8 bytes": (RunWrite, with_change(RunWrite, SERIES, ["metrics", "loss", "steps"],
                                                              "AAAA"), "metrics.loss.steps"),
    "values not base64": (RunWrite, with_change(RunWrite, SERIES, ["metrics", "loss", "values"], "not base64!"),
                          "metrics.loss.values"),
    "values as a list of numbers": (RunWrite, with_change(RunWrite, SERIES, ["metrics", "loss", "values"], [1.0]),
                                    "metrics.loss.values"),
    "arrays of different lengths": (RunWrite, with_change(RunWrite, SERIES, ["metrics", "loss", "values"],
                                                          "AAAAAAAA8D8="), "metrics.loss"),
    "an unknown encoding": (RunWrite, with_change(RunWrite, SERIES, ["metrics", "loss", "encoding"], "hex"),
                            "metrics.loss.encoding"),
    "new keys as a string": (RunWrite, with_change(RunWrite, SERIES, ["new_keys"], "abc"), "new_keys"),
    "a history without its key": (MetricHistory, with_change(MetricHistory, CASES["MetricHistory"][1], ["key"], ...),
                                  "key"),
    "a table column too short": (RunTable, with_change(RunTable, table(), ["params", "lr"], [1]), "params.lr"),
    "a table's start times too short": (RunTable, with_change(RunTable, table(), ["start_time"], ""), "start_time"),
    "a fingerprint that is a number": (Environment, with_change(Environment, environment(), ["fingerprint"], 1),
                                       "fingerprint"),
    "an environment that is a list": (Environment, [], ""),
    "a group key that is not a list": (Group, with_change(Group, CASES["Group"][1], ["key"], "0.1"), "key"),
    "a diff row without its key": (RunDiff, with_change(RunDiff, diff_result(), ["metrics", 0, "key"], ...),
                                   "metrics[0].key"),
    "a second level in a list of records": (list[RunRecord], [json.loads(dumps(RUN)),
                                                              with_change(RunRecord, RUN, ["id"], 1)], "[1].id"),
    "an error without its code": (LabtrackError, {"error": {"message": "m"}}, "error.code"),
    "an error whose field is a number": (LabtrackError, {"error": {"code": "InvalidInput", "message": "m",
                                                                   "field": 1}}, "error.field"),
    "a record that is a string": (RunRecord, "run", ""),
}


@pytest.mark.parametrize(("tp", "data", "path"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_input_is_invalid_input_naming_the_field(tp: object, data: Any, path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_wire(tp, data)
    assert caught.value.field == (path or None)
    assert caught.value.status_code == 400
    with pytest.raises(InvalidInput):  # the same through JSON text, as a server reads a body
        loads(tp, json.dumps(data))


@pytest.mark.parametrize("text", ['{"id": NaN}', '[Infinity]', "{", "", '{"a": 1,}', "[" * 100_000 + "]" * 100_000],
                         ids=["bare NaN", "bare Infinity", "cut short", "empty", "trailing comma", "nested deeply"])
def test_text_that_is_not_strict_json_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        loads(RunRecord, text)


def test_deeply_nested_free_form_data_is_invalid_input_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(InvalidInput):
        from_wire(RunRecord, {"id": "a", "experiment": "e", "status": "RUNNING", "start_time": 0, "result": deep})


def test_a_value_that_is_not_json_data_is_refused_when_encoding() -> None:
    with pytest.raises(TypeError, match=r"params\.when"):
        to_wire(RunRecord("a", "e", RunStatus.RUNNING, 0.0, params={"when": object()}))
