"""``RunLog``: this process's writes to one run, validated at the call and appended to the spool at once.

The logging calls do no I/O beyond a copy into the spool's mapped files (``labtrack.run.spool``): a
metric point is one 32-byte record, a param or tag one journal record. Everything that can be checked
without the store is checked here, before anything is written — keys, values, steps, timestamps, and
params against those this process knows the run has (params are immutable) — so a bad call raises at
once and writes nothing. The background writer moves the spool into the store.
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labtrack.core.errors import InvalidInput, ParamConflict
from labtrack.core.identity import same_value
from labtrack.core.jsontext import json_text
from labtrack.core.model import ArtifactInfo, NewRun, RunStatus
from labtrack.core.series import Chunk
from labtrack.core.validation import check_key, coerce_metric_value, coerce_step, coerce_timestamp
from labtrack.run.spool import BLOCK_HEAD, POINT, SEGMENT_POINTS, SEGMENT_SHIFT, Kind, Spool, encode

__all__ = ["MAX_STEP", "RunLog", "float_array", "int_array", "journal_environment"]

MAX_STEP = 2**63
_MASK = SEGMENT_POINTS - 1
_SIZE = POINT.size
_pack = POINT.pack_into
_now = time.time
_BLOCK_POINTS = 1 << 16  # points per journal record of a batch
_LITTLE = array("q", [1]).tobytes()[0] == 1


class RunLog:
    """The write side of one run in this process (see the module docstring). Thread safe."""

    def __init__(self, spool: Spool, run_id: str, *, params: Mapping[str, Any] | None = None) -> None:
        self.spool = spool
        self.run_id = run_id
        self._series: dict[str, int] = {}  # metric key as given (and as NFC) -> the spool's series id
        self._next_step: dict[int, int] = {}  # series id -> the next implicit step
        self._params: dict[str, Any] = dict(params or {})  # what this process knows the run has
        self._lock = threading.Lock()
        self._values_head = '{"run":' + encode(run_id).decode() + ',"values":{'  # one param's or tag's record

    # -- metrics --------------------------------------------------------------------------------

    def _define(self, key: str) -> int:
        """The series of ``key``; two spellings of one key (NFC, NFD) are one series, named in NFC."""
        name = check_key(key, "metric key")
        with self._lock:
            found = self._series.get(name)
            if found is None:
                found = self._series[name] = self.spool.define_series(self.run_id, name)
            self._series[key] = found
            return found

    def log_metric(self, key: str, value: Any, step: int | None = None, timestamp: Any = None) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._define(key)
        if type(value) is not float:
            value = coerce_metric_value(value, key)
        if step is None:
            step = self._next_step.get(series, 0)
            if step >= MAX_STEP:
                raise _step_overflow(key)
        elif type(step) is not int or not 0 <= step < MAX_STEP:
            step = coerce_step(step, key)
        stamp = _now() if timestamp is None else coerce_timestamp(timestamp, key)
        self._next_step[series] = step + 1
        spool = self.spool
        slot = next(spool.counter)
        mapped = spool.maps.get(slot >> SEGMENT_SHIFT)
        if mapped is None:
            slot, mapped = spool.place(slot)
        _pack(mapped, (slot & _MASK) * _SIZE, step, stamp, value, series)
        if slot >= spool.kick_at:
            spool.wake(slot)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, timestamp: Any = None) -> None:
        if not isinstance(metrics, Mapping):
            raise InvalidInput(f"metrics must be a dict of key -> number, got {type(metrics).__name__}", field="metrics")
        stamp = _now() if timestamp is None else coerce_timestamp(timestamp, "metrics")
        if step is not None and (type(step) is not int or not 0 <= step < MAX_STEP):
            step = coerce_step(step, "metrics")
        points = []
        for key, value in metrics.items():
            series = self._series.get(key)
            if series is None:
                series = self._define(key)
            if type(value) is not float:
                value = coerce_metric_value(value, key)
            at = self._next_step.get(series, 0) if step is None else step
            if at >= MAX_STEP:
                raise _step_overflow(key)
            points.append((series, at, value))
        spool = self.spool
        for series, at, value in points:  # all valid: now write them
            self._next_step[series] = at + 1
            slot = next(spool.counter)
            mapped = spool.maps.get(slot >> SEGMENT_SHIFT)
            if mapped is None:
                slot, mapped = spool.place(slot)
            _pack(mapped, (slot & _MASK) * _SIZE, at, stamp, value, series)
            if slot >= spool.kick_at:
                spool.wake(slot)

    def log_batch(self, metrics: Mapping[str, Any], steps: Any = None, timestamps: Any = None) -> None:
        """Whole series: one journal record per key (per 65,536 points), the arrays copied as they are."""
        if not isinstance(metrics, Mapping):
            raise InvalidInput("metrics must be a dict of key -> sequence of numbers", field="metrics")
        step_array = int_array(steps, "steps") if steps is not None else None
        prepared: list[tuple[int, Chunk]] = []
        for key, values in metrics.items():
            series = self._series.get(key)
            if series is None:
                series = self._define(key)  # (a new key's series is named even if the call is refused)
            value_array = float_array(values, key)
            n = len(value_array)
            if step_array is not None:
                if len(step_array) != n:
                    raise InvalidInput(
                        f"metric {key!r}: {n} values but {len(step_array)} steps; give one step per value",
                        field=f"metric {key!r}",
                    )
                key_steps = step_array
            else:
                first = self._next_step.get(series, 0)
                if first + n > MAX_STEP:
                    raise _step_overflow(key)
                key_steps = array("q", range(first, first + n))
            prepared.append((series, Chunk(key_steps, _timestamps(timestamps, n, key), value_array)))
        for series, chunk in prepared:
            if not len(chunk):
                continue
            self._next_step[series] = max(self._next_step.get(series, 0), chunk.steps[-1] + 1)
            for start in range(0, len(chunk), _BLOCK_POINTS):
                self.spool.append(Kind.BLOCK, _block(series, chunk, start, start + _BLOCK_POINTS))

    # -- everything else ------------------------------------------------------------------------

    def create(self, new: NewRun) -> None:
        body = {
            "id": new.id, "experiment": new.experiment, "start_time": new.start_time, "name": new.name,
            "host": new.host, "pid": new.pid, "params": dict(new.params or {}), "tags": dict(new.tags or {}),
            "run_key": new.run_key, "env_fingerprint": new.env_fingerprint,
            "context": dict(new.context) if new.context is not None else None, "note": new.note,
            "artifacts": [[a.path, a.sha256, a.size] for a in new.artifacts],
        }
        self.spool.append(Kind.CREATE, encode(body))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params already validated (``checked_params``); one logged here before with another value raises
        ``ParamConflict`` and nothing of the call is written."""
        if not params:
            return
        with self._lock:
            known = self._params
            conflicts = [k for k, v in params.items() if k in known and not same_value(known[k], v)]
            if conflicts:
                raise _param_conflict(known, params, conflicts)
            known.update(params)
        self.spool.append(Kind.PARAMS, encode({"run": self.run_id, "values": dict(params)}))

    def log_param(self, key: str, value: Any) -> None:
        """``log_params({key: value})`` without the dicts (a key and a value already validated)."""
        with self._lock:
            known = self._params
            if key in known and not same_value(known[key], value):
                raise _param_conflict(known, {key: value}, [key])
            known[key] = value
        self.spool.append(Kind.PARAMS, self._one_value(key, value))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if tags:
            self.spool.append(Kind.TAGS, encode({"run": self.run_id, "values": dict(tags)}))

    def set_tag(self, key: str, value: str) -> None:
        self.spool.append(Kind.TAGS, self._one_value(key, value))

    def _one_value(self, key: str, value: Any) -> bytes:
        """``encode({"run": ..., "values": {key: value}})`` without building the dicts or an encoder."""
        return (self._values_head + json_text(key) + ":" + json_text(value) + "}}").encode()

    def set_note(self, note: str) -> None:
        self.spool.append(Kind.NOTE, encode({"run": self.run_id, "note": note}))

    def merge_context(self, sections: Mapping[str, Any], fingerprint: str | None = None) -> None:
        self.spool.append(Kind.CONTEXT, encode({"run": self.run_id, "sections": dict(sections),
                                                "fingerprint": fingerprint}))

    def set_result(self, value: Any) -> None:
        self.spool.append(Kind.RESULT, encode({"run": self.run_id, "value": value}))

    def add_files(self, files: Sequence[tuple[Path, str]]) -> None:
        """Copy each file's content into the spool now (the caller may change the file right after), then
        record the run's artifacts."""
        items = []
        for source, target in files:
            try:
                sha, size = self.spool.stage_file(source)
            except OSError as exc:  # unreadable, or the spool's disk is full (its temporary copy is removed)
                raise InvalidInput(
                    f"{os.fspath(source)!r} could not be copied into the spool to log it as an artifact ({exc}); "
                    f"nothing of it was kept — check the file, and the free space under {self.spool.path}",
                    field="local_path",
                ) from exc
            items.append([target, sha, size, True])
        self._artifacts(items)

    def add_bytes(self, data: bytes, target: str) -> None:
        sha, size = self.spool.stage_bytes(data)
        self._artifacts([[target, sha, size, True]])

    def add_stored(self, items: Sequence[ArtifactInfo]) -> None:
        """Artifacts whose content the store already has."""
        self._artifacts([[a.path, a.sha256, a.size, False] for a in items])

    def _artifacts(self, items: list[list[Any]]) -> None:
        if items:
            self.spool.append(Kind.ARTIFACTS, encode({"run": self.run_id, "items": items}))

    def end(self, status: RunStatus, end_time: float, error: Mapping[str, str] | None) -> None:
        self.spool.append(Kind.END, encode({"run": self.run_id, "status": status.value, "end_time": end_time,
                                            "error": dict(error) if error else None}))


