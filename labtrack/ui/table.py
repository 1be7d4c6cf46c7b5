"""The runs table: a page of rows at a time, sorted and filtered in the store, whatever the number of runs.

Pages follow a *keyset*: the next page asks for the runs after the last one shown, as a condition in the
filter language (``metrics.acc <= 0.93 and (metrics.acc < 0.93 or attributes.id > 'ab…')``), so it costs the
same on page 1 and page 2,000 (an OFFSET would walk every earlier row), and works over every store — SQLite,
PostgreSQL, a tracking server — through the public client. Runs missing the sort key come last, as in every
search; their region is paged by id. A sort by a param (numbers before text, two columns) pages by offset.

Only the columns shown are read: params, metrics and tags come with the page's records, an ``env.*`` column
reads the environments of the page's runs (shared by many runs, cached).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from labtrack.core.errors import InvalidInput
from labtrack.core.filters import ATTRIBUTES, Field, field_text, format_field, parse_field
from labtrack.core.query import parse_order_by
from labtrack.run.handle import Run
from labtrack.ui.state import TableState
from labtrack.verbs.client import Client
from labtrack.verbs.compare import column_values

__all__ = ["DEFAULT_COLUMNS", "KEY_SAMPLE", "PAGE_SIZE", "Column", "Page", "Row", "available_keys", "columns_of", "csv_text", "load_page", "load_row", "row_of"]

PAGE_SIZE = 50
DEFAULT_COLUMNS = 12  # params and metrics shown when the URL names none
KEY_SAMPLE = 200  # the latest runs whose keys the column chooser and the filter's completion offer


@dataclass(frozen=True)
class Column:
    name: str  # "params.lr", "metrics.loss.min", "env.packages.torch"
    kind: str
    label: str
    pinned: bool = False


@dataclass(frozen=True)
class Row:
    run: Run
    values: dict[str, Any]

    @property
    def running(self) -> bool:
        return self.run.status.value == "RUNNING"


@dataclass(frozen=True)
class Page:
    columns: list[Column]
    rows: list[Row]
    after: str | None  # the URL of the next page (the same columns, after the last run); None: the last page
    hidden: list[str]  # columns left out by "differences only" (the same value in every row shown)


def _label(field: Field) -> str:
    return field.key + (f" ({field.aggregate})" if field.kind == "metrics" and field.aggregate != "last" else "")


def columns_of(state: TableState, runs: Sequence[Run]) -> list[Column]:
    """The columns a state shows: its own, or the params then metrics the runs have; pinned ones first."""
    if state.columns is not None:
        chosen = [parse_field(name, "columns") for name in state.columns]
    else:
        params = sorted({k for run in runs for k in run.record.params})
        metrics = sorted({k for run in runs for k in run.record.metrics})
        chosen = [Field("params", k) for k in params[: DEFAULT_COLUMNS // 2]]
        chosen += [Field("metrics", k) for k in metrics[: DEFAULT_COLUMNS - len(chosen)]]
    fields = []
    for field in chosen:
        try:
            fields.append((field_text(field), field))
        except InvalidInput:
            continue  # a key the filter language cannot write (a backtick in it): not offered as a column
    pinned = [name for name, _ in fields if name in state.pinned]
    ordered = [pair for pair in fields if pair[0] in pinned] + [pair for pair in fields if pair[0] not in pinned]
    return [Column(name, f.kind, _label(f), name in pinned) for name, f in ordered]


def _literal(value: Any) -> str | None:
    """``value`` as a literal of the filter language, or None when the language cannot write it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"  # the language unescapes \\ and ''
    return None


def _cursor_filters(user: str, state: TableState, last: Run) -> list[str] | None:
    """The filters that select, in order, the runs after ``last``: the rest of its value's region, then (for
    a key that runs may lack) the runs without the key. None when the sort needs offset paging."""
    terms = parse_order_by(state.sort or "attributes.start_time desc")
    term = terms[0]
    if len(terms) > 1 or term.kind == "params" or term.kind == "env":
        return None
    field = Field(term.kind, term.key, term.aggregate if term.kind == "metrics" else "last")
    if field == Field("attributes", "run_id"):
        field = Field("attributes", "id")
    if field.kind == "attributes" and field.key not in ATTRIBUTES:  # heartbeat_time: no filter can say it
        return None
    try:
        text = format_field(field)
    except InvalidInput:
        return None
    value = column_values(last, field) if field.kind != "attributes" else _attribute(last, field.key)
    if isinstance(value, float) and math.isnan(value):
        value = None  # a NaN metric sorts with the runs that lack one
    base = f"({user}) and " if user else ""
    after_id = f"attributes.id > {_literal(last.id)}"
    # The runs whose sort value is missing: for a metric, those without it and those whose value is NaN
    # (no number at all: not even >= -infinity).
    missing = f"not ({text} >= -1e999)" if field.kind == "metrics" else f"{text} is null"
    if value is None:
        return [f"{base}{missing} and {after_id}"]
    literal = _literal(value)
    if literal is None:
        return None
    strict, inclusive = ("<", "<=") if term.descending else (">", ">=")
    found = [f"{base}{text} {inclusive} {literal} and ({text} {strict} {literal} or {after_id})"]
    if field.kind != "attributes" or field.key in ("end_time", "name"):  # runs may lack it: they follow
        found.append(f"{base}{missing}")
    return found


