"""HTML tables of runs, run lists and run diffs, for Jupyter (the ``_repr_html_`` of ``Run``, ``RunList`` and
``RunDiff``).

Everything a user or a framework wrote — experiment and run names, param and tag keys and values, metric
names, error messages — is text from anyone who can log to the store, so every piece goes through
``html.escape`` (quotes too) before it reaches the markup: a tag ``<script>…`` shows as those characters and
runs nothing. The markup has no scripts, no links and no event attributes of its own; styles are inline and
fixed. Pure: the caller hands over records (``RunRecord``) and diffs already read from the store.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from labtrack.core.model import RunRecord, RunStatus

__all__ = [
    "MAX_CHANGES", "MAX_ITEMS", "MAX_ROWS", "DiffLike", "diff_html", "run_html", "runs_html", "show", "text", "took",
    "when",
]

MAX_ROWS = 50  # runs shown in a list; the rest are counted
MAX_ITEMS = 30  # params, metrics or tags shown in one run's table, columns of each kind in a list
MAX_CHANGES = 40  # changes shown per section of a diff (as `labtrack diff` does)

_STATUS_COLOR = {RunStatus.FINISHED: "#1a7f37", RunStatus.RUNNING: "#0969da", RunStatus.FAILED: "#cf222e",
                 RunStatus.CRASHED: "#cf222e", RunStatus.KILLED: "#9a6700"}
_TABLE = 'style="border-collapse:collapse;font-size:12px;text-align:left"'
_CELL = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:{align};vertical-align:top"'
_MUTED = 'style="color:#666"'


class DiffLike(Protocol):
    """What ``diff_html`` reads of a ``labtrack.core.diff.RunDiff`` (named here by its fields: diff imports this
    module)."""

    @property
    def a(self) -> str: ...

    @property
    def b(self) -> str: ...

    @property
    def metrics(self) -> Sequence[Any]: ...  # MetricDelta: key, a, b, delta, pct, same

    @property
    def sections(self) -> Sequence[Any]: ...  # Section: name, changes (each with describe()), identical, compared

    @property
    def identical_artifacts(self) -> Sequence[str]: ...


def text(value: Any) -> str:
    """Any value as inert HTML text: formatted as the CLI shows it, then escaped."""
    return html.escape(show(value), quote=True)


def show(value: Any, digits: int = 6) -> str:
    """A value as the CLI's tables show it: floats to ``digits`` significant digits, NaN and ±inf by name,
    strings as they are, the rest as JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def took(start: float, end: float | None, now: float | None = None) -> str:
    seconds = (end if end is not None else (now if now is not None else time.time())) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _status(status: RunStatus) -> str:
    color = _STATUS_COLOR.get(status, "#666")
    return f'<span style="color:{color};font-weight:bold">{text(status.value)}</span>'


def _row(cells: Iterable[str], *, header: bool = False, align: str = "left") -> str:
    tag = "th" if header else "td"
    cell = _CELL.format(align=align)
    return "<tr>" + "".join(f"<{tag} {cell}>{c}</{tag}>" for c in cells) + "</tr>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], *, caption: str = "") -> str:
    """A table from already escaped cells (``head`` and every cell are HTML)."""
    out = [f"<table {_TABLE}>"]
    if caption:
        out.append(f'<caption style="text-align:left;font-weight:bold">{caption}</caption>')
    out.append("<thead>" + _row(head, header=True) + "</thead><tbody>")
    out.extend(_row(row) for row in rows)
    out.append("</tbody></table>")
    return "".join(out)


def _more(n: int, what: str) -> str:
    return f"<div {_MUTED}>… {n} more {html.escape(what)}</div>" if n > 0 else ""


def _pairs(title: str, items: Mapping[str, Any], *, max_items: int) -> str:
    """A compact key/value table of one kind (params, metrics, tags), the first ``max_items`` of them."""
    if not items:
        return ""
    shown = list(items.items())[:max_items]
    rows = [(text(key), text(value)) for key, value in shown]
    return _table([text("key"), text("value")], rows, caption=text(title)) + _more(len(items) - len(shown), title)


def run_html(record: RunRecord, *, max_items: int = MAX_ITEMS, now: float | None = None) -> str:
    """One run: its id, experiment, name, status, times, then params, last metric values and tags."""
    head = [
        ("run", f"<code>{text(record.id)}</code>"),
        ("experiment", text(record.experiment)),
        ("name", text(record.name or "")),
        ("status", _status(record.status)),
        ("started", text(when(record.start_time))),
        ("ended", text(when(record.end_time))),
        ("took", text(took(record.start_time, record.end_time, now))),
    ]
    if record.error:
        head.append(("error", text(": ".join(str(v) for v in record.error.values() if v))))
    parts = [f'<div class="labtrack-run"><table {_TABLE}><tbody>']
    parts.extend(_row([f"<b>{text(name)}</b>", value]) for name, value in head)
    parts.append("</tbody></table>")
    for title, items in (("params", record.params), ("metrics (last)", {k: s.last for k, s in record.metrics.items()}),
                         ("tags", record.tags)):
        block = _pairs(title, items, max_items=max_items)
        if block:
            parts.append(f'<div style="display:inline-block;vertical-align:top;margin:6px 12px 0 0">{block}</div>')
    parts.append("</div>")
    return "".join(parts)


