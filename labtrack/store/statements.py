"""The SQL store's statements: the hot ones built once, and the id-list reads that go through the driver.

An id-list template holds ``{ids}`` where the store puts one bound-parameter marker per id (see
``SqlBase.select_in``): ids are always parameters, never SQL text.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import and_, bindparam, select, text

from labtrack.store import schema as db

__all__ = ["FRAME_PARTS_IN", "METRICS_IN", "PARAMS_IN", "RUNS_IN", "TAGS_IN", "Q"]

RUNS_IN = (
    "SELECT r.id, r.name, r.status, r.start_time, r.end_time, r.heartbeat_time, r.host, r.pid, r.error, r.run_key, "
    "r.env_fingerprint, r.note, r.result, e.name, r.deleted_time FROM runs r JOIN experiments e ON e.id = r.experiment_id "
    "WHERE r.id IN ({ids})"
)
PARAMS_IN = "SELECT run_id, key, value FROM params WHERE run_id IN ({ids}) ORDER BY run_id, key"
TAGS_IN = "SELECT run_id, key, value FROM tags WHERE run_id IN ({ids}) ORDER BY run_id, key"
METRICS_IN = (
    "SELECT run_id, key, count, last_value, last_step, last_timestamp, min_value, max_value FROM metrics "
    "WHERE run_id IN ({ids}) ORDER BY run_id, key"
)
# What a frame is made of (labtrack.core.frame): (part, run id, key or status, text, number, end time).
FRAME_PARTS_IN = (
    "SELECT 0, id, status, NULL, start_time, end_time FROM runs WHERE id IN ({ids}) "
    "UNION ALL SELECT 1, run_id, key, value, NULL, NULL FROM params WHERE run_id IN ({ids}) "
    "UNION ALL SELECT 2, run_id, key, value, NULL, NULL FROM tags WHERE run_id IN ({ids}) "
    "UNION ALL SELECT 3, run_id, key, NULL, last_value, NULL FROM metrics WHERE run_id IN ({ids})"
)


class Q:
    """Hot statements, built once: SQLAlchemy then reuses their compiled form on every call (and
    ``SqlBase.fast`` compiles each once per dialect for the DBAPI cursor)."""

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
    # A run started in a deleted experiment brings the experiment back (its deleted runs stay deleted).
    revive_experiment = text("UPDATE experiments SET deleted_time = NULL WHERE id = :b_id AND deleted_time IS NOT NULL")
    summaries = (
        select(db.metrics)
        .where(db.metrics.c.run_id == bindparam("b_run"), db.metrics.c.key.in_(bindparam("b_keys", expanding=True)))
        .with_for_update()
    )
    tails = (
        select(db.metric_chunks.c.key, db.metric_chunks.c.count.label("points"), db.metric_chunks.c.step_data,
               db.metric_chunks.c.time_data, db.metric_chunks.c.value_data, db.metric_chunks.c.crc)
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
        "crc": bindparam("b_crc"),
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
    insert_mark = db.ingest_marks.insert()
