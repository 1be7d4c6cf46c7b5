"""Plain records that cross the store boundary. No I/O here: the store fills them, the faces render them.

Each travels in the one wire format of ``core.wire`` (a metric history packed, like a chunk).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

# OrderTerm is imported at run time although only hints name it: the wire format reads the hints.
from labtrack.core.query import OrderTerm
from labtrack.core.series import POINT_FIELDS, Chunk, SeriesArray, decode_points, encode_points
from labtrack.core.wire import Json, expect_object, from_wire, join_path, to_wire

if TYPE_CHECKING:
    from labtrack.core.filters import Node

__all__ = [
    "ArtifactInfo",
    "ClaimState",
    "Collected",
    "DamagedChunk",
    "Experiment",
    "IngestMark",
    "Lifecycle",
    "MetricHistory",
    "MetricSummary",
    "NewRun",
    "Recovery",
    "RunEnd",
    "RunRecord",
    "RunStatus",
    "RunWrite",
    "Search",
    "StoreCheck",
    "effective_status",
    "wire_types",
]


class RunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    CRASHED = "CRASHED"  # the process died without ending the run (detected, never logged by it)

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self is not RunStatus.RUNNING


class Lifecycle(enum.StrEnum):
    """Which runs (or experiments) a listing shows: the live ones (the default), the deleted ones (restorable
    until ``labtrack gc``), or both. MLflow calls these view types ACTIVE_ONLY, DELETED_ONLY and ALL."""

    ACTIVE = "active"
    DELETED = "deleted"
    ALL = "all"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    created_time: float
    deleted_time: float | None = None  # set while deleted (``labtrack delete --experiment``)


@dataclass(frozen=True)
class MetricSummary:
    """What search and sort use: the series' last point (highest step, latest logged) and its range.

    min/max ignore NaN; a series of only NaN has min = max = NaN.
    """

    key: str
    last: float
    last_step: int
    last_timestamp: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class MetricHistory:
    """Every point of one metric of one run, ordered by step (then by logging order): iterate it for
    ``(step, timestamp, value)`` points, or take the columns ``steps``, ``timestamps``, ``values``.

    The columns are ``SeriesArray``s (``array('q')``/``array('d')``): compact, read from the store without a
    Python object per point, wrapped by numpy without a copy (``np.asarray(h.values)``, ``to_numpy()``),
    and equal to lists of the same numbers. Lists given to the constructor are converted."""

    key: str
    steps: SeriesArray
    timestamps: SeriesArray
    values: SeriesArray

    def __post_init__(self) -> None:
        for name, code in (("steps", "q"), ("timestamps", "d"), ("values", "d")):
            column = getattr(self, name)
            if not isinstance(column, SeriesArray) or column.typecode != code:
                object.__setattr__(self, name, SeriesArray(code, column))

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, float, float]]:
        return zip(self.steps, self.timestamps, self.values)

    def points(self) -> list[tuple[int, float, float]]:
        return list(self)

    def to_numpy(self) -> Any:
        """A numpy structured array with the fields ``step`` (int64), ``timestamp`` and ``value`` (float64)."""
        import numpy as np  # an optional extra, needed only here

        out = np.empty(len(self.steps), dtype=[("step", "<i8"), ("timestamp", "<f8"), ("value", "<f8")])
        out["step"] = np.frombuffer(self.steps, dtype=np.int64)  # the columns' buffers, read without boxing
        out["timestamp"] = np.frombuffer(self.timestamps, dtype=np.float64)
        out["value"] = np.frombuffer(self.values, dtype=np.float64)
        return out

    def to_pandas(self) -> Any:
        """A DataFrame with the columns ``step``, ``timestamp`` (datetime, UTC) and ``value``; needs pandas
        (``pip install 'labtrack[pandas]'``)."""
        try:
            import pandas as pd  # an optional extra, needed only here
        except ImportError as exc:
            raise ImportError("MetricHistory.to_pandas needs pandas: pip install 'labtrack[pandas]'") from exc
        import numpy as np  # pandas needs it

        return pd.DataFrame({
            "step": np.frombuffer(self.steps, dtype=np.int64).copy(),
            "timestamp": pd.to_datetime(np.frombuffer(self.timestamps, dtype=np.float64), unit="s", utc=True),
            "value": np.frombuffer(self.values, dtype=np.float64).copy(),
        })

    def wire_encode(self) -> dict[str, Json]:
        return {"key": self.key, **encode_points(self.steps, self.timestamps, self.values)}

    @classmethod
    def wire_decode(cls, data: object, path: str) -> MetricHistory:
        fields = expect_object(data, path, ("key", *POINT_FIELDS))
        chunk = decode_points(fields, path)
        return cls(from_wire(str, fields["key"], path=join_path(path, "key")), SeriesArray("q", chunk.steps),
                   SeriesArray("d", chunk.timestamps), SeriesArray("d", chunk.values))


@dataclass(frozen=True)
class ArtifactInfo:
    path: str  # relative, posix, inside the run
    sha256: str
    size: int


@dataclass
class RunRecord:
    """Everything the store knows about one run."""

    id: str
    experiment: str
    status: RunStatus
    start_time: float
    end_time: float | None = None
    heartbeat_time: float | None = None
    host: str | None = None
    pid: int | None = None
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    error: dict[str, str] | None = None
    run_key: str | None = None
    env_fingerprint: str | None = None
    note: str | None = None
    result: Any = None  # a tracked function's recorded return value
    deleted_time: float | None = None  # set while the run is deleted (hidden from searches; restorable)

    def to_dict(self) -> dict[str, Any]:
        """The run in the wire format (``core.wire``): its fields by name, the metric summaries' too."""
        return cast("dict[str, Any]", to_wire(self))


