"""``RunList``: the runs a search found, loaded together, and as a DataFrame.

A search returns ids at once. The runs' records load in one batch when the first is read, and
``to_pandas`` reads ended runs from their frames (``labtrack.core.frame``) a group at a time instead of
run by run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labtrack.run import process as runtime
from labtrack.core.errors import LabtrackError, RunNotFound
from labtrack.core.frame import RunTable
from labtrack.run.handle import Run, resolve_liveness

if TYPE_CHECKING:
    from labtrack.store.base import Search, Store

__all__ = ["Batch", "RunList"]


class Batch:
    """Runs found by one search: their records are loaded together when the first is needed."""

    def __init__(self, store: Store, runs: list[Run], stale_before: float) -> None:
        self.store, self.runs, self.stale_before = store, runs, stale_before
        self.loaded = False

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        records = self.store.get_runs([run.id for run in self.runs])
        resolve_liveness(self.store, records)
        by_id = {r.id: r for r in records}
        for run in self.runs:
            if run._record is None:
                run._record = by_id.get(run.id)
            run._batch = None


class RunList(list):  # type: ignore[type-arg]
    """A list of runs, as ``search_runs`` returns it.

    A search returns ids at once; the runs' records are loaded in one batch when the first one is read.
    """

    _batch: Batch | None = None
    _result: _SearchResult | None = None

    @classmethod
    def from_search(cls, store: Store, ids: Sequence[str], search: Search) -> RunList:
        batch = Batch(store, [], search.stale_before)
        found = Run._found
        runs = [found(store, run_id, batch) for run_id in ids]
        batch.runs = runs
        out = cls(runs)
        out._batch = batch
        out._result = _SearchResult(store, search, runs, list(ids))
        return out

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
        runtime.settle()  # points this process still buffers are in the store first
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
            return _table_of(found.store, ids, found.search)
        stores: dict[int, tuple[Store, list[str]]] = {}
        for run in self:
            stores.setdefault(id(run._store), (run._store, []))[1].append(run.id)
        if len(stores) == 1:
            return _table_of(self[0]._store, list(dict.fromkeys(ids)), None)
        table = RunTable()
        for store, store_ids in stores.values():
            table.add_table(_table_of(store, list(dict.fromkeys(store_ids)), None))
        return table


@dataclass(frozen=True)
class _SearchResult:
    """What a search found: its runs and their ids, and the search, which selects them again in the store
    (cheaper than a list of 100k ids) for as long as the list still holds exactly those runs."""

    store: Store
    search: Search
    runs: list[Run]
    ids: list[str]

    def holds(self, runs: list[Run]) -> bool:
        return list.__eq__(runs, self.runs) is True  # Run has no __eq__: identity, compared in C


def _table_of(store: Store, ids: list[str], search: Search | None) -> RunTable:
    """Runs of one store (``ids`` without repeats) as columns: frames first, then the records of the rest."""
    table = store.run_table(ids, search)
    seen = set(table.ids)
    pending = [run_id for run_id in ids if run_id not in seen]
    if pending:
        records = store.get_runs(pending)
        resolve_liveness(store, records)
        table.add_records(records)
    return table
