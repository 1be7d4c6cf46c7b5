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
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, ClassVar

from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    inspect,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.engine import Connection, Engine, make_url
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
from labtrack.core.frame import FrameRow, RunTable, encode_frame
from labtrack.core.identity import same_value
from labtrack.core.jsontext import json_text
from labtrack.core.model import ArtifactInfo, Experiment, MetricHistory, MetricSummary, RunRecord, RunStatus
from labtrack.core.query import OrderTerm
from labtrack.core.series import Chunk, Summary, pack, unpack
from labtrack.store import schema as db
from labtrack.store.artifacts import LocalBlobStore
from labtrack.store.base import NewRun, Search, Store
from labtrack.store.query import search_query
from labtrack.store.schema import SCHEMA_REVISION

__all__ = ["SqlStore"]

CHUNK_MAX = 8192  # points per chunk row
TAIL_MERGE_BELOW = 1024  # a last chunk smaller than this is extended instead of adding a row
_IN_BATCH = 500  # ids per IN (...) list
_LOAD_BATCH = 5000  # runs loaded per round of queries (SQLite allows 32766 bound parameters)
_RUNS_IN = (
    "SELECT r.id, r.name, r.status, r.start_time, r.end_time, r.heartbeat_time, r.host, r.pid, r.error, r.run_key, "
    "r.env_fingerprint, r.note, r.result, e.name FROM runs r JOIN experiments e ON e.id = r.experiment_id "
    "WHERE r.id IN ({ids})"
)
_PARAMS_IN = "SELECT run_id, key, value FROM params WHERE run_id IN ({ids}) ORDER BY run_id, key"
_TAGS_IN = "SELECT run_id, key, value FROM tags WHERE run_id IN ({ids}) ORDER BY run_id, key"
_METRICS_IN = (
    "SELECT run_id, key, count, last_value, last_step, last_timestamp, min_value, max_value FROM metrics "
    "WHERE run_id IN ({ids}) ORDER BY run_id, key"
)
# What a frame is made of (labtrack.core.frame): (part, run id, key or status, text, number, end time).
_FRAME_PARTS_IN = (
    "SELECT 0, id, status, NULL, start_time, end_time FROM runs WHERE id IN ({ids}) "
    "UNION ALL SELECT 1, run_id, key, value, NULL, NULL FROM params WHERE run_id IN ({ids}) "
    "UNION ALL SELECT 2, run_id, key, value, NULL, NULL FROM tags WHERE run_id IN ({ids}) "
    "UNION ALL SELECT 3, run_id, key, NULL, last_value, NULL FROM metrics WHERE run_id IN ({ids})"
)
_FRAME_FILL_BATCH = 500  # runs whose frames are rebuilt per round of queries
_FRAMED = db.runs.alias("framed")  # the runs a frame query reads; ``runs`` itself stays free for the search in it
_STATUSES = {s.value: s for s in RunStatus}

_AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of WAL
_MAINTAIN_EVERY = 2.0  # seconds between background checkpoints

_version_meta = MetaData()
alembic_version = Table("alembic_version", _version_meta, Column("version_num", String(32), primary_key=True))




