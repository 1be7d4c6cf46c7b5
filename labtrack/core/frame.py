"""Runs as columns: the compact summary the store keeps on every ended run, and the table built from it.

Loading 100k runs row by row means millions of (run, key, value) rows and as many Python objects; a
DataFrame wants columns. So once a run has ended, its row in ``runs`` also carries a *frame*, rewritten
whenever its params, tags or metrics change afterwards:

- ``keys``: JSON ``[[param keys], [tag keys], [metric keys]]``, each sorted. Runs that logged the same
  keys share the text, so the store groups them and reads each group's runs at once.
- ``values``: a JSON array: the params as logged (their stored JSON text, so ``1.0`` stays a float),
  then the tags.
- ``numbers``: little-endian float64: start time, end time (NaN if none), then each metric's last value
  (NaN and ±inf exact, which JSON and SQLite's number-to-text conversions are not).

A group of N runs with the same keys then arrives as one JSON text of N arrays and one buffer of
N × width doubles: a column is a slice of the buffer or one position of every array.

A ``RunTable`` travels column-wise in the wire format (``core.wire``): ``ids``, ``experiment``, ``name`` and
``status`` as arrays, ``start_time`` and ``end_time`` packed, ``params`` and ``tags`` as ``{key: [value per
run]}`` and ``metrics`` as ``{key: packed last values}``; ``"encoding": "le-base64"`` names the packing.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from labtrack.core.errors import InvalidInput
from labtrack.core.jsontext import json_text
from labtrack.core.model import RunRecord
from labtrack.core.wire import ENCODING, Json, decode_array, encode_array, expect_object, from_wire, join_path, to_wire

__all__ = ["FrameRow", "RunTable", "encode_frame"]

_NATIVE_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True)
class FrameRow:
    keys: str
    values: str
    numbers: bytes


def encode_frame(
    params: Mapping[str, str], tags: Mapping[str, str], metrics: Mapping[str, float], start: float, end: float | None
) -> FrameRow:
    """The frame of one run. ``params`` maps keys to their stored JSON text; ``metrics`` to last values."""
    param_keys, tag_keys, metric_keys = sorted(params), sorted(tags), sorted(metrics)
    keys = json_text([param_keys, tag_keys, metric_keys])
    values = [params[k] for k in param_keys] + [json_text(tags[k]) for k in tag_keys]
    numbers = array("d", [start, math.nan if end is None else end])
    numbers.extend(metrics[k] for k in metric_keys)
    if not _NATIVE_LITTLE:
        numbers.byteswap()
    return FrameRow(keys, "[" + ",".join(values) + "]", numbers.tobytes())


def _doubles(data: bytes) -> array[float]:
    numbers = array("d", data)
    if not _NATIVE_LITTLE:
        numbers.byteswap()
    return numbers


class RunTable:
    """Runs as columns: row ``i`` of every column belongs to ``ids[i]``; a run without a key has None
    (params, tags) or NaN (metrics, end time) there.

    Filled group by group (``add_group``) and from records (``add_records``, for runs without a frame);
    each key keeps its pieces until a column is asked for, then they are laid into one list or array.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.experiment: list[str] = []
        self.name: list[str | None] = []
        self.status: list[str] = []
        self.start_time: array[float] = array("d")
        self.end_time: array[float] = array("d")
        self._params: dict[str, list[tuple[int, Sequence[Any]]]] = {}
        self._tags: dict[str, list[tuple[int, Sequence[Any]]]] = {}
        self._metrics: dict[str, list[tuple[int, array[float]]]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_columns(
        cls, ids: Sequence[str], experiment: Sequence[str], name: Sequence[str | None], status: Sequence[str],
        start_time: Sequence[float], end_time: Sequence[float], params: Mapping[str, Sequence[Any]],
        tags: Mapping[str, Sequence[str | None]], metrics: Mapping[str, Sequence[float]],
    ) -> RunTable:
        """A table of whole columns, each with one entry per run (None or NaN where a run lacks the key)."""
        named: dict[str, Mapping[str, Sized]] = {"params": params, "tags": tags, "metrics": metrics}
        uneven = _uneven(len(ids), {
            "experiment": experiment, "name": name, "status": status, "start_time": start_time, "end_time": end_time,
            **{join_path(kind, key): column for kind, by_key in named.items() for key, column in by_key.items()},
        })
        if uneven is not None:
            raise ValueError(f"column {uneven} has not one entry for each of the {len(ids)} runs")
        table = cls()
        table.ids.extend(ids)
        table.experiment.extend(experiment)
        table.name.extend(name)
        table.status.extend(status)
        table.start_time.extend(start_time)
        table.end_time.extend(end_time)
        table._params = {key: [(0, list(column))] for key, column in params.items()}
        table._tags = {key: [(0, list(column))] for key, column in tags.items()}
        table._metrics = {key: [(0, array("d", column))] for key, column in metrics.items()}
        return table

    def wire_encode(self) -> dict[str, Json]:
        return {
            "encoding": ENCODING,
            "ids": list(self.ids),
            "experiment": list(self.experiment),
            "name": list(self.name),
            "status": list(self.status),
            "start_time": encode_array(self.start_time, "d"),
            "end_time": encode_array(self.end_time, "d"),
            "params": to_wire(self.params(), dict[str, list[Any]]),
            "tags": to_wire(self.tags(), dict[str, list[str | None]]),
            "metrics": {key: encode_array(column, "d") for key, column in self.metrics().items()},
        }

    @classmethod
    def wire_decode(cls, data: object, path: str) -> RunTable:
        fields = expect_object(data, path, ("encoding", "ids", "experiment", "name", "status", "start_time",
                                            "end_time", "params", "tags", "metrics"))

        def under(name: str) -> str:
            return join_path(path, name)

        if fields["encoding"] != ENCODING:
            raise InvalidInput(f"{under('encoding')}: expected {ENCODING!r}", field=under("encoding"))
        packed = from_wire(dict[str, str], fields["metrics"], path=under("metrics"))
        columns: dict[str, Any] = {
            "ids": from_wire(list[str], fields["ids"], path=under("ids")),
            "experiment": from_wire(list[str], fields["experiment"], path=under("experiment")),
            "name": from_wire(list[str | None], fields["name"], path=under("name")),
            "status": from_wire(list[str], fields["status"], path=under("status")),
            "start_time": decode_array(fields["start_time"], "d", under("start_time")),
            "end_time": decode_array(fields["end_time"], "d", under("end_time")),
            "params": from_wire(dict[str, list[Any]], fields["params"], path=under("params")),
            "tags": from_wire(dict[str, list[str | None]], fields["tags"], path=under("tags")),
            "metrics": {key: decode_array(text, "d", join_path(under("metrics"), key)) for key, text in packed.items()},
        }
        uneven = _uneven(len(columns["ids"]), {
            **{name: columns[name] for name in ("experiment", "name", "status", "start_time", "end_time")},
            **{join_path(kind, key): column for kind in ("params", "tags", "metrics")
               for key, column in columns[kind].items()},
        })
        if uneven is not None:
            raise InvalidInput(f"{under(uneven)}: not one entry for each of the {len(columns['ids'])} runs",
                               field=under(uneven))
        return cls.from_columns(**columns)

    def add_group(
        self, experiment: str, keys: str, ids: Sequence[str], names: Sequence[str | None], statuses: Sequence[str],
        values: str, numbers: bytes,
    ) -> None:
        """Runs sharing one frame ``keys``: ``values`` is their frames' value arrays inside one JSON array,
        ``numbers`` their number buffers one after the other, both in the order of ``ids``."""
        param_keys, tag_keys, metric_keys = json.loads(keys)
        rows: list[list[Any]] = json.loads(values)
        doubles = _doubles(numbers)
        n, width = len(ids), 2 + len(metric_keys)
        if not (len(names) == len(statuses) == len(rows) == n and len(doubles) == n * width):
            raise ValueError(f"a frame group of {n} runs came with {len(rows)} value rows and {len(doubles)} numbers")
        at = len(self.ids)
        self.ids.extend(ids)
        self.experiment.extend([experiment] * n)
        self.name.extend(names)
        self.status.extend(statuses)
        self.start_time.extend(doubles[0::width])
        self.end_time.extend(doubles[1::width])
        columns = list(zip(*rows)) if param_keys or tag_keys else []
        for j, key in enumerate(param_keys):
            self._params.setdefault(key, []).append((at, columns[j]))
        for j, key in enumerate(tag_keys, start=len(param_keys)):
            self._tags.setdefault(key, []).append((at, columns[j]))
        for j, key in enumerate(metric_keys, start=2):
            self._metrics.setdefault(key, []).append((at, doubles[j::width]))

    def add_records(self, records: Iterable[RunRecord]) -> None:
        records = list(records)
        at, n = len(self.ids), len(records)
        self.ids.extend(r.id for r in records)
        self.experiment.extend(r.experiment for r in records)
        self.name.extend(r.name for r in records)
        self.status.extend(r.status.value for r in records)
        self.start_time.extend(r.start_time for r in records)
        self.end_time.extend(math.nan if r.end_time is None else r.end_time for r in records)
        params: dict[str, list[Any]] = {}
        tags: dict[str, list[Any]] = {}
        metrics: dict[str, array[float]] = {}
        for i, r in enumerate(records):
            for key, value in r.params.items():
                params.setdefault(key, [None] * n)[i] = value
            for key, text in r.tags.items():
                tags.setdefault(key, [None] * n)[i] = text
            for key, summary in r.metrics.items():
                metrics.setdefault(key, array("d", [math.nan]) * n)[i] = summary.last
        for key, column in params.items():
            self._params.setdefault(key, []).append((at, column))
        for key, column in tags.items():
            self._tags.setdefault(key, []).append((at, column))
        for key, numbers in metrics.items():
            self._metrics.setdefault(key, []).append((at, numbers))

    def add_table(self, other: RunTable) -> None:
        at = len(self.ids)
        self.ids.extend(other.ids)
        self.experiment.extend(other.experiment)
        self.name.extend(other.name)
        self.status.extend(other.status)
        self.start_time.extend(other.start_time)
        self.end_time.extend(other.end_time)
        for mine, theirs in ((self._params, other._params), (self._tags, other._tags)):
            for key, pieces in theirs.items():
                mine.setdefault(key, []).extend((at + start, piece) for start, piece in pieces)
        for key, numbers in other._metrics.items():
            self._metrics.setdefault(key, []).extend((at + start, piece) for start, piece in numbers)

    def params(self) -> dict[str, list[Any]]:
        return {key: self._lay(pieces, [None] * len(self.ids)) for key, pieces in sorted(self._params.items())}

    def tags(self) -> dict[str, list[Any]]:
        return {key: self._lay(pieces, [None] * len(self.ids)) for key, pieces in sorted(self._tags.items())}

    def metrics(self) -> dict[str, array[float]]:
        return {
            key: self._lay(pieces, array("d", [math.nan]) * len(self.ids))
            for key, pieces in sorted(self._metrics.items())
        }

    @staticmethod
    def _lay(pieces: Sequence[tuple[int, Sequence[Any]]], column: Any) -> Any:
        if len(pieces) == 1 and pieces[0][0] == 0 and len(pieces[0][1]) == len(column):
            piece = pieces[0][1]
            return piece if isinstance(column, array) else list(piece)
        for at, piece in pieces:
            column[at : at + len(piece)] = piece
        return column


def _uneven(n: int, columns: Mapping[str, Sized]) -> str | None:
    """The name of the first column that has not ``n`` entries, if any."""
    return next((name for name, column in columns.items() if len(column) != n), None)
