"""The SQL store's write path: ``RunWrite`` values applied in the caller's write transaction.

Two ways, as the Store contract says (``labtrack.store.base``):

- trusting (``retry=False``): a run to create is inserted, already ended when its end is in the same
  write — a short run is one transaction with no reads at all: its row (with status and frame), params,
  tags, artifacts, metric chunks and summaries, each one multi-row statement. A hint that proves wrong
  (the run exists, a "new" metric has points) fails on a unique key, which the caller retries carefully;
- careful (``retry=True``): the run is created only if missing, params are compared with what is stored,
  and points already covered by the run's ingest mark are skipped.

A run that already exists is always written carefully as to params (immutable: a different value raises
``ParamConflict``) and its row is locked first on PostgreSQL, so writers of one run take turns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from labtrack.core.errors import ParamConflict
from labtrack.core.frame import FrameRow, encode_frame
from labtrack.core.identity import same_value
from labtrack.core.jsontext import json_text
from labtrack.core.model import Experiment, IngestMark, NewRun, RunStatus, RunWrite
from labtrack.core.series import Chunk, unpack
from labtrack.store import schema as db
from labtrack.store.frames import build_frames
from labtrack.store.points import TAIL_MERGE_BELOW, PointWrites, chunk_damage, plan_writes
from labtrack.store.sqlbase import SqlBase
from labtrack.store.statements import FRAME_PARTS_IN, Q

__all__ = ["apply_writes", "frames_of", "param_rows_of", "refresh_frames"]

_IN_BATCH = 500  # keys per IN (...) list


def apply_writes(base: SqlBase, conn: Connection, writes: Sequence[RunWrite], retry: bool) -> list[Experiment]:
    """Apply ``writes`` in ``conn``'s transaction; returns the experiments it looked up (for the caller to
    cache once the transaction has committed). The runs it creates are inserted together: one multi-row
    statement per table, however many runs."""
    experiments: list[Experiment] = []
    created = _Inserts(base.now())
    for write in writes:
        if write.create is not None:
            experiment = base.experiment_in(conn, write.create.experiment)
            experiments.append(experiment)
            if not retry or not _exists(base, conn, write.run_id):
                created.add(write, experiment.id)
                continue
        _update(base, conn, write, retry)
    created.execute(base, conn)
    return experiments


def _exists(base: SqlBase, conn: Connection, run_id: str) -> bool:
    lock = " FOR UPDATE" if base.dialect == "postgresql" else ""
    return bool(base.driver_rows(conn, "SELECT 1 FROM runs WHERE id = {mark}" + lock, [run_id]))


# -- runs created by this write -------------------------------------------------------------------


class _Inserts:
    """The rows of the runs a write creates, by table; each run ended at once when its end is in the
    write too (its frame is made from the write itself: nothing to read)."""

    def __init__(self, now: float) -> None:
        self.now = now  # the store's clock: each new run's first heartbeat
        self.runs: list[dict[str, Any]] = []
        self.params: list[dict[str, Any]] = []
        self.tags: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.points = PointWrites()
        self.marks: list[dict[str, Any]] = []
        self.experiments: set[int] = set()

    def add(self, write: RunWrite, experiment_id: int) -> None:
        new: NewRun = write.create  # type: ignore[assignment]
        run_id = write.run_id
        params = {**(new.params or {}), **write.params}
        tags = {**(new.tags or {}), **write.tags}
        context = {**(new.context or {}), **write.context}
        chunks = {k: c for k, c in write.metrics.items() if len(c)}
        planned = plan_writes(run_id, chunks, {}, {}) if chunks else PointWrites()
        param_rows = param_rows_of(run_id, params)
        row: dict[str, Any] = {
            "id": run_id, "experiment_id": experiment_id, "name": new.name, "status": RunStatus.RUNNING.value,
            "start_time": new.start_time, "end_time": None, "heartbeat_time": self.now, "host": new.host,
            "pid": new.pid, "run_key": new.run_key, "env_fingerprint": write.env_fingerprint or new.env_fingerprint,
            "context": json.dumps(context) if context else None, "error": None,
            "note": write.note if write.note is not None else new.note,
            "result": json.dumps(write.result) if write.has_result else None,
            "frame_keys": None, "frame_values": None, "frame_numbers": None, "deleted_time": None,
        }
        if write.end is not None:
            lasts = {r["b_key"]: _nan(r["b_last"]) for r in planned.summary_inserts}
            frame = encode_frame({r["key"]: r["value"] for r in param_rows}, tags, lasts, new.start_time,
                                 write.end.end_time)
            row.update(status=write.end.status.value, end_time=write.end.end_time,
                       error=_error_text(write.end.error), frame_keys=frame.keys, frame_values=frame.values,
                       frame_numbers=frame.numbers)
        self.runs.append(row)
        self.experiments.add(experiment_id)
        self.params += param_rows
        self.tags += [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
        artifacts = {a.path: a for a in [*new.artifacts, *write.artifacts]}  # a later one for a path wins
        self.artifacts += [{"run_id": run_id, "path": a.path, "sha256": a.sha256, "size": a.size}
                           for a in artifacts.values()]
        self.points.chunk_inserts += planned.chunk_inserts
        self.points.summary_inserts += planned.summary_inserts
        if write.mark is not None and chunks:
            self.marks.append(_mark_row(run_id, write.mark))

    def execute(self, base: SqlBase, conn: Connection) -> None:
        if not self.runs:
            return
        with base.pipelined(conn):
            revived = [{"b_id": experiment_id} for experiment_id in sorted(self.experiments)]
            for stmt, rows in ((Q.insert_run, self.runs), (Q.insert_params, self.params), (Q.insert_tags, self.tags),
                               (Q.insert_artifacts, self.artifacts), (Q.insert_mark, self.marks),
                               (Q.revive_experiment, revived)):
                if rows:
                    base.fast(conn, stmt, rows)
            _store_points(base, conn, self.points)


# -- a run that exists ----------------------------------------------------------------------------


def _update(base: SqlBase, conn: Connection, write: RunWrite, retry: bool) -> None:
    run_id = write.run_id
    status = base.require_run(conn, run_id)  # on PostgreSQL the row stays locked: writers take turns
    changed = False  # anything a frame holds (params, tags, metrics)
    if write.create is not None:  # a retried creation: what it carried is written like later logging
        new = write.create
        write = RunWrite(
            run_id, params={**(new.params or {}), **write.params}, tags={**(new.tags or {}), **write.tags},
            note=write.note if write.note is not None else new.note,
            context={**(new.context or {}), **write.context},
            env_fingerprint=write.env_fingerprint or new.env_fingerprint,
            artifacts=[*new.artifacts, *write.artifacts], has_result=write.has_result, result=write.result,
            metrics=write.metrics, new_keys=write.new_keys, mark=write.mark, end=write.end,
        )
    if write.params:
        changed |= _log_params(base, conn, run_id, write.params)
    if write.tags:
        conn.execute(base.upsert(db.tags), [{"run_id": run_id, "key": k, "value": v} for k, v in write.tags.items()])
        changed = True
    values: dict[str, Any] = {}
    if write.note is not None:
        values["note"] = write.note
    if write.context:
        text = conn.execute(select(db.runs.c.context).where(db.runs.c.id == run_id)).scalar()
        values["context"] = json.dumps({**(json.loads(text) if text else {}), **write.context})
    if write.env_fingerprint is not None:
        values["env_fingerprint"] = write.env_fingerprint
    if write.has_result:
        values["result"] = json.dumps(write.result)
    if values:
        conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(values))
    if write.artifacts:
        conn.execute(base.upsert(db.artifacts), [{"run_id": run_id, "path": a.path, "sha256": a.sha256,
                                                  "size": a.size} for a in write.artifacts])
    chunks = {k: c for k, c in write.metrics.items() if len(c)}
    if chunks and not _stored_already(base, conn, run_id, write.mark):
        _append_points(base, conn, run_id, chunks, frozenset() if retry else write.new_keys)
        if write.mark is not None:
            conn.execute(base.upsert(db.ingest_marks), [_mark_row(run_id, write.mark)])
        changed = True
    if write.end is not None:
        frame = frames_of(base, conn, [run_id], ending={run_id: write.end.end_time})[run_id]
        # The status and the frame in one statement: ending is on every run's path.
        base.fast(conn, Q.end_run, [{
            "b_id": run_id, "b_status": write.end.status.value, "b_end": write.end.end_time,
            "b_error": _error_text(write.end.error),
            "b_keys": frame.keys, "b_values": frame.values, "b_numbers": frame.numbers,
        }])
    elif changed and status != RunStatus.RUNNING:  # logged to a run that has ended: its frame follows
        refresh_frames(base, conn, [run_id])


def _log_params(base: SqlBase, conn: Connection, run_id: str, values: Mapping[str, Any]) -> bool:
    """Insert the params not stored yet; a stored key with another value raises ParamConflict. Returns
    whether any was new."""
    existing = {
        r.key: json.loads(r.value)
        for r in conn.execute(
            select(db.params.c.key, db.params.c.value).where(
                db.params.c.run_id == run_id, db.params.c.key.in_(list(values))
            )
        )
    }
    conflicts = [k for k, v in values.items() if k in existing and not same_value(existing[k], v)]
    if conflicts:
        detail = "; ".join(f"{k!r}: logged {existing[k]!r}, now {values[k]!r}" for k in conflicts)
        raise ParamConflict(
            f"params are immutable and {detail}. Log a new key, or start a new run for a new value "
            "(nothing from this call was written)",
            field=f"param {conflicts[0]!r}",
        )
    new = {k: v for k, v in values.items() if k not in existing}
    if new:
        conn.execute(db.params.insert(), param_rows_of(run_id, new))
    return bool(new)


def _stored_already(base: SqlBase, conn: Connection, run_id: str, mark: IngestMark | None) -> bool:
    """Whether the run's stored ingest mark for this source already covers ``mark``."""
    if mark is None:
        return False
    lock = " FOR UPDATE" if base.dialect == "postgresql" else ""
    found = base.driver_rows(
        conn, "SELECT journal, points FROM ingest_marks WHERE run_id = {mark} AND source = {mark}" + lock,
        [run_id, mark.source],
    )
    return bool(found) and found[0][0] >= mark.journal and found[0][1] >= mark.points


