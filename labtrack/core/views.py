"""What the read commands show, as records of the wire format (``core.wire``), so that ``--json`` and the
server print them in one shape: an experiment with its number of runs, one run in full (its record with
its artifacts and environment), and chosen columns of many runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labtrack.core.environment import Environment
from labtrack.core.model import ArtifactInfo, Experiment, RunRecord

__all__ = ["ColumnRow", "ExperimentRuns", "RunColumns", "RunDetail"]


@dataclass(frozen=True)
class ExperimentRuns:
    """An experiment and how many runs it has (``labtrack experiments``)."""

    id: int
    name: str
    created_time: float
    runs: int
    deleted_time: float | None = None

    @classmethod
    def of(cls, experiment: Experiment, runs: int) -> ExperimentRuns:
        return cls(experiment.id, experiment.name, experiment.created_time, runs, experiment.deleted_time)


@dataclass
class RunDetail(RunRecord):
    """Everything recorded about one run (``labtrack show``): the record's fields, then its artifacts and its
    environment (None when capture was off)."""

    artifacts: list[ArtifactInfo] = field(default_factory=list)
    environment: Environment | None = None

    @classmethod
    def of(cls, record: RunRecord, artifacts: Iterable[ArtifactInfo], environment: Environment | None) -> RunDetail:
        fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(RunRecord)}
        return cls(**fields, artifacts=list(artifacts), environment=environment)


@dataclass(frozen=True)
class ColumnRow:
    """One run's values of the chosen columns, by column name (None where the run has no such value)."""

    id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class RunColumns:
    """Chosen columns (``params.lr``, ``metrics.loss.min``, ...) of runs, one row per run (``runs --columns``)."""

    columns: list[str]
    rows: list[ColumnRow]