def effective_status(record: RunRecord, now: float, stale_after: float) -> RunStatus:
    """RUNNING whose heartbeat is older than ``stale_after`` seconds is shown as CRASHED.

    The heartbeat is renewed by the logging process in the background; a process killed with
    SIGKILL or by the OOM killer stops renewing it, so its run can never stay RUNNING forever.
    """
    if record.status is not RunStatus.RUNNING:
        return record.status
    beat = record.heartbeat_time if record.heartbeat_time is not None else record.start_time
    return RunStatus.CRASHED if now - beat > stale_after else RunStatus.RUNNING


class ClaimState(enum.StrEnum):
    """What ``Store.claim`` answers for a configuration (a run key) that a sweep worker wants to run."""

    CLAIMED = "claimed"  # the caller holds it now, for the lease
    DONE = "done"  # a FINISHED run has this key (or its claim was released as done)
    BUSY = "busy"  # another worker holds a live lease on it
    FAILED = "failed"  # it failed earlier in the same sweep: the next sweep retries it, not this one


@dataclass(frozen=True)
class NewRun:
    """A run to create: its id is chosen by the client (32 lowercase hex), so creating it twice is harmless."""

    id: str
    experiment: str
    start_time: float
    name: str | None = None
    host: str | None = None
    pid: int | None = None
    params: Mapping[str, Any] | None = None
    tags: Mapping[str, str] | None = None
    run_key: str | None = None
    env_fingerprint: str | None = None
    context: Mapping[str, Any] | None = None
    note: str | None = None
    artifacts: Sequence[ArtifactInfo] = ()


@dataclass(frozen=True)
class Search:
    """A search of runs, as a store takes it (and a search's result keeps it, to load its runs as columns).

    ``stale_before``: a RUNNING run whose heartbeat is older counts as CRASHED for ``attributes.status``.
    ``lifecycle``: live runs (the default), deleted ones, or both.
    """

    experiments: Sequence[str] | None = None
    order_by: Sequence[OrderTerm] = ()
    max_results: int | None = None
    offset: int = 0
    run_key: str | None = None
    filter: Node | None = None
    stale_before: float = 0.0
    lifecycle: Lifecycle = Lifecycle.ACTIVE


