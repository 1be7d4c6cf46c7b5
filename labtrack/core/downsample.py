"""Min-max downsampling of a metric series for a chart: deterministic, and never hides a spike.

A chart ``width`` pixels wide shows at most about ``2 * width`` buckets. Each bucket holds consecutive
points and is drawn as its mean (the line) with its minimum and maximum (a band), so a single outlier among
a million points still shows at its height — sampling one point in N (or at random) would drop it. A range
with no more points than buckets is returned as it is (``full``), which is what a zoom re-query gets once
the user has zoomed in far enough.

Bucketing is by position: with points ordered by step, bucket ``i`` holds points ``[i*n/b, (i+1)*n/b)``.
``min``/``max``/``sum`` over array slices run in C, so a million points take a few milliseconds. Pure: no
I/O, the caller passes the columns of a ``MetricHistory``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Downsampled", "downsample", "index_range"]


@dataclass(frozen=True)
class Downsampled:
    """Buckets of a series: x of each bucket's first point, the mean, min and max of its values, and how
    many points there were in the range (``points``); ``full`` when every point is there (no bucket merges
    two points, so ``low == high == y``)."""

    x: list[float]
    y: list[float | None]
    low: list[float | None]
    high: list[float | None]
    points: int
    full: bool


def index_range(xs: Sequence[float], x0: float | None, x1: float | None) -> tuple[int, int]:
    """The slice ``[i, j)`` of the points whose x lies in ``[x0, x1]`` (``xs`` ascending), widened by one
    point on each side so that a zoomed line runs to the chart's edges."""
    i = 0 if x0 is None else max(bisect.bisect_left(xs, x0) - 1, 0)
    j = len(xs) if x1 is None else min(bisect.bisect_right(xs, x1) + 1, len(xs))
    return i, max(i, j)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN or infinity: a gap in the line


def downsample(xs: Sequence[float], values: Sequence[float], buckets: int, start: int = 0,
               stop: int | None = None) -> Downsampled:
    """At most ``buckets`` buckets of the points ``[start, stop)`` of ``(xs, values)``."""
    stop = len(values) if stop is None else stop
    n = max(stop - start, 0)
    buckets = max(int(buckets), 1)
    if n <= buckets:
        ys = [_finite(v) for v in values[start:stop]]
        return Downsampled([float(x) for x in xs[start:stop]], ys, ys, ys, n, True)
    out_x: list[float] = []
    out_y: list[float | None] = []
    low: list[float | None] = []
    high: list[float | None] = []
    for b in range(buckets):
        i = start + b * n // buckets
        j = start + (b + 1) * n // buckets
        piece = values[i:j]
        total = sum(piece)
        if math.isfinite(total):
            out_y.append(total / len(piece))
            low.append(min(piece))
            high.append(max(piece))
        else:  # a NaN or an infinity in the bucket, or a sum past the largest float: the finite values only
            finite = [v for v in piece if math.isfinite(v)]
            out_y.append(_finite(sum(v / len(finite) for v in finite)) if finite else None)
            low.append(min(finite) if finite else None)
            high.append(max(finite) if finite else None)
        out_x.append(float(xs[i]))
    return Downsampled(out_x, out_y, low, high, n, False)
