"""The URL is the state: what a runs table or a compare page shows, read from and written to its query string.

Reloading a page or opening a shared link reproduces the view exactly, because nothing a view depends on
lives anywhere but in the URL: the filter, the sort, the columns (and which are pinned), the group-by, the
differences-only toggle, the selected runs and the chart settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

__all__ = ["ChartSettings", "TableState"]

_X_AXES = ("step", "relative", "wall")
_SORTABLE_ATTRIBUTES = ("start_time", "end_time", "status", "name", "id", "run_id", "heartbeat_time", "experiment")


def _flag(value: str | None) -> bool:
    return value not in (None, "", "0", "false", "off")


def _many(query: Any, name: str) -> list[str]:
    """Every value of a repeated parameter (``col=a&col=b``), once each (not split on commas: a backticked
    key may hold one)."""
    values = query.getlist(name) if hasattr(query, "getlist") else [query[name]] if name in query else []
    out: list[str] = []
    for value in values:
        piece = str(value).strip()
        if piece and piece not in out:
            out.append(piece)
    return out


@dataclass(frozen=True)
class ChartSettings:
    """How charts draw: x axis (step, relative time, wall time), log y, EMA smoothing (0..0.99), outliers."""

    x: str = "step"
    log: bool = False
    smooth: float = 0.0
    outliers: bool = True  # False: the y range ignores the top and bottom 1% of values

    @classmethod
    def from_query(cls, query: Any) -> ChartSettings:
        x = query.get("x", "step")
        try:
            smooth = min(max(float(query.get("smooth", 0) or 0), 0.0), 0.99)
        except ValueError:
            smooth = 0.0
        return cls(x if x in _X_AXES else "step", _flag(query.get("log")), smooth, not _flag(query.get("nooutliers")))

    def query(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.x != "step":
            out["x"] = self.x
        if self.log:
            out["log"] = "1"
        if self.smooth:
            out["smooth"] = f"{self.smooth:g}"
        if not self.outliers:
            out["nooutliers"] = "1"
        return out


@dataclass(frozen=True)
class TableState:
    """A runs table as its URL says: ``/runs?experiment=E&filter=F&sort=S&col=C&pin=P&group=G&diff=1&sel=ID``."""

    experiment: str
    filter: str = ""
    sort: str = ""  # an order term: "metrics.acc desc", "params.lr", "" = newest first
    columns: tuple[str, ...] | None = None  # None: the default columns (the runs' params and metrics)
    pinned: tuple[str, ...] = ()
    group: str = ""
    diff: bool = False
    selected: tuple[str, ...] = ()
    chart: ChartSettings = field(default_factory=ChartSettings)

    @classmethod
    def from_query(cls, query: Any) -> TableState:
        columns = _many(query, "col")
        return cls(
            experiment=str(query.get("experiment", "")),
            filter=str(query.get("filter", "")).strip(),
            sort=str(query.get("sort", "")).strip(),
            columns=tuple(columns) if columns or _flag(query.get("nocols")) else None,
            pinned=tuple(_many(query, "pin")),
            group=str(query.get("group", "")).strip(),
            diff=_flag(query.get("diff")),
            selected=tuple(_many(query, "sel")),
            chart=ChartSettings.from_query(query),
        )

    def with_(self, **changes: Any) -> TableState:
        return replace(self, **changes)

    def params(self) -> list[tuple[str, str]]:
        """The query string's pairs, defaults left out (a short, stable URL)."""
        out: list[tuple[str, str]] = [("experiment", self.experiment)]
        if self.filter:
            out.append(("filter", self.filter))
        if self.sort:
            out.append(("sort", self.sort))
        if self.columns is not None:
            out += [("col", c) for c in self.columns] or [("nocols", "1")]
        out += [("pin", p) for p in self.pinned]
        if self.group:
            out.append(("group", self.group))
        if self.diff:
            out.append(("diff", "1"))
        out += [("sel", s) for s in self.selected]
        out += list(self.chart.query().items())
        return out

    def url(self, path: str = "/runs", **changes: Any) -> str:
        state = self.with_(**changes) if changes else self
        return f"{path}?{urlencode(state.params())}"

    def sortable(self, column: str) -> bool:
        """Whether the store can order by ``column`` (params, metrics, tags, most attributes; not env facts)."""
        kind, _, key = column.partition(".")
        return kind in ("params", "metrics", "tags") or (kind == "attributes" and key in _SORTABLE_ATTRIBUTES)

    def sort_url(self, column: str) -> str:
        """The URL that sorts by ``column``: descending first for metrics, ascending for the rest; again
        flips the direction."""
        name, _, direction = self.sort.partition(" ")
        if name == column:
            flipped = "asc" if direction.strip().lower() == "desc" else "desc"
            return self.url(sort=f"{column} {flipped}")
        first = "desc" if column.startswith("metrics.") or column in ("start_time", "attributes.start_time") else "asc"
        return self.url(sort=f"{column} {first}")

    def sorted_by(self, column: str) -> str | None:
        """"asc" or "desc" when the table is sorted by ``column``."""
        name, _, direction = self.sort.partition(" ")
        if name != column:
            return None
        return "desc" if direction.strip().lower() == "desc" else "asc"

