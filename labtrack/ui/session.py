"""Browser sessions: a cookie holding the token the user signed in with, and a CSRF token for every change.

- The session cookie is ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (no other site's form or
  script sends it along with a POST) and ``Secure`` when the request came over TLS (directly or through a
  proxy that says so). The server stays stateless: the cookie is checked like an ``Authorization`` header,
  so any worker or replica accepts it, and revoking the token ends every session that used it.
- CSRF: a random token in a ``SameSite=Strict`` cookie, repeated by every unsafe request (``POST``,
  ``PUT``, ``PATCH``, ``DELETE`` of the UI) in the ``X-CSRF-Token`` header (htmx sends it) or the
  ``csrf_token`` form field. Another site can neither read the cookie nor guess it, so it cannot make a
  request that carries both. And a request whose ``Origin`` header names another site is refused, token or
  not (a neighbouring subdomain could plant a cookie of its choosing). The auth middleware checks both
  before any route runs.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CSRF_HEADER", "SESSION_COOKIE", "SESSION_SECONDS", "clear_session_cookie", "csrf_matches", "csrf_token", "form_csrf", "safe_next", "same_origin", "set_csrf_cookie", "set_session_cookie"]

SESSION_COOKIE = "labtrack_session"
CSRF_COOKIE = "labtrack_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 7 * 24 * 3600
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (to be set as a cookie). A cookie that is not one of
    ours (another shape: planted by a neighbouring site?) is replaced."""
    found = request.cookies.get(CSRF_COOKIE, "")
    if _TOKEN.fullmatch(found):
        return found, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", secure=_secure(request), path="/")


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                        secure=_secure(request), path="/")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given or not _TOKEN.fullmatch(expected):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(origin: str, host: str) -> bool:
    """Whether a request's ``Origin`` header (scheme://host[:port]) names the server it was sent to (its
    ``Host`` header): a browser sets Origin on every POST, and no page can forge it."""
    return urlsplit(origin).netloc.lower() == host.lower() if origin and origin != "null" else False


def form_csrf(body: bytes) -> str | None:
    """The ``csrf_token`` field of a form body (``application/x-www-form-urlencoded``)."""
    values = parse_qs(body.decode("latin-1"), max_num_fields=64).get(CSRF_FIELD)
    return values[0] if values else None


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (never ``//elsewhere`` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
