"""The results table: workload | labtrack | target | meets | MLflow | ratio | size.

Printed as a Markdown table, so it reads in a terminal and pastes into the README as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.spec import Row, Workload

__all__ = ["Line", "WorkloadResult", "lines_of", "render"]


@dataclass
class WorkloadResult:
    workload: Workload
    labtrack: dict[str, Any] | None = None
    mlflow: dict[str, Any] | None = None
    labtrack_error: str | None = None
    mlflow_error: str | None = None  # also "not run" reasons
    skipped: str | None = None  # why neither side ran (e.g. PostgreSQL could not be started): not a failure
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


@dataclass
class Line:
    workload: str
    label: str
    unit: str
    labtrack: float | None
    target: str
    meets: bool | None
    mlflow: float | None
    mlflow_note: str
    ratio: float | None
    size: str
    versus: str | None = None  # the comparison is this tool, measured on the labtrack side, not MLflow


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ratio(row: Row, ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or row.better == "none" or math.isnan(ours) or math.isnan(theirs):
        return None
    if row.better == "lower":
        return theirs / ours if ours > 0 else None
    return ours / theirs if theirs > 0 else None


def _size(row: Row, result: WorkloadResult) -> str:
    if row.size_key is None:
        return ""
    parts = []
    theirs = result.mlflow if row.mlflow and not row.versus else None
    for name, side in (("", result.labtrack), ("MLflow ", theirs)):
        value = (side or {}).get(row.size_key)
        if value is not None:
            parts.append(f"{name}{value:,}" if isinstance(value, int) else f"{name}{value}")
    return " / ".join(parts)


def lines_of(result: WorkloadResult) -> list[Line]:
    lines = []
    for row in result.workload.rows:
        if row.optional and result.labtrack is not None and row.key not in result.labtrack:
            continue
        ours = _number((result.labtrack or {}).get(row.key))
        theirs = _number((result.mlflow or {}).get(row.mlflow)) if row.mlflow else None
        if row.versus:
            theirs = _number((result.labtrack or {}).get(row.mlflow))
            note = "" if theirs is not None or not result.labtrack_error else "error"
        elif not row.mlflow or not result.workload.mlflow:
            note = "—"
        elif result.mlflow_error:
            note = "n/a"
        else:
            note = ""
        target = f"{row.target.op} {format_value(row.target.value, row.unit)}" if row.target else ""
        meets = row.target.met(ours) if row.target and ours is not None and not math.isnan(ours) else None
        lines.append(Line(result.workload.name, row.label, row.unit, ours, target, meets, theirs, note,
                          _ratio(row, ours, theirs), _size(row, result), row.versus))
    return lines


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "error"
    if math.isnan(value):
        return "nan"
    if unit in ("points/s", "runs/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f}M {unit}"
        if value >= 1e4:
            return f"{value / 1e3:.0f}k {unit}"
        return f"{value:,.0f} {unit}"
    if unit in ("errors", "points"):
        return f"{value:,.0f}" + ("" if unit == "errors" else " points")
    if unit in ("µs", "ms"):
        return f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "×":
        return f"{value:.2f}×"
    return f"{value:g} {unit}"


def render(results: list[WorkloadResult]) -> str:
    header = ["workload", "measure", "labtrack", "target", "meets", "MLflow", "labtrack better by", "size"]
    table = [header]
    for result in results:
        for line in lines_of(result):
            if result.skipped:
                reason = result.skipped if len(result.skipped) <= 60 else result.skipped[:57] + "..."
                theirs = "not run" if result.workload.mlflow and line.mlflow_note != "—" else "—"
                table.append([line.workload, line.label, "not run", line.target, "", theirs, "", reason])
                continue
            if line.labtrack is None and result.labtrack_error:
                ours = "error"
            else:
                ours = format_value(line.labtrack, line.unit)
            theirs = line.mlflow_note or format_value(line.mlflow, line.unit)
            if line.versus and not line.mlflow_note:
                theirs += f" ({line.versus})"
            meets = "" if line.meets is None and not line.target else ("yes" if line.meets else "**NO**")
            ratio = f"{line.ratio:,.1f}×" if line.ratio is not None else ""
            table.append([line.workload, line.label, ours, line.target, meets, theirs, ratio, line.size])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {2, 3, 5, 6}

    def fmt(row: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(table[0]), rule, *(fmt(row) for row in table[1:])])


def problems_text(results: list[WorkloadResult]) -> str:
    out = []
    for result in results:
        name = result.workload.name
        if result.skipped:
            out.append(f"- {name}: not run: {result.skipped}")
            continue
        if result.labtrack_error:
            out.append(f"- {name} (labtrack): {result.labtrack_error}")
        if result.mlflow_error and result.workload.mlflow:
            out.append(f"- {name} (MLflow): {result.mlflow_error}")
        for side, data in (("labtrack", result.labtrack), ("MLflow", result.mlflow)):
            for problem in (data or {}).get("problems", []):
                out.append(f"- {name} ({side}): {problem}")
    return "\n".join(out)
