"""The tracking server's JSON API (``/api/v1``): one route per ``Store`` method, bodies in the wire format.

The remote store (``labtrack.store.remote``) is this API's client, so the two stay in step: a route here
is a method there. Each route declares the role it needs (``ROUTES``); the auth middleware
(``labtrack.server.auth``) reads it before the route runs, and a route that declares none needs an admin.
Store calls block (SQLAlchemy), so they run in the thread pool, never on the event loop.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from labtrack.core import wire
from labtrack.core.errors import ArtifactNotFound, InvalidInput, RequestTooLarge, UnsupportedMediaType
from labtrack.core.frame import RunTable
from labtrack.core.model import (
    ArtifactInfo,
    Collected,
    IngestMark,
    Lifecycle,
    MetricHistory,
    RunRecord,
    RunWrite,
    Search,
    StoreCheck,
)
from labtrack.core.tokens import Role, TokenInfo
from labtrack.core.views import ExperimentRuns
from labtrack.store.base import Store
from labtrack.store.blobs import check_sha256

__all__ = ["MAX_BODY", "PREFIX", "ROUTES", "Handler", "Route", "body_of", "json_response", "route"]

MAX_BODY = 256 * 1024 * 1024  # bytes of a request body after decompression; more is refused with 413
PREFIX = "/api/v1"
Handler = Callable[[Request, Store], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    role: Role
    handler: Handler
    summary: str
    name: str  # the store method it stands for: the OpenAPI operation's name


ROUTES: list[Route] = []


def route(method: str, path: str, role: Role) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, PREFIX + path, role, handler, (handler.__doc__ or "").strip(),
                            handler.__name__.lstrip("_")))
        return handler

    return register


def json_response(value: object, tp: object = None, status: int = 200) -> Response:
    return Response(wire.dumps(value, tp), status_code=status, media_type="application/json")


async def body_of(request: Request, tp: object) -> Any:
    """The request body decoded as ``tp`` from the wire format. A gzip body (``Content-Encoding: gzip``) is
    inflated a piece at a time and refused with 413 past ``MAX_BODY``, before it fills memory. Inflating and
    decoding run in the thread pool: a large write never holds up the event loop (and other requests)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":  # never a form: another site can make a browser post one, unasked
        raise UnsupportedMediaType(f"Content-Type {media or 'missing'!r}: send application/json",
                                   field="content-type")
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", "gzip"):
        raise InvalidInput(f"Content-Encoding {encoding!r}: send identity or gzip", field="content-encoding")
    parts: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > MAX_BODY:
            raise _too_large()
        parts.append(piece)
    return await _call(_decoded, parts, encoding == "gzip", tp)


def _decoded(parts: list[bytes], gzipped: bool, tp: object) -> Any:
    if gzipped:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflated: list[bytes] = []
        size = 0
        try:
            for piece in parts:
                while piece:
                    out = inflate.decompress(piece, MAX_BODY + 1 - size)
                    size += len(out)
                    if size > MAX_BODY:
                        raise _too_large()
                    inflated.append(out)
                    piece = inflate.unconsumed_tail
        except zlib.error as exc:
            raise InvalidInput(f"the body is not gzip: {exc}", field="body") from None
        if not inflate.eof:
            raise InvalidInput("the gzip body is cut short", field="body")
        parts = inflated
    return wire.loads(tp, b"".join(parts))


def _too_large() -> RequestTooLarge:
    return RequestTooLarge(f"the request body is larger than {MAX_BODY // (1024 * 1024)} MiB once decompressed; "
                           "send smaller batches", field="body")


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    return run_in_threadpool(fn, *args, **kwargs)


def _lifecycle(request: Request) -> Lifecycle:
    value = request.query_params.get("lifecycle", "active")
    try:
        return Lifecycle(value)
    except ValueError:
        raise InvalidInput(f"lifecycle: choose active, deleted or all, got {value!r}", field="lifecycle") from None


