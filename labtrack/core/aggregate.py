"""Aggregating repeated runs: group by param values and summarise each metric as mean ± std (n).

The "reproducibility of results" table: runs repeated over seeds, grouped by the params that define the
experiment, show how much a metric varies. Pure: it works on plain dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labtrack.core.identity import canonical_json

__all__ = ["Group", "Grouping", "MetricStats", "group_runs"]


@dataclass(frozen=True)
class MetricStats:
    n: int
    mean: float
    std: float  # sample standard deviation (n - 1); 0.0 for a single run
    min: float
    max: float

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n})"


@dataclass(frozen=True)
class Group:
    key: tuple[Any, ...]  # the grouped-by values, in the order asked
    runs: int
    metrics: dict[str, MetricStats]


@dataclass(frozen=True)
class Grouping:
    """Groups of runs, with the fields they are grouped by and the metrics summarised, in display order."""

    by: list[str]
    metrics: list[str]
    groups: list[Group]
    statuses: list[str] | None = None  # the statuses of the runs summarised (None: every status)
    left_out: int = 0  # matching runs of other statuses, not summarised


def _stats(values: list[float]) -> MetricStats | None:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return None
    n, low, high = len(finite), min(finite), max(finite)
    if low == high:  # repeated runs that agree exactly: no spread, not a rounding error's worth of one
        return MetricStats(n, low, 0.0, low, high)
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0
    return MetricStats(n, mean, std, low, high)


def group_runs(rows: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str]) -> list[Group]:
    """``rows``: one dict per run with "params.x"/"tags.x"/"metrics.x" keys (missing = absent)."""
    groups: dict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}
    for row in rows:
        key = tuple(row.get(name) for name in by)
        groups.setdefault(canonical_json(list(key)), (key, []))[1].append(row)
    out = []
    for key, members in groups.values():
        stats = {}
        for metric in metrics:
            s = _stats([m[metric] for m in members if metric in m])
            if s is not None:
                stats[metric] = s
        out.append(Group(key, len(members), stats))
    out.sort(key=lambda g: [(v is None, str(type(v)), v if v is not None else 0) for v in g.key])
    return out