@dataclass(frozen=True)
class RunEnd:
    """The end of a run: its terminal status, when, and for FAILED/KILLED runs what happened."""

    status: RunStatus
    end_time: float
    error: Mapping[str, str] | None = None


@dataclass(frozen=True)
class IngestMark:
    """How far into one writer's spool (``source``) a run's points are stored: the positions just past the
    last journal record and the last point written. A write carrying a mark at or below the stored one has
    its points stored already (an earlier attempt committed although it reported an error): the store skips
    them, so a retried or recovered write stores every point exactly once."""

    source: str
    journal: int
    points: int


@dataclass
class RunWrite:
    """Everything a writer has for one run, applied by ``Store.write`` in one transaction, in this order:
    create the run, params, tags, note, context sections, environment, artifacts, result, metric points
    (with the ingest mark), end."""

    run_id: str
    create: NewRun | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    context: dict[str, Any] = field(default_factory=dict)  # sections replacing those of the run's context
    env_fingerprint: str | None = None  # repoint the run's shared environment snapshot
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    has_result: bool = False
    result: Any = None  # a tracked function's return value (JSON), written when ``has_result``
    metrics: dict[str, Chunk] = field(default_factory=dict)
    new_keys: frozenset[str] = frozenset()  # metric keys the writer knows have no points stored yet
    mark: IngestMark | None = None
    end: RunEnd | None = None

    @property
    def points(self) -> int:
        return sum(len(chunk) for chunk in self.metrics.values())


@dataclass
class Recovery:
    """What storing dead processes' spools did (``labtrack recover``): how many spools, which runs got writes
    from them, how many points, which runs were then marked CRASHED, and what could not be done yet."""

    spools: int = 0
    runs: set[str] = field(default_factory=set)
    points: int = 0
    crashed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, other: Recovery) -> None:
        self.spools += other.spools
        self.runs |= other.runs
        self.points += other.points
        self.crashed += other.crashed
        self.problems += other.problems


@dataclass(frozen=True)
class DamagedChunk:
    """A stored metric chunk whose bytes fail their checks: its points are refused when read."""

    run_id: str
    experiment: str
    key: str
    seq: int  # the chunk's position in the series, from 0
    problem: str


@dataclass
class StoreCheck:
    """What ``labtrack db check`` found: every metric chunk read and checked against its checksum, and on
    SQLite the database's own structural check (``PRAGMA quick_check``)."""

    chunks: int = 0
    points: int = 0
    unchecked: int = 0  # chunks written before schema revision 0005: only their sizes can be checked
    damaged: list[DamagedChunk] = field(default_factory=list)
    database: list[str] = field(default_factory=list)  # what the database's own check reported, if not "ok"
    advice: list[str] = field(default_factory=list)  # what to do about what was found
    wire_derived: ClassVar[tuple[str, ...]] = ("ok",)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.database


@dataclass
class Collected:
    """What ``labtrack gc`` removed for good (with ``dry_run``: would remove): runs deleted before its cut-off,
    deleted experiments left without runs, and artifact blobs that no remaining run lists."""

    runs: int = 0
    experiments: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    kept_running: int = 0  # deleted runs whose process still writes to them: collected once they end
    kept_recent_blobs: int = 0  # unlisted blobs stored within the last hour: a run may be about to list them
    dry_run: bool = False
    compacted_bytes: int | None = None  # what compacting the database file gave back (``--vacuum``)


def wire_types() -> dict[str, object]:
    """The names this module's hints use that it imports only when asked (the filter language's nodes,
    which ``import labtrack`` does not need): ``core.wire`` resolves the hints with them."""
    from labtrack.core.filters import Node

    return {"Node": Node}
