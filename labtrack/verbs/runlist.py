"""``RunList``: the runs a search found, loaded together, and as a DataFrame.

A search returns ids at once. The runs' records load in one batch when the first is read, and
``to_pandas`` reads ended runs from their frames (``labtrack.core.frame``) a group at a time instead of
run by run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from labtrack.core.errors import LabtrackError, RunNotFound
from labtrack.core.frame import RunTable
from labtrack.core.model import RunRecord, Search
from labtrack.run.handle import Run
from labtrack.settings import Settings
from labtrack.store.base import Store

__all__ = ["Batch", "RunList", "Searcher"]


class Searcher(Protocol):
    """What made the search (a ``labtrack.Client``): its store, how it flushes what this process logged, how it judges liveness."""

    store: Store
    settings: Settings

    def flush(self) -> None: ...

    def resolve_liveness(self, records: Sequence[RunRecord]) -> None: ...


class Batch:
    """Runs found by one search: their records are loaded together when the first is needed."""

    def __init__(self, client: Searcher, ids: Sequence[str]) -> None:
        self.client, self.ids = client, ids
        self.records: dict[str, RunRecord] | None = None

    def record(self, run_id: str) -> RunRecord | None:
        if self.records is None:
            records = self.client.store.get_runs(list(self.ids))
            self.client.resolve_liveness(records)
            self.records = {r.id: r for r in records}
        return self.records.get(run_id)


class RunList(list):  # type: ignore[type-arg]
    """A list of runs, as ``search_runs`` returns it.

    A search returns ids at once; the runs' records are loaded in one batch when the first one is read.
    """

    _result: _SearchResult | None = None

    @classmethod
    def from_search(cls, client: Searcher, ids: Sequence[str], search: Search) -> RunList:
        if len(ids) > 2_000:  # many objects, no cycles: see store.engine.gc_paused
            import gc

            gc.disable()
            try:
                return cls._from_search(client, ids, search)
            finally:
                gc.enable()
        return cls._from_search(client, ids, search)

    @classmethod
    def _from_search(cls, client: Searcher, ids: Sequence[str], search: Search) -> RunList:
        batch = Batch(client, ids)
        store, settings = client.store, client.settings
        runs = [Run(store, run_id, source=batch, settings=settings) for run_id in ids]
        out = cls(runs)
        out._result = _SearchResult(client, search, runs, list(ids))
        return out

    def _repr_html_(self) -> str:
        """The runs as an HTML table in Jupyter, like ``labtrack runs``: the first ``MAX_ROWS`` of them, then how
        many more (``labtrack.core.html``: every value escaped)."""
        from labtrack.core.html import MAX_ROWS, runs_html

        return runs_html([run.record for run in self[:MAX_ROWS]], total=len(self))

    def to_pandas(self) -> Any:
        """One row per run: id, experiment, name, status, start/end times, then params.*, metrics.* (last
        values) and tags.* columns.

        Ended runs are read from their frames (``labtrack.core.frame``), a few queries whatever their
        number; running ones from their rows.
        """
        try:
            import numpy as np
            import pandas as pd
        except ImportError as exc:
            raise LabtrackError("to_pandas needs pandas: pip install 'labtrack[pandas]'") from exc
        found = self._result if self._result is not None and self._result.holds(self) else None
        ids = found.ids if found is not None else [run.id for run in self]
        table = self._table(ids, found)

        def times(values: Any) -> Any:
            return pd.to_datetime(np.frombuffer(values, dtype=np.float64), unit="s")

        columns: dict[str, Any] = {
            "id": table.ids, "experiment": table.experiment, "name": table.name, "status": table.status,
            "start_time": times(table.start_time), "end_time": times(table.end_time),
        }
        columns.update({f"params.{k}": v for k, v in table.params().items()})
        columns.update({f"metrics.{k}": np.frombuffer(v, dtype=np.float64) for k, v in table.metrics().items()})
        columns.update({f"tags.{k}": v for k, v in table.tags().items()})
        frame = pd.DataFrame(columns)
        # The store returns runs in its own order. Often it is the list's (or its reverse): check that in
        # one comparison before mapping every id.
        if table.ids == ids:
            return frame
        if table.ids[::-1] == ids:
            return frame.iloc[::-1].reset_index(drop=True)
        row_of = {run_id: i for i, run_id in enumerate(table.ids)}
        try:
            order = [row_of[run_id] for run_id in ids]
        except KeyError as exc:
            raise RunNotFound(f"run {exc.args[0]} is no longer in the store") from None
        return frame.take(order).reset_index(drop=True)

    def _table(self, ids: list[str], found: _SearchResult | None) -> RunTable:
        """The runs of ``ids`` as columns (maybe with more runs): ended ones from their frames, the rest
        from their records, with their liveness resolved."""
        if found is not None:
            found.client.flush()  # what this process still holds for the store is in it first
            return _table_of(found.client.store, ids, found.search, found.client.resolve_liveness)
        stores: dict[int, tuple[Store, list[str]]] = {}
        for run in self:
            run.flush()
            stores.setdefault(id(run.store), (run.store, []))[1].append(run.id)
        table = RunTable()
        for store, store_ids in stores.values():
            table.add_table(_table_of(store, list(dict.fromkeys(store_ids)), None, None))
        return table


@dataclass(frozen=True)
class _SearchResult:
    """What a search found: its runs and their ids, and the search, which selects them again in the store
    (cheaper than a list of 100k ids) for as long as the list still holds exactly those runs."""

    client: Searcher
    search: Search
    runs: list[Run]
    ids: list[str]

    def holds(self, runs: list[Run]) -> bool:
        return list.__eq__(runs, self.runs) is True  # Run has no __eq__: identity, compared in C


def _table_of(store: Store, ids: list[str], search: Search | None,
              resolve: Callable[[Sequence[RunRecord]], None] | None) -> RunTable:
    """Runs of one store (``ids`` without repeats) as columns: frames first, then the records of the rest."""
    table = store.run_table(ids, search)
    seen = set(table.ids)
    pending = [run_id for run_id in ids if run_id not in seen]
    if pending:
        records = store.get_runs(pending)
        if resolve is not None:
            resolve(records)
        table.add_records(records)
    return table
