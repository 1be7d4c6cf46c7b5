"""Deleting, restoring and collecting runs and experiments in the SQL store.

Deleting is soft: it sets ``deleted_time`` (the store's clock), which every search, listing and "already
run?" lookup reads, so a deleted run is hidden and its configuration may run again, but nothing is lost
until ``labtrack gc``. Deleting an experiment gives its live runs the experiment's own deletion time, so
restoring the experiment brings back exactly those (runs deleted before it stay deleted).

``collect_garbage`` then removes for good the runs deleted before a time (their rows in every table go
with them: the schema's foreign keys cascade), the deleted experiments left without runs, and the
artifact blobs no remaining run lists. Two rules keep it safe beside processes that still write:

- a deleted run that is still RUNNING with a fresh heartbeat is kept (its process would write to a run
  that no longer exists); it goes at the first collection after it ends;
- an unreferenced blob written or reused within ``BLOB_GRACE_SECONDS`` is kept: a writer stores a blob
  just before the write that lists it, and storing content again refreshes its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, not_, select
from sqlalchemy.engine import Connection

from labtrack.core.model import Collected, RunStatus
from labtrack.store import schema as db
from labtrack.store.blobs import BlobStore

__all__ = [
    "BLOB_GRACE_SECONDS",
    "collect_blobs",
    "count_removable",
    "delete_experiment",
    "delete_runs",
    "next_removable",
    "referenced_blobs",
    "removable_runs",
    "remove_experiments",
    "remove_runs",
    "restore_experiment",
    "restore_runs",
]

BLOB_GRACE_SECONDS = 3600.0
_BATCH = 500  # runs removed per transaction: a training process writing to the store waits at most that long


def delete_runs(conn: Connection, run_ids: Sequence[str], now: float) -> list[str]:
    """Mark the live ones among ``run_ids`` deleted; returns them. Their sweep claims marked done are
    dropped, so a sweep runs their configurations again (unless another live run finished it)."""
    r = db.runs.c
    live = list(conn.execute(select(r.id, r.run_key).where(r.id.in_(list(run_ids)), r.deleted_time.is_(None))))
    if not live:
        return []
    ids = [row.id for row in live]
    conn.execute(db.runs.update().where(r.id.in_(ids)).values(deleted_time=now))
    _forget_done_claims(conn, [row.run_key for row in live if row.run_key])
    return ids


def restore_runs(conn: Connection, run_ids: Sequence[str]) -> list[str]:
    """Bring back the deleted ones among ``run_ids`` (and their experiments, if deleted); returns them."""
    r = db.runs.c
    found = list(conn.execute(select(r.id, r.experiment_id).where(r.id.in_(list(run_ids)), r.deleted_time.is_not(None))))
    if not found:
        return []
    ids = [row.id for row in found]
    conn.execute(db.runs.update().where(r.id.in_(ids)).values(deleted_time=None))
    experiments = sorted({row.experiment_id for row in found})
    conn.execute(db.experiments.update().where(db.experiments.c.id.in_(experiments)).values(deleted_time=None))
    return ids


def delete_experiment(conn: Connection, experiment_id: int, now: float) -> int:
    """Mark the experiment and its live runs deleted at ``now``; returns how many runs. A deleted experiment
    is left as it is (0)."""
    e, r = db.experiments.c, db.runs.c
    if not conn.execute(
        db.experiments.update().where(e.id == experiment_id, e.deleted_time.is_(None)).values(deleted_time=now)
    ).rowcount:
        return 0
    keys = list(conn.execute(
        select(r.run_key).distinct().where(r.experiment_id == experiment_id, r.deleted_time.is_(None),
                                           r.run_key.is_not(None))
    ).scalars())
    done = conn.execute(
        db.runs.update().where(r.experiment_id == experiment_id, r.deleted_time.is_(None)).values(deleted_time=now)
    )
    _forget_done_claims(conn, keys)
    return int(done.rowcount)


def restore_experiment(conn: Connection, experiment_id: int) -> int | None:
    """Bring back a deleted experiment and the runs deleted with it; returns how many runs (None: it was
    not deleted)."""
    e, r = db.experiments.c, db.runs.c
    deleted = conn.execute(select(e.deleted_time).where(e.id == experiment_id)).scalar()
    if deleted is None:
        return None
    conn.execute(db.experiments.update().where(e.id == experiment_id).values(deleted_time=None))
    done = conn.execute(
        db.runs.update().where(r.experiment_id == experiment_id, r.deleted_time == deleted).values(deleted_time=None)
    )
    return int(done.rowcount)


def _forget_done_claims(conn: Connection, run_keys: Sequence[str]) -> None:
    c = db.claims.c
    for start in range(0, len(run_keys), _BATCH):
        conn.execute(db.claims.delete().where(c.run_key.in_(list(run_keys[start : start + _BATCH])), c.state == "done"))


# -- collecting ------------------------------------------------------------------------------------


def removable_runs(deleted_before: float, stale_before: float) -> Any:
    """The condition on ``runs`` that ``collect_garbage`` removes: deleted before ``deleted_before``, and not
    still RUNNING with a heartbeat at or after ``stale_before``."""
    r = db.runs.c
    writing = and_(r.status == RunStatus.RUNNING.value, func.coalesce(r.heartbeat_time, r.start_time) >= stale_before)
    return and_(r.deleted_time.is_not(None), r.deleted_time < deleted_before, not_(writing))


def count_removable(conn: Connection, deleted_before: float, stale_before: float, report: Collected) -> None:
    """Fill ``report``'s counts of what a collection would remove and keep, removing nothing."""
    r, e = db.runs.c, db.experiments.c
    report.runs = conn.execute(
        select(func.count()).select_from(db.runs).where(removable_runs(deleted_before, stale_before))
    ).scalar_one()
    report.kept_running = conn.execute(
        select(func.count()).select_from(db.runs).where(
            r.deleted_time.is_not(None), r.deleted_time < deleted_before,
            not_(removable_runs(deleted_before, stale_before)))
    ).scalar_one()
    remaining = select(r.id).where(r.experiment_id == e.id, not_(removable_runs(deleted_before, stale_before)))
    report.experiments = conn.execute(
        select(func.count()).select_from(db.experiments)
        .where(e.deleted_time.is_not(None), e.deleted_time < deleted_before, not_(remaining.exists()))
    ).scalar_one()


