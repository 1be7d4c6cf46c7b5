"""Terminal rendering for the CLI (rich tables). Faces only: no library logic here."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from labtrack.core.aggregate import Grouping
from labtrack.core.checks import DoctorReport, Reproduction, Verdict
from labtrack.core.diff import RunDiff
from labtrack.core.html import show
from labtrack.core.inert import visible
from labtrack.core.model import ArtifactInfo, Collected, Experiment, Recovery, RunStatus, StoreCheck
from labtrack.core.tokens import TokenInfo
from labtrack.core.views import RunColumns

if TYPE_CHECKING:
    from labtrack.run.handle import Run

__all__ = [
    "SHOW_ROWS",
    "artifacts",
    "collected",
    "columns",
    "compare",
    "demo_progress",
    "diff",
    "doctor",
    "environment",
    "error",
    "experiments",
    "fmt_bytes",
    "fmt_duration",
    "fmt_time",
    "fmt_value",
    "groups",
    "lifecycle_note",
    "note",
    "progress",
    "recovery",
    "reproduction",
    "run_detail",
    "runs",
    "status_text",
    "store_check",
    "tokens",
    "verdict",
]

class _InertConsole(Console):
    """A console that shows what it is given and nothing more: no markup is read from strings, and every
    control or invisible formatting character in the printed text is made visible (``core.inert``) —
    names, tags and values come from whoever can write to the store. The styles this module sets are
    rendered after, by rich itself."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **options)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            Segment(visible(s.text), s.style, s.control) if s.control is None else s for s in buffer
        )


_out = _InertConsole()
_err = _InertConsole(stderr=True)
_STATUS_STYLE = {
    RunStatus.RUNNING: "cyan",
    RunStatus.FINISHED: "green",
    RunStatus.FAILED: "red",
    RunStatus.KILLED: "yellow",
    RunStatus.CRASHED: "bold red",
}


SHOW_ROWS = 100  # rows of a section `labtrack show` prints (a run may have 10k params); --json has them all


def _hidden(total: int, what: str) -> None:
    if total > SHOW_ROWS:
        _out.print(Text(f"… {total - SHOW_ROWS:,} more {what} (labtrack show --json lists them all)", style="dim"))


def note(message: str) -> None:
    _out.print(message)


def progress(message: str) -> None:
    """A progress line on stderr (stdout keeps --json pure)."""
    _err.print(message, soft_wrap=True)