def journal_environment(spool: Spool, fingerprint: str, snapshot: Mapping[str, Any]) -> None:
    """Record a shared environment snapshot for the store (once per spool and fingerprint)."""
    if fingerprint not in spool.environments:
        spool.append(Kind.ENV, encode({"fingerprint": fingerprint, "snapshot": dict(snapshot)}))
        spool.environments.add(fingerprint)


def _param_conflict(known: Mapping[str, Any], params: Mapping[str, Any], conflicts: list[str]) -> ParamConflict:
    detail = "; ".join(f"{k!r}: logged {known[k]!r}, now {params[k]!r}" for k in conflicts)
    return ParamConflict(
        f"params are immutable and {detail}. Log a new key, or start a new run for a new value "
        "(nothing from this call was written)",
        field=f"param {conflicts[0]!r}",
    )


def _step_overflow(key: str) -> InvalidInput:
    return InvalidInput(
        f"step of metric {key!r}: the next step would be 2**63, past the largest step; give steps explicitly "
        "(0 to 2**63-1)",
        field=f"step of metric {key!r}",
    )


def _block(series: int, chunk: Chunk, start: int, stop: int) -> bytes:
    steps, stamps, values = chunk.steps[start:stop], chunk.timestamps[start:stop], chunk.values[start:stop]
    if not _LITTLE:  # pragma: no cover - big-endian hosts only
        for part in (steps, stamps, values):
            part.byteswap()
    return b"".join((BLOCK_HEAD.pack(series, len(steps)), steps.tobytes(), stamps.tobytes(), values.tobytes()))


