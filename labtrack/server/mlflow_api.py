"""MLflow's tracking REST API on the labtrack server, so that an unchanged MLflow script records into labtrack.

    MLFLOW_TRACKING_URI=https://labtrack.example MLFLOW_TRACKING_TOKEN=lt_... python train.py

Served: ``/api/2.0/mlflow/`` experiments (create, get, get-by-name, search, delete, restore), runs (create, get,
update, delete, restore, search, log-metric, log-parameter, log-batch, set-tag, delete-tag; log-inputs and
outputs accepted and not kept), ``metrics/get-history`` (paged), ``artifacts/list``, and the proxied artifact
routes of ``mlflow server --serve-artifacts`` (``/api/2.0/mlflow-artifacts/artifacts/<path>``: PUT, GET, and
listing), which is where MLflow's client sends a run's files when its artifact_uri is ``mlflow-artifacts:/...``
— every run created here has one. What MLflow has and labtrack does not (the model registry, logged models,
traces, experiment tags, renaming experiments, the UI's ajax routes) answers MLflow's own 404
``ENDPOINT_NOT_FOUND`` or ``NOT_IMPLEMENTED`` with a message saying so, never a silent success.

The routes are ``labtrack.server.api.Route`` entries like the labtrack API's, so the auth middleware holds them
to the same roles (reads a reader's token, writes a writer's, deleting experiments an admin's) and a token
limited to some experiments sees the store through ``ScopedStore``. MLflow's client sends its token as
``Authorization: Bearer $MLFLOW_TRACKING_TOKEN``: a labtrack token works as it is. Every error is in MLflow's
shape, ``{"error_code": ..., "message": ...}``. Writes are synchronous (one store transaction per request):
MLflow's client reads what it wrote right after. Mapping rules: ``labtrack.server.mlflow_wire``.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from labtrack.core.errors import LabtrackError, RunNotFound
from labtrack.core.model import (
    ArtifactInfo,
    Experiment,
    Lifecycle,
    MetricHistory,
    NewRun,
    RunEnd,
    RunRecord,
    RunStatus,
    RunWrite,
    Search,
)
from labtrack.core.names import run_name
from labtrack.core.tokens import Role
from labtrack.core.validation import (
    check_artifact_path,
    check_key,
    coerce_tag_value,
    coerce_timestamp,
)
from labtrack.server.api import Handler, Route
from labtrack.server.mlflow_wire import (
    DEFAULT_EXPERIMENT,
    RUN_NAME_TAG,
    USER_TAG,
    MlflowError,
    artifact_root,
    experiment_id,
    experiment_json,
    experiment_matches,
    experiment_order,
    from_ms,
    int_field,
    lifecycle_of,
    metrics_of,
    mlflow_error,
    number_json,
    page_offset,
    page_token,
    params_of,
    parse_order_by,
    parse_search_filter,
    run_info_json,
    run_json,
    string_field,
    tags_of,
)
from labtrack.store.base import Store

__all__ = [
    "API",
    "ARTIFACTS",
    "BATCH_LIMITS",
    "BATCH_TOTAL",
    "HEARTBEAT_EVERY",
    "MAX_BODY",
    "MAX_HISTORY",
    "MAX_READ_BODY",
    "MAX_RESULTS",
    "MLFLOW_PREFIXES",
    "MLFLOW_ROUTES",
    "error_response",
]

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/api/3.0/mlflow")  # (the first covers /api/2.0/mlflow-artifacts too)
MAX_BODY = 16 * 1024 * 1024  # a JSON request: log-batch holds at most 1000 metrics, 100 params, 100 tags
MAX_READ_BODY = 1024 * 1024  # a reader's JSON request (a search): a filter, a few ids, an ordering
MAX_RESULTS = 50_000  # runs per search page, as MLflow
MAX_HISTORY = 25_000  # metric points per get-history page (what MLflow's client asks for)
# log-batch's limits, as MLflow's server has them (a client that fits MLflow fits here)
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}
BATCH_TOTAL = 1000
HEARTBEAT_EVERY = 5.0  # seconds: how often an MLflow client's requests renew its run's heartbeat

MLFLOW_ROUTES: list[Route] = []

_log = logging.getLogger("labtrack.server")

_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Disposition": "attachment",
                     "Content-Security-Policy": "default-src 'none'; sandbox"}


def error_response(error: MlflowError) -> Response:
    return Response(json.dumps(error.body()), status_code=error.status, media_type="application/json")


def _ok(value: dict[str, Any] | None = None) -> Response:
    return Response(json.dumps(value or {}, allow_nan=False), media_type="application/json")


def _route(method: str, path: str, role: Role, name: str | None = None, *,
           reads_body: bool = True) -> Callable[[Handler], Handler]:
    """Register ``handler``; a POST's JSON body (at most ``body`` bytes: ``MAX_BODY`` for writes, ``MAX_READ_BODY``
    for a reader's searches) is read first, then decoded and handled holding one of the server's write slots
    (``app.state.write_slots``, the labtrack API's ``/write`` takes the same): a decoded body can be a hundred
    times its bytes, so many at once must not be — whoever sends them, even a reader."""
    most = MAX_READ_BODY if role is Role.READER else MAX_BODY

    def register(handler: Handler) -> Handler:
        async def guarded(request: Request, store: Store) -> Response:
            try:
                if request.method == "POST" and reads_body:
                    request.state.mlflow_body = await _read_body(request, most)
                    async with request.app.state.write_slots:
                        return await handler(request, store)
                return await handler(request, store)
            except MlflowError as exc:
                return error_response(exc)
            except LabtrackError as exc:
                return error_response(mlflow_error(exc))
            except Exception:
                _log.exception("labtrack server: %s %s failed", request.method, request.url.path)
                return error_response(MlflowError("INTERNAL_ERROR", "the server failed on this request "
                                                                    "(its log has the details)", 500))

        guarded.__name__ = name or "mlflow_" + handler.__name__.lstrip("_")
        guarded.__doc__ = handler.__doc__
        MLFLOW_ROUTES.append(Route(method, path, role, guarded, (handler.__doc__ or "").strip(), guarded.__name__))
        return handler

    return register


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return run_in_threadpool(fn, *args)


async def _read_body(request: Request, most: int) -> bytes:
    """A POST's JSON body as bytes, refused past ``most`` (before the rest is read) or if it is not JSON."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Content-Type {media or 'missing'!r}: send application/json.")
    size, parts = 0, []
    async for piece in request.stream():
        size += len(piece)
        if size > most:
            shown = f"{most // 2**20} MiB" if most >= 2**20 else f"{most // 1024} KiB"
            raise MlflowError("INVALID_PARAMETER_VALUE", f"The request body is larger than {shown}.", 413)
        parts.append(piece)
    return b"".join(parts)


def _decoded(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MlflowError("MALFORMED_REQUEST", f"The request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise MlflowError("MALFORMED_REQUEST", "The request body must be a JSON object.")
    return body


async def _message(request: Request) -> dict[str, Any]:
    """The request's fields: the query of a GET, the JSON object of a POST (MLflow's client sends both so),
    decoded in the thread pool (16 MiB of JSON is most of a second of work: not on the event loop)."""
    if request.method == "GET":
        return dict(request.query_params)
    return dict(await _call(_decoded, request.state.mlflow_body))


# -- lookups ---------------------------------------------------------------------------------------


def _experiments(store: Store) -> list[Experiment]:
    return [e for e, _ in store.list_experiments(Lifecycle.ALL)]


def _experiment(store: Store, exp_id: str) -> Experiment:
    """The experiment with this MLflow id ("0": the one named Default, which exists for MLflow even before
    any run is logged to it)."""
    for experiment in _experiments(store):
        if experiment_id(experiment) == exp_id:
            return experiment
    if exp_id == "0":
        return Experiment(0, DEFAULT_EXPERIMENT, 0.0)
    raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={exp_id[:80]} exists", 404)


def _run(store: Store, run_id: str) -> RunRecord:
    if len(run_id) != 32 or not all(c in "0123456789abcdef" for c in run_id):
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id[:80]!r} not found", 404)
    try:
        return store.get_run(run_id)
    except RunNotFound:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found", 404) from None


def _ids_by_name(store: Store) -> dict[str, str]:
    return {e.name: experiment_id(e) for e in _experiments(store)}


def _run_id(body: dict[str, Any]) -> str:
    found = string_field(body, "run_id", required=False) or string_field(body, "run_uuid", required=False)
    if not found:
        raise MlflowError("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'run_id'.")
    return str(found)


def _live_run(store: Store, run_id: str) -> RunRecord:
    record = _run(store, run_id)
    if record.deleted_time is not None:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"The run {run_id} must be in the 'active' state. Current state is deleted.")
    return record


def _write(store: Store, write: RunWrite, record: RunRecord) -> None:
    """One transaction; a RUNNING run's heartbeat renewed too (an MLflow client sends none of its own, so its
    requests are the sign of life that keeps labtrack from judging the run CRASHED)."""
    store.write([write])
    if write.end is None and (record.status is RunStatus.CRASHED or (record.status is RunStatus.RUNNING and (
            store.now() - (record.heartbeat_time or record.start_time) >= HEARTBEAT_EVERY))):  # not one per request
        store.heartbeat(record.id, store.now())  # (a run a reader had judged CRASHED is RUNNING again)


# -- experiments -----------------------------------------------------------------------------------


@_route("POST", API + "/experiments/create", Role.WRITER)
async def _create_experiment(request: Request, store: Store) -> Response:
    """CreateExperiment: a new experiment (its tags and artifact_location are not kept)."""
    body = await _message(request)
    name = check_key(string_field(body, "name"), "experiment name")

    def create() -> str:
        if any(e.name == name for e in _experiments(store)):
            raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists.")
        return experiment_id(store.get_or_create_experiment(name))

    return _ok({"experiment_id": await _call(create)})


@_route("GET", API + "/experiments/get", Role.READER)
async def _get_experiment(request: Request, store: Store) -> Response:
    """GetExperiment."""
    body = await _message(request)
    found = await _call(_experiment, store, str(string_field(body, "experiment_id")))
    return _ok({"experiment": experiment_json(found)})


@_route("GET", API + "/experiments/get-by-name", Role.READER)
async def _get_experiment_by_name(request: Request, store: Store) -> Response:
    """GetExperimentByName."""
    name = string_field(await _message(request), "experiment_name")
    found = [e for e in await _call(_experiments, store) if e.name == name]
    if not found:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name[:250]}'", 404)
    return _ok({"experiment": experiment_json(found[0])})


