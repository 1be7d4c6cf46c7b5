"""The module-level API: start runs, log to the active run, find runs.

``start_run`` opens a run in the selected store and makes it the active run; ``log_*`` functions act on
the active run (and raise ``NoActiveRunError`` without one). Metric points are buffered in memory and
written by the background writer (``labtrack.run.writer``); ending a run writes what is left and the final
status in one transaction.

Statuses: leaving a ``with start_run(...)`` block normally gives FINISHED, an exception FAILED (with
its type and message), Ctrl-C (KeyboardInterrupt) or SIGTERM KILLED. A process that dies without
ending its run stops renewing the heartbeat; readers then show the run as CRASHED (at once when the
dead process ran on the reader's own host, since its pid can be checked).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from labtrack.run import process as runtime
from labtrack.core.errors import InvalidInput, NoActiveRunError
from labtrack.core.filters import parse_filter
from labtrack.core.identity import DEFAULT_IDENTITY, check_identity, run_key
from labtrack.core.model import ArtifactInfo, Experiment, RunStatus
from labtrack.core.query import parse_order_by
from labtrack.core.validation import check_key
from labtrack.verbs.inputs import hash_inputs
from labtrack.run.handle import GIT_DIFF_ARTIFACT, Run, checked_params, checked_tags, resolve_liveness
from labtrack.verbs.runlist import RunList
from labtrack.run.process import set_store, store_location

__all__ = [
    "active_run",
    "capture_environment",
    "end_run",
    "get_run",
    "list_experiments",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "run_of",
    "search_runs",
    "seed_everything",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "store_location",
    "upgrade_store",
]


def start_run(
    experiment: str = "default",
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    note: str | None = None,
    nested: bool = False,
    store: str | None = None,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
) -> Run:
    """Start a run and make it the active run; use it as a context manager to end it on leaving.

    ``store`` overrides the store URL for this run. With a run already active, pass ``nested=True``
    to start a child run (tagged ``labtrack.parent``) or end the active run first.

    The environment is captured and recorded (see ``capture_environment``), and the run gets its key:
    the sha256 of the experiment, params, code version and declared ``inputs`` (name -> file or
    directory, hashed by content), as ``identity`` selects, leaving out the params in ``exclude``.
    """
    check_key(experiment, "experiment")
    valid_params = checked_params(params)
    valid_tags = checked_tags(tags)
    parts = check_identity(identity)
    excluded = _checked_exclude(exclude)
    if name is not None:
        check_key(name, "name")
    input_hashes = hash_inputs(inputs) if inputs else {}
    with runtime.state.lock:
        parent = runtime.state.stack[-1] if runtime.state.stack else None
        if parent is not None and parent._owner_pid != os.getpid():
            runtime.state.stack.clear()  # inherited through fork: the parent process owns those runs
            parent = None
        if parent is not None and not nested:
            raise InvalidInput(
                f"run {parent.id[:8]} is already active; end it first (labtrack.end_run()) "
                "or pass nested=True to start a child run",
                field="nested",
            )
        if parent is not None:
            valid_tags.setdefault("labtrack.parent", parent.id)
    reproduces = runtime.settings().reproduces
    if reproduces:
        valid_tags.setdefault("reproduces", reproduces)
    target = runtime.store(store)
    from labtrack.store.base import NewRun

    start_time = time.time()
    captured = _capture_safely()
    env = captured.environment if captured is not None else None
    fingerprint = runtime.store_environment(target, env) if env is not None else None
    context: dict[str, Any] = env.per_run() if env is not None else {}
    if runtime.state.seeds is not None:
        context["seeds"] = runtime.state.seeds
    if env is not None and "packages" in env.snapshot:
        conflicts = _known_conflicts()
        if conflicts is not None:
            context["conflicts"] = conflicts
    artifacts = []
    if captured is not None and captured.git_diff:
        sha, size = _stored_diff(target, captured.git_diff)
        artifacts.append(ArtifactInfo(path=GIT_DIFF_ARTIFACT, sha256=sha, size=size))
    key = run_key(
        experiment, valid_params, identity=parts, exclude=excluded, code=runtime.code_version(env),
        inputs=input_hashes, env_fingerprint=env.fingerprint if env is not None else None,
    )
    run_id = uuid.uuid4().hex
    target.create_run(
        NewRun(
            id=run_id,
            experiment=experiment,
            start_time=start_time,
            name=name,
            host=runtime.state.host,
            pid=os.getpid(),
            params=valid_params,
            tags=valid_tags,
            note=note,
            run_key=key,
            env_fingerprint=fingerprint,
            context=context or None,
            artifacts=artifacts,
        )
    )
    run = Run(target, run_id)
    run._live = True
    run._created_here = True
    run._conflicts_recorded = "conflicts" in context or env is None
    run._environment = env
    runtime.install_hooks()
    run._ensure_registered()
    with runtime.state.lock:
        runtime.state.stack.append(run)
    return run


def _stored_diff(target: Any, diff: str) -> tuple[str, int]:
    """Store the uncommitted diff as a blob once per store and content (runs in a loop share it)."""
    known = runtime.state.stored_diffs
    found = known.get((target.url, diff))
    if found is None:
        found = target.put_artifact_bytes(diff.encode("utf-8"))
        if len(known) > 64:
            known.clear()
        known[(target.url, diff)] = found
    return found


def _checked_exclude(exclude: Sequence[str]) -> tuple[str, ...]:
    if isinstance(exclude, str):
        exclude = (exclude,)
    return tuple(check_key(k, "exclude") for k in exclude)


def _capture_safely() -> Any:
    """The environment for a new run; a capture failure is recorded as a warning, never raised."""
    try:
        return runtime.capture()
    except InvalidInput:
        raise
    except Exception as exc:  # capture must never stop a run from starting
        import warnings

        warnings.warn(f"labtrack: environment capture failed: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _known_conflicts() -> list[dict[str, Any]] | None:
    """Dependency conflicts of this environment if already known (cached); else start finding them in the
    background, for the run's end to record."""
    from labtrack.env.conflicts import find_conflicts_cached, start_background

    try:
        found = find_conflicts_cached(compute=False)
        if found is None:
            start_background()
        return found
    except Exception:  # conflicts are information; never a reason to fail a run
        return None


