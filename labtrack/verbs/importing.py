"""Importing runs recorded elsewhere (another tracker) into a store: the verb under ``labtrack import``.

A run recorded by another tool already has its times, status and whole metric histories, and it ran on
another machine: ``start_run`` (which captures *this* machine's environment, takes the time now and
computes a run key from this script) is the wrong door. ``import_run`` writes such a run as it was, in one
transaction, and again and again without duplicating anything:

- the run keeps the id the importer chose (a source's own run id when it is 32 hex characters), so a run
  imported before is recognised however the source was reached;
- params and tags missing or different are written (params are immutable: one that changed at the source
  is reported, not overwritten);
- a metric series gets the source's points the store does not hold yet, compared as a multiset of
  (step, timestamp, value) bit for bit (NaN equals NaN), so points appended at the source since arrive
  once, and a series whose stored count equals the source's is left alone without reading it;
- artifacts whose content (sha256) differs at a path are written;
- the status and end time follow the source once the source's run has ended.

Imported runs get no run key and no environment snapshot: they are never "the same configuration" as a run
of this machine, and ``labtrack check`` has no environment of theirs to judge.
"""

from __future__ import annotations

import enum
import os
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtrack.core.errors import InvalidInput, RunNotFound
from labtrack.core.identity import same_value
from labtrack.core.model import ArtifactInfo, NewRun, RunEnd, RunRecord, RunStatus, RunWrite
from labtrack.core.names import run_name
from labtrack.core.series import Chunk
from labtrack.core.validation import (
    check_artifact_path,
    check_key,
    coerce_foreign_param_value,
    coerce_metric_value,
    coerce_step,
    coerce_tag_value,
    coerce_timestamp,
)
from labtrack.verbs.runs import RunClient

__all__ = ["ForeignRun", "Outcome", "RunImport", "import_run", "stored_artifacts", "stored_run"]


class Outcome(enum.StrEnum):
    NEW = "new"  # not in the store before
    UPDATED = "updated"  # in the store, and something was added or changed
    UNCHANGED = "unchanged"  # in the store with everything the source has


@dataclass
class ForeignRun:
    """A run as another tracker recorded it. Times in seconds since the epoch; ``status`` RUNNING for a run
    that has not ended at the source (the store then judges it by its heartbeat, as any run of another
    machine: CRASHED after the timeout, until an import brings its end); ``metrics``: whole series."""

    id: str
    experiment: str
    start_time: float
    status: RunStatus = RunStatus.FINISHED
    end_time: float | None = None
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Chunk] = field(default_factory=dict)
    files: list[tuple[Path, str]] = field(default_factory=list)  # (local file, artifact path)
    error: dict[str, str] | None = None


@dataclass
class RunImport:
    """What importing one run wrote (with ``dry_run``: would write); ``problems``: what the store cannot
    take and was left out (each naming the field), or params whose value changed at the source."""

    run_id: str
    outcome: Outcome
    params: int = 0
    tags: int = 0
    points: int = 0
    artifacts: int = 0
    ended: bool = False
    problems: list[str] = field(default_factory=list)


def stored_run(client: RunClient, run_id: str) -> RunRecord | None:
    """The stored record of ``run_id`` as it is (no liveness judgement), or None."""
    try:
        return client.store.get_run(run_id)
    except RunNotFound:
        return None


def stored_artifacts(client: RunClient, run_id: str) -> dict[str, ArtifactInfo]:
    """The stored artifacts of ``run_id`` by path (none for a run not in the store)."""
    try:
        return {a.path: a for a in client.store.list_artifacts(run_id)}
    except RunNotFound:
        return {}