@_route("POST", API + "/experiments/search", Role.READER)
async def _search_experiments(request: Request, store: Store) -> Response:
    """SearchExperiments: by name (``name = 'x'``, ``name LIKE 'x%'``), paged."""
    body = await _message(request)
    lifecycle = lifecycle_of(body.get("view_type"))
    limit = _limit(body, 1000)
    offset = page_offset(body.get("page_token"))
    matches = experiment_matches(body.get("filter"))

    def search() -> list[Experiment]:  # (matched in the thread pool: a store may have thousands of experiments)
        found = [e for e in _experiments(store)
                 if lifecycle is Lifecycle.ALL or (e.deleted_time is None) == (lifecycle is Lifecycle.ACTIVE)]
        return experiment_order([e for e in found if matches(e)], body.get("order_by"))

    found = await _call(search)
    page = found[offset:offset + limit]
    out: dict[str, Any] = {"experiments": [experiment_json(e) for e in page]}
    if offset + limit < len(found):
        out["next_page_token"] = page_token(offset + limit)
    return _ok(out)


def _limit(body: dict[str, Any], default: int, most: int = MAX_RESULTS) -> int:
    limit = int_field(body, "max_results", default)
    if not 1 <= limit <= most:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid value {limit} for parameter 'max_results': "
                                                     f"choose from 1 to {most}.")
    return int(limit)


