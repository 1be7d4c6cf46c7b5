"""Templates (Jinja2, autoescaped: every user string renders as text) and the headers every page carries.

Pages are rendered on the server; the browser gets HTML and a few small scripts of ours (no build step,
nothing from the internet). The Content-Security-Policy allows scripts and styles from this origin only:
even a string that slipped through escaping could not run, and an inline script or style is never used.
"""

from __future__ import annotations

import datetime
import json
import math
from functools import cache
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from labtrack.ui import session

__all__ = ["PAGE_HEADERS", "cols_query", "fmt_bytes", "fmt_duration", "fmt_time", "fmt_value", "fragment", "page", "template"]

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    try:
        return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):  # not a time a calendar holds (milliseconds given as seconds?)
        return fmt_value(ts)


def fmt_duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max(end - start, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _field(kind: str, key: str) -> str:
    """The text that names a key of a kind in a column list or a filter (backticked where it must be)."""
    from labtrack.core.filters import Field, field_text

    return field_text(Field(kind, key))


def cols_query(columns: Any) -> str:
    """The query string that asks for these table columns again (a RUNNING row refreshing itself)."""
    pairs = [("col", c.name) for c in columns] + [("pin", c.name) for c in columns if c.pinned]
    return urlencode(pairs or [("nocols", "1")])


@cache
def _environment() -> Environment:
    from labtrack import __version__

    env = Environment(loader=PackageLoader("labtrack.ui", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(value=fmt_value, time=fmt_time, bytes=fmt_bytes)
    env.globals.update(duration=fmt_duration, version=__version__, cols_query=cols_query, field=_field,
                       static=lambda path: f"/static/{path}?v={__version__}")
    return env


def template(name: str) -> Any:
    return _environment().get_template(name)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page: the template rendered with who is signed in and the CSRF token (its cookie set when new)."""
    csrf, fresh = session.csrf_token(request)
    token = request.scope.get("state", {}).get("token")
    html = template(name).render(request=request, csrf=csrf, user=token, open_access=token is None, **context)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    if fresh:
        session.set_csrf_cookie(response, request, csrf)
    return response


def fragment(request: Request, name: str, **context: Any) -> HTMLResponse:
    """A piece of a page for htmx to swap in."""
    html = template(name).render(request=request, **context)
    return HTMLResponse(html, headers=PAGE_HEADERS)
