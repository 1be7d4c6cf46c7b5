"""The SQL store: SQLite (embedded default) and PostgreSQL through SQLAlchemy Core.

This module holds the reads, claims and environments; the write path is ``sqlwrite``, the engine and
transactions ``sqlbase`` (WAL mode and ``BEGIN IMMEDIATE`` on SQLite, row locks on PostgreSQL).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Float, and_, case, func, literal, or_, select
from sqlalchemy.engine import Connection

from labtrack.core.errors import AmbiguousRunId, ExperimentNotFound, RunNotFound
from labtrack.core.frame import RunTable
from labtrack.core.model import (
    ArtifactInfo,
    ClaimState,
    Collected,
    Experiment,
    IngestMark,
    Lifecycle,
    MetricHistory,
    MetricSummary,
    RunRecord,
    RunStatus,
    RunWrite,
    Search,
    StoreCheck,
)
from labtrack.core.names import id_prefix
from labtrack.core.series import SeriesFiller, by_step
from labtrack.core.tokens import Role, TokenInfo
from labtrack.store import lifecycle, tokens
from labtrack.store import schema as db
from labtrack.store.base import Store, unresolved
from labtrack.store.blobs import BlobStore
from labtrack.store.engine import gc_paused
from labtrack.store.frames import ID_BATCH, read_frames
from labtrack.store.points import chunk_damage, damaged, none_to_nan
from labtrack.store.query import lifecycle_condition, search_queries
from labtrack.store.sqlbase import SqlBase
from labtrack.store.sqlwrite import apply_writes, refresh_frames
from labtrack.store.statements import METRICS_IN, PARAMS_IN, RUNS_IN, TAGS_IN, Q

__all__ = ["SqlStore"]

_IN_BATCH = 500  # ids per IN (...) list
_FRAME_FILL_BATCH = 500  # runs whose frames are rebuilt per round of queries
_STATUSES = {s.value: s for s in RunStatus}
# A run that counts as having run its configuration: FINISHED, and not deleted.
_DONE = (db.runs.c.status == RunStatus.FINISHED.value, db.runs.c.deleted_time.is_(None))


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




class SqlStore(SqlBase, Store):
    """A store on SQLite (the embedded default) or PostgreSQL; artifact content in ``blobs``."""

    def __init__(self, url: str, blobs: BlobStore, *, busy_timeout: float = 60.0, home: Path | None = None) -> None:
        self.blobs = blobs
        super().__init__(url, busy_timeout=busy_timeout, home=home)

    # -- experiments ---------------------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> Experiment:
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        with self._read() as conn:
            row = conn.execute(select(db.experiments).where(db.experiments.c.name == name)).first()
        if row is not None and row.deleted_time is None:
            experiment = Experiment(id=row.id, name=row.name, created_time=row.created_time)
        else:  # new, or deleted: a run started in a deleted experiment brings it back (its deleted runs stay so)
            with self._write() as conn:
                experiment = self.experiment_in(conn, name)
                self.fast(conn, Q.revive_experiment, [{"b_id": experiment.id}])
        self.remember_experiment(experiment)
        return experiment

    def list_experiments(self, lifecycle: Lifecycle = Lifecycle.ACTIVE) -> list[tuple[Experiment, int]]:
        # A live experiment counts its live runs; a deleted one the runs deleted with it (what restoring it
        # brings back).
        e, r = db.experiments.c, db.runs.c
        counted = or_(and_(e.deleted_time.is_(None), r.deleted_time.is_(None)), r.deleted_time == e.deleted_time)
        counts = (
            select(r.experiment_id, func.count().label("n")).join(db.experiments, e.id == r.experiment_id)
            .where(counted).group_by(r.experiment_id).subquery()
        )
        query = (
            select(db.experiments, func.coalesce(counts.c.n, 0).label("n"))
            .outerjoin(counts, counts.c.experiment_id == e.id)
            .where(lifecycle_condition(lifecycle, e.deleted_time))
            .order_by(e.id)
        )
        with self._read() as conn:
            return [
                (Experiment(id=r.id, name=r.name, created_time=r.created_time, deleted_time=r.deleted_time), int(r.n))
                for r in conn.execute(query)
            ]

    # -- reading runs --------------------------------------------------------------------------

    def _records(self, conn: Connection, ids: Sequence[str]) -> dict[str, RunRecord]:
        """Records of ``ids`` (those that exist), keyed by id."""
        records: dict[str, RunRecord] = {}
        for (run_id, name, status, start, end, beat, host, pid, error, key, fingerprint, note, result,
             experiment, deleted) in self.select_in(conn, RUNS_IN, ids):
            records[run_id] = RunRecord(
                id=run_id, experiment=experiment, status=_STATUSES[status], start_time=start, end_time=end,
                heartbeat_time=beat, host=host, pid=pid, name=name, error=json.loads(error) if error else None,
                run_key=key, env_fingerprint=fingerprint, note=note, result=json.loads(result) if result else None,
                deleted_time=deleted,
            )
        # Rows come ordered by key, so each record's dicts are sorted without sorting them.
        for run_id, key, value in self.select_in(conn, PARAMS_IN, ids):
            records[run_id].params[key] = _decode_param(value)
        for run_id, key, value in self.select_in(conn, TAGS_IN, ids):
            records[run_id].tags[key] = value
        for run_id, key, count, last, step, stamp, low, high in self.select_in(conn, METRICS_IN, ids):
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
        is_hex = id_prefix(prefix) is not None
        found: list[str] = []
        with self._read() as conn:
            if is_hex:
                found = list(conn.execute(
                    select(db.runs.c.id).where(db.runs.c.id >= prefix, db.runs.c.id < prefix + "z")
                    .order_by(db.runs.c.id).limit(6)
                ).scalars())
            if not found and id_or_prefix.strip():  # a run's name (``brave-otter-7``) stands for its id too
                named = list(conn.execute(
                    select(db.runs.c.id).where(db.runs.c.name == id_or_prefix.strip()).order_by(db.runs.c.id).limit(6)
                ).scalars())
                if len(named) > 1:
                    shown = ", ".join(r[:8] for r in named[:5]) + (", ..." if len(named) > 5 else "")
                    raise AmbiguousRunId(f"several runs are named {id_or_prefix.strip()!r} ({shown}); give an id")
                if named:
                    return str(named[0])
        if not found:
            raise unresolved(id_or_prefix, self.display_url)
        if len(found) > 1 and prefix not in found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise AmbiguousRunId(f"run id prefix {prefix!r} matches several runs ({shown}); give more characters")
        return prefix if prefix in found else found[0]

    def search_ids(self, search: Search) -> list[str]:
        queries = search_queries(search, self.dialect)
        many = search.max_results is None or search.max_results > 2_000  # ids by the thousand: no GC pass
        with gc_paused(many), self._read() as conn:
            if self.dialect == "postgresql":
                # The driver prepares a statement run a few times, and PostgreSQL may then plan it once for
                # any values: a filter's generic plan joins every match before sorting (~200 ms at 100k runs)
                # where the plan for the values walks the sort's index and stops at max_results (~8 ms).
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            found: list[str] = []
            for query in queries:
                if found:
                    assert search.max_results is not None  # several queries: a first page, in parts
                    if len(found) >= search.max_results:
                        break
                    query = query.limit(search.max_results - len(found))
                result = conn.execute(query)
                # Straight from the driver's cursor: SQLAlchemy's row processing costs more than the query
                # itself when a search returns 100k ids.
                cursor = getattr(result, "cursor", None)
                found += [row[0] for row in cursor.fetchall()] if cursor is not None else list(result.scalars().all())
            return found

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
                filled += refresh_frames(self, conn, missing)

    # -- writing runs --------------------------------------------------------------------------

    def write(self, writes: Sequence[RunWrite], *, retry: bool = False) -> None:
        if not writes:
            return
        with self._write() as conn:
            experiments = apply_writes(self, conn, writes, retry)
        for experiment in experiments:
            self.remember_experiment(experiment)

    def ingest_mark(self, run_id: str, source: str) -> IngestMark | None:
        with self._read() as conn:
            row = conn.execute(
                select(db.ingest_marks.c.journal, db.ingest_marks.c.points)
                .where(db.ingest_marks.c.run_id == run_id, db.ingest_marks.c.source == source)
            ).first()
        return IngestMark(source, row.journal, row.points) if row is not None else None

    def heartbeat(self, run_id: str, now: float) -> None:
        with self._write() as conn:
            self.fast(conn, Q.heartbeat, [{"b_id": run_id, "b_now": now}])

    def mark_crashed(self, run_id: str, observed_heartbeat: float | None, end_time: float | None = None) -> bool:
        ended = literal(observed_heartbeat if end_time is None else end_time, Float)
        with self._write() as conn:
            done = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == run_id, db.runs.c.status == "RUNNING", db.runs.c.heartbeat_time == observed_heartbeat)
                # Never before its start: the heartbeat is the store's clock, the start the writer's.
                .values(status="CRASHED", end_time=case((db.runs.c.start_time > ended, db.runs.c.start_time),
                                                        else_=ended))
            )
            if not done.rowcount:
                return False
            refresh_frames(self, conn, [run_id])
            return True

    def delete_tag(self, run_id: str, key: str) -> None:
        with self._write() as conn:
            done = conn.execute(db.tags.delete().where(db.tags.c.run_id == run_id, db.tags.c.key == key))
            if done.rowcount:
                refresh_frames(self, conn, [run_id])

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        c = db.metric_chunks.c
        with self._read() as conn:
            expected = conn.execute(
                select(db.metrics.c.count).where(db.metrics.c.run_id == run_id, db.metrics.c.key == key)
            ).scalar()
            if expected is None:
                self.require_run(conn, run_id)
            # Streamed a few chunks at a time into arrays allocated once: 10M points take 240 MB, not twice.
            filler = SeriesFiller(expected or 0)
            rows = conn.execute(
                select(c.seq, c.count.label("points"), c.step_data, c.time_data, c.value_data, c.crc)
                .where(c.run_id == run_id, c.key == key).order_by(c.seq).execution_options(yield_per=16)
            )
            for r in rows:
                problem = chunk_damage(r.points, r.step_data, r.time_data, r.value_data, r.crc)
                if problem is not None:
                    raise damaged(run_id, key, r.seq, problem)
                filler.add(r.step_data, r.time_data, r.value_data)
        return MetricHistory(key, *by_step(*filler.finish()))

    def check_data(self) -> StoreCheck:
        from labtrack.store.check import check_data  # `labtrack db check` only

        with self._read() as conn:
            report = check_data(conn, self.dialect)
        if report.database:
            report.advice.append(f"The database file itself is damaged. {self.recovery_hint()}")
        if report.damaged:
            report.advice.append("Damaged chunks' points are refused when read; the runs' other metrics are not "
                                 "affected. Restore the store from a backup to get these points back.")
        return report

    # -- deleting, restoring, collecting --------------------------------------------------------

    def delete_runs(self, run_ids: Sequence[str]) -> list[str]:
        deleted: list[str] = []
        for start in range(0, len(run_ids), _IN_BATCH):
            with self._write() as conn:
                deleted += lifecycle.delete_runs(conn, run_ids[start : start + _IN_BATCH], self.now())
        return deleted

    def restore_runs(self, run_ids: Sequence[str]) -> list[str]:
        restored: list[str] = []
        for start in range(0, len(run_ids), _IN_BATCH):
            with self._write() as conn:
                restored += lifecycle.restore_runs(conn, run_ids[start : start + _IN_BATCH])
        return restored

    def delete_experiment(self, name: str) -> int:
        with self._write() as conn:
            return lifecycle.delete_experiment(conn, self._experiment_id(conn, name), self.now())

    def restore_experiment(self, name: str) -> int | None:
        with self._write() as conn:
            return lifecycle.restore_experiment(conn, self._experiment_id(conn, name))

    def _experiment_id(self, conn: Connection, name: str) -> int:
        found = conn.execute(select(db.experiments.c.id).where(db.experiments.c.name == name)).scalar()
        if found is None:
            raise ExperimentNotFound(f"no experiment named {name!r} in store {self.display_url}")
        self._experiments.pop(name, None)  # its cached state may change with this transaction
        return int(found)

    def collect_garbage(self, deleted_before: float, *, stale_before: float, dry_run: bool = False,
                        compact: bool = False) -> Collected:
        report = Collected(dry_run=dry_run)
        with self._read() as conn:
            lifecycle.count_removable(conn, deleted_before, stale_before, report)
        if not dry_run:
            report.runs = 0  # counted again as they go: more may be deleted meanwhile
            while True:  # a batch per transaction: writers of other runs wait for one batch at most
                with self._write() as conn:
                    batch = lifecycle.next_removable(conn, deleted_before, stale_before)
                    if not batch:
                        report.experiments = lifecycle.remove_experiments(conn, deleted_before)
                        break
                    report.runs += lifecycle.remove_runs(conn, batch)
        with self._read() as conn:
            referenced = lifecycle.referenced_blobs(conn, deleted_before, stale_before)
        lifecycle.collect_blobs(self.blobs, referenced, time.time(), report, dry_run=dry_run)
        if compact and not dry_run:
            report.compacted_bytes = self.compact()
        return report

    # -- tokens --------------------------------------------------------------------------------

    def create_token(self, name: str, role: Role, *, experiments: Sequence[str] | None = None,
                     expires_time: float | None = None) -> tuple[str, TokenInfo]:
        with self._write() as conn:
            return tokens.create_token(conn, name, role, experiments, expires_time, self.now())

    def list_tokens(self) -> list[TokenInfo]:
        with self._read() as conn:
            return tokens.list_tokens(conn)

    def revoke_token(self, id_or_name: str) -> list[TokenInfo]:
        with self._write() as conn:
            return tokens.revoke_token(conn, id_or_name, self.now())

    def authenticate(self, token: str) -> TokenInfo | None:
        with self._read() as conn:
            return tokens.authenticate(conn, token, self.now())

    # -- artifacts -----------------------------------------------------------------------------

    def artifact_listed(self, sha256: str, experiments: Sequence[str]) -> bool:
        a, r, e = db.artifacts.c, db.runs.c, db.experiments.c
        with self._read() as conn:
            return conn.execute(
                select(a.run_id).join(db.runs, r.id == a.run_id).join(db.experiments, e.id == r.experiment_id)
                .where(a.sha256 == sha256, e.name.in_(list(experiments))).limit(1)
            ).first() is not None

    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]:
        with self._read() as conn:
            rows = conn.execute(
                select(db.artifacts.c.path, db.artifacts.c.sha256, db.artifacts.c.size)
                .where(db.artifacts.c.run_id == run_id)
                .order_by(db.artifacts.c.path)
            ).all()
        return [ArtifactInfo(path=r.path, sha256=r.sha256, size=r.size) for r in rows]

    # -- identity and claims -------------------------------------------------------------------

    def find_finished_run(self, run_key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                select(db.runs.c.id)
                .where(db.runs.c.run_key == run_key, *_DONE)
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
                            db.runs.c.run_key.in_(keys[start : start + _IN_BATCH]), *_DONE
                        )
                    ).scalars()
                )
        return found

    def claim(self, run_key: str, owner: str, lease: float, now: float) -> ClaimState:
        with self._write() as conn:
            finished = conn.execute(
                select(db.runs.c.id).where(db.runs.c.run_key == run_key, *_DONE).limit(1)
            ).first()
            if finished is not None:
                return ClaimState.DONE
            stmt = self.insert_ignore(db.claims).values(
                run_key=run_key, owner=owner, state="running", lease_until=now + lease, created_time=now
            )
            inserted = stmt.on_conflict_do_nothing(index_elements=["run_key"]).returning(db.claims.c.run_key)
            if conn.execute(inserted).first() is not None:  # rowcount is unreliable for ON CONFLICT
                return ClaimState.CLAIMED
            row = conn.execute(
                select(db.claims.c.owner, db.claims.c.state, db.claims.c.lease_until)
                .where(db.claims.c.run_key == run_key)
                .with_for_update()
            ).one()
            if row.state == "done":
                return ClaimState.DONE
            if row.state == "running" and row.owner == owner:  # asked again (a retried request): still ours
                conn.execute(db.claims.update().where(db.claims.c.run_key == run_key)
                             .values(lease_until=now + lease))
                return ClaimState.CLAIMED
            if row.state == "failed" and _sweep_of(row.owner) == _sweep_of(owner):
                return ClaimState.FAILED  # it failed in this very sweep: retried by the next sweep, not this one
            if row.state == "running":
                here = _owner_alive_here(row.owner)  # None: another machine's worker
                # A worker of this machine is judged by its process: dead, its claim is free at once; alive,
                # it holds its claim on SQLite whatever the clock (one host, one clock: a step made the
                # lease look expired). Otherwise the lease decides, by the store's clock.
                if here and self.dialect == "sqlite":
                    return ClaimState.BUSY
                if here is not False and row.lease_until >= now:
                    return ClaimState.BUSY
            taken = conn.execute(
                db.claims.update()
                .where(db.claims.c.run_key == run_key, db.claims.c.owner == row.owner,
                       db.claims.c.lease_until == row.lease_until)
                .values(owner=owner, state="running", lease_until=now + lease, run_id=None)
            )
            return ClaimState.CLAIMED if taken.rowcount == 1 else ClaimState.BUSY

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
            stmt = self.insert_ignore(db.environments).values(
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


def _owner_alive_here(owner: str) -> bool | None:
    """Whether the sweep worker that owns a claim ("<sweep>/<host>/<pid>") still runs, when it ran on this
    machine; None for another machine's."""
    _, host, pid = [*owner.split("/"), "", ""][:3]
    if host != platform.node() or not pid.isdigit():
        return None
    import psutil

    try:
        return bool(psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE)  # a zombie is dead, unreaped
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # AccessDenied: it exists
        return True
