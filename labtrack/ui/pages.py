"""The experiments page, the runs table (with its pieces for htmx), the compare page and chart data.

Every handler is synchronous and runs in the server's thread pool: it reads through a ``Client`` over the
request's store (already limited to a token's experiments by the server) and renders a template.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from labtrack.core.errors import InvalidInput, LabtrackError, RunNotFound
from labtrack.core.filters import Field, field_text, parse_field
from labtrack.core.query import parse_order_by
from labtrack.store.base import Store
from labtrack.ui import render
from labtrack.ui.series import HistoryCache, series_json
from labtrack.ui.state import ChartSettings, TableState
from labtrack.ui.table import available_keys, csv_text, load_page, load_row
from labtrack.verbs.client import Client

__all__ = ["HISTORIES", "MAX_COMPARE", "client_of", "compare", "experiments", "keys", "row", "rows", "runs", "runs_csv", "series", "series_data"]

MAX_COMPARE = 100
HISTORIES = HistoryCache()


def client_of(store: Store) -> Client:
    return Client(store, recover=False)


def _number(request: Request, name: str, kind: type[float] | type[int]) -> float | None:
    """A query parameter as a finite number of ``kind`` (None when absent), or InvalidInput naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InvalidInput(f"{name} must be {what}, got {raw!r}", field=name) from None
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {raw!r}", field=name)
    return value


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = _number(request, name, int)
    if value is None:
        return default
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be {low}..{high}, got {value}", field=name)
    return int(value)


def _float(request: Request, name: str) -> float | None:
    return _number(request, name, float)


# -- experiments -------------------------------------------------------------------------------------------

def experiments(request: Request, store: Store) -> Response:
    """Every experiment: its runs, its last activity, and the best value of a chosen metric."""
    client = client_of(store)
    metric = request.query_params.get("metric", "").strip()
    goal = "min" if request.query_params.get("goal") == "min" else "max"
    rows: list[dict[str, Any]] = []
    for experiment, count in client.list_experiments():
        newest = client.search_runs(experiment.name, max_results=1)
        last = None
        if newest:
            record = newest[0].record
            last = max(t for t in (record.start_time, record.end_time, record.heartbeat_time) if t is not None)
        best = None
        if metric:
            order = f"metrics.`{metric}` {'asc' if goal == 'min' else 'desc'}"
            found = client.search_runs(experiment.name, filter=f"metrics.`{metric}` is not null", order_by=order,
                                       max_results=1)
            if found:
                best = (found[0], found[0].record.metrics[metric].last)
        rows.append({"experiment": experiment, "runs": count, "last": last, "best": best})
    rows.sort(key=lambda r: -float(r["last"] or 0))  # the latest activity first
    metrics = available_keys(client, None)["metrics"]
    return render.page(request, "experiments.html", rows=rows, metric=metric, goal=goal, metrics=metrics)


# -- the runs table ----------------------------------------------------------------------------------------

def runs(request: Request, store: Store) -> Response:
    """The runs table of an experiment: filter, sort, columns, group-by, differences only, selection."""
    client = client_of(store)
    state = TableState.from_query(request.query_params)
    if not state.experiment:
        raise InvalidInput("the runs table needs an experiment: /runs?experiment=NAME", field="experiment")
    counts = {e.name: n for e, n in client.list_experiments()}  # one read: does it exist, how many runs
    if state.experiment not in counts:
        client.require_experiment(state.experiment)  # raises, naming the experiments it may have meant
    keys = available_keys(client, state.experiment)
    error = None
    page = None
    grouping = None
    try:
        page = load_page(client, state)
        if state.group:
            grouping = _grouping(client, state, page.columns)
    except InvalidInput as exc:
        error = exc
    # A mistake in the filter is shown in the page, at its column (the page itself is fine: 200).
    return render.page(request, "runs.html", state=state, page=page,
                       error=error, keys=keys, grouping=grouping, total=counts.get(state.experiment, 0))


def _grouping(client: Client, state: TableState, columns: Any) -> Any:
    from labtrack.verbs.compare import group

    field = parse_field(state.group, "group_by")
    metrics = [c.name for c in columns if c.kind == "metrics"]
    found = client.search_runs(state.experiment, filter=state.filter or None)
    order = [t for t in parse_order_by(state.sort) if t.kind == "metrics" or (t.kind, t.key) == (field.kind, field.key)
             ] if state.sort else []
    return group(list(found), [field_text(field)], metrics or None, order=order)


def rows(request: Request, store: Store) -> Response:
    """The next page of rows (htmx appends it where the last one ends)."""
    state = TableState.from_query(request.query_params)
    offset = _int(request, "offset", 0, 0, 10**9)
    page = load_page(client_of(store), state, after=request.query_params.get("after", ""), offset=offset)
    return render.fragment(request, "_rows.html", state=state, page=page)


def row(request: Request, store: Store) -> Response:
    """One row again: a RUNNING row asks every few seconds until its run ends."""
    state = TableState.from_query(request.query_params)
    found = load_row(client_of(store), request.path_params["run_id"], state.columns or ())
    columns = [c for c in found.values]
    from labtrack.ui.table import Column

    shown = [Column(name, name.split(".", 1)[0], name.split(".", 1)[1], name in state.pinned) for name in columns]
    return render.fragment(request, "_row.html", state=state, row=found, columns=shown)


