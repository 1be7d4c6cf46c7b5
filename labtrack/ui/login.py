"""Signing in and out of the UI: a token pasted once becomes the session cookie (``labtrack.ui.session``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from labtrack.ui import render, session

__all__ = ["MAX_FORM", "login", "login_form", "logout"]

MAX_FORM = 16 * 1024


async def login_form(request: Request) -> Response:
    return render.page(request, "login.html", next=session.safe_next(request.query_params.get("next")), error=None)


async def login(request: Request) -> Response:
    """Check the pasted token; when the store knows it, it becomes this browser's session."""
    body = await request.body()
    fields = parse_qs(body[:MAX_FORM].decode("utf-8", "replace"), max_num_fields=16)
    token = (fields.get("token") or [""])[0].strip()
    target = session.safe_next((fields.get("next") or ["/"])[0])
    store = request.app.state.store
    found = await run_in_threadpool(store.authenticate, token) if token else None
    if found is None:
        return render.page(request, "login.html", status=401, next=target,
                           error="That token was not accepted: unknown, expired or revoked. "
                                 "`labtrack token create --name NAME --role reader` on the server makes one.")
    response = RedirectResponse(target, status_code=303)
    session.set_session_cookie(response, request, token)
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    session.clear_session_cookie(response, request)
    return response
