"""Authentication and authorisation for every request, in one ASGI middleware that denies by default.

Before any route runs, the middleware finds the route the request will reach and the role it declared
(``labtrack.server.api.ROUTES``); a request to anything else — an unknown path, the OpenAPI document,
the docs pages, a mount added later — needs an admin token. Only the paths in ``PUBLIC`` answer without
a token. So a route someone forgets to protect is protected anyway: the route-walking test proves it.

Tokens come in ``Authorization: Bearer lt_…``. A valid token is remembered for ``CACHE_SECONDS`` (so
most requests cost no database read); a revoked token stops working within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from labtrack.core.errors import AuthenticationFailed, LabtrackError, PermissionDenied
from labtrack.core.tokens import Role, TokenInfo

__all__ = ["CACHE_SECONDS", "PUBLIC", "AuthMiddleware", "matching", "route_roles"]

PUBLIC = frozenset({"/health", "/ready"})  # the only paths that answer without a token
CACHE_SECONDS = 5.0


class AuthMiddleware:
    """Checks the token and the role of every HTTP request (``open_access``: everyone is an admin — only
    for a server on loopback started with ``--no-auth``)."""

    def __init__(self, app: ASGIApp, *, authenticate: Callable[[str], TokenInfo | None],
                 roles: Callable[[Scope], Role], open_access: bool = False,
                 send_error: Callable[[LabtrackError], Any]) -> None:
        self.app = app
        self.authenticate = authenticate
        self.roles = roles
        self.open_access = open_access
        self.send_error = send_error
        self._cache: dict[str, tuple[float, TokenInfo]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or (scope["type"] == "http" and scope["path"] in PUBLIC):
            await self.app(scope, receive, send)
            return
        try:
            if scope["type"] != "http":  # websockets and anything else: not served
                raise PermissionDenied("only HTTP requests are served")
            needed = self.roles(scope)
            token = None if self.open_access else await self._token(scope)
            if token is not None and not token.role.allows(needed):
                raise PermissionDenied(f"this needs {_a(needed)} token; yours ({token.name}) is {_a(token.role)}")
        except LabtrackError as exc:
            if scope["type"] == "http":
                await self.send_error(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = token
        await self.app(scope, receive, send)

    async def _token(self, scope: Scope) -> TokenInfo:
        header = _header(scope["headers"], b"authorization")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("this server needs a token: send `Authorization: Bearer lt_…` "
                                       "(the client reads LABTRACK_TOKEN)")
        value = value.strip()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(value)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        found = await run_in_threadpool(self.authenticate, value)
        if found is None:
            raise AuthenticationFailed("the token was not accepted: unknown, expired or revoked "
                                       "(`labtrack token list` on the server shows the live ones)")
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[value] = (now, found)
        return found


def _a(role: Role) -> str:
    return f"an {role}" if role.value[0] in "aeiou" else f"a {role}"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def matching(routes: list[Any], scope: Scope) -> Any:
    """The route a request fully matches, or None."""
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return candidate
    return None


def route_roles(routes: list[Any], declared: Mapping[Any, Role]) -> Callable[[Scope], Role]:
    """The role a request needs: that of the route it fully matches, if that route declared one; an admin's
    for everything else (unknown paths, documentation, any route without a declaration)."""

    def needed(scope: Scope) -> Role:
        found = matching(routes, scope)
        return Role.ADMIN if found is None else declared.get(getattr(found, "endpoint", None), Role.ADMIN)

    return needed