def _union(dicts: Iterable[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def runs_html(records: Sequence[RunRecord], *, total: int | None = None, max_rows: int = MAX_ROWS,
              max_columns: int = MAX_ITEMS, now: float | None = None) -> str:
    """A list of runs as ``labtrack runs`` shows it: run, experiment (when several), name, status, start,
    duration, then the params that differ, the last metric values, the params all share. ``records`` are the
    first rows (``max_rows`` at most are shown); ``total`` counts all of them, for the "… N more" line."""
    total = len(records) if total is None else total
    shown = list(records[:max_rows])
    if not shown:
        return f"<div {_MUTED}>no runs</div>"
    several = len({r.experiment for r in shown}) > 1
    varying: list[str] = []
    constant: list[str] = []
    for key in _union(r.params for r in shown):
        values = {show(r.params.get(key, ""), 4) for r in shown}
        (varying if len(values) > 1 or len(shown) == 1 else constant).append(key)
    metric_keys = _union(r.metrics for r in shown)
    param_keys = (varying + constant)[:max_columns]
    hidden = len(varying) + len(constant) - len(param_keys) + max(0, len(metric_keys) - max_columns)
    metric_keys = metric_keys[:max_columns]
    ordered = [k for k in varying if k in param_keys] + ["\0metrics"] + [k for k in constant if k in param_keys]
    head = [text("run")] + ([text("experiment")] if several else []) + [text(h) for h in ("name", "status",
                                                                                          "started", "took")]
    for key in ordered:
        if key == "\0metrics":
            head.extend(f'<span style="color:#0a6a7a">{text(k)}</span>' for k in metric_keys)
        else:
            head.append(f'<span style="color:#8250df">{text(key)}</span>')
    rows = []
    for r in shown:
        row = [f"<code>{text(r.id[:8])}</code>"] + ([text(r.experiment)] if several else [])
        row += [text(r.name or ""), _status(r.status), text(time.strftime("%m-%d %H:%M", time.localtime(r.start_time))),
                text(took(r.start_time, r.end_time, now))]
        for key in ordered:
            if key == "\0metrics":
                row.extend(text(show(r.metrics[k].last, 4)) if k in r.metrics else "" for k in metric_keys)
            else:
                row.append(text(show(r.params[key], 4)) if key in r.params else "")
        rows.append(row)
    caption = text(f"{total} run{'s' if total != 1 else ''}")
    notes = _more(total - len(shown), "runs (.to_pandas() has them all)")
    if hidden:
        notes += f"<div {_MUTED}>{hidden} more param and metric columns not shown (.to_pandas() has them)</div>"
    return f'<div class="labtrack-runs">{_table(head, rows, caption=caption)}{notes}</div>'


def diff_html(result: DiffLike, *, max_changes: int = MAX_CHANGES) -> str:
    """A run diff as ``labtrack diff`` shows it: the metrics that changed, with deltas, then each differing
    section, likeliest cause first, then what is identical and what was not recorded for both runs."""
    parts = [f'<div class="labtrack-diff"><div><b>diff <code>{text(result.a[:8])}</code> → '
             f"<code>{text(result.b[:8])}</code></b></div>"]
    changed = [m for m in result.metrics if not m.same]
    if changed:
        rows = [(text(m.key), "" if m.a is None else text(m.a), "" if m.b is None else text(m.b),
                 text(f"{m.delta:+.4g}") if m.delta is not None else "",
                 text(f"{m.pct:+.2f}%") if m.pct is not None else "") for m in changed]
        parts.append(_table([text(h) for h in ("metric", "A", "B", "delta", "%")], rows,
                            caption=text("metrics (last values)")))
    elif result.metrics:
        parts.append(f"<div {_MUTED}>metrics: identical</div>")
    for section in (s for s in result.sections if s.changes):
        items = "".join(f"<li>{text(change.describe())}</li>" for change in section.changes[:max_changes])
        parts.append(f'<div style="margin-top:6px"><b style="color:#9a6700">{text(section.name)}</b>'
                     f'<ul style="margin:2px 0">{items}</ul>{_more(len(section.changes) - max_changes, "changes")}'
                     "</div>")
    if result.identical_artifacts:
        parts.append(f"<div {_MUTED}>artifacts identical: {text(', '.join(result.identical_artifacts[:8]))}"
                     f"{' …' if len(result.identical_artifacts) > 8 else ''}</div>")
    same = [s.name for s in result.sections if s.identical]
    missing = [s.name for s in result.sections if not s.compared]
    if same:
        parts.append(f"<div {_MUTED}>identical: {text(', '.join(same))}</div>")
    if missing:
        parts.append(f"<div {_MUTED}>not recorded for both runs: {text(', '.join(missing))}</div>")
    parts.append("</div>")
    return "".join(parts)