@_route("POST", API + "/experiments/delete", Role.ADMIN)
async def _delete_experiment(request: Request, store: Store) -> Response:
    """DeleteExperiment (with its runs; restorable until ``labtrack gc``)."""
    body = await _message(request)
    found = await _call(_experiment, store, str(string_field(body, "experiment_id")))
    await _call(store.delete_experiment, found.name)
    return _ok()


@_route("POST", API + "/experiments/restore", Role.ADMIN)
async def _restore_experiment(request: Request, store: Store) -> Response:
    """RestoreExperiment (with the runs deleted with it)."""
    body = await _message(request)
    found = await _call(_experiment, store, str(string_field(body, "experiment_id")))
    await _call(store.restore_experiment, found.name)
    return _ok()


@_route("POST", API + "/experiments/update", Role.WRITER)
async def _update_experiment(request: Request, store: Store) -> Response:
    """UpdateExperiment: not served (labtrack experiments are not renamed)."""
    raise MlflowError("NOT_IMPLEMENTED", "labtrack does not rename experiments: log into a new experiment instead.", 501)


@_route("POST", API + "/experiments/set-experiment-tag", Role.WRITER)
async def _set_experiment_tag(request: Request, store: Store) -> Response:
    """SetExperimentTag: not served (labtrack experiments have no tags)."""
    raise MlflowError("NOT_IMPLEMENTED", "labtrack experiments have no tags: tag the runs instead.", 501)


