"""A token limited to some experiments sees the store through ``ScopedStore``: the same ``Store``, with every
method held to those experiments.

- Searches and listings are limited in SQL: the search's experiments become those it asked for that the
  token may see (``Search.experiments``), so another team's runs are never loaded.
- A run of another experiment is ``RunNotFound`` — the same answer, word for word, as a run that does not
  exist: a token cannot learn that it exists.
- Creating a run or an experiment outside the token's experiments is ``PermissionDenied``.
- Artifact content is readable when a run the token sees lists it.
- What acts on the whole store (tokens, garbage collection, the data check) needs an unlimited token.

Every ``Store`` method is written out here (the abstract ones must be): a method added to ``Store`` later is
refused for limited tokens until it is written here too (see ``_refused``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from labtrack.core.errors import PermissionDenied, RunNotFound
from labtrack.core.frame import RunTable
from labtrack.core.model import (
    ArtifactInfo,
    ClaimState,
    Collected,
    Experiment,
    IngestMark,
    Lifecycle,
    MetricHistory,
    RunRecord,
    RunWrite,
    Search,
    StoreCheck,
)
from labtrack.core.names import id_prefix
from labtrack.core.tokens import Role, TokenInfo
from labtrack.store.base import Store, unresolved

__all__ = ["ScopedStore"]


class ScopedStore(Store):
    def __init__(self, inner: Store, experiments: Sequence[str]) -> None:
        self.inner = inner
        self.allowed = tuple(experiments)
        self.url = inner.url
        self.blobs = inner.blobs  # uploads are harmless (content-addressed); reads go through require_blob

    @property
    def display_url(self) -> str:
        return self.inner.display_url

    # -- the checks -------------------------------------------------------------------------------

    def _missing(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run with id {run_id!r} in store {self.display_url}")

    def _experiment(self, name: str) -> str:
        if name not in self.allowed:
            raise PermissionDenied(f"this token may use the experiments {', '.join(self.allowed)} only, not {name!r}")
        return name

    def _visible(self, run_id: str) -> RunRecord:
        try:
            record = self.inner.get_run(run_id)
        except RunNotFound:
            raise self._missing(run_id) from None
        if record.experiment not in self.allowed:
            raise self._missing(run_id)
        return record

    def _visible_ids(self, run_ids: Sequence[str]) -> list[str]:
        return [r.id for r in self.inner.get_runs(run_ids) if r.experiment in self.allowed]

    def _search(self, search: Search) -> Search:
        asked = self.allowed if search.experiments is None else [e for e in search.experiments if e in self.allowed]
        return dataclasses.replace(search, experiments=list(asked))

    def require_blob(self, sha256: str) -> None:
        """Artifact content is readable when a run this token sees lists it; else it does not exist."""
        if not self.inner.artifact_listed(sha256, self.allowed):
            from labtrack.core.errors import ArtifactNotFound

            raise ArtifactNotFound(f"no artifact content {sha256} in store {self.display_url}")

    @staticmethod
    def _refused(what: str) -> PermissionDenied:
        return PermissionDenied(f"{what} needs a token not limited to some experiments")

    # -- experiments ------------------------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> Experiment:
        return self.inner.get_or_create_experiment(self._experiment(name))

    def list_experiments(self, lifecycle: Lifecycle = Lifecycle.ACTIVE) -> list[tuple[Experiment, int]]:
        return [(e, n) for e, n in self.inner.list_experiments(lifecycle) if e.name in self.allowed]

    def delete_experiment(self, name: str) -> int:
        return self.inner.delete_experiment(self._experiment(name))

    def restore_experiment(self, name: str) -> int | None:
        return self.inner.restore_experiment(self._experiment(name))

    # -- reading runs -----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        return self._visible(run_id)

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        return [r for r in self.inner.get_runs(run_ids) if r.experiment in self.allowed]

    def resolve_run_id(self, id_or_prefix: str) -> str:
        """Among the runs this token sees only: neither an ambiguity nor a name shared with another team's run
        may tell that run exists."""
        from labtrack.core.filters import Compare, Field, Like, Or

        name = id_or_prefix.strip()
        prefix = name.lower()
        conditions: list[Any] = [Compare(Field("attributes", "name"), "=", name)]
        if id_prefix(prefix) is not None:
            conditions.insert(0, Like(Field("attributes", "id"), prefix + "%"))
        found = self.inner.search_ids(Search(experiments=list(self.allowed), filter=Or(tuple(conditions)),
                                             max_results=6, lifecycle=Lifecycle.ALL)) if name else []
        by_id = [i for i in found if i.startswith(prefix)]
        if prefix in by_id:
            return prefix
        chosen = by_id or found
        if len(chosen) == 1:
            return chosen[0]
        if not chosen:
            raise unresolved(id_or_prefix, self.display_url)
        from labtrack.core.errors import AmbiguousRunId

        raise AmbiguousRunId(f"{id_or_prefix!r} names several runs ({', '.join(sorted(chosen)[:5])}); give more "
                             "characters of an id")

    def search_ids(self, search: Search) -> list[str]:
        return self.inner.search_ids(self._search(search))

    def run_table(self, run_ids: Sequence[str], search: Search | None = None) -> RunTable:
        if search is not None:
            return self.inner.run_table([], self._search(search))
        return self.inner.run_table(self._visible_ids(run_ids))

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        self._visible(run_id)
        return self.inner.get_metric_history(run_id, key)

    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]:
        self._visible(run_id)
        return self.inner.list_artifacts(run_id)

    def get_context(self, run_id: str) -> dict[str, Any] | None:
        self._visible(run_id)
        return self.inner.get_context(run_id)

    def get_environment(self, fingerprint: str) -> dict[str, Any] | None:
        return self.inner.get_environment(fingerprint)

    def ingest_mark(self, run_id: str, source: str) -> IngestMark | None:
        self._visible(run_id)
        return self.inner.ingest_mark(run_id, source)

    def now(self) -> float:
        return self.inner.now()

    def ping(self) -> None:
        self.inner.ping()

    def check_data(self) -> StoreCheck:
        raise self._refused("checking the whole store")

    # -- writing runs -----------------------------------------------------------------------------

    def write(self, writes: Sequence[RunWrite], *, retry: bool = False) -> None:
        for write in writes:
            if write.create is not None:
                self._experiment(write.create.experiment)
                try:
                    existing = self.inner.get_run(write.run_id)
                except RunNotFound:
                    continue
                if existing.experiment not in self.allowed:
                    raise self._missing(write.run_id)
            else:
                self._visible(write.run_id)
        self.inner.write(writes, retry=retry)

    def heartbeat(self, run_id: str, now: float) -> None:
        self._visible(run_id)
        self.inner.heartbeat(run_id, now)

    def mark_crashed(self, run_id: str, observed_heartbeat: float | None, end_time: float | None = None) -> bool:
        self._visible(run_id)
        return self.inner.mark_crashed(run_id, observed_heartbeat, end_time)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._visible(run_id)
        self.inner.delete_tag(run_id, key)

    def put_environment(self, fingerprint: str, snapshot: Mapping[str, Any]) -> None:
        self.inner.put_environment(fingerprint, snapshot)

    def delete_runs(self, run_ids: Sequence[str]) -> list[str]:
        return self.inner.delete_runs(self._visible_ids(run_ids))

    def restore_runs(self, run_ids: Sequence[str]) -> list[str]:
        return self.inner.restore_runs(self._visible_ids(run_ids))

    def collect_garbage(self, deleted_before: float, *, stale_before: float, dry_run: bool = False,
                        compact: bool = False) -> Collected:
        raise self._refused("collecting garbage")

    # -- identity and claims (run keys hash the experiment: a key names one experiment's run) -------

    def find_finished_run(self, run_key: str) -> str | None:
        found = self.inner.find_finished_run(run_key)
        return found if found is not None and self._visible_ids([found]) else None

    def finished_keys(self, run_keys: Sequence[str]) -> set[str]:
        return self.inner.finished_keys(run_keys)

    def claim(self, run_key: str, owner: str, lease: float, now: float) -> ClaimState:
        return self.inner.claim(run_key, owner, lease, now)

    def renew_claims(self, owner: str, lease: float, now: float) -> None:
        self.inner.renew_claims(owner, lease, now)

    def release_claim(self, run_key: str, owner: str, *, done: bool, run_id: str | None = None) -> None:
        if run_id is not None:
            self._visible(run_id)
        self.inner.release_claim(run_key, owner, done=done, run_id=run_id)

    # -- tokens -----------------------------------------------------------------------------------

    def create_token(self, name: str, role: Role, *, experiments: Sequence[str] | None = None,
                     expires_time: float | None = None) -> tuple[str, TokenInfo]:
        raise self._refused("managing tokens")

    def list_tokens(self) -> list[TokenInfo]:
        raise self._refused("managing tokens")

    def revoke_token(self, id_or_name: str) -> list[TokenInfo]:
        raise self._refused("managing tokens")

    def authenticate(self, token: str) -> TokenInfo | None:
        raise self._refused("managing tokens")