def active_run() -> Run | None:
    """The run that module-level ``log_*`` calls act on, or None."""
    with runtime.state.lock:
        if runtime.state.stack and runtime.state.stack[-1]._owner_pid == os.getpid():
            return runtime.state.stack[-1]
    return None


def _require_active() -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError(
            "no active run: call labtrack.start_run(...) first, or use `with labtrack.start_run(...) as run:`"
        )
    return run


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run with ``status`` (FINISHED, FAILED or KILLED)."""
    _require_active().end(status)


def log_param(key: str, value: Any) -> None:
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def log_metric(key: str, value: Any, step: int | None = None, timestamp: Any = None) -> None:
    _require_active().log_metric(key, value, step=step, timestamp=timestamp)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, timestamp: Any = None) -> None:
    _require_active().log_metrics(metrics, step=step, timestamp=timestamp)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _require_active().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _require_active().log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _require_active().log_text(text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    _require_active().log_dict(dictionary, artifact_file)


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, Any]:
    """Seed random, numpy and torch (when installed), set PYTHONHASHSEED for child processes, and
    record the seed and determinism settings on the active run and on runs started afterwards."""
    from labtrack.env import seed_everything as seed_all

    info = seed_all(seed, deterministic=deterministic)
    runtime.state.seeds = info
    run = active_run()
    if run is not None:
        run._settle()
        run._store.merge_context(run.id, {"seeds": info})
    return info


def capture_environment() -> Any:
    """The environment snapshot (an ``Environment``) that runs record, captured now."""
    return runtime.capture_environment()


def compute_key(
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
) -> str:
    """The run key ``start_run`` would give a run of ``experiment`` with ``params`` here and now."""
    check_key(experiment, "experiment")
    parts = check_identity(identity)
    env = None
    if "code" in parts or "env" in parts:
        captured = _capture_safely()
        env = captured.environment if captured is not None else None
    return run_key(
        experiment, checked_params(params), identity=parts, exclude=_checked_exclude(exclude),
        code=runtime.code_version(env), inputs=hash_inputs(inputs) if inputs else {},
        env_fingerprint=env.fingerprint if env is not None else None,
    )


def find_run(
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
    store: str | None = None,
) -> Run | None:
    """The latest FINISHED run with the same key (experiment, params, code, inputs), or None.

    One indexed lookup, however many runs the store holds. FAILED, KILLED and CRASHED runs do not count.
    """
    key = compute_key(experiment, params, inputs=inputs, identity=identity, exclude=exclude)
    target = runtime.store(store)
    runtime.settle()
    found = target.find_finished_run(key)
    return Run(target, found) if found is not None else None


def exists(
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
    store: str | None = None,
) -> bool:
    """Whether this configuration has already been run to completion (see ``find_run``)."""
    return find_run(experiment, params, inputs=inputs, identity=identity, exclude=exclude, store=store) is not None


def get_run(run_id: str, *, store: str | None = None) -> Run:
    """The run with this id (or unique id prefix)."""
    target = runtime.store(store)
    runtime.settle()
    full_id = target.resolve_run_id(run_id)
    record = target.get_run(full_id)
    resolve_liveness(target, [record])
    for live in runtime.state.stack:
        if live.id == full_id and live._store is target:
            return live
    return Run(target, full_id, record)


def run_of(run: Run | str, *, store: str | None = None) -> Run:
    """``run`` itself, or the run that an id (or unique id prefix) names: for verbs that take either."""
    return run if isinstance(run, Run) else get_run(run, store=store)


def list_experiments(*, store: str | None = None) -> list[tuple[Experiment, int]]:
    """Every experiment in the store with its number of runs."""
    target = runtime.store(store)
    runtime.settle()
    return target.list_experiments()


def upgrade_store(store: str | None = None) -> tuple[str | None, str, int]:
    """Migrate the store's schema to this labtrack's revision (what `labtrack db upgrade` does); returns
    (revision before, revision after, ended runs whose frames were written)."""
    from labtrack.store import upgrade_store as upgrade

    location = store_location(store)
    with runtime.state.lock:
        old = runtime.state.stores.pop(location, None)
    if old is not None:
        old.close()
    return upgrade(location)



def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: str | Sequence[str] | None = None,
    max_results: int | None = None,
    offset: int = 0,
    *,
    key: str | None = None,
    store: str | None = None,
) -> RunList:
    """Runs of ``experiment`` (a name, a list of names, or None for all), newest first by default.

    ``order_by`` takes terms such as ``"metrics.acc desc"``, ``"params.lr"``, ``"metrics.loss.min"``,
    ``"attributes.start_time"``; runs missing the key sort last. ``key`` keeps only runs with that run key.
    """
    if max_results is not None and (not isinstance(max_results, int) or max_results < 0):
        raise InvalidInput(f"max_results must be an integer >= 0, got {max_results!r}", field="max_results")
    names = [experiment] if isinstance(experiment, str) else (list(experiment) if experiment is not None else None)
    target = runtime.store(store)
    runtime.settle()
    node = parse_filter(filter) if filter else None
    from labtrack.store.base import Search

    terms = parse_order_by(order_by if isinstance(order_by, (str, type(None))) else list(order_by))
    search = Search(experiments=names, order_by=terms, max_results=max_results, offset=offset, run_key=key,
                    filter=node, stale_before=time.time() - runtime.settings().heartbeat_timeout)
    ids = target.search_ids(search)
    if len(ids) > 2_000:  # see store.sql._gc_paused: many objects, no cycles
        import gc

        gc.disable()
        try:
            return RunList.from_search(target, ids, search)
        finally:
            gc.enable()
    return RunList.from_search(target, ids, search)
