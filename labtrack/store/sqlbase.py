"""The SQL store's toolbox: its engine, transactions and the fast paths around SQLAlchemy, shared by the
store's reads (``sql``) and its write path (``sqlwrite``).

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` (see ``engine``). On PostgreSQL, writers of one run serialise on the run's row
(``SELECT ... FOR UPDATE``) or an advisory lock.

Errors are translated here, at the boundary: a driver or SQLAlchemy error becomes ``StoreError``, a unique
key already taken ``StoreConflict``; a write connection that failed is dropped, so the next write opens
a fresh one (a database restart costs the writes in flight, which the writer retries, not the process's
connection for good).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from labtrack.core.errors import LabtrackError, RunNotFound, SchemaOutdated, StoreConflict, StoreError
from labtrack.core.model import Experiment
from labtrack.store import schema as db
from labtrack.store.clock import ServerClock
from labtrack.store.engine import RawStatement, display_url, make_engine
from labtrack.store.migrate import create_schema, read_revision
from labtrack.store.schema import SCHEMA_REVISION, WORKING_REVISIONS

__all__ = ["SqlBase"]

_MAINTAIN_EVERY = 2.0  # seconds between background checkpoints


class SqlBase:
    """Engine, transactions and statement helpers of a SQL store (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, busy_timeout: float = 60.0, home: Path | None = None) -> None:
        self.url = url
        self.home = home  # the store's own local directory (a directory store's folder), if any
        self._experiments: dict[str, Experiment] = {}
        try:
            self._engine = make_engine(url, busy_timeout)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store {self.display_url}: {exc}") from exc
        self.dialect = self._engine.dialect.name
        database = self._engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            from labtrack.store.fsinfo import warn_if_network

            warn_if_network(database)
        # The driver's own error class: a few hot paths talk to the driver directly (see store.engine).
        self._driver_error: type[Exception] = self._engine.dialect.loaded_dbapi.Error
        self._driver_integrity: type[Exception] = self._engine.dialect.loaded_dbapi.IntegrityError
        self._raws: dict[int, RawStatement] = {}
        self._upserts: dict[str, Any] = {}
        self._maintained = 0.0
        self._local = threading.local()  # each thread's write connection (see _write)
        self._connections: list[tuple[int, Connection]] = []  # (pid that opened it, connection)
        self._connections_lock = threading.Lock()
        self._clock = ServerClock(self._server_time) if self.dialect == "postgresql" else None
        self._ensure_schema()

    @property
    def display_url(self) -> str:
        """The URL with any password hidden: safe to print and log."""
        return display_url(self.url)

    def now(self) -> float:
        """The store's clock (see ``store.clock``): PostgreSQL's, or on SQLite this host's."""
        return time.time() if self._clock is None else self._clock.now()

    def _server_time(self) -> float:
        with self._engine.connect() as conn:
            return float(conn.exec_driver_sql("SELECT extract(epoch FROM clock_timestamp())").scalar_one())

    def missing_run(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")

    # -- transactions ---------------------------------------------------------------------------

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
            raise StoreConflict(f"store {self.display_url} refused a write: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise self._failed("write to", getattr(exc, "orig", exc)) from exc
        except self._driver_error as exc:  # raised by the driver itself (our BEGIN IMMEDIATE), unwrapped
            if isinstance(exc, self._driver_integrity):
                raise StoreConflict(f"store {self.display_url} refused a write: {exc}") from exc
            raise self._failed("write to", exc) from exc

    def _failed(self, verb: str, exc: BaseException) -> StoreError:
        """The StoreError for a failed read or write; a damaged SQLite file says what to do about it."""
        text = str(exc)
        if self.dialect == "sqlite" and ("malformed" in text or "not a database" in text):
            return StoreError(f"cannot {verb} store {self.display_url}: the SQLite file {self._engine.url.database} "
                              f"is damaged ({text}). {self.recovery_hint()}")
        return StoreError(f"cannot {verb} store {self.display_url}: {text}")

    def recovery_hint(self) -> str:
        """What to do about a damaged SQLite file."""
        path = self._engine.url.database
        return (f"Stop every process using it, keep a copy, then restore it from a backup — or recover what it still "
                f"holds: `sqlite3 {path} .recover | sqlite3 recovered.db`, check it with `sqlite3 recovered.db "
                "'PRAGMA integrity_check'`, and put recovered.db in its place (runs on damaged pages may be missing "
                "or partial afterwards: compare `labtrack runs` with what you expect)")

    def ping(self) -> None:
        with self._read() as conn:
            conn.exec_driver_sql("SELECT 1")

    def compact(self) -> int | None:
        """Give the space of deleted rows back to the file system (SQLite's VACUUM: the file is rewritten,
        and other writers wait meanwhile); returns how many bytes. None on PostgreSQL, whose autovacuum
        makes the space reusable and which shrinks files only under a lock (VACUUM FULL) left to its admin."""
        if self.dialect != "sqlite":
            return None
        path = Path(self._engine.url.database or "")
        before = _file_size(path)
        try:
            with self._engine.connect() as conn:
                driver = conn.connection.dbapi_connection  # outside a transaction, as VACUUM must be
                driver.execute("VACUUM")  # type: ignore[union-attr]
                driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        except SQLAlchemyError as exc:
            raise self._failed("compact", getattr(exc, "orig", exc)) from exc
        except self._driver_error as exc:
            raise self._failed("compact", exc) from exc
        return max(0, before - _file_size(path))

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except LabtrackError:
            raise
        except SQLAlchemyError as exc:
            raise self._failed("read", getattr(exc, "orig", exc)) from exc
        except self._driver_error as exc:
            raise self._failed("read", exc) from exc

    def _writer_connection(self) -> Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed or conn.invalidated or getattr(local, "pid", None) != os.getpid():
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

    # -- schema ---------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        with self._read() as conn:
            exists, revision = read_revision(conn)
        if not exists:
            with self._write() as conn:
                revision = create_schema(conn)
        if revision not in WORKING_REVISIONS:
            raise SchemaOutdated(
                f"store {self.display_url} has schema revision {revision or 'none'}, this labtrack uses "
                f"{SCHEMA_REVISION}: run `labtrack db upgrade --store {self.display_url}` "
                "(or upgrade labtrack if the store is newer)"
            )

    # -- statements -----------------------------------------------------------------------------

    def fast(self, conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> int:
        """Execute a prebuilt statement from ``Q`` for ``rows`` (see ``RawStatement``); returns the rowcount."""
        raw = self._raws.get(id(stmt))
        if raw is None:
            raw = self._raws[id(stmt)] = RawStatement(stmt, self._engine.dialect)
        try:
            return raw.run(conn, rows)
        except self._driver_integrity as exc:
            raise IntegrityError(raw.sql, None, exc) from exc
        except self._driver_error as exc:
            raise SQLAlchemyError(f"{exc}") from exc

    @contextmanager
    def pipelined(self, conn: Connection) -> Iterator[None]:
        """On PostgreSQL, psycopg's pipeline mode for statements that return nothing (plain inserts through
        ``fast``): they go to the server without waiting for each answer, one round trip for them all."""
        pipeline = getattr(conn.connection.dbapi_connection, "pipeline", None) if self.dialect == "postgresql" else None
        if pipeline is None:
            yield
            return
        with pipeline():
            yield

    def insert_ignore(self, table: Table) -> Any:
        """An INSERT that can take ON CONFLICT clauses, in this dialect."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def upsert(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT (primary key) DO UPDATE of every other column, built once per table."""
        found = self._upserts.get(table.name)
        if found is None:
            stmt = self.insert_ignore(table)
            keys = [c.name for c in table.primary_key.columns]
            found = stmt.on_conflict_do_update(
                index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
            )
            self._upserts[table.name] = found
        return found

    def driver_rows(self, conn: Connection, template: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of ``template`` (SQL whose ``{mark}`` are the dialect's parameter markers), through the driver."""
        cursor = conn.connection.cursor()
        try:
            cursor.execute(template.format(mark="?" if self.dialect == "sqlite" else "%s"), list(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def select_in(self, conn: Connection, template: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
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

    def require_run(self, conn: Connection, run_id: str) -> str:
        """The run's stored status; raises RunNotFound. On PostgreSQL the run's row stays locked until the
        transaction ends, so that a write racing another write of the same run sees its outcome."""
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        found = self.driver_rows(conn, "SELECT status FROM runs WHERE id = {mark}" + lock, [run_id])
        if not found:
            raise self.missing_run(run_id)
        return str(found[0][0])

    # -- experiments ----------------------------------------------------------------------------

    def experiment_in(self, conn: Connection, name: str) -> Experiment:
        """The experiment called ``name``, created in ``conn``'s write transaction if new."""
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        row = conn.execute(select(db.experiments).where(db.experiments.c.name == name)).first()
        if row is None:
            stmt = self.insert_ignore(db.experiments).values(name=name, created_time=time.time())
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
            row = conn.execute(select(db.experiments).where(db.experiments.c.name == name)).one()
        return Experiment(id=row.id, name=row.name, created_time=row.created_time)

    def remember_experiment(self, experiment: Experiment) -> None:
        """Cache an experiment once the transaction that may have created it has committed."""
        self._experiments[experiment.name] = experiment


def _file_size(path: Path) -> int:
    """The SQLite database's size on disk, with its write-ahead log."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            total += part.stat().st_size
        except OSError:
            pass
    return total