def error(message: str) -> None:
    # soft_wrap: a filter echoed with a caret under the bad column must not be re-wrapped
    _err.print(Text("Error: ", style="bold red") + Text(message), soft_wrap=True)


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def fmt_duration(start: float, end: float | None) -> str:
    seconds = (end if end is not None else time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def fmt_value(value: Any, digits: int = 6) -> str:
    """A value as the tables show it (the notebook's HTML tables show it the same way)."""
    return show(value, digits)


def status_text(status: RunStatus) -> Text:
    return Text(status.value, style=_STATUS_STYLE.get(status, ""))


def experiments(found: Sequence[tuple[Experiment, int]], *, deleted: bool = False) -> None:
    if not found:
        note("No deleted experiments." if deleted else
             "No experiments yet. Start one with labtrack.start_run(\"name\") or try `labtrack demo`.")
        return
    table = Table(title="deleted experiments" if deleted else "experiments", title_justify="left")
    table.add_column("name")
    table.add_column("runs", justify="right")
    table.add_column("created")
    if deleted:
        table.add_column("deleted")
    for exp, n in found:
        table.add_row(exp.name, str(n), fmt_time(exp.created_time), *([fmt_time(exp.deleted_time)] if deleted else []))
    _out.print(table)
    if deleted:
        note("runs: those deleted with the experiment, which `labtrack restore --experiment NAME` brings back")


def _union_keys(dicts: Sequence[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _content_width(header: str, cells: Sequence[Any]) -> int:
    """The widest line of a column: a line of its header or a cell."""
    return max([len(line) for line in header.splitlines() or [""]] + [len(str(c)) for c in cells])


def _width(header: str, cells: Sequence[Any]) -> int:
    """Terminal columns a table column takes: its content plus borders and padding."""
    return _content_width(header, cells) + 3


_ROOM_FOR_VALUES = 45  # terminal columns kept for params and metrics before "started" is shown
_SHORT_VALUES = 10  # a differing param whose values are this short is chosen before the metrics


def _fitting(columns: Sequence[tuple[str, str, list[Any]]], budget: int,
             *, skip: bool = False) -> list[tuple[str, str, list[Any]]]:
    """The leading (header, style, cells) columns that fit whole in ``budget`` terminal columns (with
    ``skip``: every column, in order, that still fits — a wide one does not hide the narrow ones after it)."""
    shown: list[tuple[str, str, list[Any]]] = []
    for column in columns:
        cost = _width(column[0], column[2])
        if cost > budget:
            if skip:
                continue
            break
        shown.append(column)
        budget -= cost
    return shown


def runs(found: Sequence[Run], title: str = "runs", lead: Sequence[str] = ()) -> None:
    """One row per run; as many param (magenta) and metric (cyan) columns as the terminal fits.

    ``lead`` names metrics to show first (those the listing is sorted by).
    """
    if not found:
        note("No runs found.")
        return
    records = [run.record for run in found]
    one_experiment = len({r.experiment for r in records}) == 1
    fixed: list[tuple[str, list[Any]]] = [("run", [r.id[:8] for r in records])]
    if not one_experiment:
        fixed.append(("experiment", [r.experiment for r in records]))
    fixed += [("status", [status_text(r.status) for r in records])]
    started = ("started", [time.strftime("%m-%d %H:%M", time.localtime(r.start_time)) for r in records])
    fixed.append(("took", [fmt_duration(r.start_time, r.end_time) for r in records]))
    named = ("name", [r.name or "" for r in records])
    # On a narrow terminal the values matter more than a run's name, and its name more than its start.
    if any(named[1]) and _out.width - sum(_width(h, c) for h, c in fixed) - _width(*named) >= _ROOM_FOR_VALUES:
        fixed.insert(1, named)
    if _out.width - sum(_width(h, c) for h, c in fixed) - _width(*started) >= _ROOM_FOR_VALUES:
        fixed.insert(-1, started)
    # Shown in reading order — params that differ between the runs, metrics, params every run shares —
    # but chosen by what matters when the terminal is narrow: the metrics sorted by, short differing
    # params (what tells the runs apart), the other metrics, long params, then the constant ones.
    varying: list[tuple[str, str, list[str]]] = []
    constant: list[tuple[str, str, list[str]]] = []
    for key in _union_keys([r.params for r in records]):
        cells = [fmt_value(r.params[key], 4) if key in r.params else "" for r in records]
        (varying if len(set(cells)) > 1 or len(records) == 1 else constant).append((key, "magenta", cells))
    metric_columns = [
        (key, "cyan", [fmt_value(r.metrics[key].last, 4) if key in r.metrics else "" for r in records])
        for key in _union_keys([dict.fromkeys(lead)] + [dict(r.metrics) for r in records])
        if any(key in r.metrics for r in records)
    ]
    dynamic = varying + metric_columns + constant
    short = [c for c in varying if max(len(str(v)) for v in c[2]) <= _SHORT_VALUES]
    leading = [c for c in metric_columns if c[0] in lead]
    ranked = leading + short + [c for c in metric_columns if c not in leading] + \
        [c for c in varying if c not in short] + constant
    chosen = {id(c) for c in _fitting(ranked, _out.width - sum(_width(h, c) for h, c in fixed) - 1, skip=True)}
    shown = [c for c in dynamic if id(c) in chosen]
    table = Table(title=title, title_justify="left")
    for header, _ in fixed:
        table.add_column(header, no_wrap=True, style="bold" if header == "run" else None)
    for header, style, _ in shown:
        table.add_column(header, style=style, justify="right", no_wrap=True)
    for i in range(len(records)):
        table.add_row(*[cells[i] for _, cells in fixed], *[cells[i] for _, _, cells in shown])
    _out.print(table)
    if len(shown) < len(dynamic):
        hidden = ", ".join(c[0] for c in dynamic if id(c) not in chosen)
        note(f"(not shown for width: {hidden}; pick with --columns, see `labtrack show RUN` or --json)")


def run_detail(run: Run) -> None:
    r = run.record
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", r.id)
    head.add_row("experiment", r.experiment)
    if r.name:
        head.add_row("name", r.name)
    head.add_row("status", status_text(r.status))
    if r.deleted_time is not None:
        head.add_row("deleted", Text(f"{fmt_time(r.deleted_time)} (labtrack restore {r.id[:8]} brings it back)",
                                     style="red"))
    head.add_row("started", fmt_time(r.start_time))
    head.add_row("ended", fmt_time(r.end_time))
    head.add_row("duration", fmt_duration(r.start_time, r.end_time))
    if r.host:
        head.add_row("host / pid", f"{r.host} / {r.pid}")
    if r.run_key:
        head.add_row("run key", r.run_key)
    if r.note:
        head.add_row("note", r.note)
    if r.result is not None:
        head.add_row("result", fmt_value(r.result))
    _out.print(head)
    if r.error:
        _out.print(Text(f"\nerror: {r.error.get('type')}: {r.error.get('message')}", style="red"))
    if r.params:
        table = Table(title="params", title_justify="left")
        table.add_column("key")
        table.add_column("value")
        for k, v in itertools.islice(r.params.items(), SHOW_ROWS):
            table.add_row(k, fmt_value(v))
        _out.print(table)
        _hidden(len(r.params), "params")
    if r.metrics:
        table = Table(title="metrics", title_justify="left")
        for name in ("key", "last", "step", "min", "max", "points"):
            table.add_column(name, justify="left" if name == "key" else "right")
        for k, m in itertools.islice(r.metrics.items(), SHOW_ROWS):
            table.add_row(k, fmt_value(m.last), str(m.last_step), fmt_value(m.min), fmt_value(m.max), str(m.count))
        _out.print(table)
        _hidden(len(r.metrics), "metrics")
    if r.tags:
        table = Table(title="tags", title_justify="left")
        table.add_column("key")
        table.add_column("value")
        for k, v in itertools.islice(r.tags.items(), SHOW_ROWS):
            table.add_row(k, v)
        _out.print(table)
        _hidden(len(r.tags), "tags")
    items = run.artifacts
    if items:
        table = Table(title="artifacts", title_justify="left")
        table.add_column("path")
        table.add_column("size", justify="right")
        table.add_column("sha256")
        for a in items:
            table.add_row(a.path, f"{a.size:,}", a.sha256[:12])
        _out.print(table)


def demo_progress(run: Run, result: dict[str, float]) -> None:
    params = ", ".join(f"{k}={fmt_value(v)}" for k, v in run.params.items() if k in ("lr", "epochs"))
    _out.print(f"  run {run.id[:8]}  {params:<22} val_acc={result['val_acc']:.3f}  val_loss={result['val_loss']:.4f}")


def _flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Nested dicts as dotted keys; lists of scalars joined; lists of dicts one line each."""
    if isinstance(value, dict):
        if not value:
            out.append((prefix, "-"))
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            out.append((prefix, ", ".join(str(v) for v in value) or "-"))
        else:
            for i, item in enumerate(value):
                _flat(f"{prefix}[{i}]", item, out)
    else:
        out.append((prefix, "-" if value is None else fmt_value(value)))


def environment(env: Any, *, full: bool = False, only: Sequence[str] = ()) -> None:
    """An environment: a summary (what most explains differences) or every section in full."""
    if env is None:
        note("\nenvironment: not recorded (capture was turned off)")
        return
    if not full:
        table = Table(title="environment", title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for label, text in env.summary():
            table.add_row(label, text)
        table.add_row("fingerprint", env.fingerprint[:16])
        _out.print(table)
        note("(labtrack show RUN --env for everything)")
        return
    for name, section in env.sections().items():
        if only and name not in only:
            continue
        table = Table(title=name, title_justify="left", show_header=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        if name == "packages" and isinstance(section.get("distributions"), dict):
            rest = {k: v for k, v in section.items() if k != "distributions"}
            rows: list[tuple[str, str]] = []
            _flat("", rest, rows)
            for key, text in rows:
                table.add_row(key, text)
            for dist, info in sorted(section["distributions"].items()):
                source = info.get("source", "")
                extra = f"  ({source}{' ' + str(info.get('url')) if info.get('url') else ''})" if source != "index" else ""
                table.add_row(dist, f"{info.get('version')}{extra}")
        else:
            rows = []
            _flat("", section, rows)
            for key, text in rows:
                table.add_row(key, text)
        _out.print(table)
    if not only:
        note(f"fingerprint {env.fingerprint}")


def _changed_style(values: Sequence[Any]) -> str | None:
    return "bold yellow" if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1 else None


def compare(found: Sequence[Run], *, show_all: bool = False) -> None:
    """Rows are params, metrics and status; columns are runs; rows that differ are highlighted."""
    records = [run.record for run in found]
    table = Table(title="compare", title_justify="left")
    table.add_column("")
    for r in records:
        table.add_column(r.id[:8], justify="right")
    rows: list[tuple[str, list[Any]]] = [("experiment", [r.experiment for r in records]),
                                         ("status", [r.status.value for r in records])]
    rows += [(f"params.{k}", [r.params.get(k) for r in records]) for k in _union_keys([r.params for r in records])]
    rows += [(f"metrics.{k}", [r.metrics[k].last if k in r.metrics else None for r in records])
             for k in _union_keys([dict(r.metrics) for r in records])]
    rows += [("env fingerprint", [(r.env_fingerprint or "")[:12] for r in records]),
             ("run key", [(r.run_key or "")[:12] for r in records])]
    hidden = 0
    for name, values in rows:
        style = _changed_style(values)
        if style is None and not show_all and name.startswith(("params.", "metrics.")) and len(records) > 1:
            hidden += 1
            continue
        table.add_row(Text(name, style=style or ""), *[Text("" if v is None else fmt_value(v, 5), style=style or "")
                                                        for v in values])
    _out.print(table)
    if hidden:
        note(f"({hidden} rows identical in every run hidden; --all shows them)")


def columns(view: RunColumns) -> None:
    table = Table(title="runs", title_justify="left")
    table.add_column("run", style="bold", no_wrap=True)
    for name in view.columns:
        values = [row.values.get(name) for row in view.rows]
        kind = name.split(".", 1)[0]
        header = name.split(".", 1)[1] if kind in _COLOURS else name  # params and metrics by colour, as in `runs`
        table.add_column(header, justify="right", header_style=_changed_style(values) or "bold",
                         style=_COLOURS.get(kind), min_width=max(map(len, header.split()), default=0))
    for row in view.rows:
        table.add_row(row.id[:8], *["" if row.values.get(n) is None else fmt_value(row.values[n], 5)
                                    for n in view.columns])
    _out.print(table)


_FOLDED_MIN = 12  # columns a folded group-by value keeps when the terminal is narrow
_COLOURS = {"params": "magenta", "metrics": "cyan"}


def groups(grouping: Grouping, title: str | None = None) -> None:
    """One row per group: the grouped-by values, the number of runs, then each metric's mean ± std, as many
    as the terminal fits. A mean and its spread are never cut or broken over two lines, nor is a grouped-by
    value or header unless it alone is wider than the terminal."""
    found, by = grouping.groups, grouping.by
    left_out = ""
    if grouping.statuses is not None:
        others = grouping.left_out
        left_out = (f"{' and '.join(grouping.statuses)} runs only"
                    + (f" — {others} run{'s' if others != 1 else ''} of other statuses left out" if others else "")
                    + "; filter on attributes.status to choose")
    if not found:
        note("No runs found." + (f" ({left_out})" if left_out else ""))
        return
    keys = [(name.removeprefix("params."), ["" if g.key[i] is None else fmt_value(g.key[i], 5) for g in found])
            for i, name in enumerate(by)]  # a param by its key alone (its colour says it is one), as in `runs`
    counts = [str(g.runs) for g in found]
    summaries = []
    for name in grouping.metrics:
        cells = []
        for g in found:
            stats = g.metrics.get(name)
            if stats is None:
                cells.append("")
                continue
            spread = f" ± {stats.std:.2g}" if stats.n > 1 else ""  # one run has no spread to show
            cells.append(f"{stats.mean:.4g}{spread}" + (f" (n={stats.n})" if stats.n != g.runs else ""))
        summaries.append((name.removeprefix("metrics.") + "\nmean ± std", "cyan", cells))
    key_widths = [_width(name, cells) for name, cells in keys]
    # The grouped-by values are shown whole, never split, and metric columns get what is left — unless that
    # would leave no room for a single metric: then they fold (down to _FOLDED_MIN each). Headers never split.
    first = _width(*summaries[0][::2]) if summaries else 0  # at least one metric must fit beside them
    whole = sum(key_widths) + _width("runs", counts) + first + 1 <= _out.width
    used = sum(key_widths) if whole else sum(min(w, _FOLDED_MIN) for w in key_widths)
    shown = _fitting(summaries, _out.width - 1 - _width("runs", counts) - used)
    table = Table(title=title or f"runs grouped by {', '.join(by)}", title_justify="left")
    for (name, _cells), width in zip(keys, key_widths):
        table.add_column(name, style="magenta", justify="right", overflow="fold", no_wrap=whole,
                         min_width=width - 3 if whole else max(len(name), _FOLDED_MIN))
    table.add_column("runs", justify="right", no_wrap=True, min_width=_content_width("runs", counts))
    for header, style, cells in shown:
        table.add_column(header, style=style, justify="right", no_wrap=True, min_width=_content_width(header, cells))
    for i in range(len(found)):
        table.add_row(*[cells[i] for _, cells in keys], counts[i], *[cells[i] for _, _, cells in shown])
    _out.print(table)
    if left_out:
        note(f"({left_out})")
    if len(shown) < len(summaries):
        hidden = ", ".join(h.split("\n")[0] for h, _, _ in summaries[len(shown):])
        note(f"(not shown for width: {hidden}; choose with --columns, or --json)")


def diff(result: RunDiff) -> None:
    """A run diff: metrics with deltas, then each differing section, likeliest cause first."""
    _out.print(Text(f"diff {result.a[:8]} → {result.b[:8]}", style="bold"))
    changed_metrics = [m for m in result.metrics if not m.same]
    if changed_metrics:
        table = Table(title="metrics (last values)", title_justify="left")
        for name in ("key", "A", "B", "delta", "%"):
            table.add_column(name, justify="left" if name == "key" else "right")
        for m in changed_metrics:
            pct = f"{m.pct:+.2f}%" if m.pct is not None else ""
            delta = f"{m.delta:+.4g}" if m.delta is not None else ""
            table.add_row(m.key, "" if m.a is None else fmt_value(m.a), "" if m.b is None else fmt_value(m.b),
                          delta, pct)
        _out.print(table)
    elif result.metrics:
        note("metrics: identical")
    for section in result.differing():
        _out.print(Text(f"\n{section.name}", style="bold yellow"))
        for change in section.changes[:40]:
            _out.print(f"  {change.describe()}")
        if len(section.changes) > 40:
            note(f"  ... {len(section.changes) - 40} more (--json for all)")
    if result.identical_artifacts:
        shown = ", ".join(result.identical_artifacts[:8]) + (" ..." if len(result.identical_artifacts) > 8 else "")
        note(f"\nartifacts identical: {shown}")
    same = [s.name for s in result.sections if s.identical]
    missing = [s.name for s in result.sections if not s.compared]
    if same:
        note(f"\nidentical: {', '.join(same)}")
    if missing:
        note(f"not recorded for both runs: {', '.join(missing)}")


_LEVEL_STYLE = {"identical": "green", "compatible": "green", "at-risk": "yellow", "incompatible": "bold red",
                "error": "red", "warning": "yellow"}


def doctor(report: DoctorReport) -> None:
    if not report.findings:
        _out.print(Text("✓ no dependency conflicts, CUDA consistent, settings valid, store reachable", style="green"))
    for finding in report.findings:
        _out.print(Text(f"{finding.level:7} ", style=_LEVEL_STYLE.get(finding.level, "")) + Text(
            f"[{finding.topic}] {finding.message}"))
    if report.environment_fingerprint:
        note(f"environment fingerprint {report.environment_fingerprint[:16]}")


def verdict(result: Verdict, run_id: str) -> None:
    _out.print(Text("verdict: ", style="bold") + Text(result.level, style=_LEVEL_STYLE.get(result.level, "")) +
               Text(f"  (this machine vs run {run_id})"))
    for reason in result.reasons:
        _out.print(Text(f"  {reason.level:12} ", style=_LEVEL_STYLE.get(reason.level, "")) + Text(reason.message))


def reproduction(result: Reproduction) -> None:
    style = {"reproduced": "green", "differs": "yellow", "failed": "bold red"}[result.verdict]
    _out.print(Text("verdict: ", style="bold") + Text(result.verdict, style=style) +
               Text(f"  (new run {result.new_run[:8] if result.new_run else '-'}, work dir {result.workdir})"))
    for problem in result.problems:
        _out.print(Text(problem, style="red"))
    if result.metrics:
        table = Table(title="metrics", title_justify="left")
        for name in ("key", "original", "reproduced", ""):
            table.add_column(name, justify="left" if name == "key" else "right")
        for m in result.metrics:
            mark = (Text("ignored", style="dim") if m.ignored else
                    Text("✓" if m.within_tolerance else "✗", style="green" if m.within_tolerance else "red"))
            table.add_row(m.key, fmt_value(m.original), "" if m.new is None else fmt_value(m.new), mark)
        _out.print(table)
        note(f"{len(result.matched)} matched, {len(result.ignored)} ignored (noisy), {len(result.differing)} differing"
             + (f": {', '.join(result.differing)}" if result.differing else ""))
    for a in result.artifacts:
        state = Text("identical", style="green") if a.identical else Text(
            "missing" if a.new is None else "different content", style="red")
        _out.print(Text(f"  {a.path}: ") + state)


def artifacts(items: Sequence[ArtifactInfo], run_id: str) -> None:
    if not items:
        note(f"run {run_id[:8]} has no artifacts")
        return
    table = Table(title=f"artifacts of run {run_id[:8]}", title_justify="left")
    for name, justify in (("path", "left"), ("size", "right"), ("sha256", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for item in items:
        table.add_row(item.path, f"{item.size:,}", item.sha256[:12])
    _out.print(table)


def lifecycle_note(message: str, undo: str | None = None) -> None:
    """What a delete or restore did, and the command that undoes it."""
    note(message + (f" (undo: {undo})" if undo else ""))


def fmt_bytes(size: int) -> str:
    if size < 1024:
        return f"{size:,} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024:
            return f"{scaled:,.1f} {unit}"
    return f"{scaled / 1024:,.1f} TiB"


def collected(report: Collected, location: str) -> None:
    verb = "would remove" if report.dry_run else "removed"
    note(f"{location}: {verb} {report.runs:,} deleted run(s), {report.experiments:,} deleted experiment(s) and "
         f"{report.blobs:,} unreferenced artifact blob(s) ({fmt_bytes(report.blob_bytes)}).")
    if report.kept_running:
        note(f"Kept {report.kept_running:,} deleted run(s) still running: they go at the first gc after they end.")
    if report.kept_recent_blobs:
        note(f"Kept {report.kept_recent_blobs:,} unreferenced blob(s) stored within the last hour: a run may be about "
             "to list them (a gc after that hour removes those no run lists).")
    if report.compacted_bytes is not None:
        note(f"Compacted the database file: {fmt_bytes(report.compacted_bytes)} given back.")


def tokens(found: Sequence[TokenInfo], now: float) -> None:
    if not found:
        note("No tokens yet: `labtrack token create --name NAME --role reader|writer|admin` (or start `labtrack "
             "server`, which creates an admin token for a store that has none).")
        return
    table = Table(title="tokens", title_justify="left")
    for column in ("id", "name", "role", "experiments", "created", "expires", "state"):
        table.add_column(column)
    for t in found:
        state = "revoked" if t.revoked_time is not None else ("live" if t.usable(now) else "expired")
        table.add_row(t.id, t.name, t.role.value, ", ".join(t.experiments) if t.experiments else "all",
                      fmt_time(t.created_time), fmt_time(t.expires_time), state)
    _out.print(table)


def recovery(report: Recovery) -> None:
    if not report.spools and not report.problems:
        note("Nothing to recover: no spool of a dead process is waiting for this store.")
        return
    note(f"Recovered {report.spools} spool(s) of processes that died: {report.points:,} points and the other writes "
         f"of {len(report.runs)} run(s) are in the store.")
    if report.crashed:
        note(f"Marked CRASHED (never ended): {', '.join(sorted(r[:8] for r in report.crashed))}")
    for problem in report.problems:
        error(problem)


def store_check(report: StoreCheck, location: str) -> None:
    note(f"Checked {report.chunks:,} metric chunks ({report.points:,} points) in {location}.")
    if report.unchecked:
        note(f"{report.unchecked:,} chunk(s) were written before schema revision 0005 and carry no checksum: "
             "only their sizes were checked.")
    for line in report.database:
        error(f"database: {line}")
    if report.damaged:
        table = Table(title=f"{len(report.damaged)} damaged chunk(s): their points are refused when read")
        for column in ("run", "experiment", "metric", "chunk", "problem"):
            table.add_column(column)
        for d in report.damaged:
            table.add_row(d.run_id[:8], d.experiment, d.key, str(d.seq), d.problem)
        _out.print(table)
    for line in report.advice:
        note(line)
    if report.ok:
        note("No damage found.")
