"""The wire format's compiled fast path (labtrack.core.wirefast) says exactly what the careful path says:
the same JSON data for a value, the same value for data — and on anything invalid it gives up, so that the
careful path raises the error that names the path."""

from __future__ import annotations

import math
from typing import Any

import pytest

from labtrack.core import wire, wirefast
from labtrack.core.model import (
    ArtifactInfo,
    IngestMark,
    Lifecycle,
    MetricSummary,
    NewRun,
    RunEnd,
    RunRecord,
    RunStatus,
    RunWrite,
    StoreCheck,
)
from labtrack.core.series import Chunk
from labtrack.core.views import ExperimentRuns

RECORD = RunRecord(
    id="a" * 32, experiment="e", status=RunStatus.FINISHED, start_time=1.5, end_time=2.0, heartbeat_time=None,
    host="h", pid=3, name="n", params={"lr": 0.1, "layers": [1, 2], "opt": {"$ref": "x"}, "nan": math.nan, "t": (1, 2)},
    tags={"k": "v"}, metrics={"acc": MetricSummary("acc", math.inf, 3, 1.0, -math.inf, math.nan, 4)},
    error={"type": "E", "message": "m"}, run_key="k" * 64, note="note", result={"best": 1}, deleted_time=None)
WRITE = RunWrite("b" * 32, create=NewRun(id="b" * 32, experiment="e", start_time=1.0, params={"x": 1},
                                         artifacts=[ArtifactInfo("p", "0" * 64, 3)]),
                 metrics={"loss": Chunk.from_points([(0, 1.0, math.nan), (1, 2.0, 0.5)])},
                 new_keys=frozenset({"loss"}), mark=IngestMark("s", 1, 2), end=RunEnd(RunStatus.KILLED, 3.0, {"a": "b"}))

CASES: list[tuple[Any, object]] = [
    (RECORD, RunRecord), ([RECORD, RECORD], list[RunRecord]), (WRITE, RunWrite), ([WRITE], list[RunWrite]),
    (StoreCheck(chunks=3), StoreCheck), ([ExperimentRuns(1, "e", 1.0, 2, None)], list[ExperimentRuns]),
    (Lifecycle.DELETED, Lifecycle), ({"a": 1.5, "b": None}, dict[str, float | None]), (math.nan, float),
    (["x", "y"], list[str]), ({"k": [1, {"$x": 2}]}, Any), (3, int), (None, str | None),
]


@pytest.mark.parametrize("value,tp", CASES, ids=[str(i) for i in range(len(CASES))])
def test_the_fast_path_writes_and_reads_what_the_careful_one_does(value: Any, tp: object) -> None:
    careful = wire._encode(value, tp, "")
    assert wire.to_wire(value, tp) == careful
    encoder = wirefast.encoder(tp)
    if encoder is not None:
        try:
            fast = encoder(value)
        except Exception:  # it gave up: fine, the careful path decided
            pass
        else:
            assert fast == careful
    decoded = wire._decode(tp, careful, "")
    assert wire.to_wire(wire.from_wire(tp, careful), tp) == wire.to_wire(decoded, tp)


BAD: list[tuple[object, object, str]] = [
    (RunRecord, {**wire.to_wire(RECORD), "surprise": 1}, "surprise: unknown field"),
    (RunRecord, {k: v for k, v in wire.to_wire(RECORD).items() if k != "status"}, "status: missing field"),
    (RunRecord, {**wire.to_wire(RECORD), "pid": True}, "pid: expected an integer"),
    (RunRecord, {**wire.to_wire(RECORD), "status": "DONE"}, "status: expected one of"),
    (RunRecord, {**wire.to_wire(RECORD), "start_time": "soon"}, "start_time: expected a number"),
    (list[RunRecord], [wire.to_wire(RECORD), 7], "[1]: expected an object"),
    (dict[str, int], {"a": 1.5}, "a: expected an integer"),
    (list[RunWrite], [{**wire.to_wire(WRITE), "metrics": {"loss": {"encoding": "le-base64", "steps": "!"}}}], "[0].metrics.loss"),
    (Any, {"$what": 1}, "unknown tag"),
]


@pytest.mark.parametrize("tp,data,message", BAD, ids=[m for _, _, m in BAD])
def test_invalid_data_is_refused_with_the_careful_paths_error(tp: object, data: object, message: str) -> None:
    with pytest.raises(wire.InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        wire.from_wire(tp, data)


def test_deflated_series_round_trip_exactly_and_a_deflate_bomb_is_refused() -> None:
    import zlib

    from labtrack.core.series import deflated_series

    chunk = Chunk.from_points([(i, 1.7e9 + i / 1000, 1 / (i + 1)) for i in range(5000)] + [(5000, 2.0, math.nan)])
    with deflated_series():
        data = wire.to_wire(chunk, Chunk)
    assert set(data["steps"]) == {"deflate"} and isinstance(data["values"], str)  # type: ignore[arg-type]
    back = wire.from_wire(Chunk, data)
    assert list(back.steps) == list(chunk.steps) and list(back.timestamps) == list(chunk.timestamps)
    assert [v for v in back.values if v == v] == [v for v in chunk.values if v == v] and math.isnan(back.values[-1])
    assert isinstance(wire.to_wire(chunk, Chunk)["steps"], str)  # outside the block: plain, as before
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = squeeze.compress(b"\0" * (wire.MAX_INFLATED + 8)) + squeeze.flush()
    import binascii

    forged = {**data, "steps": {"deflate": binascii.b2a_base64(bomb, newline=False).decode()}}
    with pytest.raises(wire.InvalidInput, match="steps: inflates to more than"):
        wire.from_wire(Chunk, forged)
    with pytest.raises(wire.InvalidInput, match=r"steps: (not deflate data|the deflate data is cut short)"):
        wire.from_wire(Chunk, {**data, "steps": {"deflate": "AAAA"}})
    with pytest.raises(wire.InvalidInput, match="steps: not deflate data"):
        wire.from_wire(Chunk, {**data, "steps": {"deflate": binascii.b2a_base64(b"\xff\xff\xff\xff", newline=False).decode()}})
