"""Frames in the SQL store: building each ended run's frame from its rows, and reading many runs' frames
as columns a group at a time (what ``labtrack.core.frame`` describes, in SQL).

A group is the ended runs of one experiment that logged the same keys; one aggregate query returns its
runs' ids, names and statuses, their value arrays inside one JSON array and their number buffers
concatenated — a few rows for 100k runs instead of millions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import LargeBinary, Text, and_, cast, func, literal, select
from sqlalchemy.engine import Connection

from labtrack.core.frame import FrameRow, RunTable, encode_frame
from labtrack.core.model import RunStatus
from labtrack.store import schema as db
from labtrack.store.base import Search
from labtrack.store.points import none_to_nan
from labtrack.store.query import lifecycle_condition, search_queries

__all__ = ["ID_BATCH", "build_frames", "read_frames"]

ID_BATCH = 5000  # runs per id list (SQLite allows 32766 bound parameters)
_FRAMED = db.runs.alias("framed")  # the runs a frame query reads; ``runs`` itself stays free for the search in it


def build_frames(parts: Iterable[Sequence[Any]], ending: Mapping[str, float]) -> dict[str, FrameRow]:
    """Frames from the rows of ``statements.FRAME_PARTS_IN``, for the runs that have ended or are ending
    now (``ending``: their end times)."""
    starts: dict[str, tuple[float, float | None]] = {}
    params: dict[str, dict[str, str]] = {}
    tags: dict[str, dict[str, str]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for part, run_id, key, value, number, end in parts:
        if part == 0:
            if run_id in ending or key != RunStatus.RUNNING:
                starts[run_id] = (number, ending.get(run_id, end))
        elif part == 1:
            params.setdefault(run_id, {})[key] = value
        elif part == 2:
            tags.setdefault(run_id, {})[key] = value
        else:
            metrics.setdefault(run_id, {})[key] = none_to_nan(number)
    return {
        run_id: encode_frame(params.get(run_id, {}), tags.get(run_id, {}), metrics.get(run_id, {}), start, end)
        for run_id, (start, end) in starts.items()
    }


def read_frames(conn: Connection, dialect: str, run_ids: Sequence[str], search: Search | None) -> RunTable:
    """The ended runs among ``run_ids`` (or those ``search`` selects, when given) that have frames, as
    columns. Runs without a frame (running, or not yet upgraded) are left out for the caller to add."""
    table = RunTable()
    experiments = dict(conn.execute(select(db.experiments.c.id, db.experiments.c.name)).all())
    aggregates = _aggregates(dialect)
    for scope in _scopes(run_ids, search, dialect):
        framed = and_(_FRAMED.c.frame_keys.is_not(None), _FRAMED.c.status != RunStatus.RUNNING.value, scope)
        groups = conn.execute(select(_FRAMED.c.experiment_id, _FRAMED.c.frame_keys).where(framed).distinct()).all()
        if len(groups) == 1:  # the usual case: one aggregate over the runs, no sorting them into groups
            rows = [(*groups[0], *conn.execute(aggregates.where(framed)).one())]
        else:
            rows = list(conn.execute(
                select(_FRAMED.c.experiment_id, _FRAMED.c.frame_keys, *aggregates.selected_columns)
                .where(framed).group_by(_FRAMED.c.experiment_id, _FRAMED.c.frame_keys)
            )) if groups else []
        for experiment, keys, ids, names, statuses, values, numbers in rows:
            names = names if isinstance(names, list) else json.loads(names)  # psycopg decodes JSON itself
            table.add_group(experiments[experiment], keys, ids.split(","), names, statuses.split(","), values,
                            bytes(numbers))
    return table


def _scopes(run_ids: Sequence[str], search: Search | None, dialect: str) -> list[Any]:
    """Conditions on ``_FRAMED`` selecting the runs: by the search when there is one (a plain listing of
    experiments, or the search as a subquery), else by batches of ids."""
    if search is None:
        return [_FRAMED.c.id.in_(list(run_ids[i : i + ID_BATCH])) for i in range(0, len(run_ids), ID_BATCH)]
    if search.filter is None and search.run_key is None and search.max_results is None and not search.offset:
        live = lifecycle_condition(search.lifecycle, _FRAMED.c.deleted_time)
        if search.experiments is None:
            return [live]
        named = select(db.experiments.c.id).where(db.experiments.c.name.in_(list(search.experiments)))
        return [and_(live, _FRAMED.c.experiment_id.in_(named))]
    parts = search_queries(search, dialect)
    if len(parts) > 1:  # a first page sorted by a metric, read in two parts: its ids are the simpler choice
        return _scopes(run_ids, None, dialect)
    found = parts[0]
    if search.max_results is None and not search.offset:
        found = found.order_by(None).offset(None)  # the order is the caller's business
    return [_FRAMED.c.id.in_(found)]


def _aggregates(dialect: str) -> Any:
    """SELECT, over the ended runs of one frame group: their ids and statuses joined by commas, names as a
    JSON array, value arrays inside one JSON array, number buffers concatenated. Every aggregate sees the
    rows in the same order."""
    r = _FRAMED
    numbers: Any
    if dialect == "postgresql":
        concat, names = func.string_agg, func.json_agg(r.c.name)
        numbers = func.string_agg(r.c.frame_numbers, literal(b"", LargeBinary), type_=LargeBinary)
    else:
        concat, names = func.group_concat, func.json_group_array(r.c.name)
        # group_concat joins blobs byte for byte (it takes their length, not up to a NUL); the cast keeps
        # the result bytes. Exactness is tested with NaN, ±inf, subnormals and zeros.
        numbers = cast(func.group_concat(r.c.frame_numbers, literal("")), LargeBinary)
    values = literal("[", Text) + concat(r.c.frame_values, literal(","), type_=Text) + literal("]", Text)
    return select(concat(r.c.id, literal(","), type_=Text), names, concat(r.c.status, literal(","), type_=Text),
                  values, numbers)
