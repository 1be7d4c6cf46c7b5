"""Metric series for charts: read once, kept for zooming, sent downsampled (``labtrack.core.downsample``).

A chart asks for a metric of one or more runs at its pixel width; the server answers with at most about two
buckets per pixel per run. A zoom asks again for an x range: the points in it are re-read from the history
kept here (an ended run's history never changes; a running one's is read again when its point count moves),
so a zoom into a million points answers in milliseconds, at full resolution once few enough points are left.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from labtrack.core.downsample import downsample, index_range
from labtrack.core.errors import InvalidInput
from labtrack.core.model import MetricHistory
from labtrack.run.handle import Run

__all__ = ["CACHE_POINTS", "MAX_WIDTH", "HistoryCache", "series_json"]

MAX_WIDTH = 4096  # pixels; more would only make the answer bigger
CACHE_POINTS = 8_000_000  # points kept over all cached histories (24 bytes each: ~190 MB at most)


class HistoryCache:
    """The most recently charted histories, up to ``CACHE_POINTS`` points in all (least recently used go)."""

    def __init__(self, max_points: int = CACHE_POINTS) -> None:
        self.max_points = max_points
        self._items: OrderedDict[tuple[str, str, str], tuple[Any, MetricHistory]] = OrderedDict()
        self._points = 0
        self._lock = threading.Lock()

    def history(self, run: Run, key: str) -> MetricHistory:
        summary = run.record.metrics.get(key)
        version = (summary.count, summary.last_step, summary.last_timestamp) if summary is not None else None
        name = (run.store.display_url, run.id, key)
        with self._lock:
            found = self._items.get(name)
            if found is not None and found[0] == version and version is not None:
                self._items.move_to_end(name)
                return found[1]
        history = run.history(key)
        with self._lock:
            old = self._items.pop(name, None)
            if old is not None:
                self._points -= len(old[1])
            if len(history) <= self.max_points:
                self._items[name] = (version, history)
                self._points += len(history)
            while self._points > self.max_points and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._points -= len(dropped)
        return history


class _ByTime:
    """A history's points in time order, for the time axes: the history's own columns when its step order is
    time order (the usual case, checked once per history), else sorted copies (a resumed run that logged
    steps again). The last few are kept, for zooming."""

    def __init__(self, slots: int = 4) -> None:
        self.slots = slots
        self._items: OrderedDict[int, tuple[MetricHistory, Sequence[float], Sequence[float]]] = OrderedDict()
        self._lock = threading.Lock()

    def columns(self, history: MetricHistory) -> tuple[Sequence[float], Sequence[float]]:
        with self._lock:
            found = self._items.get(id(history))
            if found is not None and found[0] is history:
                self._items.move_to_end(id(history))
                return found[1], found[2]
        times = history.timestamps
        columns: tuple[Sequence[float], Sequence[float]]
        if sorted(times) == list(times):  # the usual case (sorted data sorts in one pass): no copy
            columns = (times, history.values)
        else:
            order = sorted(range(len(times)), key=times.__getitem__)
            columns = ([times[i] for i in order], [history.values[i] for i in order])
        with self._lock:
            self._items[id(history)] = (history, *columns)
            while len(self._items) > self.slots:
                self._items.popitem(last=False)
        return columns


_BY_TIME = _ByTime()


def series_json(cache: HistoryCache, runs: Sequence[Run], key: str, *, width: int, axis: str = "step",
                x0: float | None = None, x1: float | None = None) -> dict[str, Any]:
    """The metric ``key`` of each run over ``[x0, x1]`` (all when None), at most ``2 * width`` buckets each:
    ``{"key", "axis", "series": [{"run", "name", "x", "y", "low", "high", "points", "full"}]}``."""
    if axis not in ("step", "relative", "wall"):
        raise InvalidInput(f"x must be step, relative or wall, got {axis!r}", field="x")
    if not 1 <= width <= MAX_WIDTH:
        raise InvalidInput(f"width must be 1..{MAX_WIDTH} pixels, got {width}", field="width")
    out = []
    for run in runs:
        if key not in run.record.metrics:
            continue
        history = cache.history(run, key)
        xs, values = (history.steps, history.values) if axis == "step" else _BY_TIME.columns(history)
        shift = xs[0] if axis == "relative" and len(history) else 0.0  # seconds since its first point
        start, stop = index_range(xs, None if x0 is None else x0 + shift, None if x1 is None else x1 + shift)
        found = downsample(xs, values, 2 * width, start, stop)
        x = [v - shift for v in found.x] if shift else found.x
        out.append({"run": run.id, "name": run.record.name or run.id[:8], "x": x, "y": found.y,
                    "low": found.low, "high": found.high, "points": found.points, "full": found.full,
                    "total": len(history)})
    return {"key": key, "axis": axis, "series": out}