def _attribute(run: Run, name: str) -> Any:
    record = run.record
    return {"status": run.status.value, "experiment": record.experiment, "id": record.id}.get(
        name, getattr(record, name, None))


def load_page(client: Client, state: TableState, after: str = "", offset: int = 0) -> Page:
    """A page of the table: the first, or the one after the run ``after`` (a run id; ``offset`` for a sort
    that pages by offset). Raises ``InvalidInput`` for a bad filter, sort or column, naming it."""
    order = state.sort or None
    if state.sort:
        parse_order_by(state.sort)  # a bad sort names itself before anything is read
    if state.columns is not None:
        for name in state.columns:
            parse_field(name, "columns")
    runs: list[Run] = []
    if after:
        last = client.get_run(after)
        plan = _cursor_filters(state.filter, state, last)
        if plan is None:
            runs = list(client.search_runs(state.experiment, filter=state.filter or None, order_by=order,
                                           max_results=PAGE_SIZE + 1, offset=offset))
        else:
            for text in plan:
                need = PAGE_SIZE + 1 - len(runs)
                if need <= 0:
                    break
                runs += client.search_runs(state.experiment, filter=text, order_by=order, max_results=need)
    else:
        runs = list(client.search_runs(state.experiment, filter=state.filter or None, order_by=order,
                                       max_results=PAGE_SIZE + 1, offset=offset))
    more = len(runs) > PAGE_SIZE
    runs = runs[:PAGE_SIZE]
    columns = columns_of(state, runs)
    rows = [row_of(run, columns) for run in runs]
    hidden: list[str] = []
    if state.diff and len(rows) > 1:
        hidden = [c.name for c in columns if len({_comparable(r.values[c.name]) for r in rows}) <= 1]
        columns = [c for c in columns if c.name not in hidden]
    cursor = None
    if more and runs:  # the next page shows these very columns (not those its own runs would suggest)
        shown = state.with_(columns=tuple(c.name for c in columns), diff=False)
        cursor = shown.url("/ui/rows") + "&" + urlencode({"after": runs[-1].id, "offset": offset + PAGE_SIZE})
    return Page(columns, rows, cursor, hidden)


def _comparable(value: Any) -> Any:
    return repr(value) if isinstance(value, (dict, list)) else value


def row_of(run: Run, columns: Sequence[Column]) -> Row:
    values = {}
    for column in columns:
        values[column.name] = column_values(run, parse_field(column.name, "columns"))
    return Row(run, values)


def load_row(client: Client, run_id: str, columns: Sequence[str]) -> Row:
    """One row again (a RUNNING row refreshes itself)."""
    run = client.get_run(run_id)
    return row_of(run, columns_of(TableState(run.experiment, columns=tuple(columns)), [run]))


def available_keys(client: Client, experiment: str | None) -> dict[str, list[str]]:
    """The fields the latest runs have, by kind (params, metrics, tags, env), for the column chooser and the
    filter's completion. Environment facts come from the distinct environments of those runs."""
    from labtrack.core.environment import environment_facts

    runs = client.search_runs(experiment, max_results=KEY_SAMPLE)
    params: set[str] = set()
    metrics: set[str] = set()
    tags: set[str] = set()
    env: set[str] = set()
    environments: set[str] = set()
    for run in runs:
        record = run.record
        params.update(record.params)
        metrics.update(record.metrics)
        tags.update(record.tags)
        if record.env_fingerprint and record.env_fingerprint not in environments and len(environments) < 20:
            environments.add(record.env_fingerprint)
            snapshot = run.environment
            if snapshot is not None:
                env.update(name for name, _, _ in environment_facts(snapshot.snapshot))
    return {"params": sorted(params), "metrics": sorted(metrics), "tags": sorted(tags), "env": sorted(env)}


def csv_text(client: Client, state: TableState, columns: Sequence[str]) -> str:
    """Every run of the view (not just a page), in its order, with its columns, as CSV."""
    runs = client.search_runs(state.experiment, filter=state.filter or None, order_by=state.sort or None)
    fields = [parse_field(name, "columns") for name in columns]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "name", "status", "start_time", "end_time", *[str(f) for f in fields]])
    for run in runs:
        record = run.record
        writer.writerow([run.id, _csv_cell(record.name), run.status.value, record.start_time, record.end_time or "",
                         *[_csv_cell(column_values(run, f)) for f in fields]])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula
    return value