# -- experiments ------------------------------------------------------------------------------------


@route("GET", "/experiments", Role.READER)
async def _list_experiments(request: Request, store: Store) -> Response:
    """Every experiment with its number of runs (``?lifecycle=active|deleted|all``)."""
    found = await _call(store.list_experiments, _lifecycle(request))
    return json_response([ExperimentRuns.of(e, n) for e, n in found], list[ExperimentRuns])


@route("POST", "/experiments", Role.WRITER)
async def _get_or_create_experiment(request: Request, store: Store) -> Response:
    """The experiment of this name, created if new (body: {"name": ...})."""
    body = await body_of(request, dict[str, str])
    return json_response(await _call(store.get_or_create_experiment, _field(body, "name")))


@route("POST", "/experiments/delete", Role.ADMIN)
async def _delete_experiment(request: Request, store: Store) -> Response:
    """Delete an experiment and its live runs (body: {"name": ...}); answers how many runs."""
    body = await body_of(request, dict[str, str])
    return json_response(await _call(store.delete_experiment, _field(body, "name")), int)


@route("POST", "/experiments/restore", Role.ADMIN)
async def _restore_experiment(request: Request, store: Store) -> Response:
    """Bring back a deleted experiment with the runs deleted with it; answers how many (null: not deleted)."""
    body = await body_of(request, dict[str, str])
    return json_response(await _call(store.restore_experiment, _field(body, "name")), int | None)


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise InvalidInput(f"the body needs {name!r}", field=name)
    return body[name]


# -- reading runs ----------------------------------------------------------------------------------


@route("GET", "/runs/{run_id}", Role.READER)
async def _get_run(request: Request, store: Store) -> Response:
    """One run's record."""
    return json_response(await _call(store.get_run, request.path_params["run_id"]), RunRecord)


@route("POST", "/runs/get", Role.READER)
async def _get_runs(request: Request, store: Store) -> Response:
    """The records of these run ids (body: a list), in that order; unknown ids are left out."""
    ids = await body_of(request, list[str])
    return json_response(await _call(store.get_runs, ids), list[RunRecord])


@route("GET", "/runs/resolve/{name:path}", Role.READER)
async def _resolve_run_id(request: Request, store: Store) -> Response:
    """The full id of a run named by an id, a unique id prefix, or its name."""
    return json_response(await _call(store.resolve_run_id, request.path_params["name"]), str)


@route("POST", "/runs/search", Role.READER)
async def _search_ids(request: Request, store: Store) -> Response:
    """Ids of the runs a search (body: a Search) finds, in its order."""
    search = await body_of(request, Search)
    return json_response(await _call(store.search_ids, search), list[str])


@route("POST", "/runs/table", Role.READER)
async def _run_table(request: Request, store: Store) -> Response:
    """The ended runs among ``ids`` (or those ``search`` selects) as columns, packed."""
    body = await body_of(request, _TableRequest)
    return json_response(await _call(store.run_table, body.ids, body.search), RunTable)


@dataclass(frozen=True)
class _TableRequest:
    ids: list[str]
    search: Search | None = None


@route("GET", "/runs/{run_id}/metrics/{key:path}", Role.READER)
async def _get_metric_history(request: Request, store: Store) -> Response:
    """Every point of one metric, packed."""
    found = await _call(store.get_metric_history, request.path_params["run_id"], request.path_params["key"])
    return json_response(found, MetricHistory)


@route("GET", "/runs/{run_id}/artifacts", Role.READER)
async def _list_artifacts(request: Request, store: Store) -> Response:
    """The run's artifacts: path, sha256, size."""
    return json_response(await _call(store.list_artifacts, request.path_params["run_id"]), list[ArtifactInfo])


@route("GET", "/runs/{run_id}/context", Role.READER)
async def _get_context(request: Request, store: Store) -> Response:
    """The per-run part of the environment."""
    return json_response(await _call(store.get_context, request.path_params["run_id"]), dict[str, Any] | None)


