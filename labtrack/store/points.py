"""How metric points become rows: packed chunks of at most ``CHUNK_MAX`` points per (run, key), and one
summary row per (run, key) with the count, last, min and max that search and sort read.

A write appends to the last chunk while it is small (rewriting it is cheaper than a row per flush: a
run flushing every second would otherwise leave thousands of tiny chunks) and adds chunks after it.
The rows fill the bind parameters of ``statements.Q``'s chunk and summary statements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labtrack.core.errors import DataDamaged
from labtrack.core.series import Chunk, Summary, checksum, pack

__all__ = ["CHUNK_MAX", "TAIL_MERGE_BELOW", "PointWrites", "chunk_damage", "damaged", "none_to_nan", "plan_writes"]

CHUNK_MAX = 8192  # points per chunk row
TAIL_MERGE_BELOW = 1024  # a last chunk smaller than this is extended instead of adding a row

_Row = dict[str, Any]


@dataclass
class PointWrites:
    chunk_updates: list[_Row] = field(default_factory=list)
    chunk_inserts: list[_Row] = field(default_factory=list)
    summary_updates: list[_Row] = field(default_factory=list)
    summary_inserts: list[_Row] = field(default_factory=list)


def _nan_to_none(value: float) -> float | None:
    # NaN is stored as NULL; -0.0 as 0.0, as SQLite would store it anyway: every backend, and the frames
    # built from these rows, then agree (the points themselves keep -0.0 exactly).
    return None if value != value else value + 0.0


def none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def chunk_damage(count: int | None, steps: bytes, timestamps: bytes, values: bytes, crc: int | None) -> str | None:
    """What is wrong with a stored chunk, or None. Chunks from before revision 0005 (``crc`` NULL) can only
    be checked for their arrays' lengths."""
    sizes = len(steps), len(timestamps), len(values)
    if sizes[0] % 8 or len(set(sizes)) != 1 or (count is not None and sizes[0] != 8 * count):
        return f"its arrays hold {sizes[0]}, {sizes[1]} and {sizes[2]} bytes for {count} points of 8 bytes"
    if crc is not None and checksum(steps, timestamps, values) != crc:
        return "its points do not match their checksum"
    return None


def damaged(run_id: str, key: str, seq: int, problem: str) -> DataDamaged:
    return DataDamaged(
        f"metric {key!r} of run {run_id}: stored chunk {seq} is damaged ({problem}), so its points are not "
        "returned. The run's other metrics are not affected. `labtrack db check` lists every damaged chunk "
        "in the store; restore the store from a backup to get these points back."
    )


def plan_writes(run_id: str, chunks: Mapping[str, Chunk], existing: Mapping[str, Any],
                tails: Mapping[str, Chunk]) -> PointWrites:
    """The rows that append ``chunks`` (non-empty, by key) to one run. ``existing``: the keys' summary rows
    already stored; ``tails``: the stored last chunks of the keys whose tail is to be extended."""
    writes = PointWrites()
    for key, chunk in chunks.items():
        row = existing.get(key)
        summary = Summary()
        seq = 0
        if row is not None:
            summary = Summary(
                count=row._mapping["count"],
                last=none_to_nan(row.last_value),
                last_step=row.last_step,
                last_timestamp=row.last_timestamp,
                min=none_to_nan(row.min_value),
                max=none_to_nan(row.max_value),
            )
            seq = row.chunks
        summary.merge(chunk.steps, chunk.timestamps, chunk.values)
        combined = chunk
        rewrite_tail = key in tails
        if rewrite_tail:
            combined = tails[key]
            combined.extend(chunk)
            seq -= 1
        pieces = [combined] if len(combined) <= CHUNK_MAX else [  # the usual case: a flush fits in one chunk
            Chunk(combined.steps[i : i + CHUNK_MAX], combined.timestamps[i : i + CHUNK_MAX],
                  combined.values[i : i + CHUNK_MAX])
            for i in range(0, len(combined), CHUNK_MAX)
        ]
        for n, piece in enumerate(pieces):
            steps_b, ts_b, values_b = pack(piece)
            item = {
                "b_run": run_id, "b_key": key, "b_seq": seq + n, "b_count": len(piece),
                "b_step_min": min(piece.steps), "b_step_max": max(piece.steps),
                "b_steps": steps_b, "b_timestamps": ts_b, "b_values": values_b,
                "b_crc": checksum(steps_b, ts_b, values_b),
            }
            (writes.chunk_updates if rewrite_tail and n == 0 else writes.chunk_inserts).append(item)
        values = {
            "b_run": run_id, "b_key": key, "b_count": summary.count, "b_last": _nan_to_none(summary.last),
            "b_last_step": summary.last_step, "b_last_ts": summary.last_timestamp,
            "b_min": _nan_to_none(summary.min), "b_max": _nan_to_none(summary.max),
            "b_chunks": seq + len(pieces), "b_tail": len(pieces[-1]),
        }
        (writes.summary_updates if row is not None else writes.summary_inserts).append(values)
    return writes