def next_removable(conn: Connection, deleted_before: float, stale_before: float) -> list[str]:
    """Ids of up to one batch of runs to remove."""
    return list(conn.execute(
        select(db.runs.c.id).where(removable_runs(deleted_before, stale_before)).limit(_BATCH)
    ).scalars())


def remove_runs(conn: Connection, run_ids: Sequence[str]) -> int:
    """Delete these runs' rows from every table (their params, tags, metrics, chunks, artifacts' records
    and ingest marks follow through the foreign keys' ON DELETE CASCADE), and their sweep claims."""
    conn.execute(db.claims.delete().where(db.claims.c.run_id.in_(list(run_ids))))
    return int(conn.execute(db.runs.delete().where(db.runs.c.id.in_(list(run_ids)))).rowcount)


def remove_experiments(conn: Connection, deleted_before: float) -> int:
    """Delete the experiments deleted before ``deleted_before`` that no run refers to any more."""
    e = db.experiments.c
    remaining = select(db.runs.c.id).where(db.runs.c.experiment_id == e.id)
    return int(conn.execute(
        db.experiments.delete().where(e.deleted_time.is_not(None), e.deleted_time < deleted_before,
                                      not_(remaining.exists()))
    ).rowcount)


def referenced_blobs(conn: Connection, deleted_before: float, stale_before: float) -> set[str]:
    """The sha256 of every blob that a run staying after the collection lists."""
    a = db.artifacts.c
    return set(conn.execute(
        select(a.sha256).distinct().join(db.runs, db.runs.c.id == a.run_id)
        .where(not_(removable_runs(deleted_before, stale_before)))
    ).scalars())


def collect_blobs(blobs: BlobStore, referenced: set[str], now: float, report: Collected, *, dry_run: bool) -> None:
    """Remove (or with ``dry_run`` count) the blobs outside ``referenced``, except those written or reused
    within the grace period."""
    for blob in blobs.list_blobs():
        if blob.sha256 in referenced:
            continue
        if blob.modified >= now - BLOB_GRACE_SECONDS:
            report.kept_recent_blobs += 1
            continue
        if dry_run or blobs.delete_blob(blob.sha256, unchanged_since=now - BLOB_GRACE_SECONDS):
            report.blobs += 1
            report.blob_bytes += blob.size
