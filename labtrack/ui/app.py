"""The UI's routes, each with the role it needs, and its static files — for the server to serve.

``PAGES`` is the whole UI: the server adds each route behind its auth middleware (which enforces the role,
the session cookie and the CSRF token) and mounts ``static_files()`` at ``/static``. Handlers take the
request and the store (limited to a token's experiments when the token is), like the API's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from labtrack.core.errors import LabtrackError
from labtrack.core.tokens import Role
from labtrack.store.base import Store
from labtrack.ui import login, pages, render, runpage

__all__ = ["PAGES", "PUBLIC_PAGES", "STATIC_PREFIX", "Handler", "Page", "static_files"]

STATIC_PREFIX = "/static"
Handler = Callable[[Request, Store], Awaitable[Response]]


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    role: Role | None  # None: answers without a token (signing in)
    handler: Handler
    name: str


def _page(handler: Callable[[Request, Store], Response], *, html: bool = True) -> Handler:
    """A synchronous handler run in the thread pool; an error on a page is shown as a page."""

    @wraps(handler)
    async def endpoint(request: Request, store: Store) -> Response:
        try:
            return await run_in_threadpool(handler, request, store)
        except LabtrackError as exc:
            if not html:
                raise
            return render.page(request, "error.html", status=exc.status_code, error=exc)

    return endpoint


def _open(handler: Callable[[Request], Awaitable[Response]]) -> Handler:
    @wraps(handler)
    async def endpoint(request: Request, store: Store) -> Response:
        return await handler(request)

    return endpoint


PAGES: list[Page] = [
    Page("GET", "/", Role.READER, _page(pages.experiments), "experiments"),
    Page("GET", "/runs", Role.READER, _page(pages.runs), "runs"),
    Page("GET", "/runs.csv", Role.READER, _page(pages.runs_csv, html=False), "runs_csv"),
    Page("GET", "/ui/rows", Role.READER, _page(pages.rows, html=False), "rows"),
    Page("GET", "/ui/row/{run_id}", Role.READER, _page(pages.row, html=False), "row"),
    Page("GET", "/ui/keys", Role.READER, _page(pages.keys, html=False), "keys"),
    Page("GET", "/ui/series", Role.READER, _page(pages.series, html=False), "series"),
    Page("GET", "/ui/series/data", Role.READER, _page(pages.series_data, html=False), "series_data"),
    Page("GET", "/compare", Role.READER, _page(pages.compare), "compare"),
    Page("GET", "/run/{run_id}", Role.READER, _page(runpage.run_page), "run"),
    Page("GET", "/run/{run_id}/preview", Role.READER, _page(runpage.artifact_preview, html=False), "preview"),
    Page("GET", "/run/{run_id}/artifacts.zip", Role.READER, _page(runpage.artifacts_zip, html=False), "artifacts_zip"),
    Page("GET", "/run/{run_id}/artifact/{path:path}", Role.READER, _page(runpage.artifact, html=False), "artifact"),
    Page("GET", "/run/{run_id}/recipe/{fmt}", Role.READER, _page(runpage.recipe, html=False), "recipe"),
    Page("GET", "/login", None, _open(login.login_form), "login_form"),
    Page("POST", "/login", None, _open(login.login), "login"),
    Page("POST", "/logout", None, _open(login.logout), "logout"),
]
PUBLIC_PAGES = frozenset(p.path for p in PAGES if p.role is None)


class _Static(StaticFiles):
    """The scripts and styles, never sniffed. Pages link them with the version in the URL (``?v=0.1.0``):
    those are cached for a year. A module one of them imports (``./charts.js``) has no version in its URL:
    the browser asks again each time (an unchanged file answers 304), so an upgrade never mixes versions."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.status_code == 200:
            versioned = b"v=" in scope.get("query_string", b"")
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if versioned else "no-cache"
        return response


def static_files() -> Any:
    return _Static(packages=[("labtrack.ui", "static")])
