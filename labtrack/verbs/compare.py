"""Comparing runs: the semantic diff of two runs and side-by-side tables of many.

``diff(a, b)`` builds what the store recorded about each run into ``core.diff.RunView`` values and adds
the one thing that needs this machine: ``git log`` between the two commits when the repository is here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from labtrack.core.aggregate import Group, Grouping, group_runs
from labtrack.core.diff import RunDiff, RunView, diff_runs
from labtrack.core.errors import InvalidInput
from labtrack.core.filters import FIELD_KINDS, Field, parse_field
from labtrack.core.query import OrderTerm
from labtrack.core.views import ColumnRow, RunColumns
from labtrack.run.handle import Run

__all__ = ["column_values", "columns", "diff", "group", "run_view"]


def run_view(run: Run) -> RunView:
    record = run.record
    env = run.environment
    return RunView(
        id=record.id,
        params=dict(record.params),
        metrics={k: m.last for k, m in record.metrics.items()},
        tags=dict(record.tags),
        artifacts={a.path: a.sha256 for a in run.artifacts},
        environment=env.snapshot if env is not None else {},
        status=record.status.value,
        run_key=record.run_key,
    )


def _git_log(view_a: RunView, view_b: RunView) -> list[str] | None:
    ga, gb = view_a.environment.get("git"), view_b.environment.get("git")
    if not isinstance(ga, dict) or not isinstance(gb, dict):
        return None
    root, ca, cb = gb.get("root") or ga.get("root"), ga.get("commit"), gb.get("commit")
    if not root or not ca or not cb or ca == cb:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "log", "--oneline", "--no-decorate", f"{ca}..{cb}"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.splitlines() if done.returncode == 0 else None


def diff(a: Run, b: Run) -> RunDiff:
    """What differs between two runs, most likely causes first (see ``labtrack.core.diff``)."""
    view_a, view_b = run_view(a), run_view(b)
    result = diff_runs(view_a, view_b, git_log=_git_log(view_a, view_b))
    return result


_FACTS: dict[str, dict[str, str]] = {}  # environment fingerprint -> its facts (runs share environments)


def _env_value(run: Run, key: str) -> str | None:
    """An environment fact of a run (``env.packages.scikit-learn``, ``env.gpu.name`` ...), as filters name
    them; facts with several values (several GPU models) are joined."""
    fingerprint = run.record.env_fingerprint
    facts = _FACTS.get(fingerprint) if fingerprint else None
    if facts is None:
        from labtrack.core.environment import environment_facts

        env = run.environment
        if env is None:
            return None
        facts = {}
        for name, text, _ in environment_facts(env.snapshot):
            facts[name] = f"{facts[name]}, {text}" if name in facts else text
        if fingerprint:
            _FACTS[fingerprint] = facts
    return facts.get(key)


def column_values(run: Run, field: Field) -> Any:
    """The value of one field (params.x, metrics.x[.min], tags.x, attributes.x, env.x) for a run."""
    record = run.record
    if field.kind == "params":
        return record.params.get(field.key)
    if field.kind == "tags":
        return record.tags.get(field.key)
    if field.kind == "metrics":
        summary = record.metrics.get(field.key)
        return None if summary is None else getattr(summary, field.aggregate)
    if field.kind == "attributes":
        return {"experiment": record.experiment, "run_key": record.run_key, "env_fingerprint": record.env_fingerprint,
                }.get(field.key, getattr(record, field.key, None))
    if field.kind == "env":
        return _env_value(run, field.key)
    raise InvalidInput(f"{field} cannot be shown as a column; use params., metrics., tags., attributes. or env.",
                       field="columns")


def columns(runs: Sequence[Run], names: Sequence[str]) -> RunColumns:
    """The values of the fields ``names`` (``params.lr``, ``metrics.loss.min`` ...) for each run."""
    fields = [parse_field(name) for name in names]
    shown = [str(f) for f in fields]
    rows = [ColumnRow(run.id, {name: column_values(run, f) for name, f in zip(shown, fields)}) for run in runs]
    return RunColumns(shown, rows)


def group(runs: Sequence[Run], by: Sequence[str], metrics: Sequence[str] | None = None, *,
          order: Sequence[OrderTerm] = (), statuses: Sequence[str] | None = ("FINISHED",)) -> Grouping:
    """Group runs by the values of ``by`` (e.g. ["params.lr"]) and summarise metrics as mean ± std (n).

    ``metrics`` names what to summarise — ``acc``, ``metrics.acc`` or an aggregate such as
    ``metrics.loss.min`` — and defaults to the last value of every metric the runs logged. Only runs of
    ``statuses`` are summarised (default FINISHED: a crashed run's last loss is no result; None: all).
    ``order`` sorts the groups: by a summarised metric's mean, or by a grouped-by field.
    """
    fields = [parse_field(name, "group_by") for name in by]
    by_names = [str(f) for f in fields]
    kept = [run for run in runs if statuses is None or run.record.status.value in statuses]
    logged = sorted({k for run in kept for k in run.record.metrics})
    if metrics:
        summarised = []
        for name in metrics:
            if name.split(".", 1)[0] in FIELD_KINDS and not name.startswith("metrics."):
                raise InvalidInput(f"{name} cannot be averaged over a group; name metrics, e.g. metrics.acc or "
                                   "metrics.loss.min (group by it with --group-by instead)", field="columns")
            summarised.append(parse_field(name if name.startswith("metrics.") else f"metrics.{name}"))
        unknown = [str(f) for f in summarised if f.key not in logged]
        if kept and unknown:
            raise InvalidInput(f"no run here logged {', '.join(unknown)}; the runs logged: "
                               f"{', '.join(logged) or 'no metrics'}", field="columns")
    else:
        summarised = [Field("metrics", k) for k in logged]
    sorts = [_group_sort(term, by_names) for term in order]
    for sort_field, _ in sorts:  # sorting by a metric summarises it, even when --columns left it out
        if sort_field.kind == "metrics" and str(sort_field) not in {str(f) for f in summarised}:
            summarised.append(sort_field)
    rows = []
    for run in kept:
        row: dict[str, Any] = {name: column_values(run, f) for name, f in zip(by_names, fields)}
        for f in summarised:
            value = column_values(run, f)
            if value is not None:
                row[str(f)] = value
        rows.append(row)
    names = [str(f) for f in summarised]
    found = group_runs(rows, by_names, names)
    for sort_field, descending in reversed(sorts):  # stable: the first term decides, later ones break ties
        found = _sorted_groups(found, str(sort_field), by_names, descending)
    return Grouping(by_names, names, found, list(statuses) if statuses is not None else None, len(runs) - len(kept))


def _group_sort(term: OrderTerm, by: Sequence[str]) -> tuple[Field, bool]:
    """The column of a grouped table that ``term`` sorts by: a metric's summary, or a grouped-by field."""
    field = Field(term.kind, term.key, term.aggregate if term.kind == "metrics" else "last")
    if term.kind != "metrics" and str(field) not in by:
        raise InvalidInput(f"a grouped table sorts by a metric (its mean) or a --group-by field, not {field}",
                           field="order_by")
    return field, term.descending


def _sorted_groups(groups: list[Group], name: str, by: Sequence[str], descending: bool) -> list[Group]:
    def value(g: Group) -> Any:
        if name in by:
            return g.key[list(by).index(name)]
        stats = g.metrics.get(name)
        return stats.mean if stats is not None else None

    present = [g for g in groups if value(g) is not None]
    missing = [g for g in groups if value(g) is None]  # groups without the value sort last, as runs do
    try:
        present.sort(key=value, reverse=descending)
    except TypeError:  # values of mixed types: by their text
        present.sort(key=lambda g: str(value(g)), reverse=descending)
    return present + missing