# -- runs: writing ---------------------------------------------------------------------------------


@_route("POST", API + "/runs/create", Role.WRITER)
async def _create_run(request: Request, store: Store) -> Response:
    """CreateRun: a RUNNING run (its name and user kept as the mlflow.runName and mlflow.user tags)."""
    body = await _message(request)
    exp_id = str(string_field(body, "experiment_id", required=False, default="0"))
    tags = tags_of(body.get("tags"))
    user = string_field(body, "user_id", required=False)
    name = string_field(body, "run_name", required=False) or tags.get(RUN_NAME_TAG)
    if name:
        name = coerce_tag_value(name, RUN_NAME_TAG)  # (MLflow's rule: the name is a tag)
    start_ms = int_field(body, "start_time")

    def create() -> dict[str, Any]:
        experiment = _experiment(store, exp_id)
        if experiment.deleted_time is not None:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"The experiment {exp_id} must be in the 'active' state. "
                                                         "Current state is deleted.")
        run_id = uuid.uuid4().hex
        run_tags = {**tags, RUN_NAME_TAG: name or run_name(run_id)}
        if user:
            run_tags.setdefault(USER_TAG, coerce_tag_value(user, USER_TAG))
        start = coerce_timestamp(from_ms(start_ms), "start_time") if start_ms is not None else store.now()
        store.write([RunWrite(run_id, create=NewRun(run_id, experiment.name, start, name=_labtrack_name(run_tags[
            RUN_NAME_TAG], run_id), tags=run_tags))])
        return run_json(store.get_run(run_id), exp_id)

    return _ok({"run": await _call(create)})


def _labtrack_name(name: str, run_id: str) -> str:
    """The run's labtrack name: MLflow's run name if labtrack's rule for names takes it (printable, at most 250
    characters: lists show names as they are), else the name labtrack gives a run from its id — MLflow allows
    any tag value (8000 characters, newlines), and its script must not fail for that; the mlflow.runName tag
    keeps the name whole, and MLflow's client reads that."""
    try:
        return check_key(name, "run_name")
    except LabtrackError:
        return run_name(run_id)


_ENDS = {"FINISHED": RunStatus.FINISHED, "FAILED": RunStatus.FAILED, "KILLED": RunStatus.KILLED}


