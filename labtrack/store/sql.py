"""The SQL store: SQLite (embedded default) and PostgreSQL through SQLAlchemy Core.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE``: a writer waits for the write lock up front instead of failing half-way with
"database is locked" when it tries to upgrade a read lock. Readers never block writers in WAL mode.
On PostgreSQL, concurrent writers to the same metric summary serialise on ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from sqlalchemy import (
    Table,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from labtrack.core.errors import (
    AmbiguousRunId,
    LabtrackError,
    ParamConflict,
    RunNotFound,
    SchemaOutdated,
    StoreError,
)
from labtrack.core.filters import Node
from labtrack.core.frame import FrameRow, RunTable
from labtrack.core.identity import same_value
from labtrack.core.jsontext import json_text
from labtrack.core.model import ArtifactInfo, Experiment, MetricHistory, MetricSummary, RunRecord, RunStatus
from labtrack.core.query import OrderTerm
from labtrack.core.series import Chunk, unpack
from labtrack.store import schema as db
from labtrack.store.artifacts import LocalBlobStore
from labtrack.store.base import NewRun, Search, Store
from labtrack.store.engine import RawStatement, display_url, gc_paused, make_engine
from labtrack.store.frames import ID_BATCH, build_frames, read_frames
from labtrack.store.migrate import create_schema, read_revision
from labtrack.store.points import TAIL_MERGE_BELOW, none_to_nan, plan_writes
from labtrack.store.query import search_query
from labtrack.store.schema import SCHEMA_REVISION
from labtrack.store.statements import FRAME_PARTS_IN, METRICS_IN, PARAMS_IN, RUNS_IN, TAGS_IN, Q

__all__ = ["SqlStore"]

_IN_BATCH = 500  # ids per IN (...) list
_FRAME_FILL_BATCH = 500  # runs whose frames are rebuilt per round of queries
_STATUSES = {s.value: s for s in RunStatus}

_MAINTAIN_EVERY = 2.0  # seconds between background checkpoints


_decoded: dict[str, Any] = {}


def _decode_param(value: str) -> Any:
    """json.loads of a stored param, remembered for scalars: the same few values repeat across runs."""
    found = _decoded.get(value, _decoded)
    if found is not _decoded:
        return found
    decoded = json.loads(value)
    if not isinstance(decoded, (list, dict)):  # containers are mutable: decode those every time
        if len(_decoded) > 100_000:
            _decoded.clear()
        _decoded[value] = decoded
    return decoded


def _sweep_of(owner: str) -> str:
    """Claim owners are "<sweep id>/<host>/<pid>": workers of one sweep share the first part."""
    return owner.split("/", 1)[0]


def _param_num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class SqlStore(Store):
    def __init__(self, url: str, artifact_root: str, *, busy_timeout: float = 60.0) -> None:
        self.url = url
        self._blobs = LocalBlobStore(artifact_root)
        self._experiments: dict[str, Experiment] = {}
        try:
            self._engine = make_engine(url, busy_timeout)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store {self.display_url}: {exc}") from exc
        self.dialect = self._engine.dialect.name
        # The driver's own error class: a few hot paths talk to the driver directly (see store.engine).
        self._driver_error: type[Exception] = self._engine.dialect.loaded_dbapi.Error
        self._raws: dict[int, RawStatement] = {}
        self._maintained = 0.0
        self._local = threading.local()  # each thread's write connection (see _write)
        self._connections: list[tuple[int, Connection]] = []  # (pid that opened it, connection)
        self._connections_lock = threading.Lock()
        self._ensure_schema()

    @property
    def display_url(self) -> str:
        """The URL with any password hidden: safe to print and log."""
        return display_url(self.url)

    # -- engine and transactions ---------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction on this thread's own connection (kept open: checking a connection out of
        the pool and resetting it costs more than a small write)."""
        try:
            conn = self._writer_connection()
            try:
                with conn.begin():
                    yield conn
            except (SQLAlchemyError, self._driver_error):
                self._drop_writer_connection(conn)  # it may be broken: the next write opens a fresh one
                raise
        except LabtrackError:
            raise
        except IntegrityError as exc:
            refused = StoreError(f"store {self.display_url} refused a write: {exc.orig}")
            refused.conflict = True  # a unique key already taken: see Store.log_metrics' new_keys
            raise refused from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to store {self.display_url}: {getattr(exc, 'orig', exc)}") from exc
        except self._driver_error as exc:  # raised by the driver itself (our BEGIN IMMEDIATE), unwrapped
            raise StoreError(f"cannot write to store {self.display_url}: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except LabtrackError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read store {self.display_url}: {getattr(exc, 'orig', exc)}") from exc
        except self._driver_error as exc:
            raise StoreError(f"cannot read store {self.display_url}: {exc}") from exc

    # -- schema --------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        with self._read() as conn:
            exists, revision = read_revision(conn)
        if not exists:
            with self._write() as conn:
                revision = create_schema(conn)
        if revision != SCHEMA_REVISION:
            raise SchemaOutdated(
                f"store {self.display_url} has schema revision {revision or 'none'}, this labtrack uses "
                f"{SCHEMA_REVISION}: run `labtrack db upgrade --store {self.display_url}` "
                "(or upgrade labtrack if the store is newer)"
            )

    def _writer_connection(self) -> Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed or getattr(local, "pid", None) != os.getpid():
            conn = self._engine.connect()
            conn.execution_options(labtrack_write=True)
            local.conn, local.pid = conn, os.getpid()
            with self._connections_lock:
                self._connections.append((os.getpid(), conn))
        return conn

    def _drop_writer_connection(self, conn: Connection) -> None:
        self._local.conn = None
        with self._connections_lock:
            self._connections = [(pid, c) for pid, c in self._connections if c is not conn]
        try:
            conn.invalidate()
        except SQLAlchemyError:
            pass

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, conn in connections:
            if pid != os.getpid():
                continue  # inherited through fork: the parent's, which closing here would break
            try:
                conn.close()
            except SQLAlchemyError:
                pass
        self._engine.dispose()

    def maintain(self) -> None:
        """Housekeeping for the background writer: on SQLite, a passive WAL checkpoint every few seconds,
        so that the fsync it costs happens here and not in the commit of a training thread."""
        if self.dialect != "sqlite":
            return
        now = time.monotonic()
        if now - self._maintained < _MAINTAIN_EVERY:
            return
        self._maintained = now
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except SQLAlchemyError:
            pass  # a checkpoint is an optimisation; SQLite will checkpoint on its own

    def _fast(self, conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> int:
        """Execute a prebuilt statement from ``Q`` for ``rows`` (see ``RawStatement``); returns the rowcount."""
        raw = self._raws.get(id(stmt))
        if raw is None:
            raw = self._raws[id(stmt)] = RawStatement(stmt, self._engine.dialect)
        try:
            return raw.run(conn, rows)
        except self._engine.dialect.loaded_dbapi.IntegrityError as exc:
            raise IntegrityError(raw.sql, None, exc) from exc
        except self._engine.dialect.loaded_dbapi.Error as exc:
            raise SQLAlchemyError(f"{exc}") from exc

    # -- experiments ---------------------------------------------------------------------------

    def _insert_ignore(self, table: Table) -> Any:
        """An INSERT that can take ON CONFLICT clauses, in this dialect."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def get_or_create_experiment(self, name: str) -> Experiment:
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        with self._read() as conn:
            row = conn.execute(select(db.experiments).where(db.experiments.c.name == name)).first()
        if row is None:
            with self._write() as conn:
                stmt = self._insert_ignore(db.experiments).values(name=name, created_time=time.time())
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
                row = conn.execute(select(db.experiments).where(db.experiments.c.name == name)).one()
        experiment = Experiment(id=row.id, name=row.name, created_time=row.created_time)
        self._experiments[name] = experiment
        return experiment

    def list_experiments(self) -> list[tuple[Experiment, int]]:
        counts = (
            select(db.runs.c.experiment_id, func.count().label("n")).group_by(db.runs.c.experiment_id).subquery()
        )
        query = (
            select(db.experiments, func.coalesce(counts.c.n, 0).label("n"))
            .outerjoin(counts, counts.c.experiment_id == db.experiments.c.id)
            .order_by(db.experiments.c.id)
        )
        with self._read() as conn:
            return [
                (Experiment(id=r.id, name=r.name, created_time=r.created_time), int(r.n))
                for r in conn.execute(query)
            ]

    # -- runs ----------------------------------------------------------------------------------

    def create_run(self, run: NewRun) -> None:
        experiment = self.get_or_create_experiment(run.experiment)
        row = {
            "id": run.id, "experiment_id": experiment.id, "name": run.name, "status": RunStatus.RUNNING.value,
            "start_time": run.start_time, "end_time": None, "heartbeat_time": run.start_time, "host": run.host,
            "pid": run.pid, "run_key": run.run_key, "env_fingerprint": run.env_fingerprint,
            "context": json.dumps(run.context) if run.context is not None else None, "error": None,
            "note": run.note, "result": None, "frame_keys": None, "frame_values": None, "frame_numbers": None,
        }
        with self._write() as conn:
            self._fast(conn, Q.insert_run, [row])
            if run.params:
                self._fast(conn, Q.insert_params, self._param_rows(run.id, run.params))
            if run.tags:
                self._fast(conn, Q.insert_tags, [{"run_id": run.id, "key": k, "value": v} for k, v in run.tags.items()])
            if run.artifacts:
                conn.execute(
                    Q.insert_artifacts,
                    [{"run_id": run.id, "path": a.path, "sha256": a.sha256, "size": a.size} for a in run.artifacts],
                )

    @staticmethod
    def _param_rows(run_id: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for k, v in values.items():
            encoded = json_text(v)
            rows.append({"run_id": run_id, "key": k, "value": encoded, "num": _param_num(v),
                         "text": v if isinstance(v, str) else encoded})
        return rows

    def _require_run(self, conn: Connection, run_id: str) -> str:
        """The run's stored status; raises RunNotFound. On PostgreSQL the run's row stays locked until the
        transaction ends, so that a write racing ``end_run`` sees the status that run ends with."""
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        found = self._driver_rows(conn, "SELECT status FROM runs WHERE id = {mark}" + lock, [run_id])
        if not found:
            raise RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")
        return str(found[0][0])

    def _driver_rows(self, conn: Connection, template: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of ``template`` (SQL whose ``{mark}`` are the dialect's parameter markers), through the driver."""
        cursor = conn.connection.cursor()
        try:
            cursor.execute(template.format(mark="?" if self.dialect == "sqlite" else "%s"), list(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _select_in(self, conn: Connection, template: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows of ``template`` (SQL with ``{ids}`` for the id list, once or more) for ``ids``, through the
        driver.

        Loading many runs reads millions of small rows; SQLAlchemy's per-row processing would cost more
        than the database. The ids are bound parameters, never SQL text.
        """
        marks = ", ".join(["?" if self.dialect == "sqlite" else "%s"] * len(ids))
        cursor = conn.connection.cursor()
        try:
            cursor.execute(template.format(ids=marks), list(ids) * template.count("{ids}"))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _frames(
        self, conn: Connection, run_ids: Sequence[str], ending: Mapping[str, float] | None = None
    ) -> dict[str, FrameRow]:
        """The frames of those of ``run_ids`` that have ended, or are ending now (``ending``: their end
        times), from their rows."""
        return build_frames(self._select_in(conn, FRAME_PARTS_IN, run_ids), ending or {})

    def _refresh_frames(self, conn: Connection, run_ids: Sequence[str]) -> int:
        """Rewrite the frames of those of ``run_ids`` that have ended (in the caller's write transaction);
        returns how many."""
        frames = self._frames(conn, run_ids)
        if frames:
            self._fast(conn, Q.set_frame, [
                {"b_id": run_id, "b_keys": f.keys, "b_values": f.values, "b_numbers": f.numbers}
                for run_id, f in frames.items()
            ])
        return len(frames)

    def _records(self, conn: Connection, ids: Sequence[str]) -> dict[str, RunRecord]:
        """Records of ``ids`` (those that exist), keyed by id."""
        records: dict[str, RunRecord] = {}
        for (run_id, name, status, start, end, beat, host, pid, error, key, fingerprint, note, result,
             experiment) in self._select_in(conn, RUNS_IN, ids):
            records[run_id] = RunRecord(
                id=run_id, experiment=experiment, status=_STATUSES[status], start_time=start, end_time=end,
                heartbeat_time=beat, host=host, pid=pid, name=name, error=json.loads(error) if error else None,
                run_key=key, env_fingerprint=fingerprint, note=note, result=json.loads(result) if result else None,
            )
        # Rows come ordered by key, so each record's dicts are sorted without sorting them.
        for run_id, key, value in self._select_in(conn, PARAMS_IN, ids):
            records[run_id].params[key] = _decode_param(value)
        for run_id, key, value in self._select_in(conn, TAGS_IN, ids):
            records[run_id].tags[key] = value
        for run_id, key, count, last, step, stamp, low, high in self._select_in(conn, METRICS_IN, ids):
            records[run_id].metrics[key] = MetricSummary(
                key=key, last=none_to_nan(last), last_step=step, last_timestamp=stamp,
                min=none_to_nan(low), max=none_to_nan(high), count=count,
            )
        return records

    def get_run(self, run_id: str) -> RunRecord:
        with self._read() as conn:
            found = self._records(conn, [run_id])
        if run_id not in found:
            raise RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")
        return found[run_id]

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        found: dict[str, RunRecord] = {}
        with gc_paused(len(run_ids) > 2_000), self._read() as conn:
            for start in range(0, len(run_ids), ID_BATCH):
                found.update(self._records(conn, run_ids[start : start + ID_BATCH]))
        return [found[i] for i in run_ids if i in found]

    def resolve_run_id(self, id_or_prefix: str) -> str:
        prefix = id_or_prefix.strip().lower()
        if not prefix or any(c not in "0123456789abcdef" for c in prefix) or len(prefix) > 32:
            raise RunNotFound(
                f"{id_or_prefix!r} is not a run id: run ids are 32 hex characters (a unique prefix is enough)"
            )
        with self._read() as conn:
            found = conn.execute(
                select(db.runs.c.id).where(db.runs.c.id >= prefix, db.runs.c.id < prefix + "z").order_by(db.runs.c.id).limit(6)
            ).scalars().all()
        if not found:
            raise RunNotFound(f"no run id starts with {prefix!r} in store {self.display_url}")
        if len(found) > 1 and prefix not in found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise AmbiguousRunId(f"run id prefix {prefix!r} matches several runs ({shown}); give more characters")
        return prefix if prefix in found else found[0]

    def search_ids(
        self,
        experiments: Sequence[str] | None = None,
        order_by: Sequence[OrderTerm] = (),
        max_results: int | None = None,
        offset: int = 0,
        run_key: str | None = None,
        filter: Node | None = None,
        stale_before: float = 0.0,
    ) -> list[str]:
        query = search_query(
            experiments=experiments, node=filter, order_by=order_by, max_results=max_results, offset=offset,
            run_key=run_key, stale_before=stale_before, dialect=self.dialect,
        )
        with self._read() as conn:
            result = conn.execute(query)
            # Straight from the driver's cursor: SQLAlchemy's row processing costs more than the query
            # itself when a search returns 100k ids.
            cursor = getattr(result, "cursor", None)
            return [row[0] for row in cursor.fetchall()] if cursor is not None else list(result.scalars().all())

    def run_table(self, run_ids: Sequence[str], search: Search | None = None) -> RunTable:
        with gc_paused(len(run_ids) > 2_000), self._read() as conn:
            return read_frames(conn, self.dialect, run_ids, search)

    def fill_frames(self) -> int:
        """Write the frames of ended runs that have none (runs that ended before schema revision 0002);
        returns how many. Run by ``labtrack db upgrade``."""
        filled = 0
        while True:
            with self._write() as conn:
                missing = conn.execute(
                    select(db.runs.c.id)
                    .where(db.runs.c.frame_keys.is_(None), db.runs.c.status != RunStatus.RUNNING.value)
                    .limit(_FRAME_FILL_BATCH)
                ).scalars().all()
                if not missing:
                    return filled
                filled += self._refresh_frames(conn, missing)

    def end_run(
        self,
        run_id: str,
        status: RunStatus,
        end_time: float,
        error: Mapping[str, str] | None = None,
        metrics: Mapping[str, Chunk] | None = None,
        new_keys: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        with self._write() as conn:
            locked = self._write_metrics(conn, run_id, metrics, new_keys) if metrics else None
            if locked is None and self.dialect == "postgresql":
                self._require_run(conn, run_id)  # lock the row before reading what the frame is made of
            frame = self._frames(conn, [run_id], ending={run_id: end_time}).get(run_id)
            if frame is None:
                raise RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")
            # The status and the frame in one statement: end_run is on every run's path.
            self._fast(conn, Q.end_run, [{
                "b_id": run_id, "b_status": status.value, "b_end": end_time,
                "b_error": json.dumps(dict(error)) if error else None,
                "b_keys": frame.keys, "b_values": frame.values, "b_numbers": frame.numbers,
            }])

    def heartbeat(self, run_id: str, now: float) -> None:
        with self._write() as conn:
            self._fast(conn, Q.heartbeat, [{"b_id": run_id, "b_now": now}])

    def mark_crashed(self, run_id: str, observed_heartbeat: float | None) -> bool:
        with self._write() as conn:
            done = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == run_id, db.runs.c.status == "RUNNING", db.runs.c.heartbeat_time == observed_heartbeat)
                .values(status="CRASHED", end_time=observed_heartbeat)
            )
            if not done.rowcount:
                return False
            self._refresh_frames(conn, [run_id])
            return True

    def set_note(self, run_id: str, note: str) -> None:
        with self._write() as conn:
            if conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(note=note)).rowcount == 0:
                raise RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")

    def set_result(self, run_id: str, result: Any) -> None:
        with self._write() as conn:
            conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(result=json.dumps(result)))

    # -- params and tags -----------------------------------------------------------------------

    def log_params(self, run_id: str, values: Mapping[str, Any]) -> None:
        if not values:
            return
        with self._write() as conn:
            status = self._require_run(conn, run_id)
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
                conn.execute(db.params.insert(), self._param_rows(run_id, new))
                if status != RunStatus.RUNNING:
                    self._refresh_frames(conn, [run_id])

    def set_tags(self, run_id: str, values: Mapping[str, str]) -> None:
        if not values:
            return
        with self._write() as conn:
            status = self._require_run(conn, run_id)
            stmt = self._insert_ignore(db.tags)
            stmt = stmt.on_conflict_do_update(index_elements=["run_id", "key"], set_={"value": stmt.excluded.value})
            conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in values.items()])
            if status != RunStatus.RUNNING:
                self._refresh_frames(conn, [run_id])

    def delete_tag(self, run_id: str, key: str) -> None:
        with self._write() as conn:
            done = conn.execute(db.tags.delete().where(db.tags.c.run_id == run_id, db.tags.c.key == key))
            if done.rowcount:
                self._refresh_frames(conn, [run_id])

    # -- metrics -------------------------------------------------------------------------------

    def log_metrics(
        self, run_id: str, chunks: Mapping[str, Chunk], new_keys: frozenset[str] | set[str] = frozenset()
    ) -> None:
        if not chunks:
            return
        with self._write() as conn:
            status = self._write_metrics(conn, run_id, chunks, new_keys) or self._require_run(conn, run_id)
            if status != RunStatus.RUNNING:  # points logged to a run that has ended
                self._refresh_frames(conn, [run_id])

    def _write_metrics(
        self, conn: Connection, run_id: str, chunks: Mapping[str, Chunk], new_keys: frozenset[str] | set[str]
    ) -> str | None:
        """Append the points; returns the run's status when it had to be read (no ``new_keys``)."""
        keys = [k for k, c in chunks.items() if len(c)]
        lookup = [k for k in keys if k not in new_keys]
        if self.dialect == "postgresql":
            # Serialise writers of one run: a key with no summary row yet has no row to lock FOR UPDATE.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:run))"), {"run": run_id})
        status = None if new_keys else self._require_run(conn, run_id)
        existing: dict[str, Any] = {}
        tails: dict[str, Chunk] = {}
        for start in range(0, len(lookup), _IN_BATCH):
            part = lookup[start : start + _IN_BATCH]
            rows = conn.execute(Q.summaries, {"b_run": run_id, "b_keys": part}).all()
            existing.update((r.key, r) for r in rows)
            small = [r.key for r in rows if r.tail_count < TAIL_MERGE_BELOW]
            if small:
                tail_rows = conn.execute(Q.tails, {"b_run": run_id, "b_keys": small})
                tails.update((t.key, unpack(t.step_data, t.time_data, t.value_data)) for t in tail_rows)

        writes = plan_writes(run_id, {k: chunks[k] for k in keys}, existing, tails)
        for stmt, planned in ((Q.update_chunk, writes.chunk_updates), (Q.insert_chunk, writes.chunk_inserts),
                              (Q.update_summary, writes.summary_updates), (Q.insert_summary, writes.summary_inserts)):
            if planned:
                self._fast(conn, stmt, planned)
        return status

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        with self._read() as conn:
            rows = conn.execute(
                select(db.metric_chunks.c.step_data, db.metric_chunks.c.time_data, db.metric_chunks.c.value_data)
                .where(db.metric_chunks.c.run_id == run_id, db.metric_chunks.c.key == key)
                .order_by(db.metric_chunks.c.seq)
            ).all()
            if not rows:
                self._require_run(conn, run_id)
        series = Chunk.empty()
        for r in rows:
            series.extend(unpack(r.step_data, r.time_data, r.value_data))
        steps, stamps, values = series.steps.tolist(), series.timestamps.tolist(), series.values.tolist()
        if any(steps[i] > steps[i + 1] for i in range(len(steps) - 1)):
            order = sorted(range(len(steps)), key=steps.__getitem__)  # stable: logging order within a step
            steps, stamps, values = [steps[i] for i in order], [stamps[i] for i in order], [values[i] for i in order]
        return MetricHistory(key=key, steps=steps, timestamps=stamps, values=values)

    # -- artifacts -----------------------------------------------------------------------------

    def put_artifact_file(self, path: str) -> tuple[str, int]:
        return self._blobs.put_file(path)

    def put_artifact_bytes(self, data: bytes) -> tuple[str, int]:
        return self._blobs.put_bytes(data)

    def add_artifacts(self, run_id: str, items: Sequence[ArtifactInfo]) -> None:
        if not items:
            return
        with self._write() as conn:
            self._require_run(conn, run_id)
            stmt = self._insert_ignore(db.artifacts)
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id", "path"], set_={"sha256": stmt.excluded.sha256, "size": stmt.excluded.size}
            )
            conn.execute(stmt, [{"run_id": run_id, "path": a.path, "sha256": a.sha256, "size": a.size} for a in items])

    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]:
        with self._read() as conn:
            rows = conn.execute(
                select(db.artifacts.c.path, db.artifacts.c.sha256, db.artifacts.c.size)
                .where(db.artifacts.c.run_id == run_id)
                .order_by(db.artifacts.c.path)
            ).all()
        return [ArtifactInfo(path=r.path, sha256=r.sha256, size=r.size) for r in rows]

    def open_artifact(self, sha256: str) -> BinaryIO:
        return self._blobs.open(sha256)

    # -- identity and claims -------------------------------------------------------------------

    def find_finished_run(self, run_key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                select(db.runs.c.id)
                .where(db.runs.c.run_key == run_key, db.runs.c.status == "FINISHED")
                .order_by(db.runs.c.end_time.desc())
                .limit(1)
            ).scalar()

    def finished_keys(self, run_keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        keys = list(run_keys)
        with self._read() as conn:
            for start in range(0, len(keys), _IN_BATCH):
                found.update(
                    conn.execute(
                        select(db.runs.c.run_key).distinct().where(
                            db.runs.c.run_key.in_(keys[start : start + _IN_BATCH]), db.runs.c.status == "FINISHED"
                        )
                    ).scalars()
                )
        return found

    def claim(self, run_key: str, owner: str, lease: float, now: float) -> str:
        with self._write() as conn:
            finished = conn.execute(
                select(db.runs.c.id).where(db.runs.c.run_key == run_key, db.runs.c.status == "FINISHED").limit(1)
            ).first()
            if finished is not None:
                return "done"
            stmt = self._insert_ignore(db.claims).values(
                run_key=run_key, owner=owner, state="running", lease_until=now + lease, created_time=now
            )
            inserted = stmt.on_conflict_do_nothing(index_elements=["run_key"]).returning(db.claims.c.run_key)
            if conn.execute(inserted).first() is not None:  # rowcount is unreliable for ON CONFLICT
                return "claimed"
            row = conn.execute(
                select(db.claims.c.owner, db.claims.c.state, db.claims.c.lease_until)
                .where(db.claims.c.run_key == run_key)
                .with_for_update()
            ).one()
            if row.state == "done":
                return "done"
            if row.state == "failed" and _sweep_of(row.owner) == _sweep_of(owner):
                return "failed"  # it failed in this very sweep: retried by the next sweep, not this one
            if row.lease_until >= now and row.state == "running":
                return "busy"
            taken = conn.execute(
                db.claims.update()
                .where(db.claims.c.run_key == run_key, db.claims.c.owner == row.owner,
                       db.claims.c.lease_until == row.lease_until)
                .values(owner=owner, state="running", lease_until=now + lease, run_id=None)
            )
            return "claimed" if taken.rowcount == 1 else "busy"

    def renew_claims(self, owner: str, lease: float, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                db.claims.update()
                .where(db.claims.c.owner == owner, db.claims.c.state == "running")
                .values(lease_until=now + lease)
            )

    def release_claim(self, run_key: str, owner: str, *, done: bool, run_id: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                db.claims.update()
                .where(db.claims.c.run_key == run_key, db.claims.c.owner == owner)
                .values(state="done" if done else "failed", lease_until=0.0, run_id=run_id)
            )

    # -- environments --------------------------------------------------------------------------

    def put_environment(self, fingerprint: str, snapshot: Mapping[str, Any]) -> None:
        from labtrack.core.environment import environment_facts
        from labtrack.store.versions import version_key

        with self._write() as conn:
            stmt = self._insert_ignore(db.environments).values(
                fingerprint=fingerprint, snapshot=json.dumps(snapshot, sort_keys=True), created_time=time.time()
            )
            inserted = stmt.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(
                db.environments.c.fingerprint
            )
            if conn.execute(inserted).first() is None:
                return  # stored before, with its facts
            facts = [
                {"fingerprint": fingerprint, "name": name, "text": text, "num": num, "vkey": version_key(text)}
                for name, text, num in environment_facts(dict(snapshot))
            ]
            if facts:
                conn.execute(db.env_facts.insert(), facts)

    def get_environment(self, fingerprint: str) -> dict[str, Any] | None:
        with self._read() as conn:
            text = conn.execute(
                select(db.environments.c.snapshot).where(db.environments.c.fingerprint == fingerprint)
            ).scalar()
        return json.loads(text) if text else None

    def get_context(self, run_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(db.runs.c.context).where(db.runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")
        return json.loads(row.context) if row.context else None

    def update_context(self, run_id: str, context: Mapping[str, Any], env_fingerprint: str | None = None) -> None:
        values: dict[str, Any] = {"context": json.dumps(context)}
        if env_fingerprint is not None:
            values["env_fingerprint"] = env_fingerprint
        with self._write() as conn:
            if conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(values)).rowcount == 0:
                raise RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")