class _Q:
    """Hot statements, built once: SQLAlchemy then reuses their compiled form on every call."""

    insert_run = db.runs.insert()
    insert_params = db.params.insert()
    insert_tags = db.tags.insert()
    insert_artifacts = db.artifacts.insert()
    _frame_values: ClassVar[dict[str, Any]] = {
        "frame_keys": bindparam("b_keys"), "frame_values": bindparam("b_values"),
        "frame_numbers": bindparam("b_numbers"),
    }
    end_run = (
        db.runs.update()
        .where(db.runs.c.id == bindparam("b_id"))
        .values(status=bindparam("b_status"), end_time=bindparam("b_end"), error=bindparam("b_error"),
                **_frame_values)
    )
    set_frame = db.runs.update().where(db.runs.c.id == bindparam("b_id")).values(_frame_values)
    heartbeat = text(  # a heartbeat also revives a run a reader marked CRASHED: its process is alive
        "UPDATE runs SET heartbeat_time = :b_now, status = 'RUNNING', end_time = NULL "
        "WHERE id = :b_id AND status IN ('RUNNING', 'CRASHED')"
    )
    summaries = (
        select(db.metrics)
        .where(db.metrics.c.run_id == bindparam("b_run"), db.metrics.c.key.in_(bindparam("b_keys", expanding=True)))
        .with_for_update()
    )
    tails = (
        select(db.metric_chunks.c.key, db.metric_chunks.c.step_data, db.metric_chunks.c.time_data,
               db.metric_chunks.c.value_data)
        .join(
            db.metrics,
            and_(
                db.metrics.c.run_id == db.metric_chunks.c.run_id,
                db.metrics.c.key == db.metric_chunks.c.key,
                db.metric_chunks.c.seq == db.metrics.c.chunks - 1,
            ),
        )
        .where(db.metrics.c.run_id == bindparam("b_run"), db.metrics.c.key.in_(bindparam("b_keys", expanding=True)))
    )
    _chunk_values: ClassVar[dict[str, Any]] = {
        "count": bindparam("b_count"), "step_min": bindparam("b_step_min"), "step_max": bindparam("b_step_max"),
        "step_data": bindparam("b_steps"), "time_data": bindparam("b_timestamps"), "value_data": bindparam("b_values"),
    }
    _summary_values: ClassVar[dict[str, Any]] = {
        "count": bindparam("b_count"), "last_value": bindparam("b_last"), "last_step": bindparam("b_last_step"),
        "last_timestamp": bindparam("b_last_ts"), "min_value": bindparam("b_min"), "max_value": bindparam("b_max"),
        "chunks": bindparam("b_chunks"), "tail_count": bindparam("b_tail"),
    }
    update_chunk = (
        db.metric_chunks.update()
        .where(
            db.metric_chunks.c.run_id == bindparam("b_run"),
            db.metric_chunks.c.key == bindparam("b_key"),
            db.metric_chunks.c.seq == bindparam("b_seq"),
        )
        .values(_chunk_values)
    )
    insert_chunk = db.metric_chunks.insert().values(
        run_id=bindparam("b_run"), key=bindparam("b_key"), seq=bindparam("b_seq"), **_chunk_values
    )
    update_summary = (
        db.metrics.update()
        .where(db.metrics.c.run_id == bindparam("b_run"), db.metrics.c.key == bindparam("b_key"))
        .values(_summary_values)
    )
    insert_summary = db.metrics.insert().values(run_id=bindparam("b_run"), key=bindparam("b_key"), **_summary_values)


