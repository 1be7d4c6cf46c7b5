"""Checking a SQL store's data (``labtrack db check``): every metric chunk read and checked against its
checksum and sizes, as reads do one series at a time, and on SQLite the database's own structural check.

Chunks are streamed a few at a time, so a store of any size is checked in constant memory.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from labtrack.core.model import DamagedChunk, StoreCheck
from labtrack.store import schema as db
from labtrack.store.points import chunk_damage

__all__ = ["check_data"]

_BATCH = 500  # run ids per IN (...) list


def check_data(conn: Connection, dialect: str) -> StoreCheck:
    report = StoreCheck()
    if dialect == "sqlite":
        found = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check")]
        if found != ["ok"]:
            report.database = found
    c = db.metric_chunks.c
    rows = conn.execute(
        select(c.run_id, c.key, c.seq, c.count.label("points"), c.step_data, c.time_data, c.value_data, c.crc)
        .execution_options(yield_per=64)
    )
    damaged: list[tuple[str, str, int, str]] = []
    for r in rows:
        report.chunks += 1
        report.points += r.points
        report.unchecked += r.crc is None
        problem = chunk_damage(r.points, r.step_data, r.time_data, r.value_data, r.crc)
        if problem is not None:
            damaged.append((r.run_id, r.key, r.seq, problem))
    runs = sorted({run_id for run_id, *_ in damaged})
    experiments: dict[str, str] = {}
    for start in range(0, len(runs), _BATCH):
        named = conn.execute(
            select(db.runs.c.id, db.experiments.c.name)
            .join(db.experiments, db.experiments.c.id == db.runs.c.experiment_id)
            .where(db.runs.c.id.in_(runs[start : start + _BATCH]))
        )
        experiments.update((run_id, name) for run_id, name in named)
    report.damaged = [DamagedChunk(run_id, experiments.get(run_id, "?"), key, seq, problem)
                      for run_id, key, seq, problem in sorted(damaged)]
    return report
