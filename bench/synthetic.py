"""A labtrack store holding many FINISHED runs, built by bulk inserts: the fixture of ``exists`` and ``search``.

``start_run`` costs ~1 ms a run: 100k runs that way would take minutes. The rows are what a short run's
one write stores (run row with its frame, params, tags, metric summaries — no chunks of points), params
encoded by the store's own ``param_rows_of`` and the frame by ``encode_frame``; each run key is the one
``labtrack.compute_key`` gives here (the workloads check it for the runs they look up), so ``exists``
finds them. On SQLite the rows go in with ``executemany``; on PostgreSQL with ``COPY``, then ``ANALYZE``
(what autovacuum does to a table that grew by that much, before its planner statistics are trusted).
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.fixtures import synthetic_run

__all__ = ["EXPERIMENT", "SyntheticStore"]

EXPERIMENT = "exp"
_RUN_COLUMNS = ("id", "experiment_id", "name", "status", "start_time", "end_time", "heartbeat_time", "host", "pid",
                "run_key", "env_fingerprint", "context", "error", "note", "result", "frame_keys", "frame_values",
                "frame_numbers", "deleted_time")
_METRIC_COLUMNS = ("run_id", "key", "count", "last_value", "last_step", "last_timestamp", "min_value", "max_value",
                   "chunks", "tail_count")  # summaries only: no chunks of points


class SyntheticStore:
    """The store at ``location`` (a directory or a ``postgresql+psycopg://`` URL), grown by ``grow``."""

    def __init__(self, location: str) -> None:
        from sqlalchemy import create_engine, event

        import labtrack as lt
        from labtrack.run.handle import shared_part
        from labtrack.store import resolve_location
        from labtrack.verbs.capture import code_version, script_entry
        from labtrack.verbs.tracking import client

        lt.set_store(location)
        store = client(location).store  # opening the client creates the schema
        self.experiment_id = store.get_or_create_experiment(EXPERIMENT).id
        captured = lt.capture_environment()
        self.fingerprint = captured.fingerprint
        store.put_environment(self.fingerprint, shared_part(captured))  # what start_run stores once per fingerprint
        self.code = code_version(captured)
        self.entry = script_entry(captured)  # the measuring process's own entry, as compute_key sees it
        self.engine = create_engine(resolve_location(location)[0])
        self.postgres = self.engine.dialect.name == "postgresql"
        if not self.postgres:
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA synchronous=OFF")  # building the fixture, not measured
                dbapi_conn.execute("PRAGMA busy_timeout=60000")
                dbapi_conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: the random-key indexes stay in memory

        self.ids = random.Random(20261123)  # run ids: random hex, like uuid4().hex
        self.n = 0
        self.build_s = 0.0

    def key(self, params: dict[str, Any]) -> str:
        from labtrack.core.identity import run_key

        return run_key(EXPERIMENT, params, code=self.code, inputs={}, entry=self.entry)

    def grow(self, total: int, batch: int = 25_000) -> None:
        from labtrack.core.frame import encode_frame
        from labtrack.store import schema as db
        from labtrack.store.sqlwrite import param_rows_of

        t0 = time.perf_counter()
        tables = (db.runs, db.params, db.tags, db.metrics)
        assert [c.name for c in db.runs.columns] == list(_RUN_COLUMNS), "labtrack's runs table changed"
        assert [c.name for c in db.metrics.columns] == list(_METRIC_COLUMNS), "labtrack's metrics table changed"
        param_columns = [c.name for c in db.params.columns]
        base_time = 1.7e9
        while self.n < total:
            rows: tuple[list[tuple[Any, ...]], ...] = ([], [], [], [])
            runs, params, tags, metrics = rows
            for i in range(self.n, min(total, self.n + batch)):
                p, t, m = synthetic_run(i)
                run_id = f"{self.ids.getrandbits(128):032x}"
                start, end = base_time + i * 30.0, base_time + i * 30.0 + 600.0
                param_rows = param_rows_of(run_id, p)
                frame = encode_frame({r["key"]: r["value"] for r in param_rows}, t, m, start, end)
                runs.append((run_id, self.experiment_id, f"run-{i}", "FINISHED", start, end, end, "bench-host",
                             1000 + i % 30000, self.key(p), self.fingerprint, None, None, None, None,
                             frame.keys, frame.values, frame.numbers, None))
                params += [tuple(r[c] for c in param_columns) for r in param_rows]
                tags += [(run_id, k, v) for k, v in t.items()]
                metrics += [(run_id, k, 100, v, 99, end, v * 0.5, v, 0, 0) for k, v in m.items()]
            with self.engine.begin() as conn:
                if self.postgres:  # building the fixture, not measured: the rows are consistent by construction
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no per-row FK checks
                for table, table_rows in zip(tables, rows):
                    self._insert(conn, table, table_rows)
            self.n += len(runs)
        if self.postgres:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        self.build_s += time.perf_counter() - t0

    def _insert(self, conn: Any, table: Any, rows: list[tuple[Any, ...]]) -> None:
        """Rows as tuples in the table's column order, straight to the driver: SQLAlchemy's per-row parameter
        processing would double the build time of 2.4M rows."""
        if self.postgres:
            columns = ", ".join(c.name for c in table.columns)
            with conn.connection.driver_connection.cursor() as cursor:
                with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            conn.exec_driver_sql(str(table.insert().compile(dialect=self.engine.dialect)), rows)