@route("GET", "/runs/{run_id}/marks/{source}", Role.READER)
async def _ingest_mark(request: Request, store: Store) -> Response:
    """How far into one writer's spool the run's points are stored."""
    found = await _call(store.ingest_mark, request.path_params["run_id"], request.path_params["source"])
    return json_response(found, IngestMark | None)


@route("GET", "/environments/{fingerprint}", Role.READER)
async def _get_environment(request: Request, store: Store) -> Response:
    """An environment snapshot by fingerprint."""
    found = await _call(store.get_environment, request.path_params["fingerprint"])
    return json_response(found, dict[str, Any] | None)


@route("GET", "/now", Role.READER)
async def _now(request: Request, store: Store) -> Response:
    """The store's clock: heartbeats and leases are written and judged by it."""
    return json_response(await _call(store.now), float)


@route("GET", "/check", Role.ADMIN)
async def _check_data(request: Request, store: Store) -> Response:
    """Every metric chunk read and checked against its checksum (`labtrack db check`)."""
    return json_response(await _call(store.check_data), StoreCheck)


# -- writing runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WriteRequest:
    writes: list[RunWrite]
    retry: bool = False


@route("POST", "/write", Role.WRITER)
async def _write(request: Request, store: Store) -> Response:
    """Apply run writes in one transaction (see the Store contract); gzip bodies welcome."""
    async with request.app.state.write_slots:  # a few writes decoded at once: memory stays bounded under load
        body = await body_of(request, _WriteRequest)
        await _call(store.write, body.writes, retry=body.retry)
    request.app.state.metrics.ingested(sum(len(c) for w in body.writes for c in w.metrics.values()),
                                       sum(w.create is not None for w in body.writes))
    return json_response(None)


@route("POST", "/runs/{run_id}/heartbeat", Role.WRITER)
async def _heartbeat(request: Request, store: Store) -> Response:
    """Renew a RUNNING run's heartbeat (body: the store-clock time)."""
    when = await body_of(request, float)
    await _call(store.heartbeat, request.path_params["run_id"], when)
    return json_response(None)


@dataclass(frozen=True)
class _CrashRequest:
    observed_heartbeat: float | None
    end_time: float | None = None


@route("POST", "/runs/{run_id}/crashed", Role.WRITER)
async def _mark_crashed(request: Request, store: Store) -> Response:
    """Mark a run CRASHED if it still has the heartbeat the caller observed; answers whether it did."""
    body = await body_of(request, _CrashRequest)
    done = await _call(store.mark_crashed, request.path_params["run_id"], body.observed_heartbeat, body.end_time)
    return json_response(done, bool)


@route("DELETE", "/runs/{run_id}/tags/{key:path}", Role.WRITER)
async def _delete_tag(request: Request, store: Store) -> Response:
    """Remove one tag of a run."""
    await _call(store.delete_tag, request.path_params["run_id"], request.path_params["key"])
    return json_response(None)


@route("PUT", "/environments/{fingerprint}", Role.WRITER)
async def _put_environment(request: Request, store: Store) -> Response:
    """Store an environment snapshot once per fingerprint."""
    snapshot = await body_of(request, dict[str, Any])
    await _call(store.put_environment, request.path_params["fingerprint"], snapshot)
    return json_response(None)


@route("POST", "/runs/delete", Role.WRITER)
async def _delete_runs(request: Request, store: Store) -> Response:
    """Delete runs (body: ids); answers those that were live."""
    return json_response(await _call(store.delete_runs, await body_of(request, list[str])), list[str])


@route("POST", "/runs/restore", Role.WRITER)
async def _restore_runs(request: Request, store: Store) -> Response:
    """Bring deleted runs back (body: ids); answers those that were deleted."""
    return json_response(await _call(store.restore_runs, await body_of(request, list[str])), list[str])


