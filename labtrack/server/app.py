"""The tracking server's ASGI app: the JSON API over one store, behind the auth middleware.

``create_app(store)`` builds it for a store object (tests, embedding); ``app_from_env()`` is the factory
``labtrack server`` gives uvicorn, reading what the command was told from ``LABTRACK_SERVER_*`` variables
so that every worker process opens the same store. The app keeps no state of its own between requests:
N processes or replicas on one PostgreSQL answer as one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response

from labtrack.core import wire
from labtrack.core.errors import LabtrackError, StoreError
from labtrack.core.tokens import Role
from labtrack.server.api import ROUTES, json_response
from labtrack.server.auth import AuthMiddleware, matching, route_roles
from labtrack.server.mlflow_api import MLFLOW_PREFIXES, MLFLOW_ROUTES
from labtrack.server.mlflow_api import error_response as mlflow_response
from labtrack.server.mlflow_wire import mlflow_error
from labtrack.server.observe import MAX_IN_FLIGHT, Metrics, ObserveMiddleware
from labtrack.server.scope import ScopedStore
from labtrack.store.base import Store
from labtrack.ui.app import PAGES, STATIC_PREFIX, static_files

__all__ = ["SERVER_ENV", "WRITE_SLOTS", "app_from_env", "create_app", "error_response"]

WRITE_SLOTS = 2

_log = logging.getLogger("labtrack.server")

# What `labtrack server` tells its worker processes.
SERVER_ENV = {
    "store": "LABTRACK_SERVER_STORE",
    "artifacts": "LABTRACK_SERVER_ARTIFACTS",
    "open_access": "LABTRACK_SERVER_NO_AUTH",
    "allowed_hosts": "LABTRACK_SERVER_ALLOWED_HOSTS",
    "proxy_artifacts": "LABTRACK_SERVER_PROXY_ARTIFACTS",
}


def error_response(exc: LabtrackError) -> Response:
    """The one error shape: ``{"error": {"code", "message", "field", "status"}}``, never a traceback."""
    return Response(wire.dumps(exc), status_code=exc.status_code, media_type="application/json")


def _error_for_path(exc: LabtrackError) -> Any:
    """The error a middleware answers with, in the shape of the API asked: MLflow's client reads MLflow's
    ``{"error_code", "message"}`` (so a missing token reads UNAUTHENTICATED there), everything else labtrack's."""
    async def send(scope: Any, receive: Any, send_: Any) -> None:
        mlflow = str(scope.get("path", "")).startswith(MLFLOW_PREFIXES)
        response = mlflow_response(mlflow_error(exc)) if mlflow else error_response(exc)
        await response(scope, receive, send_)

    return send


def _http_error(code: str, message: str, status: int) -> Response:
    body = {"error": {"code": code, "message": message, "field": None, "status": status}}
    return Response(wire.dumps(body), status_code=status, media_type="application/json")


def create_app(store: Store, *, open_access: bool = False, allowed_hosts: list[str] | None = None,
               max_in_flight: int = MAX_IN_FLIGHT, proxy_artifacts: bool = False) -> FastAPI:
    from labtrack import __version__

    app = FastAPI(title="labtrack tracking server", version=__version__, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.store = store
    app.state.metrics = Metrics()
    app.state.proxy_artifacts = proxy_artifacts  # S3 content through this server, not presigned URLs
    # Writes in progress at once: each holds its body, its decoded points and its transaction (a batch of up
    # to ~260k points is tens of MB); the others wait their turn, their bytes still in the socket.
    app.state.write_slots = asyncio.Semaphore(WRITE_SLOTS)
    declared: dict[Any, Role] = {}
    for api_route in [*ROUTES, *MLFLOW_ROUTES]:  # the labtrack API, and MLflow's (labtrack.server.mlflow_api)
        endpoint = _endpoint(api_route.handler)
        app.add_api_route(api_route.path, endpoint, methods=[api_route.method], summary=api_route.summary,
                          name=api_route.name, response_class=Response)
        declared[endpoint] = api_route.role

    @app.get("/health", include_in_schema=True)
    async def health() -> Response:
        """Alive (answers without a token)."""
        return json_response({"status": "ok"})

    @app.get("/ready", include_in_schema=True)
    async def ready() -> Response:
        """The database answers (without a token); 503 otherwise."""
        from starlette.concurrency import run_in_threadpool

        try:
            await run_in_threadpool(store.ping)
        except LabtrackError as exc:
            return error_response(StoreError(f"not ready: {exc}"))
        return json_response({"status": "ready"})

    @app.exception_handler(LabtrackError)
    async def labtrack_error(request: Request, exc: LabtrackError) -> Response:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return _http_error(code, str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        _log.exception("labtrack server: %s %s failed", request.method, request.url.path)
        return _http_error("ServerError", "the server failed on this request (its log has the details)", 500)

    @app.get("/metrics", include_in_schema=True)
    async def metrics() -> Response:
        """Request counts and times, points ingested, requests in flight (Prometheus text format)."""
        return Response(app.state.metrics.text(), media_type="text/plain; version=0.0.4")

    declared[metrics] = Role.READER
    for page in PAGES:  # the web UI
        endpoint = _endpoint(page.handler)
        app.add_api_route(page.path, endpoint, methods=[page.method], name=f"ui_{page.name}",
                          include_in_schema=False, response_class=Response)
        if page.role is not None:
            declared[endpoint] = page.role
    app.mount(STATIC_PREFIX, static_files(), name="static")
    app.add_middleware(AuthMiddleware, authenticate=store.authenticate, roles=route_roles(app.router.routes, declared),
                       open_access=open_access, send_error=_error_for_path)
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics, route_of=lambda scope: _template(app, scope),
                       send_error=_error_for_path, max_in_flight=max_in_flight)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app


def _template(app: FastAPI, scope: Any) -> str:
    found = matching(app.router.routes, scope)
    return str(getattr(found, "path", "")) if found is not None else "unmatched"


def _endpoint(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        store = request.app.state.store
        token = request.scope.get("state", {}).get("token")
        if token is not None and token.experiments is not None:  # a token limited to some experiments
            store = ScopedStore(store, token.experiments)
        return await handler(request, store)

    endpoint.__name__ = handler.__name__.lstrip("_")
    endpoint.__doc__ = handler.__doc__
    return endpoint


def app_from_env() -> FastAPI:
    """The app as ``labtrack server`` configured it, for uvicorn's worker processes."""
    from labtrack.store import open_store

    store = open_store(os.environ[SERVER_ENV["store"]], artifacts=os.environ.get(SERVER_ENV["artifacts"]) or None)
    hosts = [h for h in os.environ.get(SERVER_ENV["allowed_hosts"], "").split(",") if h]
    return create_app(store, open_access=os.environ.get(SERVER_ENV["open_access"]) == "1", allowed_hosts=hosts or None,
                      proxy_artifacts=os.environ.get(SERVER_ENV["proxy_artifacts"]) == "1")
