"""Plain records that cross the store boundary. No I/O here: the store fills them, the faces render them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ArtifactInfo",
    "Experiment",
    "MetricHistory",
    "MetricSummary",
    "RunRecord",
    "RunStatus",
    "effective_status",
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


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    created_time: float


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
    key: str
    steps: list[int]
    timestamps: list[float]
    values: list[float]

    def __len__(self) -> int:
        return len(self.steps)

    def points(self) -> list[tuple[int, float, float]]:
        return list(zip(self.steps, self.timestamps, self.values))


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "experiment": self.experiment,
            "name": self.name,
            "status": self.status.value,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "heartbeat_time": self.heartbeat_time,
            "host": self.host,
            "pid": self.pid,
            "params": dict(self.params),
            "tags": dict(self.tags),
            "metrics": {
                k: {
                    "last": m.last,
                    "step": m.last_step,
                    "timestamp": m.last_timestamp,
                    "min": m.min,
                    "max": m.max,
                    "count": m.count,
                }
                for k, m in sorted(self.metrics.items())
            },
            "error": self.error,
            "run_key": self.run_key,
            "env_fingerprint": self.env_fingerprint,
            "note": self.note,
            "result": self.result,
        }


def effective_status(record: RunRecord, now: float, stale_after: float) -> RunStatus:
    """RUNNING whose heartbeat is older than ``stale_after`` seconds is shown as CRASHED.

    The heartbeat is renewed by the logging process in the background; a process killed with
    SIGKILL or by the OOM killer stops renewing it, so its run can never stay RUNNING forever.
    """
    if record.status is not RunStatus.RUNNING:
        return record.status
    beat = record.heartbeat_time if record.heartbeat_time is not None else record.start_time
    return RunStatus.CRASHED if now - beat > stale_after else RunStatus.RUNNING
