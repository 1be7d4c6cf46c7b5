"""core.aggregate: repeated runs grouped by their params, each metric summarised as mean ± std (n)."""

from __future__ import annotations

import math
import statistics

import pytest

from labtrack.core.aggregate import group_runs


def test_groups_summarise_each_metric_like_the_statistics_module() -> None:
    rows = [{"params.lr": 0.1, "metrics.acc": v} for v in (0.91, 0.93, 0.94)] + [{"params.lr": 0.01, "metrics.acc": 0.5}]
    groups = {g.key: g for g in group_runs(rows, ["params.lr"], ["metrics.acc"])}
    stats = groups[(0.1,)].metrics["metrics.acc"]
    assert (stats.n, stats.min, stats.max) == (3, 0.91, 0.94)
    assert stats.mean == pytest.approx(statistics.mean([0.91, 0.93, 0.94]), rel=1e-15)
    assert stats.std == pytest.approx(statistics.stdev([0.91, 0.93, 0.94]), rel=1e-12)
    assert groups[(0.01,)].metrics["metrics.acc"].std == 0.0 and groups[(0.01,)].runs == 1


def test_runs_that_agree_exactly_have_no_spread_not_a_rounding_error() -> None:
    rows = [{"params.lr": 0.1, "metrics.loss": 0.1} for _ in range(3)]
    stats = group_runs(rows, ["params.lr"], ["metrics.loss"])[0].metrics["metrics.loss"]
    assert (stats.mean, stats.std) == (0.1, 0.0)


def test_non_finite_and_missing_values_are_left_out_of_the_summary_but_the_run_counts() -> None:
    rows = [{"params.lr": 1, "metrics.acc": 0.5}, {"params.lr": 1, "metrics.acc": math.nan}, {"params.lr": 1}]
    group = group_runs(rows, ["params.lr"], ["metrics.acc"])[0]
    assert group.runs == 3 and group.metrics["metrics.acc"].n == 1