def _mark_row(run_id: str, mark: IngestMark) -> dict[str, Any]:
    return {"run_id": run_id, "source": mark.source, "journal": mark.journal, "points": mark.points}


# -- metric points --------------------------------------------------------------------------------


def _append_points(base: SqlBase, conn: Connection, run_id: str, chunks: Mapping[str, Chunk],
                   new_keys: frozenset[str]) -> None:
    """Append to a run's stored series: read the summaries (and small last chunks, to extend them) of the
    keys that may have points already; ``new_keys`` are known to have none."""
    keys = list(chunks)
    lookup = [k for k in keys if k not in new_keys]
    existing: dict[str, Any] = {}
    tails: dict[str, Chunk] = {}
    for start in range(0, len(lookup), _IN_BATCH):
        part = lookup[start : start + _IN_BATCH]
        rows = conn.execute(Q.summaries, {"b_run": run_id, "b_keys": part}).all()
        existing.update((r.key, r) for r in rows)
        small = [r.key for r in rows if r.tail_count < TAIL_MERGE_BELOW]
        if small:
            tail_rows = conn.execute(Q.tails, {"b_run": run_id, "b_keys": small})
            # A damaged tail is left as it is (reads report it) and the points go to a new chunk after it:
            # extending it would give the damaged points a fresh, valid checksum.
            tails.update((t.key, unpack(t.step_data, t.time_data, t.value_data)) for t in tail_rows
                         if chunk_damage(t.points, t.step_data, t.time_data, t.value_data, t.crc) is None)
    _store_points(base, conn, plan_writes(run_id, chunks, existing, tails))