@dataclass(frozen=True)
class _CollectRequest:
    deleted_before: float
    stale_before: float
    dry_run: bool = False
    compact: bool = False


@route("POST", "/gc", Role.ADMIN)
async def _collect_garbage(request: Request, store: Store) -> Response:
    """Remove deleted runs for good, deleted experiments left empty, and unlisted artifact content."""
    body = await body_of(request, _CollectRequest)
    found = await _call(store.collect_garbage, body.deleted_before, stale_before=body.stale_before,
                        dry_run=body.dry_run, compact=body.compact)
    return json_response(found, Collected)


# -- identity and claims ---------------------------------------------------------------------------


@route("GET", "/keys/{run_key}/finished", Role.READER)
async def _find_finished_run(request: Request, store: Store) -> Response:
    """The latest FINISHED run with this key, or null."""
    return json_response(await _call(store.find_finished_run, request.path_params["run_key"]), str | None)


@route("POST", "/keys/finished", Role.READER)
async def _finished_keys(request: Request, store: Store) -> Response:
    """Which of these keys (body: a list) have a FINISHED run."""
    found = await _call(store.finished_keys, await body_of(request, list[str]))
    return json_response(sorted(found), list[str])


@dataclass(frozen=True)
class _ClaimRequest:
    run_key: str
    owner: str
    lease: float
    now: float


@route("POST", "/claims", Role.WRITER)
async def _claim(request: Request, store: Store) -> Response:
    """Claim a configuration for a lease; answers the ClaimState."""
    body = await body_of(request, _ClaimRequest)
    return json_response(await _call(store.claim, body.run_key, body.owner, body.lease, body.now))


@dataclass(frozen=True)
class _RenewRequest:
    owner: str
    lease: float
    now: float


@route("POST", "/claims/renew", Role.WRITER)
async def _renew_claims(request: Request, store: Store) -> Response:
    """Renew every running claim of an owner."""
    body = await body_of(request, _RenewRequest)
    await _call(store.renew_claims, body.owner, body.lease, body.now)
    return json_response(None)


@dataclass(frozen=True)
class _ReleaseRequest:
    run_key: str
    owner: str
    done: bool
    run_id: str | None = None


@route("POST", "/claims/release", Role.WRITER)
async def _release_claim(request: Request, store: Store) -> Response:
    """Mark a claim done or failed."""
    body = await body_of(request, _ReleaseRequest)
    await _call(store.release_claim, body.run_key, body.owner, done=body.done, run_id=body.run_id)
    return json_response(None)


# -- tokens (an admin's) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _TokenRequest:
    name: str
    role: Role
    experiments: list[str] | None = None
    expires_time: float | None = None


@route("POST", "/tokens", Role.ADMIN)
async def _create_token(request: Request, store: Store) -> Response:
    """A new token: its secret (shown once) and its record."""
    from labtrack.core.tokens import check_experiments

    body = await body_of(request, _TokenRequest)
    secret, info = await _call(store.create_token, body.name, body.role,
                               experiments=check_experiments(body.experiments), expires_time=body.expires_time)
    return json_response({"token": secret, "info": wire.to_wire(info, TokenInfo)})


@route("GET", "/tokens", Role.ADMIN)
async def _list_tokens(request: Request, store: Store) -> Response:
    """Every token's record (never a secret)."""
    return json_response(await _call(store.list_tokens), list[TokenInfo])


@route("POST", "/tokens/revoke", Role.ADMIN)
async def _revoke_token(request: Request, store: Store) -> Response:
    """Revoke a token by id, or every live token of a name (body: {"token": id or name})."""
    body = await body_of(request, dict[str, str])
    return json_response(await _call(store.revoke_token, _field(body, "token")), list[TokenInfo])


# -- artifact content ------------------------------------------------------------------------------