@_route("POST", API + "/runs/update", Role.WRITER)
async def _update_run(request: Request, store: Store) -> Response:
    """UpdateRun: end the run (FINISHED, FAILED, KILLED, with its end_time) or rename it."""
    body = await _message(request)
    run_id = _run_id(body)
    status = string_field(body, "status", required=False)
    end_ms = int_field(body, "end_time")
    new_name = string_field(body, "run_name", required=False)
    if status is not None and status not in (*_ENDS, "RUNNING", "SCHEDULED"):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid run status {status[:40]!r}: choose RUNNING, "
                                                     "SCHEDULED, FINISHED, FAILED or KILLED.")

    def update() -> dict[str, Any]:
        record = _live_run(store, run_id)
        write = RunWrite(run_id)
        if new_name:
            write.tags[RUN_NAME_TAG] = coerce_tag_value(new_name, RUN_NAME_TAG)
        if status in _ENDS:
            end = coerce_timestamp(from_ms(end_ms), "end_time") if end_ms is not None else store.now()
            write.end = RunEnd(_ENDS[status], max(end, record.start_time))
        elif status is not None and record.status.is_terminal and record.status is not RunStatus.CRASHED:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"The run {run_id} has ended ({record.status}); labtrack "
                                                         "does not reopen ended runs: start a new run.")
        if write.tags or write.end:
            _write(store, write, record)
        elif record.status is RunStatus.RUNNING:
            store.heartbeat(run_id, store.now())
        updated = store.get_run(run_id)
        return run_info_json(updated, _ids_by_name(store).get(updated.experiment, "0"))

    return _ok({"run_info": await _call(update)})


@_route("POST", API + "/runs/delete", Role.WRITER)
async def _delete_run(request: Request, store: Store) -> Response:
    """DeleteRun (restorable until ``labtrack gc``)."""
    run_id = _run_id(await _message(request))

    def delete() -> None:
        _run(store, run_id)
        store.delete_runs([run_id])

    await _call(delete)
    return _ok()


@_route("POST", API + "/runs/restore", Role.WRITER)
async def _restore_run(request: Request, store: Store) -> Response:
    """RestoreRun."""
    run_id = _run_id(await _message(request))

    def restore() -> None:
        _run(store, run_id)
        store.restore_runs([run_id])

    await _call(restore)
    return _ok()


async def _logged(request: Request, store: Store, make: Callable[[dict[str, Any]], RunWrite]) -> Response:
    body = await _message(request)
    run_id = _run_id(body)
    write = make(body)
    write.run_id = run_id

    def apply() -> None:
        _write(store, write, _live_run(store, run_id))

    await _call(apply)
    if write.points:
        request.app.state.metrics.ingested(write.points, 0)
    return _ok()


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


@_route("POST", API + "/runs/log-metric", Role.WRITER)
async def _log_metric(request: Request, store: Store) -> Response:
    """LogMetric: one point (NaN and ±inf kept exactly)."""
    return await _logged(request, store, lambda body: RunWrite("", metrics=metrics_of([body], _now_ms())))


@_route("POST", API + "/runs/log-parameter", Role.WRITER)
async def _log_param(request: Request, store: Store) -> Response:
    """LogParam: params are immutable (another value for a key is INVALID_PARAMETER_VALUE)."""
    return await _logged(request, store, lambda body: RunWrite("", params=params_of([body])))


@_route("POST", API + "/runs/set-tag", Role.WRITER)
async def _set_tag(request: Request, store: Store) -> Response:
    """SetTag."""
    return await _logged(request, store, lambda body: RunWrite("", tags=tags_of([body])))


