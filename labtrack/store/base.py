"""The one interface every store implements, and its contract.

A new backend subclasses ``Store``, implements the abstract methods, and proves the contract by
subclassing ``labtrack.testing.store_contract.StoreContract`` (see docs/architecture.md).

Contract:

- Thread safety: a Store may be called from several threads at once (the training thread and the
  background writer). Several processes may share one store; each ``write`` is one short transaction.
- Ids: run ids are 32 lowercase hex characters chosen by the client (uuid4), so creating a run twice is
  detectable and harmless; ``resolve_run_id`` accepts a unique prefix.
- Writes: ``write`` applies every ``RunWrite`` of the call in one transaction (all or nothing), each in
  the order of its fields: create, params, tags, note, context, environment, artifacts, result, metric
  points, end. With ``retry=False`` the store may trust the writer's hints (a run to create does not
  exist yet; ``new_keys`` have no points yet) and refuse with ``StoreConflict`` when one is wrong; with
  ``retry=True`` it trusts nothing: a run that exists is not created again, and points covered by the
  stored ingest mark (``IngestMark``) are skipped. So a write retried after an error whose outcome is
  unknown (the commit may have happened) stores everything exactly once.
- Params are immutable: a key already logged with a different value (under
  ``labtrack.core.identity.same_value``) raises ``ParamConflict`` and the write stores nothing.
- Tags are mutable: later values overwrite. Context sections replace the run's sections of the same name
  (a merge, atomic: two writers merging different sections both keep theirs).
- Metrics: points are appended in chunks per key with a per-key summary; ``get_metric_history`` returns
  them ordered by step, then by logging order. NaN and ±inf round-trip exactly.
- Status: ``RunWrite.end`` moves a run to a terminal status; ``heartbeat`` renews a RUNNING run (and
  revives one a reader had marked CRASHED, since its process is evidently alive); ``mark_crashed`` only
  succeeds if the run is still RUNNING with the heartbeat the caller observed.
- Clock: heartbeats, a new run's first heartbeat and sweep leases are times of the store's clock
  (``now()``: a server's, not the caller's), and readers judge them by it, so a machine whose clock is off
  neither looks dead nor takes over what another holds.
- Errors: unknown runs raise ``RunNotFound``; backend failures raise ``StoreError`` (never a driver
  exception); an outdated schema raises ``SchemaOutdated`` naming ``labtrack db upgrade``.
- Deleting is soft: a deleted run keeps everything and can be read by id, but searches (unless asked for
  deleted runs), ``list_experiments`` and ``find_finished_run``/``finished_keys``/``claim`` skip it, so a
  deleted configuration runs again. ``collect_garbage`` removes deleted runs for good.
- Environments are stored once per fingerprint (``put_environment`` is idempotent).
- Artifacts: content goes to the store's ``blobs`` (content-addressed, see ``BlobStore``); ``write``
  records which path of a run holds which content.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from labtrack.core.errors import RunNotFound, StoreError
from labtrack.core.frame import RunTable
from labtrack.core.model import (
    ArtifactInfo,
    ClaimState,
    Collected,
    Experiment,
    IngestMark,
    Lifecycle,
    MetricHistory,
    NewRun,
    RunEnd,
    RunRecord,
    RunStatus,
    RunWrite,
    Search,
    StoreCheck,
)
from labtrack.core.series import Chunk
from labtrack.core.tokens import Role, TokenInfo
from labtrack.store.blobs import BlobStore

__all__ = ["BlobStore", "NewRun", "RunWrite", "Search", "Store", "unresolved"]


def unresolved(id_or_prefix: str, display_url: str) -> RunNotFound:
    """The error for a run name that names no run (every store says it in the same words)."""
    return RunNotFound(f"no run with the id (or id prefix) or name {id_or_prefix!r} in store {display_url}: "
                       "run ids are 32 hex characters, a unique prefix is enough")


class Store(abc.ABC):
    """Persistence for experiments, runs, metrics, artifacts and environment snapshots."""

    url: str
    blobs: BlobStore

    @property
    def display_url(self) -> str:
        """The URL with any secret hidden: safe to print and log."""
        return self.url

    # -- experiments ------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_or_create_experiment(self, name: str) -> Experiment: ...

    @abc.abstractmethod
    def list_experiments(self, lifecycle: Lifecycle = Lifecycle.ACTIVE) -> list[tuple[Experiment, int]]:
        """Every live (or deleted, or any) experiment with its number of runs, oldest first: a live one's live
        runs, a deleted one's runs deleted with it."""

    # -- reading runs -----------------------------------------------------------------------------

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord: ...

    @abc.abstractmethod
    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Records for the given ids, in that order; unknown ids are left out."""

    @abc.abstractmethod
    def resolve_run_id(self, id_or_prefix: str) -> str: ...

    @abc.abstractmethod
    def search_ids(self, search: Search) -> list[str]:
        """Ids of the runs of ``search.experiments`` (all when None) matching its run key and filter, newest
        first unless ordered otherwise (runs missing an order key last). Filtering happens in the store, in
        one query, never in Python."""

    def search_runs(self, search: Search) -> list[RunRecord]:
        return self.get_runs(self.search_ids(search))

    @abc.abstractmethod
    def run_table(self, run_ids: Sequence[str], search: Search | None = None) -> RunTable:
        """The ended runs among ``run_ids`` as columns, read from their frames (``labtrack.core.frame``).

        Runs still RUNNING, or without a frame, are left out: the caller loads those as records. With
        ``search`` (the search that found ``run_ids``) the store selects the runs by it rather than by a
        list of ids; the table may then hold runs beyond ``run_ids`` (created since), which the caller
        ignores."""

    @abc.abstractmethod
    def get_metric_history(self, run_id: str, key: str) -> MetricHistory: ...

    @abc.abstractmethod
    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]: ...

    def now(self) -> float:
        """The store's clock, in seconds since the epoch (the default: this host's, for stores on one host)."""
        return time.time()

    def ping(self) -> None:
        """Raise StoreError unless the store answers (a tracking server's readiness)."""
        self.now()

    def check_data(self) -> StoreCheck:
        """Read every stored metric chunk and check it against its checksum (``labtrack db check``)."""
        raise StoreError(f"store {self.display_url} cannot check its data")

    def artifact_listed(self, sha256: str, experiments: Sequence[str]) -> bool:
        """Whether a run of these experiments lists this content (what a limited token may read)."""
        raise StoreError(f"store {self.display_url} cannot say which runs list a content")

    def open_artifact(self, sha256: str) -> BinaryIO:
        return self.blobs.open(sha256)

    @abc.abstractmethod
    def get_context(self, run_id: str) -> dict[str, Any] | None:
        """The per-run part of the environment (process, git, seeds, conflicts)."""

    @abc.abstractmethod
    def get_environment(self, fingerprint: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def ingest_mark(self, run_id: str, source: str) -> IngestMark | None:
        """How far into ``source``'s spool this run's points are stored (None: nothing from it yet)."""

    # -- writing runs -----------------------------------------------------------------------------

    @abc.abstractmethod
    def write(self, writes: Sequence[RunWrite], *, retry: bool = False) -> None:
        """Apply every write in one transaction (see the contract above)."""

    @abc.abstractmethod
    def heartbeat(self, run_id: str, now: float) -> None: ...

    @abc.abstractmethod
    def mark_crashed(self, run_id: str, observed_heartbeat: float | None, end_time: float | None = None) -> bool:
        """CRASHED (ending at ``end_time``, default the heartbeat), only if the run is still RUNNING with the
        heartbeat the caller observed; returns whether it was."""

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def put_environment(self, fingerprint: str, snapshot: Mapping[str, Any]) -> None: ...

    # One write each, for callers outside a run's writer (and tests): all go through ``write``.

    def create_run(self, run: NewRun) -> None:
        self.write([RunWrite(run.id, create=run)])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        if params:
            self.write([RunWrite(run_id, params=dict(params))])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        if tags:
            self.write([RunWrite(run_id, tags=dict(tags))])

    def set_note(self, run_id: str, note: str) -> None:
        self.write([RunWrite(run_id, note=note)])

    def set_result(self, run_id: str, result: Any) -> None:
        self.write([RunWrite(run_id, has_result=True, result=result)])

    def merge_context(self, run_id: str, sections: Mapping[str, Any], env_fingerprint: str | None = None) -> None:
        """Replace these sections of the run's context (atomically), and repoint its shared environment
        snapshot when a fingerprint is given."""
        self.write([RunWrite(run_id, context=dict(sections), env_fingerprint=env_fingerprint)])

    def add_artifacts(self, run_id: str, items: Sequence[ArtifactInfo]) -> None:
        if items:
            self.write([RunWrite(run_id, artifacts=list(items))])

    def log_metrics(self, run_id: str, chunks: Mapping[str, Chunk], new_keys: frozenset[str] = frozenset()) -> None:
        """Append points. ``new_keys``: metrics the caller guarantees have no points in this run yet."""
        chunks = {k: c for k, c in chunks.items() if len(c)}
        if chunks:
            self.write([RunWrite(run_id, metrics=chunks, new_keys=frozenset(new_keys))])

    def end_run(self, run_id: str, status: RunStatus, end_time: float, error: Mapping[str, str] | None = None,
                metrics: Mapping[str, Chunk] | None = None, new_keys: frozenset[str] = frozenset()) -> None:
        """Write the last metric points (if any) and the terminal status in one transaction."""
        chunks = {k: c for k, c in (metrics or {}).items() if len(c)}
        self.write([RunWrite(run_id, metrics=chunks, new_keys=frozenset(new_keys),
                             end=RunEnd(status, end_time, dict(error) if error else None))])

    # -- artifacts' content -----------------------------------------------------------------------

    def put_artifact_file(self, path: str) -> tuple[str, int]:
        """Store a local file's content (once per sha256); return (sha256, size)."""
        return self.blobs.put_file(path)

    def put_artifact_bytes(self, data: bytes) -> tuple[str, int]:
        return self.blobs.put_bytes(data)

    # -- identity and claims (see labtrack.verbs.sweeps) ------------------------------------------

    @abc.abstractmethod
    def find_finished_run(self, run_key: str) -> str | None:
        """Id of the latest FINISHED run with this key, or None (one indexed lookup)."""

    @abc.abstractmethod
    def finished_keys(self, run_keys: Sequence[str]) -> set[str]:
        """Which of these keys have a FINISHED run."""

    @abc.abstractmethod
    def claim(self, run_key: str, owner: str, lease: float, now: float) -> ClaimState:
        """Atomically claim a configuration for ``lease`` seconds (see ``ClaimState``). Owners are
        "<sweep id>/<host>/<pid>": FAILED means it failed earlier in the same sweep. An expired lease is
        taken over."""

    @abc.abstractmethod
    def renew_claims(self, owner: str, lease: float, now: float) -> None: ...

    @abc.abstractmethod
    def release_claim(self, run_key: str, owner: str, *, done: bool, run_id: str | None = None) -> None:
        """Mark the claim done (kept: no one claims the key again) or failed (free for the next sweep)."""

    # -- deleting, restoring, collecting (see labtrack.store.lifecycle) ---------------------------

    def delete_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Mark runs deleted (hidden from searches and "already run?" lookups, restorable); returns those
        that were live. Unknown ids are left out."""
        raise StoreError(f"store {self.display_url} cannot delete runs")

    def restore_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Bring deleted runs back (with their experiments, if deleted); returns those that were deleted."""
        raise StoreError(f"store {self.display_url} cannot restore runs")

    def delete_experiment(self, name: str) -> int:
        """Mark an experiment and its live runs deleted; returns how many runs (0 if it was deleted already).
        Raises ``ExperimentNotFound``."""
        raise StoreError(f"store {self.display_url} cannot delete experiments")

    def restore_experiment(self, name: str) -> int | None:
        """Bring back a deleted experiment and the runs deleted with it; returns how many runs (None: it was
        not deleted). Raises ``ExperimentNotFound``."""
        raise StoreError(f"store {self.display_url} cannot restore experiments")

    def collect_garbage(self, deleted_before: float, *, stale_before: float, dry_run: bool = False,
                        compact: bool = False) -> Collected:
        """Remove for good the runs deleted before ``deleted_before`` (not those still RUNNING with a
        heartbeat at or after ``stale_before``), deleted experiments left without runs, and the artifact
        blobs no remaining run lists; with ``compact``, give the freed space back to the file system."""
        raise StoreError(f"store {self.display_url} cannot collect garbage")

    # -- the tracking server's tokens (labtrack.core.tokens) ---------------------------------------

    def create_token(self, name: str, role: Role, *, experiments: Sequence[str] | None = None,
                     expires_time: float | None = None) -> tuple[str, TokenInfo]:
        """A new token (returned once, stored as its hash) and its record."""
        raise StoreError(f"store {self.display_url} keeps no tokens: manage them on the server's own store")

    def list_tokens(self) -> list[TokenInfo]:
        raise StoreError(f"store {self.display_url} keeps no tokens: manage them on the server's own store")

    def revoke_token(self, id_or_name: str) -> list[TokenInfo]:
        """Revoke the token with this id, or every live token with this name."""
        raise StoreError(f"store {self.display_url} keeps no tokens: manage them on the server's own store")

    def authenticate(self, token: str) -> TokenInfo | None:
        """The record of a usable token (known, not expired, not revoked), else None."""
        raise StoreError(f"store {self.display_url} keeps no tokens: manage them on the server's own store")

    # -- housekeeping -----------------------------------------------------------------------------

    def maintain(self) -> None:  # noqa: B027 - optional
        """Periodic housekeeping, called by the background writer thread (cheap when nothing is due)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections; the store may not be used afterwards."""