def _store_points(base: SqlBase, conn: Connection, writes: PointWrites) -> None:
    for stmt, planned in ((Q.update_chunk, writes.chunk_updates), (Q.insert_chunk, writes.chunk_inserts),
                          (Q.update_summary, writes.summary_updates), (Q.insert_summary, writes.summary_inserts)):
        if planned:
            base.fast(conn, stmt, planned)


# -- frames ---------------------------------------------------------------------------------------


def frames_of(base: SqlBase, conn: Connection, run_ids: Sequence[str],
              ending: Mapping[str, float] | None = None) -> dict[str, FrameRow]:
    """The frames of those of ``run_ids`` that have ended, or are ending now (``ending``: their end
    times), from their rows."""
    return build_frames(base.select_in(conn, FRAME_PARTS_IN, run_ids), ending or {})


def refresh_frames(base: SqlBase, conn: Connection, run_ids: Sequence[str]) -> int:
    """Rewrite the frames of those of ``run_ids`` that have ended (in the caller's write transaction);
    returns how many."""
    frames = frames_of(base, conn, run_ids)
    if frames:
        base.fast(conn, Q.set_frame, [
            {"b_id": run_id, "b_keys": f.keys, "b_values": f.values, "b_numbers": f.numbers}
            for run_id, f in frames.items()
        ])
    return len(frames)


# -- values ---------------------------------------------------------------------------------------


def param_rows_of(run_id: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k, v in values.items():
        encoded = json_text(v)
        rows.append({"run_id": run_id, "key": k, "value": encoded, "num": _param_num(v),
                     "text": v if isinstance(v, str) else encoded})
    return rows


def _param_num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range: kept exactly as its JSON text, not as a number
        return None
    return number if math.isfinite(number) else None


def _error_text(error: Mapping[str, str] | None) -> str | None:
    return json.dumps(dict(error)) if error else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