class _Raw:
    """A hot statement compiled once per dialect and run on the DBAPI cursor.

    SQLAlchemy's per-call work (parameter processing, result set-up) costs ~70 µs a statement, more
    than SQLite's own work for these small writes; run creation does ~8 of them. Only for statements
    whose parameters need no type conversion (numbers, text, bytes).
    """

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positional else None
        if "POSTCOMPILE" in self.sql or any(v is not None for v in compiled.params.values()):
            raise TypeError("_Raw takes statements whose every parameter comes from the rows")

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        params = [tuple(row[n] for n in self.names) for row in rows] if self.names is not None else rows
        cursor = conn.connection.cursor()
        try:
            if len(params) == 1:
                cursor.execute(self.sql, params[0])
            else:
                cursor.executemany(self.sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()


_live_stores: weakref.WeakSet[SqlStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child must not share the parent's database connections.
    for store in list(_live_stores):
        store._engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def _gc_paused(pause: bool) -> Iterator[None]:
    """Loading many runs creates millions of small objects that the cyclic garbage collector would scan
    again and again (none of them form cycles): pause it meanwhile."""
    import gc

    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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


def _json_list(value: Any) -> list[Any]:
    """A JSON array aggregate's value: text on SQLite, already decoded by psycopg on PostgreSQL."""
    return value if isinstance(value, list) else json.loads(value)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _sweep_of(owner: str) -> str:
    """Claim owners are "<sweep id>/<host>/<pid>": workers of one sweep share the first part."""
    return owner.split("/", 1)[0]


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


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
            self._engine = self._make_engine(url, busy_timeout)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store {self.display_url}: {exc}") from exc
        self.dialect = self._engine.dialect.name
        # The driver's own error class: a few hot paths talk to the driver directly (see _Raw, _on_begin).
        self._driver_error: type[Exception] = self._engine.dialect.loaded_dbapi.Error
        self._raws: dict[int, _Raw] = {}
        self._maintained = 0.0
        self._local = threading.local()  # each thread's write connection (see _write)
        self._connections: list[tuple[int, Connection]] = []  # (pid that opened it, connection)
        self._connections_lock = threading.Lock()
        _live_stores.add(self)
        self._ensure_schema()

    @property
    def display_url(self) -> str:
        """The URL with any password hidden: safe to print and log."""
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL has no password we can find; show only its scheme
            return self.url.split("://", 1)[0] + "://…"

    # -- engine and transactions ---------------------------------------------------------------

    @staticmethod
    def _make_engine(url: str, busy_timeout: float) -> Engine:
        if url.startswith("sqlite"):
            engine = create_engine(
                url, connect_args={"timeout": busy_timeout, "check_same_thread": False}
            )
            busy_ms = int(busy_timeout * 1000)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
                cursor = dbapi_conn.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                for attempt in range(50):
                    try:
                        cursor.execute("PRAGMA journal_mode = WAL")
                        break
                    except Exception:  # switching to WAL needs a moment alone with the file
                        if attempt == 49:
                            raise
                        time.sleep(0.05)
                cursor.execute("PRAGMA synchronous = NORMAL")
                # Checkpoints (which fsync) are run by the background writer (see maintain); this higher
                # threshold only keeps the WAL bounded if no writer runs, and keeps fsyncs off commits.
                cursor.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_PAGES}")
                cursor.execute("PRAGMA foreign_keys = ON")
                # Searches over many runs hop between index pages: a bigger page cache (grown only as
                # pages are read) and memory-mapped reads keep the second query from going to the file.
                cursor.execute("PRAGMA cache_size = -65536")
                cursor.execute("PRAGMA mmap_size = 268435456")
                cursor.execute("PRAGMA case_sensitive_like = ON")  # LIKE as on PostgreSQL; ILIKE folds case
                # SQLite's own lower() folds ASCII only; ILIKE must fold "Ü" as PostgreSQL does.
                dbapi_conn.create_function("lower", 1, _lower, deterministic=True)
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                write = conn.get_execution_options().get("labtrack_write", False)
                # Straight to the driver: this runs for every transaction.
                conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # type: ignore[union-attr]

            return engine
        return create_engine(url, pool_pre_ping=True)

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

    def _read_revision(self) -> tuple[bool, str | None]:
        """(whether the schema exists, its revision)."""
        with self._read() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return False, None
            return True, conn.execute(select(alembic_version.c.version_num)).scalar()

    def _ensure_schema(self) -> None:
        exists, revision = self._read_revision()
        if not exists:
            revision = self._create_schema()
        if revision != SCHEMA_REVISION:
            raise SchemaOutdated(
                f"store {self.display_url} has schema revision {revision or 'none'}, this labtrack uses "
                f"{SCHEMA_REVISION}: run `labtrack db upgrade --store {self.display_url}` "
                "(or upgrade labtrack if the store is newer)"
            )

    def _create_schema(self) -> str:
        """Create every table at the latest revision, exactly once however many processes race."""
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72718281)")
            if inspect(conn).has_table("alembic_version"):  # another process won the race
                return str(conn.execute(select(alembic_version.c.version_num)).scalar())
            db.metadata.create_all(conn)
            _version_meta.create_all(conn)
            conn.execute(alembic_version.insert().values(version_num=SCHEMA_REVISION))
        return SCHEMA_REVISION

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
        """Execute a prebuilt statement from ``_Q`` for ``rows`` (see ``_Raw``); returns the rowcount."""
        raw = self._raws.get(id(stmt))
        if raw is None:
            raw = self._raws[id(stmt)] = _Raw(stmt, self._engine.dialect)
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
            self._fast(conn, _Q.insert_run, [row])
            if run.params:
                self._fast(conn, _Q.insert_params, self._param_rows(run.id, run.params))
            if run.tags:
                self._fast(conn, _Q.insert_tags, [{"run_id": run.id, "key": k, "value": v} for k, v in run.tags.items()])
            if run.artifacts:
                conn.execute(
                    _Q.insert_artifacts,
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
        ending = ending or {}
        starts: dict[str, tuple[float, float | None]] = {}
        params: dict[str, dict[str, str]] = {}
        tags: dict[str, dict[str, str]] = {}
        metrics: dict[str, dict[str, float]] = {}
        for part, run_id, key, value, number, end in self._select_in(conn, _FRAME_PARTS_IN, run_ids):
            if part == 0:
                if run_id in ending or key != RunStatus.RUNNING:
                    starts[run_id] = (number, ending.get(run_id, end))
            elif part == 1:
                params.setdefault(run_id, {})[key] = value
            elif part == 2:
                tags.setdefault(run_id, {})[key] = value
            else:
                metrics.setdefault(run_id, {})[key] = _none_to_nan(number)
        return {
            run_id: encode_frame(params.get(run_id, {}), tags.get(run_id, {}), metrics.get(run_id, {}), start, end)
            for run_id, (start, end) in starts.items()
        }

    def _refresh_frames(self, conn: Connection, run_ids: Sequence[str]) -> int:
        """Rewrite the frames of those of ``run_ids`` that have ended (in the caller's write transaction);
        returns how many."""
        frames = self._frames(conn, run_ids)
        if frames:
            self._fast(conn, _Q.set_frame, [
                {"b_id": run_id, "b_keys": f.keys, "b_values": f.values, "b_numbers": f.numbers}
                for run_id, f in frames.items()
            ])
        return len(frames)

    def _records(self, conn: Connection, ids: Sequence[str]) -> dict[str, RunRecord]:
        """Records of ``ids`` (those that exist), keyed by id."""
        records: dict[str, RunRecord] = {}
        for (run_id, name, status, start, end, beat, host, pid, error, key, fingerprint, note, result,
             experiment) in self._select_in(conn, _RUNS_IN, ids):
            records[run_id] = RunRecord(
                id=run_id, experiment=experiment, status=_STATUSES[status], start_time=start, end_time=end,
                heartbeat_time=beat, host=host, pid=pid, name=name, error=json.loads(error) if error else None,
                run_key=key, env_fingerprint=fingerprint, note=note, result=json.loads(result) if result else None,
            )
        # Rows come ordered by key, so each record's dicts are sorted without sorting them.
        for run_id, key, value in self._select_in(conn, _PARAMS_IN, ids):
            records[run_id].params[key] = _decode_param(value)
        for run_id, key, value in self._select_in(conn, _TAGS_IN, ids):
            records[run_id].tags[key] = value
        for run_id, key, count, last, step, stamp, low, high in self._select_in(conn, _METRICS_IN, ids):
            records[run_id].metrics[key] = MetricSummary(
                key=key, last=_none_to_nan(last), last_step=step, last_timestamp=stamp,
                min=_none_to_nan(low), max=_none_to_nan(high), count=count,
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
        with _gc_paused(len(run_ids) > 2_000), self._read() as conn:
            for start in range(0, len(run_ids), _LOAD_BATCH):
                found.update(self._records(conn, run_ids[start : start + _LOAD_BATCH]))
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
        table = RunTable()
        with _gc_paused(len(run_ids) > 2_000), self._read() as conn:
            experiments = dict(conn.execute(select(db.experiments.c.id, db.experiments.c.name)).all())
            for scope in self._frame_scopes(run_ids, search):
                framed = and_(_FRAMED.c.frame_keys.is_not(None), _FRAMED.c.status != RunStatus.RUNNING.value, scope)
                groups = conn.execute(select(_FRAMED.c.experiment_id, _FRAMED.c.frame_keys).where(framed).distinct()).all()
                if len(groups) == 1:  # the usual case: one aggregate over the runs, no sorting them into groups
                    rows = [(*groups[0], *conn.execute(self._frame_aggregates().where(framed)).one())]
                else:
                    rows = list(conn.execute(
                        select(_FRAMED.c.experiment_id, _FRAMED.c.frame_keys, *self._frame_aggregates().selected_columns)
                        .where(framed).group_by(_FRAMED.c.experiment_id, _FRAMED.c.frame_keys)
                    )) if groups else []
                for experiment, keys, ids, names, statuses, values, numbers in rows:
                    table.add_group(
                        experiments[experiment], keys, ids.split(","), _json_list(names), statuses.split(","), values,
                        bytes(numbers),
                    )
        return table

    def _frame_scopes(self, run_ids: Sequence[str], search: Search | None) -> list[Any]:
        """Conditions on ``_FRAMED`` selecting the runs: by the search when there is one (a plain listing
        of experiments, or the search as a subquery), else by batches of ids."""
        if search is None:
            return [_FRAMED.c.id.in_(list(run_ids[i : i + _LOAD_BATCH])) for i in range(0, len(run_ids), _LOAD_BATCH)]
        if search.filter is None and search.run_key is None and search.max_results is None and not search.offset:
            if search.experiments is None:
                return [true()]
            named = select(db.experiments.c.id).where(db.experiments.c.name.in_(list(search.experiments)))
            return [_FRAMED.c.experiment_id.in_(named)]
        found = search_query(
            experiments=search.experiments, node=search.filter, order_by=search.order_by,
            max_results=search.max_results, offset=search.offset, run_key=search.run_key,
            stale_before=search.stale_before, dialect=self.dialect,
        )
        if search.max_results is None and not search.offset:
            found = found.order_by(None).offset(None)  # the order is the caller's business
        return [_FRAMED.c.id.in_(found)]

    def _frame_aggregates(self) -> Any:
        """SELECT, over the ended runs of one frame group: their ids and statuses joined by commas, names
        as a JSON array, value arrays inside one JSON array, number buffers concatenated. Every aggregate
        sees the rows in the same order."""
        r = _FRAMED
        numbers: Any
        if self.dialect == "postgresql":
            concat, names = func.string_agg, func.json_agg(r.c.name)
            numbers = func.string_agg(r.c.frame_numbers, literal(b"", LargeBinary), type_=LargeBinary)
        else:
            concat, names = func.group_concat, func.json_group_array(r.c.name)
            # group_concat joins blobs byte for byte (it takes their length, not up to a NUL); the cast
            # keeps the result bytes. Exactness is tested with NaN, ±inf, subnormals and zeros.
            numbers = cast(func.group_concat(r.c.frame_numbers, literal("")), LargeBinary)
        values = literal("[", Text) + concat(r.c.frame_values, literal(","), type_=Text) + literal("]", Text)
        return select(concat(r.c.id, literal(","), type_=Text), names, concat(r.c.status, literal(","), type_=Text),
                      values, numbers)

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
            self._fast(conn, _Q.end_run, [{
                "b_id": run_id, "b_status": status.value, "b_end": end_time,
                "b_error": json.dumps(dict(error)) if error else None,
                "b_keys": frame.keys, "b_values": frame.values, "b_numbers": frame.numbers,
            }])

    def heartbeat(self, run_id: str, now: float) -> None:
        with self._write() as conn:
            self._fast(conn, _Q.heartbeat, [{"b_id": run_id, "b_now": now}])

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
            rows = conn.execute(_Q.summaries, {"b_run": run_id, "b_keys": part}).all()
            existing.update((r.key, r) for r in rows)
            small = [r.key for r in rows if r.tail_count < TAIL_MERGE_BELOW]
            if small:
                tail_rows = conn.execute(_Q.tails, {"b_run": run_id, "b_keys": small})
                tails.update((t.key, unpack(t.step_data, t.time_data, t.value_data)) for t in tail_rows)

        new_summaries: list[dict[str, Any]] = []
        old_summaries: list[dict[str, Any]] = []
        chunk_inserts: list[dict[str, Any]] = []
        chunk_updates: list[dict[str, Any]] = []
        for key in keys:
            chunk = chunks[key]
            row = existing.get(key)
            summary = Summary()
            seq = 0
            if row is not None:
                summary = Summary(
                    count=row._mapping["count"],
                    last=_none_to_nan(row.last_value),
                    last_step=row.last_step,
                    last_timestamp=row.last_timestamp,
                    min=_none_to_nan(row.min_value),
                    max=_none_to_nan(row.max_value),
                )
                seq = row.chunks
            summary.merge(chunk.steps, chunk.timestamps, chunk.values)
            combined = chunk
            rewrite_tail = key in tails
            if rewrite_tail:
                combined = tails[key]
                combined.extend(chunk)
                seq -= 1
            pieces = [
                Chunk(combined.steps[i : i + CHUNK_MAX], combined.timestamps[i : i + CHUNK_MAX], combined.values[i : i + CHUNK_MAX])
                for i in range(0, len(combined), CHUNK_MAX)
            ]
            for n, piece in enumerate(pieces):
                steps_b, ts_b, values_b = pack(piece)
                item = {
                    "b_run": run_id, "b_key": key, "b_seq": seq + n, "b_count": len(piece),
                    "b_step_min": min(piece.steps), "b_step_max": max(piece.steps),
                    "b_steps": steps_b, "b_timestamps": ts_b, "b_values": values_b,
                }
                (chunk_updates if rewrite_tail and n == 0 else chunk_inserts).append(item)
            values = {
                "b_run": run_id, "b_key": key, "b_count": summary.count, "b_last": _nan_to_none(summary.last),
                "b_last_step": summary.last_step, "b_last_ts": summary.last_timestamp,
                "b_min": _nan_to_none(summary.min), "b_max": _nan_to_none(summary.max),
                "b_chunks": seq + len(pieces), "b_tail": len(pieces[-1]),
            }
            (old_summaries if row is not None else new_summaries).append(values)

        if chunk_updates:
            self._fast(conn, _Q.update_chunk, chunk_updates)
        if chunk_inserts:
            self._fast(conn, _Q.insert_chunk, chunk_inserts)
        if old_summaries:
            self._fast(conn, _Q.update_summary, old_summaries)
        if new_summaries:
            self._fast(conn, _Q.insert_summary, new_summaries)
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



def upgrade_schema(url: str) -> tuple[str | None, str]:
    """Run the Alembic migrations on the database at ``url`` up to the head revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    display = SqlStore.__new__(SqlStore)
    display.url = url
    try:
        engine = SqlStore._make_engine(url, 60.0)
        with engine.connect() as conn:
            conn.execution_options(labtrack_write=True)
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72718281)")
                before = None
                if inspect(conn).has_table("alembic_version"):
                    before = conn.execute(select(alembic_version.c.version_num)).scalar()
                config = Config()
                config.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "migrations"))
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                after = conn.execute(select(alembic_version.c.version_num)).scalar()
        engine.dispose()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade store {display.display_url}: {getattr(exc, 'orig', exc)}") from exc
    except CommandError as exc:  # e.g. a revision this labtrack does not know: the store is newer
        raise StoreError(
            f"cannot upgrade store {display.display_url}: {exc}; it was made by a newer labtrack — upgrade labtrack"
        ) from exc
    return before, str(after)
