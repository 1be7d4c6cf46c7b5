"""Comparing runs: the semantic diff of two runs and side-by-side tables of many.

``diff(a, b)`` builds what the store recorded about each run into ``core.diff.RunView`` values and adds
the one thing that needs this machine: ``git log`` between the two commits when the repository is here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from labtrack.core.aggregate import Grouping, group_runs
from labtrack.core.diff import RunDiff, RunView, diff_runs
from labtrack.core.errors import InvalidInput
from labtrack.core.filters import FIELD_KINDS, Field, parse_field
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


def column_values(run: Run, field: Field) -> Any:
    """The value of one field (params.x, metrics.x[.min], tags.x, attributes.x) for a run."""
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
    raise InvalidInput(f"{field} cannot be shown as a column; use params., metrics., tags. or attributes.",
                       field="columns")


def columns(runs: Sequence[Run], names: Sequence[str]) -> RunColumns:
    """The values of the fields ``names`` (``params.lr``, ``metrics.loss.min`` ...) for each run."""
    fields = [parse_field(name) for name in names]
    shown = [str(f) for f in fields]
    rows = [ColumnRow(run.id, {name: column_values(run, f) for name, f in zip(shown, fields)}) for run in runs]
    return RunColumns(shown, rows)


def group(runs: Sequence[Run], by: Sequence[str], metrics: Sequence[str] | None = None) -> Grouping:
    """Group runs by the values of ``by`` (e.g. ["params.lr"]) and summarise metrics as mean ± std (n).

    ``metrics`` names what to summarise — ``acc``, ``metrics.acc`` or an aggregate such as
    ``metrics.loss.min`` — and defaults to the last value of every metric the runs logged.
    """
    fields = [parse_field(name) for name in by]
    by_names = [str(f) for f in fields]
    logged = sorted({k for run in runs for k in run.record.metrics})
    if metrics:
        summarised = []
        for name in metrics:
            if name.split(".", 1)[0] in FIELD_KINDS and not name.startswith("metrics."):
                raise InvalidInput(f"{name} cannot be averaged over a group; name metrics, e.g. metrics.acc or "
                                   "metrics.loss.min (group by it with --group-by instead)", field="columns")
            summarised.append(parse_field(name if name.startswith("metrics.") else f"metrics.{name}"))
        unknown = [str(f) for f in summarised if f.key not in logged]
        if runs and unknown:
            raise InvalidInput(f"no run here logged {', '.join(unknown)}; the runs logged: "
                               f"{', '.join(logged) or 'no metrics'}", field="columns")
    else:
        summarised = [Field("metrics", k) for k in logged]
    rows = []
    for run in runs:
        row: dict[str, Any] = {name: column_values(run, f) for name, f in zip(by_names, fields)}
        for f in summarised:
            value = column_values(run, f)
            if value is not None:
                row[str(f)] = value
        rows.append(row)
    names = [str(f) for f in summarised]
    return Grouping(by_names, names, group_runs(rows, by_names, names))