# Content is served as a download that no browser renders or runs (an artifact is anyone's bytes).
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Disposition": "attachment",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def _presigning(request: Request, store: Store) -> Any:
    """The blob store, when clients get presigned URLs to it (S3, unless the server proxies artifacts)."""
    blobs = store.blobs
    return None if request.app.state.proxy_artifacts or not hasattr(blobs, "upload_url") else blobs


@route("GET", "/blobs/{sha256}", Role.READER)
async def _get_blob(request: Request, store: Store) -> Response:
    """An artifact's content by sha256, as a download (on S3: a redirect to a presigned URL, valid minutes)."""
    sha = check_sha256(request.path_params["sha256"])
    store = await _readable(store, sha)
    presigning = _presigning(request, store)
    if presigning is not None:
        if not await _call(presigning.exists, sha):
            raise ArtifactNotFound(f"no artifact content {sha} in store {store.display_url}")
        return Response(status_code=307, headers={"Location": await _call(presigning.download_url, sha),
                                                  "Cache-Control": "no-store"})
    local = getattr(store.blobs, "_blob_path", None)
    if local is not None:  # a local directory: sent from the file
        path = local(sha)
        if not await _call(os.path.exists, path):
            raise ArtifactNotFound(f"no artifact content {sha} in store {store.display_url}")
        return FileResponse(path, media_type="application/octet-stream", headers=_DOWNLOAD_HEADERS)
    handle = await _call(store.open_artifact, sha)

    async def pieces() -> AsyncIterator[bytes]:  # a piece at a time: a 5 GB checkpoint never sits in memory
        try:
            while piece := await _call(handle.read, 1 << 20):
                yield piece
        finally:
            handle.close()

    return StreamingResponse(pieces(), media_type="application/octet-stream", headers=_DOWNLOAD_HEADERS)


@route("GET", "/blobs/{sha256}/exists", Role.READER)
async def _blob_exists(request: Request, store: Store) -> Response:
    """Whether the store holds this content."""
    sha = check_sha256(request.path_params["sha256"])
    try:
        store = await _readable(store, sha)
    except ArtifactNotFound:
        return json_response(False, bool)
    return json_response(await _call(store.blobs.exists, sha), bool)


async def _readable(store: Store, sha: str) -> Store:
    """The store to read content from, once the token may read it (a limited token: a run it sees lists it)."""
    from labtrack.server.scope import ScopedStore

    if isinstance(store, ScopedStore):
        await _call(store.require_blob, sha)
        return store.inner
    return store


@route("POST", "/blobs/{sha256}/upload", Role.WRITER)
async def _upload_blob(request: Request, store: Store) -> Response:
    """Where to send content: nowhere when the store has it (its time is refreshed), a presigned URL (with
    the headers to send) on S3, or null for this server's own PUT route."""
    sha = check_sha256(request.path_params["sha256"])
    presigning = _presigning(request, store)
    if presigning is not None:
        if await _call(presigning.refresh, sha):
            return json_response({"exists": True, "url": None, "headers": {}})
        url, headers = await _call(presigning.upload_url, sha)
        return json_response({"exists": False, "url": url, "headers": headers})
    return json_response({"exists": False, "url": None, "headers": {}})


@route("PUT", "/blobs/{sha256}", Role.WRITER)
async def _put_blob(request: Request, store: Store) -> Response:
    """Store content under its sha256 (the server hashes what it receives: a wrong name is refused)."""
    import hashlib

    sha = check_sha256(request.path_params["sha256"])
    digest = hashlib.sha256()
    fd, path = tempfile.mkstemp(prefix="labtrack-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for piece in request.stream():
                digest.update(piece)
                await _call(out.write, piece)
        if digest.hexdigest() != sha:
            raise InvalidInput(f"the content's sha256 is {digest.hexdigest()}, not {sha}", field="sha256")
        stored = await _call(store.blobs.put_file, path, move=True)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return json_response(list(stored), list[Any])
