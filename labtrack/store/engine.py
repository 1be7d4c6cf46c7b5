"""Database engines for the SQL store, and the fast paths around SQLAlchemy that its hot writes take.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with ``BEGIN IMMEDIATE``:
a writer waits for the write lock up front instead of failing half-way with "database is locked" when it
tries to upgrade a read lock. Readers never block writers in WAL mode.
"""

from __future__ import annotations

import gc
import os
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url

__all__ = ["AUTOCHECKPOINT_PAGES", "RawStatement", "display_url", "gc_paused", "make_engine"]

AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of WAL

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child must not share the parent's database connections: it opens its own.
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def display_url(url: str) -> str:
    """``url`` with any password hidden: safe to print and log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password we can find; show only its scheme
        return url.split("://", 1)[0] + "://…"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str, busy_timeout: float) -> Engine:
    """An engine for ``url``; on SQLite, with the connection settings and transaction start described above.
    A write transaction is one on a connection with the execution option ``labtrack_write=True``."""
    if not url.startswith("sqlite"):
        engine = create_engine(url, pool_pre_ping=True)
        _engines.add(engine)
        return engine
    engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False})
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
        # Checkpoints (which fsync) are run by the background writer (see SqlStore.maintain); this higher
        # threshold only keeps the WAL bounded if no writer runs, and keeps fsyncs off commits.
        cursor.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Searches over many runs hop between index pages: a bigger page cache (grown only as pages are
        # read) and memory-mapped reads keep the second query from going to the file.
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

    _engines.add(engine)
    return engine


class RawStatement:
    """A hot statement compiled once per dialect and run on the DBAPI cursor.

    SQLAlchemy's per-call work (parameter processing, result set-up) costs ~70 µs a statement, more
    than SQLite's own work for these small writes; run creation does ~8 of them. Only for statements
    whose parameters need no type conversion (numbers, text, bytes).
    """

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positional else None
        names = self.names or ()
        # a row's parameters in statement order, as a tuple (itemgetter of one name returns the bare value)
        self._values: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],)) if names else (lambda row: ())
        )
        if "POSTCOMPILE" in self.sql or any(v is not None for v in compiled.params.values()):
            raise TypeError("RawStatement takes statements whose every parameter comes from the rows")

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        params = list(map(self._values, rows)) if self.names is not None else rows
        cursor = conn.connection.cursor()
        try:
            if len(params) == 1:
                cursor.execute(self.sql, params[0])
            else:
                cursor.executemany(self.sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()


@contextmanager
def gc_paused(pause: bool) -> Iterator[None]:
    """Loading many runs creates millions of small objects that the cyclic garbage collector would scan
    again and again (none of them form cycles): pause it meanwhile."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
