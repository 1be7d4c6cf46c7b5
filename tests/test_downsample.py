"""Min-max downsampling for charts (labtrack.core.downsample): deterministic, and no spike is ever lost."""

from __future__ import annotations

import math
from array import array

import pytest

from labtrack.core.downsample import downsample, index_range


def series(n: int) -> tuple[array, array]:  # type: ignore[type-arg]
    return array("q", range(n)), array("d", (0.5 + 0.001 * (i % 10) for i in range(n)))


@pytest.mark.parametrize("n, buckets", [(1_000_000, 1600), (20_000, 1000), (1001, 1000), (3, 1)])
def test_a_single_spike_survives_in_its_bucket_maximum(n: int, buckets: int) -> None:
    xs, values = series(n)
    values[n // 3] = 42.0
    found = downsample(xs, values, buckets)
    assert len(found.x) == buckets and not found.full
    assert max(v for v in found.high if v is not None) == 42.0
    assert min(v for v in found.low if v is not None) == 0.5
    assert found.x == sorted(found.x) and found.x[0] == 0 and found.points == n


def test_the_same_series_gives_the_same_buckets_every_time() -> None:
    xs, values = series(50_000)
    assert downsample(xs, values, 777) == downsample(xs, values, 777)


@pytest.mark.parametrize("n", [0, 1, 10, 800])
def test_no_more_points_than_buckets_come_back_as_they_are(n: int) -> None:
    xs, values = series(n)
    found = downsample(xs, values, 800)
    assert found.full and found.x == list(map(float, xs)) and found.y == list(values) == found.low == found.high


def test_nan_and_infinity_become_gaps_and_do_not_poison_a_bucket() -> None:
    xs = array("q", range(10))
    values = array("d", [1.0, math.nan, 3.0, math.inf, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    full = downsample(xs, values, 100)
    assert full.y[1] is None and full.y[3] is None and full.y[2] == 3.0
    bucketed = downsample(xs, values, 2)
    assert bucketed.low[0] == 1.0 and bucketed.high[0] == 5.0 and bucketed.y[0] == 3.0


@pytest.mark.parametrize("x0, x1, expected", [
    (None, None, (0, 100)),
    (10, 20, (9, 22)),  # one point beyond each end, so the line reaches the chart's edges
    (0, 5, (0, 7)),
    (95, 1000, (94, 100)),
    (200, 300, (99, 100)),
    (10.5, 10.7, (10, 12)),
])
def test_a_zoom_range_selects_its_points_and_one_more_on_each_side(x0: float | None, x1: float | None,
                                                                   expected: tuple[int, int]) -> None:
    assert index_range(array("q", range(100)), x0, x1) == expected


def test_a_zoomed_range_is_bucketed_within_itself() -> None:
    xs, values = series(1_000_000)
    values[500_100] = -7.0
    start, stop = index_range(xs, 500_000, 500_200)
    found = downsample(xs, values, 1600, start, stop)
    assert found.full and found.points == 201 + 2 and -7.0 in found.y
    wide = downsample(xs, values, 100, *index_range(xs, 400_000, 600_000))
    assert not wide.full and min(v for v in wide.low if v is not None) == -7.0 and wide.x[0] >= 399_999