@_route("POST", API + "/runs/log-batch", Role.WRITER)
async def _log_batch(request: Request, store: Store) -> Response:
    """LogBatch: metrics, params and tags in one transaction (MLflow's limits: 1000 metrics, 100 params, 100 tags)."""

    def make(body: dict[str, Any]) -> RunWrite:
        total = 0
        for field, most in BATCH_LIMITS.items():
            items = body.get(field) or []
            count = len(items) if isinstance(items, list) else 0
            total += count
            if count > most:
                raise MlflowError("INVALID_PARAMETER_VALUE", f"A batch logging request can contain at most {most} "
                                                             f"{field}. Got {count} {field}.")
        if total > BATCH_TOTAL:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"A batch logging request can contain at most {BATCH_TOTAL} "
                                                         f"metrics, params and tags in total. Got {total}.")
        return RunWrite("", params=params_of(body.get("params")), tags=tags_of(body.get("tags")),
                        metrics=metrics_of(body.get("metrics"), _now_ms()))

    return await _logged(request, store, make)


@_route("POST", API + "/runs/delete-tag", Role.WRITER)
async def _delete_tag(request: Request, store: Store) -> Response:
    """DeleteTag."""
    body = await _message(request)
    run_id = _run_id(body)
    key = string_field(body, "key")

    def delete() -> None:
        record = _live_run(store, run_id)
        if key not in record.tags:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"No tag with name: {key[:250]} in run with id {run_id}", 404)
        store.delete_tag(run_id, key)

    await _call(delete)
    return _ok()


@_route("POST", API + "/runs/log-inputs", Role.WRITER)
async def _log_inputs(request: Request, store: Store) -> Response:
    """LogInputs: accepted and not kept (labtrack records inputs its own way: ``inputs=`` on start_run)."""
    await _call(_live_run, store, _run_id(await _message(request)))
    return _ok()


@_route("POST", API + "/runs/outputs", Role.WRITER)
async def _log_outputs(request: Request, store: Store) -> Response:
    """LogOutputs: accepted and not kept (logged models are not served)."""
    await _call(_live_run, store, _run_id(await _message(request)))
    return _ok()


# -- runs: reading ---------------------------------------------------------------------------------


@_route("GET", API + "/runs/get", Role.READER)
async def _get_run(request: Request, store: Store) -> Response:
    """GetRun."""
    run_id = _run_id(await _message(request))

    def get() -> dict[str, Any]:
        record = _run(store, run_id)
        return run_json(record, _ids_by_name(store).get(record.experiment, "0"))

    return _ok({"run": await _call(get)})


@_route("POST", API + "/runs/search", Role.READER)
async def _search_runs(request: Request, store: Store) -> Response:
    """SearchRuns: MLflow's filter and order_by, translated to labtrack's search (one SQL query), paged."""
    body = await _message(request)
    exp_ids = body.get("experiment_ids") or []
    if not isinstance(exp_ids, list) or not all(isinstance(e, (str, int)) for e in exp_ids):
        raise MlflowError("INVALID_PARAMETER_VALUE", "'experiment_ids' must be a list of experiment ids.")
    limit = _limit(body, 1000)
    offset = page_offset(body.get("page_token"))
    node = parse_search_filter(_text(body, "filter"))
    order = parse_order_by(body.get("order_by"))
    lifecycle = lifecycle_of(body.get("run_view_type"))

    def search() -> dict[str, Any]:
        ids = _ids_by_name(store)
        asked = {str(e) for e in exp_ids}  # (once: not per experiment, for a list of up to 1 MiB of ids)
        names = [name for name, exp_id in ids.items() if exp_id in asked]
        if not names:
            return {}
        found = store.search_runs(Search(experiments=names, order_by=order, max_results=limit + 1, offset=offset,
                                         filter=node, lifecycle=lifecycle))
        out: dict[str, Any] = {"runs": [run_json(r, ids.get(r.experiment, "0")) for r in found[:limit]]}
        if len(found) > limit:
            out["next_page_token"] = page_token(offset + limit)
        return out

    return _ok(await _call(search))


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"'{name}' must be a string.")
    return value


