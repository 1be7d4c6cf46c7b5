"""Authentication and authorisation for every request, in one ASGI middleware that denies by default.

Before any route runs, the middleware finds the route the request will reach and the role it declared
(``labtrack.server.api.ROUTES``); a request to anything else — an unknown path, the OpenAPI document,
the docs pages, a mount added later — needs an admin token. Only the paths in ``PUBLIC`` answer without
a token. So a route someone forgets to protect is protected anyway: the route-walking test proves it.

Tokens come in ``Authorization: Bearer lt_…``, or from a browser in the UI's session cookie (set by signing
in, ``labtrack.ui.session``). A valid token is remembered for ``CACHE_SECONDS`` (so most requests cost no
database read); a revoked token stops working within that time.

CSRF: an unsafe request (POST, PUT, PATCH, DELETE) without an ``Authorization`` header — a browser's — must
repeat the UI's CSRF cookie in the ``X-CSRF-Token`` header or the ``csrf_token`` form field, whatever the
route (API routes sent with a bearer token are exempt: no browser adds that header on its own, and the API
takes only JSON bodies, which no cross-site form can send). A browser asking for a UI page without a session
is sent to the sign-in page; everything else gets the JSON error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from labtrack.core.errors import AuthenticationFailed, LabtrackError, PermissionDenied
from labtrack.core.tokens import Role, TokenInfo
from labtrack.ui.app import PUBLIC_PAGES, STATIC_PREFIX
from labtrack.ui.session import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, csrf_matches, form_csrf, same_origin

__all__ = ["CACHE_SECONDS", "MAX_FORM", "PUBLIC", "PUBLIC_PREFIXES", "SAFE_METHODS", "AuthMiddleware", "matching", "route_roles"]

# The only paths that answer without a token: probes, signing in and out, and the UI's scripts and styles.
PUBLIC = frozenset({"/health", "/ready"}) | PUBLIC_PAGES
PUBLIC_PREFIXES = (STATIC_PREFIX + "/",)
CACHE_SECONDS = 5.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM = 64 * 1024  # bytes of a form body read to find its CSRF field


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
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        cookies: dict[str, str] = {}
        try:
            if scope["type"] != "http":  # websockets and anything else: not served
                raise PermissionDenied("only HTTP requests are served")
            cookies = _cookies(scope["headers"])
            bearer = bool(_header(scope["headers"], b"authorization"))
            if scope["method"] not in SAFE_METHODS and not bearer and (not path.startswith("/api/")
                                                                       or SESSION_COOKIE in cookies):
                receive = await _checked_csrf(scope, receive, cookies)
            if path in PUBLIC or path.startswith(PUBLIC_PREFIXES):
                await self.app(scope, receive, send)
                return
            needed = self.roles(scope)
            token = None if self.open_access else await self._token(scope, cookies)
            if token is not None and not token.role.allows(needed):
                raise PermissionDenied(f"this needs {_a(needed)} token; yours ({token.name}) is {_a(token.role)}")
        except LabtrackError as exc:
            if scope["type"] == "http":
                if isinstance(exc, AuthenticationFailed) and _wants_page(scope):
                    await _to_login(scope, forget=SESSION_COOKIE in cookies)(scope, receive, send)
                else:
                    await self.send_error(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = token
        await self.app(scope, receive, send)

    async def _token(self, scope: Scope, cookies: Mapping[str, str]) -> TokenInfo:
        header = _header(scope["headers"], b"authorization")
        scheme, _, value = header.partition(" ")
        if not header and cookies.get(SESSION_COOKIE):
            scheme, value = "bearer", cookies[SESSION_COOKIE]
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("this server needs a token: send `Authorization: Bearer lt_…` "
                                       "(the client reads LABTRACK_TOKEN), or sign in at /login")
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


def _cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's cookies, read as Starlette reads them for a route (one malformed cookie of another
    application on the domain does not hide the others)."""
    found: dict[str, str] = {}
    for key, value in headers:
        if key.lower() == b"cookie":
            found.update(cookie_parser(value.decode("latin-1")))
    return found


async def _checked_csrf(scope: Scope, receive: Receive, cookies: Mapping[str, str]) -> Receive:
    """``receive`` once the request has shown its CSRF token (header, or the field of a form body, which is
    read here and handed on unchanged); PermissionDenied otherwise."""
    origin = _header(scope["headers"], b"origin")
    hosts = [_header(scope["headers"], b"host"), _header(scope["headers"], b"x-forwarded-host")]  # (a proxy's)
    if origin and not any(same_origin(origin, host) for host in hosts if host):
        raise PermissionDenied(f"this request came from another site ({origin}): refused (CSRF)")
    expected = cookies.get(CSRF_COOKIE)
    given = _header(scope["headers"], CSRF_HEADER.encode())
    if csrf_matches(expected, given):
        return receive
    if _header(scope["headers"], b"content-type").startswith("application/x-www-form-urlencoded"):
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if len(body) > MAX_FORM or not message.get("more_body"):
                break
        if csrf_matches(expected, form_csrf(body[:MAX_FORM])):
            async def replay() -> Any:
                return messages.pop(0) if messages else await receive()

            return replay
    raise PermissionDenied("this request lacks the page's CSRF token (another site may have sent it): "
                           "reload the page and try again")


def _wants_page(scope: Scope) -> bool:
    """A browser navigating to a UI page (not the API, not a script's request)."""
    return (scope["method"] == "GET" and not scope["path"].startswith("/api/")
            and "text/html" in _header(scope["headers"], b"accept")
            and not _header(scope["headers"], b"hx-request"))


def _to_login(scope: Scope, *, forget: bool) -> Any:
    from urllib.parse import quote

    from starlette.responses import RedirectResponse

    target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
    response = RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
    if forget:  # a session whose token was revoked or expired
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


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