def keys(request: Request, store: Store) -> Response:
    """The fields of an experiment's latest runs by kind, for completion in the filter box (JSON)."""
    experiment = request.query_params.get("experiment") or None
    found = available_keys(client_of(store), experiment)
    names = ["attributes." + a for a in ("status", "name", "start_time", "end_time", "run_key", "id")]
    for kind in ("metrics", "params", "tags", "env"):
        names += [field_text(Field(kind, k)) for k in found[kind] if "`" not in k]
    return Response(json.dumps({"fields": names}), media_type="application/json", headers=render.PAGE_HEADERS)


def runs_csv(request: Request, store: Store) -> Response:
    """Every run of the current view (its filter, sort and columns) as CSV."""
    client = client_of(store)
    state = TableState.from_query(request.query_params)
    client.require_experiment(state.experiment)
    columns = list(state.columns) if state.columns is not None else [c.name for c in load_page(client, state).columns]
    text = csv_text(client, state, columns)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in state.experiment) or "runs"
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={**render.PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}.csv"'})


# -- compare -----------------------------------------------------------------------------------------------

def _runs_of(client: Client, request: Request) -> list[Any]:
    ids: list[str] = []
    for value in request.query_params.getlist("run"):
        ids += [v for v in value.split(",") if v and v not in ids]
    if not 1 <= len(ids) <= MAX_COMPARE:
        raise InvalidInput(f"compare takes 2..{MAX_COMPARE} runs (run=ID&run=ID...), got {len(ids)}", field="run")
    return [client.get_run(i) for i in ids]


def compare(request: Request, store: Store) -> Response:
    """Runs side by side: why their environments differ first, then params and metrics, then charts."""
    client = client_of(store)
    found = _runs_of(client, request)
    if len(found) < 2:
        raise InvalidInput("compare needs at least two runs: select them in a runs table", field="run")
    diff_only = request.query_params.get("diff") not in (None, "", "0")
    headline = _environment_differences(client, found)
    params = sorted({k for r in found for k in r.record.params})
    metrics = sorted({k for r in found for k in r.record.metrics})
    table = []
    for kind, names in (("params", params), ("metrics", metrics)):
        for name in names:
            values = [r.record.params.get(name) if kind == "params" else
                      (r.record.metrics[name].last if name in r.record.metrics else None) for r in found]
            same = len({json.dumps(v, sort_keys=True, default=str) for v in values}) == 1
            if diff_only and same:
                continue
            table.append({"kind": kind, "name": name, "cells": values, "same": same})
    chart = ChartSettings.from_query(request.query_params)
    toggle = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "diff"]
                       + ([] if diff_only else [("diff", "1")]))
    return render.page(request, "compare.html", runs=found, headline=headline, table=table, metrics=metrics,
                       diff_only=diff_only, chart=chart, toggle=toggle)


def _environment_differences(client: Client, found: list[Any]) -> list[dict[str, Any]]:
    """What differs between the first run and each other run, beyond params: once per distinct difference,
    ranked (the diff's own order: code, seeds, framework builds, GPU, framework versions, packages ...)."""
    reference = found[0]
    out: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    for other in found[1:]:
        try:
            result = client.diff(reference, other)
        except LabtrackError as exc:
            out.append({"runs": [other], "lines": [("error", str(exc))]})
            continue
        lines = [(s.name, c.describe()) for s in result.differing() if s.name not in ("params", "tags", "artifacts")
                 for c in s.changes]
        signature = json.dumps(lines)
        if signature in seen:
            seen[signature]["runs"].append(other)
            continue
        entry = {"runs": [other], "lines": lines}
        seen[signature] = entry
        out.append(entry)
    return out


# -- chart data --------------------------------------------------------------------------------------------

def series(request: Request, store: Store) -> Response:
    """A metric of one or more runs, min-max downsampled to the chart's width; x0/x1 for a zoom (JSON)."""
    client = client_of(store)
    key = request.query_params.get("key", "")
    if not key:
        raise InvalidInput("series needs a metric: key=NAME", field="key")
    found = _runs_of(client, request)
    width = _int(request, "width", 800, 1, 4096)
    data = series_json(HISTORIES, found, key, width=width, axis=request.query_params.get("x", "step"),
                       x0=_float(request, "x0"), x1=_float(request, "x1"))
    return Response(json.dumps(data, allow_nan=False), media_type="application/json", headers=render.PAGE_HEADERS)


def series_data(request: Request, store: Store) -> Response:
    """Every point of a run's metric, as CSV (``format=csv``) or JSON, for a chart's data export."""
    client = client_of(store)
    run_id = request.query_params.get("run", "")
    key = request.query_params.get("key", "")
    run = client.get_run(run_id)
    if key not in run.record.metrics:
        raise RunNotFound(f"run {run.id} has no metric {key!r}")
    history = HISTORIES.history(run, key)
    fmt = request.query_params.get("format", "csv")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    if fmt == "json":
        body = json.dumps({"run": run.id, "key": key, "step": list(history.steps),
                           "timestamp": list(history.timestamps),
                           "value": [v if math.isfinite(v) else None for v in history.values]})
        media, name = "application/json", f"{run.id[:8]}-{safe}.json"
    elif fmt == "csv":
        lines = ["step,timestamp,value"]
        lines += [f"{s},{t!r},{v!r}" for s, t, v in history]
        body, media, name = "\n".join(lines) + "\n", "text/csv; charset=utf-8", f"{run.id[:8]}-{safe}.csv"
    else:
        raise InvalidInput(f"format must be csv or json, got {fmt!r}", field="format")
    return Response(body, media_type=media,
                    headers={**render.PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})
