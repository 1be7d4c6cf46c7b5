"""Metric points packed as arrays: the storage format of metric chunks.

A chunk is three little-endian arrays of equal length: steps (int64), timestamps (float64 seconds)
and values (float64). Packing keeps every IEEE-754 bit, so NaN, +inf and -inf round-trip exactly, and
it costs one row per (run, key, chunk) instead of one row per point. On the wire (``core.wire``) a series
travels the same way, each array as base64: ``{"encoding": "le-base64", "steps", "timestamps", "values"}``,
an array possibly deflated first: ``{"deflate": <base64>}`` (``deflated_series``).
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from labtrack.core.errors import InvalidInput
from labtrack.core.wire import ENCODING, Json, decode_array, encode_array, expect_object, join_path

__all__ = [
    "POINT_FIELDS",
    "Chunk",
    "SeriesArray",
    "SeriesFiller",
    "Summary",
    "by_step",
    "checksum",
    "decode_points",
    "deflated_series",
    "encode_points",
    "pack",
    "unpack",
]

POINT_FIELDS = ("encoding", "steps", "timestamps", "values")  # a packed series on the wire

_SWAP = sys.byteorder != "little"


@dataclass
class Chunk:
    steps: array[int]  # array('q')
    timestamps: array[float]  # array('d')
    values: array[float]  # array('d')

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def empty(cls) -> Chunk:
        return cls(array("q"), array("d"), array("d"))

    @classmethod
    def from_points(cls, points: Iterable[tuple[int, float, float]]) -> Chunk:
        chunk = cls.empty()
        for step, ts, value in points:
            chunk.steps.append(step)
            chunk.timestamps.append(ts)
            chunk.values.append(value)
        return chunk

    def extend(self, other: Chunk) -> None:
        self.steps.extend(other.steps)
        self.timestamps.extend(other.timestamps)
        self.values.extend(other.values)

    def __eq__(self, other: object) -> bool:
        """Bit for bit, so a NaN point equals itself (and -0.0 differs from 0.0)."""
        if not isinstance(other, Chunk):
            return NotImplemented
        return pack(self) == pack(other)

    def wire_encode(self) -> dict[str, Json]:
        return encode_points(self.steps, self.timestamps, self.values)

    @classmethod
    def wire_decode(cls, data: object, path: str) -> Chunk:
        return decode_points(expect_object(data, path, POINT_FIELDS), path)


def _to_bytes(arr: array[Any]) -> bytes:
    if _SWAP:  # pragma: no cover - big-endian hosts only
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _from_bytes(typecode: str, data: bytes) -> array[Any]:
    arr = array(typecode)
    arr.frombytes(data)
    if _SWAP:  # pragma: no cover - big-endian hosts only
        arr.byteswap()
    return arr


def pack(chunk: Chunk) -> tuple[bytes, bytes, bytes]:
    return _to_bytes(chunk.steps), _to_bytes(chunk.timestamps), _to_bytes(chunk.values)


def unpack(steps: bytes, timestamps: bytes, values: bytes) -> Chunk:
    return Chunk(_from_bytes("q", steps), _from_bytes("d", timestamps), _from_bytes("d", values))


class SeriesArray(array):  # type: ignore[type-arg]
    """One column of a metric history (``array('q')`` of steps or ``array('d')`` of floats): 8 bytes a
    point where a list takes ~32, read straight from the stored chunks, and a buffer that numpy wraps
    without copying (``np.asarray(history.values)``). It compares equal to a list or tuple of the same
    numbers, and a slice of it is a SeriesArray too, so code written against lists keeps working;
    ``tolist()`` gives a list (for ``json.dumps``, say)."""

    __hash__ = None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list | tuple):
            return len(self) == len(other) and self.tolist() == list(other)
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __getitem__(self, index: Any) -> Any:
        got = super().__getitem__(index)
        return type(self)(self.typecode, got) if isinstance(index, slice) else got

    def __repr__(self) -> str:
        return f"SeriesArray({self.typecode!r}, {self.tolist()!r})"


class SeriesFiller:
    """Builds a history's three columns from packed chunks, each array allocated once at the expected
    length (a 10M-point series is 240 MB, never twice that) and filled by copying bytes. Grows past the
    expectation, or trims short of it, if the chunks disagree with it (a write landed in between)."""

    def __init__(self, expected: int) -> None:
        self.columns = [SeriesArray(code, [0]) for code in "qdd"]
        for column in self.columns:
            column *= max(expected, 0)  # in place: one allocation, no temporary list or bytes
        self.filled = 0

    def add(self, steps: bytes, timestamps: bytes, values: bytes) -> None:
        n = len(steps) // 8
        start, end = self.filled * 8, (self.filled + n) * 8
        for column, data in zip(self.columns, (steps, timestamps, values)):
            if self.filled + n <= len(column):
                with memoryview(column) as view, view.cast("B") as raw:
                    raw[start:end] = data
            else:
                del column[self.filled :]
                column.frombytes(data)
        self.filled += n

    def finish(self) -> tuple[SeriesArray, SeriesArray, SeriesArray]:
        for column in self.columns:
            del column[self.filled :]
            if _SWAP:  # pragma: no cover - big-endian hosts only
                column.byteswap()
        steps, timestamps, values = self.columns
        return steps, timestamps, values


def by_step(steps: SeriesArray, timestamps: SeriesArray, values: SeriesArray
            ) -> tuple[SeriesArray, SeriesArray, SeriesArray]:
    """The columns ordered by step, points of one step in the order given (stable). Usually they already
    are: checked at C speed (numpy's, for long series where it is installed)."""
    np: Any = None
    if len(steps) > 100_000:
        try:
            import numpy as np
        except ImportError:
            pass
    if np is not None:
        column = np.frombuffer(steps, dtype=np.int64)
        if bool((column[1:] >= column[:-1]).all()):
            return steps, timestamps, values
        order = np.argsort(column, kind="stable")
        return tuple(  # type: ignore[return-value]
            SeriesArray(c.typecode, np.frombuffer(c, dtype=np.int64 if c.typecode == "q" else np.float64)[order].tobytes())
            for c in (steps, timestamps, values))
    if all(map(operator.le, steps, itertools.islice(steps, 1, None))):  # ~35 ns a point
        return steps, timestamps, values
    order = sorted(range(len(steps)), key=steps.__getitem__)  # stable: logging order within a step
    return (SeriesArray("q", [steps[i] for i in order]), SeriesArray("d", [timestamps[i] for i in order]),
            SeriesArray("d", [values[i] for i in order]))


def checksum(steps: bytes, timestamps: bytes, values: bytes) -> int:
    """The crc32 of a packed chunk's three arrays, in that order (stored with the chunk, checked on read)."""
    return zlib.crc32(values, zlib.crc32(timestamps, zlib.crc32(steps)))


# Whether series being encoded now deflate their steps and timestamps (``deflated_series``).
_DEFLATING: ContextVar[bool] = ContextVar("labtrack_deflating", default=False)


@contextmanager
def deflated_series() -> Iterator[None]:
    """Series encoded inside deflate their steps and timestamps (which shrink to a fraction: steps are
    mostly consecutive, times close together) and leave their values raw (which barely compress): what a
    write to a tracking server sends, instead of gzipping the whole body at several times the CPU."""
    token = _DEFLATING.set(True)
    try:
        yield
    finally:
        _DEFLATING.reset(token)


def encode_points(steps: Iterable[int], timestamps: Iterable[float], values: Iterable[float]) -> dict[str, Json]:
    """A series as it travels: each array packed (see the module docstring)."""
    deflate = _DEFLATING.get()
    return {"encoding": ENCODING, "steps": encode_array(steps, "q", deflate=deflate),
            "timestamps": encode_array(timestamps, "d", deflate=deflate), "values": encode_array(values, "d")}


def decode_points(fields: Mapping[str, object], path: str) -> Chunk:
    """The series in a wire object's ``POINT_FIELDS``; InvalidInput when an array is malformed or the three
    differ in length."""
    if fields.get("encoding") != ENCODING:
        raise InvalidInput(f"{join_path(path, 'encoding')}: expected {ENCODING!r}", field=join_path(path, "encoding"))
    chunk = Chunk(decode_array(fields.get("steps"), "q", join_path(path, "steps")),
                  decode_array(fields.get("timestamps"), "d", join_path(path, "timestamps")),
                  decode_array(fields.get("values"), "d", join_path(path, "values")))
    if not len(chunk.steps) == len(chunk.timestamps) == len(chunk.values):
        raise InvalidInput(f"{path or 'the series'}: {len(chunk.steps)} steps, {len(chunk.timestamps)} timestamps "
                           f"and {len(chunk.values)} values: a point needs one of each", field=path or None)
    return chunk


@dataclass
class Summary:
    """Running summary of a series; ``merge`` folds a new chunk in."""

    count: int = 0
    last: float = math.nan
    last_step: int = -1
    last_timestamp: float = 0.0
    min: float = math.nan
    max: float = math.nan

    def merge(self, steps: Sequence[int], timestamps: Sequence[float], values: Sequence[float]) -> None:
        n = len(steps)
        if n == 0:
            return
        # "last" is the point with the highest step; among equal steps the one logged latest wins.
        top = max(steps)
        best = n - 1 if steps[-1] == top else n - 1 - list(reversed(steps)).index(top)
        if steps[best] >= self.last_step:
            self.last, self.last_step, self.last_timestamp = values[best], steps[best], timestamps[best]
        finite = [v for v in values if v == v]  # drop NaN
        if finite:
            lo, hi = min(finite), max(finite)
            self.min = lo if self.min != self.min else min(self.min, lo)
            self.max = hi if self.max != self.max else max(self.max, hi)
        self.count += n
