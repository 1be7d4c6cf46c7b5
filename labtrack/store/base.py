"""The one interface every store implements, and its contract.

Contract (checked by ``tests/test_store_contract.py`` against every backend):

- Thread safety: a Store may be called from several threads at once (the training thread and the
  background flusher). Several processes may share one store; each write is one short transaction.
- Ids: run ids are 32 lowercase hex characters chosen by the caller (uuid4); ``resolve_run_id``
  accepts a unique prefix.
- Params are immutable: ``log_params`` with a key already logged and a different value (under
  ``labtrack.core.identity.same_value``) raises ``ParamConflict`` and writes none of the batch.
- Tags are mutable: ``set_tags`` overwrites.
- Metrics: ``log_metrics`` appends chunks of points per key and keeps the per-key summary; points are
  returned by ``get_metric_history`` ordered by step, then by logging order. NaN and ±inf round-trip.
- Status: ``end_run`` moves a run to a terminal status; ``heartbeat`` renews a RUNNING run (and revives
  one a reader had marked CRASHED, since its process is evidently alive); ``mark_crashed`` only
  succeeds if the run is still RUNNING with the heartbeat the caller observed.
- Errors: unknown runs raise ``RunNotFound``; backend failures raise ``StoreError`` (never a
  driver exception); an outdated schema raises ``SchemaOutdated`` naming ``labtrack db upgrade``.
- Environments are stored once per fingerprint (``put_environment`` is idempotent).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from labtrack.core.filters import Node
from labtrack.core.frame import RunTable
from labtrack.core.model import ArtifactInfo, Experiment, MetricHistory, NewRun, RunRecord, RunStatus, Search
from labtrack.core.query import OrderTerm
from labtrack.core.series import Chunk

__all__ = ["NewRun", "Search", "Store"]


class Store(abc.ABC):
    """Persistence for experiments, runs, metrics, artifacts and environment snapshots."""

    url: str

    # experiments
    @abc.abstractmethod
    def get_or_create_experiment(self, name: str) -> Experiment: ...

    @abc.abstractmethod
    def list_experiments(self) -> list[tuple[Experiment, int]]:
        """Every experiment with its number of runs, oldest first."""

    # runs
    @abc.abstractmethod
    def create_run(self, run: NewRun) -> None: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord: ...

    @abc.abstractmethod
    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Records for the given ids, in that order; unknown ids are left out."""

    @abc.abstractmethod
    def resolve_run_id(self, id_or_prefix: str) -> str: ...

    def search_runs(
        self,
        experiments: Sequence[str] | None = None,
        order_by: Sequence[OrderTerm] = (),
        max_results: int | None = None,
        offset: int = 0,
        run_key: str | None = None,
        filter: Node | None = None,
        stale_before: float = 0.0,
    ) -> list[RunRecord]:
        """Runs of the given experiments (all when None) matching ``run_key`` and the ``filter`` AST,
        newest first unless ordered otherwise. A RUNNING run whose heartbeat is older than
        ``stale_before`` counts as CRASHED for ``attributes.status``. Filtering happens in the store:
        one query, never in Python."""
        return self.get_runs(self.search_ids(experiments, order_by, max_results, offset, run_key, filter, stale_before))

    @abc.abstractmethod
    def search_ids(
        self,
        experiments: Sequence[str] | None = None,
        order_by: Sequence[OrderTerm] = (),
        max_results: int | None = None,
        offset: int = 0,
        run_key: str | None = None,
        filter: Node | None = None,
        stale_before: float = 0.0,
    ) -> list[str]:
        """The ids ``search_runs`` would return, in order (one query)."""

    @abc.abstractmethod
    def run_table(self, run_ids: Sequence[str], search: Search | None = None) -> RunTable:
        """The ended runs among ``run_ids`` as columns, read from their frames (``labtrack.core.frame``).

        Runs still RUNNING, or without a frame, are left out: the caller loads those as records. With
        ``search`` (the search that found ``run_ids``) the store selects the runs by it rather than by a
        list of ids; the table may then hold runs beyond ``run_ids`` (created since), which the caller
        ignores."""

    @abc.abstractmethod
    def end_run(
        self,
        run_id: str,
        status: RunStatus,
        end_time: float,
        error: Mapping[str, str] | None = None,
        metrics: Mapping[str, Chunk] | None = None,
        new_keys: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Write the last metric points (if any) and the terminal status in one transaction.

        ``new_keys`` (as in ``log_metrics``) names metrics the caller knows have no points yet."""

    @abc.abstractmethod
    def heartbeat(self, run_id: str, now: float) -> None: ...

    @abc.abstractmethod
    def mark_crashed(self, run_id: str, observed_heartbeat: float | None) -> bool: ...

    @abc.abstractmethod
    def set_note(self, run_id: str, note: str) -> None: ...

    # params, tags, metrics
    @abc.abstractmethod
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def log_metrics(
        self, run_id: str, chunks: Mapping[str, Chunk], new_keys: frozenset[str] | set[str] = frozenset()
    ) -> None:
        """Append points. ``new_keys``: metrics the caller guarantees have no points in this run yet (it
        created the run and has not written them), which saves reading their summaries first."""

    @abc.abstractmethod
    def get_metric_history(self, run_id: str, key: str) -> MetricHistory: ...

    # artifacts
    @abc.abstractmethod
    def put_artifact_file(self, path: str) -> tuple[str, int]:
        """Store a local file's content (once per sha256); return (sha256, size)."""

    @abc.abstractmethod
    def put_artifact_bytes(self, data: bytes) -> tuple[str, int]: ...

    @abc.abstractmethod
    def add_artifacts(self, run_id: str, items: Sequence[ArtifactInfo]) -> None: ...

    @abc.abstractmethod
    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]: ...

    @abc.abstractmethod
    def open_artifact(self, sha256: str) -> BinaryIO: ...

    # identity and claims (see labtrack.verbs.sweeps)
    @abc.abstractmethod
    def find_finished_run(self, run_key: str) -> str | None:
        """Id of the latest FINISHED run with this key, or None (one indexed lookup)."""

    @abc.abstractmethod
    def finished_keys(self, run_keys: Sequence[str]) -> set[str]:
        """Which of these keys have a FINISHED run."""

    @abc.abstractmethod
    def claim(self, run_key: str, owner: str, lease: float, now: float) -> str:
        """Atomically claim a configuration for ``lease`` seconds. Returns "claimed"; "done" (a FINISHED
        run has this key); "busy" (another worker holds a live lease); or "failed" (it failed earlier in
        the same sweep — owners are "<sweep id>/<host>/<pid>"). An expired lease is taken over."""

    @abc.abstractmethod
    def renew_claims(self, owner: str, lease: float, now: float) -> None: ...

    @abc.abstractmethod
    def release_claim(self, run_key: str, owner: str, *, done: bool, run_id: str | None = None) -> None:
        """Mark the claim done (kept: no one claims the key again) or failed (free for the next sweep)."""

    @abc.abstractmethod
    def set_result(self, run_id: str, result: Any) -> None: ...

    # environments
    @abc.abstractmethod
    def put_environment(self, fingerprint: str, snapshot: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def get_environment(self, fingerprint: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def get_context(self, run_id: str) -> dict[str, Any] | None:
        """The per-run part of the environment (process, git, seeds)."""

    @abc.abstractmethod
    def update_context(self, run_id: str, context: Mapping[str, Any], env_fingerprint: str | None = None) -> None:
        """Replace the run's per-run environment; also repoint its shared snapshot when a fingerprint is given."""

    def maintain(self) -> None:  # noqa: B027 - optional
        """Periodic housekeeping, called by the background writer thread (cheap when nothing is due)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections; the store may not be used afterwards."""