@_route("GET", API + "/metrics/get-history", Role.READER)
async def _get_metric_history(request: Request, store: Store) -> Response:
    """GetMetricHistory: every point of one metric, by step, paged (max_results, page_token)."""
    body = await _message(request)
    run_id = _run_id(body)
    key = string_field(body, "metric_key")
    paged = body.get("max_results") not in (None, "")
    limit = _limit(body, MAX_HISTORY, MAX_HISTORY) if paged else None
    offset = page_offset(body.get("page_token"))

    def history() -> tuple[MetricHistory, int, int]:
        _run(store, run_id)
        # Each page reads the whole series (the store reads a series whole); a page is sliced from its arrays.
        found = store.get_metric_history(run_id, key)
        return found, len(found.steps), len(found.steps) if limit is None else min(offset + limit, len(found.steps))

    found, total, end = await _call(history)
    if end - offset <= MAX_HISTORY:
        out: dict[str, Any] = {"metrics": _points(key, found, offset, end)}
        if end < total:
            out["next_page_token"] = page_token(end)
        return _ok(out)

    async def pieces() -> AsyncIterator[bytes]:  # every point unpaged: a piece at a time, not 1 GB for 2M points
        yield b'{"metrics": ['
        for start in range(offset, end, MAX_HISTORY):
            text = await _call(lambda at=start: json.dumps(_points(key, found, at, min(at + MAX_HISTORY, end)),
                                                          allow_nan=False)[1:-1])
            yield (b", " if start > offset else b"") + text.encode()
        yield b"]}"

    return StreamingResponse(pieces(), media_type="application/json")


def _points(key: str, found: MetricHistory, start: int, end: int) -> list[dict[str, Any]]:
    return [{"key": key, "value": number_json(v), "timestamp": round(t * 1000), "step": s}
            for s, t, v in zip(found.steps[start:end], found.timestamps[start:end], found.values[start:end])]


# -- artifacts -------------------------------------------------------------------------------------


def _listing(items: list[ArtifactInfo], directory: str) -> list[dict[str, Any]]:
    """The entries directly inside ``directory`` ("" for the run's root): files with their size, then
    sub-directories, by path (paths relative to the run)."""
    prefix = directory + "/" if directory else ""
    files: dict[str, int] = {}
    dirs: set[str] = set()
    for item in items:
        if not item.path.startswith(prefix):
            continue
        head, slash, _ = item.path[len(prefix):].partition("/")
        if slash:
            dirs.add(prefix + head)
        else:
            files[prefix + head] = item.size
    out = [{"path": p, "is_dir": True} for p in dirs] + [{"path": p, "is_dir": False, "file_size": n}
                                                        for p, n in files.items()]
    return sorted(out, key=lambda f: str(f["path"]))


def _inner_path(path: str | None, field: str = "path") -> str:
    """A path inside a run's artifacts ("" for the root), refused if it could leave the run."""
    if not path or path == "/":
        return ""
    return check_artifact_path(path[:-1] if path.endswith("/") else path, field)  # (a directory's trailing /)


@_route("GET", API + "/artifacts/list", Role.READER)
async def _list_artifacts(request: Request, store: Store) -> Response:
    """ListArtifacts: the files and directories directly inside ``path`` of a run."""
    body = await _message(request)
    run_id = _run_id(body)
    directory = _inner_path(string_field(body, "path", required=False))

    def listing() -> dict[str, Any]:
        record = _run(store, run_id)
        exp_id = _ids_by_name(store).get(record.experiment, "0")
        out: dict[str, Any] = {"root_uri": f"{artifact_root(exp_id)}/{run_id}/artifacts"}
        files = _listing(store.list_artifacts(run_id), directory)
        if files:
            out["files"] = files
        return out

    return _ok(await _call(listing))