def import_run(client: RunClient, run: ForeignRun, *, dry_run: bool = False,
               stored: RunRecord | None = None, known: bool = False) -> RunImport:
    """Write ``run`` into ``client``'s store, or what the store lacks of it (see the module docstring), in
    one transaction. ``stored``/``known``: the stored record the caller read already (``known=True``, None
    meaning not stored). With ``dry_run`` nothing is written, and every file in ``run.files`` counts as new
    (it is not read: the caller lists only files it found new or changed)."""
    client.flush()  # this process's own writes to the run, if any, come first
    if not known:
        stored = stored_run(client, run.id)
    problems: list[str] = []
    experiment = check_key(run.experiment, "experiment")
    params = _valid(run.params, coerce_foreign_param_value, "param", problems)
    tags = _valid(run.tags, coerce_tag_value, "tag", problems)
    series = _valid_series(run.metrics, problems)
    files = _valid_files(run.files, problems)
    if stored is None:
        result = RunImport(run.id, Outcome.NEW, params=len(params), tags=len(tags),
                           points=sum(len(c) for c in series.values()), problems=problems)
        write = RunWrite(run.id, create=NewRun(
            id=run.id, experiment=experiment, start_time=run.start_time, name=_valid_name(run, problems),
            params=params, tags=tags,
        ), metrics=series, new_keys=frozenset(series))
        have: dict[str, ArtifactInfo] = {}
    else:
        result = RunImport(run.id, Outcome.UPDATED, problems=problems)
        changed = [k for k, v in params.items() if k in stored.params and not same_value(stored.params[k], v)]
        problems += [f"param {k!r} is {stored.params[k]!r} here but {params[k]!r} at the source: kept {stored.params[k]!r}"
                     for k in changed]
        new_params = {k: v for k, v in params.items() if k not in stored.params}
        new_tags = {k: v for k, v in tags.items() if stored.tags.get(k) != v}
        new_series = {key: points for key, chunk in series.items()
                      if len(points := _new_points(client, stored, key, chunk))}
        write = RunWrite(run.id, params=new_params, tags=new_tags, metrics=new_series,
                         new_keys=frozenset(k for k in new_series if k not in stored.metrics))
        result.params, result.tags = len(new_params), len(new_tags)
        result.points = sum(len(c) for c in new_series.values())
        have = stored_artifacts(client, run.id)
    if run.status.is_terminal and (stored is None or stored.status is not run.status
                                   or stored.end_time != run.end_time):
        end_time = run.end_time if run.end_time is not None else run.start_time
        write.end = RunEnd(run.status, max(end_time, run.start_time), run.error)
        result.ended = stored is not None
    for local, path in files:
        if dry_run:  # the caller passes the files it found new or changed; nothing is read
            result.artifacts += 1
            continue
        sha256, size = client.store.put_artifact_file(os.fspath(local))
        if path not in have or have[path].sha256 != sha256:
            write.artifacts.append(ArtifactInfo(path, sha256, size))
    result.artifacts += len(write.artifacts)
    if stored is not None and not (result.params or result.tags or result.points or result.artifacts or result.ended):
        result.outcome = Outcome.UNCHANGED
        return result
    if not dry_run:
        client.store.write([write])
    return result


def _valid_name(run: ForeignRun, problems: list[str]) -> str | None:
    """The run's name if the store takes it; else the name labtrack gives a run from its id, and a problem:
    another tracker may allow names labtrack does not (MLflow's are tags: 8000 characters, newlines), which
    must not cost the run, nor stop an import at it every time it is tried again."""
    if not run.name:
        return None
    try:
        return check_key(run.name, "name")
    except InvalidInput as exc:
        problems.append(f"name left out (the run is named for its id): {exc}")
        return run_name(run.id)


def _valid(values: Mapping[str, Any], coerce: Any, what: str, problems: list[str]) -> dict[str, Any]:
    """The entries the store takes; each refused one is a problem naming it (one bad tag must not cost the
    run)."""
    out = {}
    for key, value in values.items():
        try:
            out[check_key(key, f"{what} key")] = coerce(value, key)
        except InvalidInput as exc:
            problems.append(f"{what} {key!r} left out: {exc}")
    return out


def _valid_series(metrics: Mapping[str, Chunk], problems: list[str]) -> dict[str, Chunk]:
    out = {}
    for key, chunk in metrics.items():
        try:
            key = check_key(key, "metric key")
        except InvalidInput as exc:
            problems.append(f"metric {key!r} left out: {exc}")
            continue
        kept = Chunk.empty()
        dropped: list[str] = []
        for step, timestamp, value in zip(chunk.steps, chunk.timestamps, chunk.values):
            try:
                point = coerce_step(step, key), coerce_timestamp(timestamp, key), coerce_metric_value(value, key)
            except InvalidInput as exc:
                dropped.append(str(exc))
                continue
            kept.steps.append(point[0])
            kept.timestamps.append(point[1])
            kept.values.append(point[2])
        if dropped:
            problems.append(f"metric {key!r}: {len(dropped)} point(s) left out, e.g. {dropped[0]}")
        if len(kept):
            out[key] = kept
    return out


def _valid_files(files: Sequence[tuple[Path, str]], problems: list[str]) -> list[tuple[Path, str]]:
    out = []
    for local, path in files:
        try:
            out.append((local, check_artifact_path(path)))
        except InvalidInput as exc:
            problems.append(f"artifact {path!r} left out: {exc}")
    return out


def _bits(values: Sequence[float]) -> memoryview:
    """Doubles as 64-bit integers: equal bit patterns compare equal, NaN included."""
    return memoryview(array("d", values).tobytes()).cast("q")


def _new_points(client: RunClient, stored: RunRecord, key: str, source: Chunk) -> Chunk:
    """The points of ``source`` the stored series of ``key`` lacks (a multiset difference). A stored series
    with as many points as the source's holds them all already: sources only ever append points, so it is
    not read."""
    summary = stored.metrics.get(key)
    if summary is None:
        return source
    if summary.count >= len(source):
        return Chunk.empty()
    history = client.store.get_metric_history(stored.id, key)
    have = Counter(zip(history.steps, history.timestamps, _bits(history.values)))
    out = Chunk.empty()
    for step, timestamp, value, bits in zip(source.steps, source.timestamps, source.values, _bits(source.values)):
        point = (step, timestamp, bits)
        if have[point]:
            have[point] -= 1
        else:
            out.steps.append(step)
            out.timestamps.append(timestamp)
            out.values.append(value)
    return out