def float_array(values: Any, key: str) -> array:
    field = f"metric {key!r}"
    dtype = getattr(values, "dtype", None)
    if dtype is not None:
        if getattr(values, "ndim", 1) != 1 or dtype.kind not in "fiu":
            raise InvalidInput(f"{field}: give a 1-d array of real numbers (got dtype {dtype})", field=field)
        out = array("d")
        out.frombytes(values.astype("=f8", copy=False).tobytes())
        return out
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise InvalidInput(f"{field}: give a sequence of numbers, got {type(values).__name__}", field=field)
    try:
        out = array("d", values)
    except (TypeError, OverflowError):
        out = array("d", [coerce_metric_value(v, key) for v in values])
    else:
        if any(type(v) is bool for v in values):
            raise InvalidInput(f"{field}: bool is not a metric value; log 0/1 as numbers", field=field)
    return out


def int_array(values: Any, field: str) -> array:
    dtype = getattr(values, "dtype", None)
    try:
        if dtype is not None:
            if dtype.kind not in "iu":
                raise TypeError(f"dtype {dtype} is not an integer type")
            out = array("q")
            out.frombytes(values.astype("=i8", copy=False).tobytes())
        else:
            out = array("q", values)
    except (TypeError, OverflowError) as exc:
        raise InvalidInput(f"{field} must be integers from 0 to 2**63-1 ({exc})", field=field) from exc
    if len(out) and min(out) < 0:
        raise InvalidInput(f"{field} must be integers >= 0, got {min(out)}", field=field)
    return out


def _timestamps(timestamps: Any, n: int, key: str) -> array:
    if timestamps is None:
        return array("d", [_now()]) * n
    if isinstance(timestamps, (int, float)) or hasattr(timestamps, "timestamp"):
        return array("d", [coerce_timestamp(timestamps, key)]) * n
    out = float_array(timestamps, key)
    if len(out) != n:
        raise InvalidInput(f"metric {key!r}: {n} values but {len(out)} timestamps", field="timestamps")
    if not all(math.isfinite(t) for t in out):
        raise InvalidInput(f"metric {key!r}: timestamps must be finite seconds since the epoch", field="timestamps")
    return out