def _artifact_target(store: Store, path: str) -> tuple[RunRecord, str]:
    """(the run, the path inside it) that ``<experiment id>/<run id>/artifacts/<path>`` names; a run that is not
    in that experiment does not exist there."""
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[2] != "artifacts":
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"No artifact at {path[:200]!r}: artifact paths are "
                                                     "<experiment id>/<run id>/artifacts/<path>.", 404)
    record = _run(store, parts[1])
    if _ids_by_name(store).get(record.experiment) != parts[0]:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Run with id={parts[1]} not found in experiment {parts[0][:40]}", 404)
    return record, _inner_path(parts[3] if len(parts) > 3 else "", "artifact path")


@_route("GET", ARTIFACTS, Role.READER)
async def _list_proxied(request: Request, store: Store) -> Response:
    """List proxied artifacts (``?path=<experiment id>/<run id>/artifacts/<dir>``): names relative to ``path``."""
    path = str(request.query_params.get("path") or "").strip("/")

    def listing() -> dict[str, Any]:
        record, directory = _artifact_target(store, path)
        files = [{**f, "path": posixpath.basename(str(f["path"]))}
                 for f in _listing(store.list_artifacts(record.id), directory)]
        return {"files": files} if files else {}

    return _ok(await _call(listing))


@_route("PUT", ARTIFACTS + "/{artifact_path:path}", Role.WRITER)
async def _upload_proxied(request: Request, store: Store) -> Response:
    """Upload one artifact file (its content stored once per sha256, like every labtrack artifact)."""
    record, inner = await _call(_artifact_target, store, request.path_params["artifact_path"])
    if not inner:
        raise MlflowError("INVALID_PARAMETER_VALUE", "An artifact upload needs a file path inside the run.")
    if record.deleted_time is not None:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"The run {record.id} must be in the 'active' state.")
    fd, temp = tempfile.mkstemp(prefix="labtrack-mlflow-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for piece in request.stream():
                await _call(out.write, piece)
        sha, size = await run_in_threadpool(lambda: store.blobs.put_file(temp, move=True))
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    await _call(_write, store, RunWrite(record.id, artifacts=[ArtifactInfo(inner, sha, size)]), record)
    return _ok()


@_route("GET", ARTIFACTS + "/{artifact_path:path}", Role.READER)
async def _download_proxied(request: Request, store: Store) -> Response:
    """Download one artifact file, as a download no browser renders."""

    def find() -> ArtifactInfo:
        record, inner = _artifact_target(store, request.path_params["artifact_path"])
        for item in store.list_artifacts(record.id):
            if item.path == inner:
                return item
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"No artifact {inner[:200]!r} in run {record.id}", 404)

    item = await _call(find)
    handle = await _call(store.open_artifact, item.sha256)

    async def pieces() -> AsyncIterator[bytes]:
        try:
            while piece := await _call(handle.read, 1 << 20):
                yield piece
        finally:
            handle.close()

    return StreamingResponse(pieces(), media_type="application/octet-stream",
                             headers={**_DOWNLOAD_HEADERS, "Content-Length": str(item.size)})


@_route("POST", API + "/logged-models/search", Role.READER)
async def _search_logged_models(request: Request, store: Store) -> Response:
    """SearchLoggedModels: none (labtrack keeps no logged models; MLflow's client asks whenever it resolves a
    ``runs:/`` artifact URI, and an empty answer is the true one)."""
    await _message(request)
    return _ok()


# -- everything else MLflow has ----------------------------------------------------------------------


async def _not_served(request: Request, store: Store) -> Response:
    """What MLflow serves and labtrack does not: MLflow's own 404, saying so."""
    raise MlflowError("ENDPOINT_NOT_FOUND", f"labtrack's MLflow-compatible endpoint does not serve {request.method} "
                                            f"{request.url.path[:200]} (served: experiments, runs, metric history and "
                                            "artifacts; not the model registry, logged models, traces or the UI's "
                                            "routes)", 404)


for _prefix in MLFLOW_PREFIXES:
    for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        _route(_method, _prefix + "/{rest:path}", Role.READER,
               f"mlflow_not_served_{_prefix.split('/')[2].replace('.', '_')}_{_method.lower()}",
               reads_body=False)(_not_served)
