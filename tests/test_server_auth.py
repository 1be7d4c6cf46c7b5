"""Auth that a forgotten route cannot bypass (issue 14, item 6), tested over real HTTP on loopback.

The route walk asks every route of the app — API routes, docs, OpenAPI, anything mounted — with every
method it answers, without a token, with a bad token, and with a reader's token for routes that change
things: only the public list answers without a valid token.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from server_helpers import serve_in_thread

from labtrack.core.tokens import Role
from labtrack.server import auth
from labtrack.server.api import ROUTES
from labtrack.server.app import create_app
from labtrack.server.auth import PUBLIC, PUBLIC_PREFIXES
from labtrack.server.mlflow_api import MLFLOW_PREFIXES, MLFLOW_ROUTES
from labtrack.ui.app import PAGES

_SAMPLE = {"run_id": "0" * 32, "key": "loss", "source": "spool", "fingerprint": "f" * 16, "run_key": "k" * 64,
           "sha256": "0" * 64, "name": "run"}


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: _SAMPLE.get(m.group(1), "x"), path)


def _every_route(app: object) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, mounts included (their root and a path inside)."""
    found = []
    for route in app.routes:  # type: ignore[attr-defined]
        methods = sorted(getattr(route, "methods", None) or {"GET", "POST", "PUT", "DELETE"})
        path = getattr(route, "path", "")
        if not hasattr(route, "methods"):  # a mount: its root and something under it
            found += [(m, path + "/") for m in methods] + [(m, path + "/anything") for m in methods]
            continue
        found += [(m, _concrete(path)) for m in methods if m != "HEAD"]
    return found


def _message(answer: httpx.Response) -> str:
    """An error's message, in labtrack's shape or (MLflow's routes) MLflow's."""
    body = answer.json()
    return str(body["message"] if "error_code" in body else body["error"]["message"])


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    with serve_in_thread(str(tmp_path / "store")) as s:
        yield s


def test_every_route_but_the_public_ones_refuses_a_request_without_a_valid_token(served) -> None:  # type: ignore[no-untyped-def]
    routes = _every_route(served.app)
    paths = {p for _, p in routes}
    assert paths >= {"/openapi.json", "/docs", "/health", "/ready", "/api/v1/write", "/", "/runs", "/compare",
                     "/ui/series", "/login", "/static/", "/static/anything", "/api/2.0/mlflow/runs/log-batch",
                     "/api/2.0/mlflow-artifacts/artifacts/x", "/api/2.0/mlflow/x"}
    assert len(routes) > len(ROUTES) + len(PAGES)
    for method, path in [*routes, ("GET", "/no/such/route"), ("POST", "/api/v1/nothing"), ("GET", "/docs/oauth2-redirect"),
                         ("GET", "/static/../labtrack.db"), ("GET", "/static/%2e%2e/app.py")]:
        for headers in ({}, {"Authorization": "Bearer lt_aaaaaaaaaa_" + "b" * 43}, {"Authorization": "Basic x"},
                        {"Cookie": "labtrack_session=lt_aaaaaaaaaa_" + "b" * 43}):
            answer = httpx.request(method, served.url + path, headers=headers)
            sent = answer.request.url.path  # "/static/../x" goes out as "/x"
            unsafe_from_a_browser = method not in ("GET", "HEAD") and "Authorization" not in headers and (
                not sent.startswith("/api/") or "Cookie" in headers)
            if unsafe_from_a_browser:  # no CSRF token: refused before anything else, public or not
                assert answer.status_code == 403, (method, path, headers, answer.status_code)
                assert "CSRF" in _message(answer)
            elif sent in PUBLIC:
                assert answer.status_code in (200, 303, 401), (method, path)  # /login: 401 to a bad token
            elif sent.startswith(PUBLIC_PREFIXES):  # the UI's scripts and styles: those files and nothing else
                assert answer.status_code in (404, 405), (method, path, answer.status_code)
            else:
                assert answer.status_code == 401, (method, path, headers, answer.status_code, answer.text)
                if sent.startswith(MLFLOW_PREFIXES):  # MLflow's routes answer in MLflow's error shape
                    assert answer.json()["error_code"] == "UNAUTHENTICATED", (method, path)
                else:
                    assert answer.json()["error"]["code"] == "AuthenticationFailed"
    assert httpx.get(served.url + "/static/app.js").status_code == 200


def test_a_browser_without_a_session_is_sent_to_sign_in_and_back(served) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.get(served.url + "/runs?experiment=a%20b", headers={"Accept": "text/html"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fruns%3Fexperiment%3Da%2520b"
    assert "labtrack_session" not in answer.headers.get("set-cookie", "")


def test_a_reader_reads_but_every_route_that_changes_things_refuses_it(served) -> None:  # type: ignore[no-untyped-def]
    reader, _ = served.store.create_token("viewer", Role.READER)
    headers = {"Authorization": f"Bearer {reader}"}
    assert httpx.get(served.url + "/api/v1/experiments", headers=headers).status_code == 200
    for route in [*ROUTES, *MLFLOW_ROUTES]:
        if route.role is Role.READER:
            continue
        answer = httpx.request(route.method, served.url + _concrete(route.path), headers=headers, content=b"{}")
        assert answer.status_code == 403, (route.method, route.path, answer.text)
        error = answer.json()
        assert error["error_code"] == "PERMISSION_DENIED" if route in MLFLOW_ROUTES else (
            error["error"]["code"] == "PermissionDenied"), (route.path, error)
    for path in ("/openapi.json", "/docs", "/nothing"):  # undeclared: an admin's
        assert httpx.get(served.url + path, headers=headers).status_code == 403


def test_the_api_documentation_is_served_to_an_admin(served) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {served.token}"}
    spec = httpx.get(served.url + "/openapi.json", headers=headers).json()
    assert "/api/v1/write" in spec["paths"] and "/api/v1/runs/search" in spec["paths"]


def test_a_revoked_or_expired_token_stops_working(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(auth, "CACHE_SECONDS", 0.0)
    writer, info = served.store.create_token("ci", Role.WRITER)
    headers = {"Authorization": f"Bearer {writer}"}
    assert httpx.get(served.url + "/api/v1/experiments", headers=headers).status_code == 200
    served.store.revoke_token(info.id)
    assert httpx.get(served.url + "/api/v1/experiments", headers=headers).status_code == 401
    expired, _ = served.store.create_token("old", Role.WRITER, expires_time=served.store.now() - 1)
    assert httpx.get(served.url + "/api/v1/experiments", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_tokens_are_stored_only_as_hashes(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token, info = served.store.create_token("ci", Role.WRITER)
    assert token.startswith("lt_" + info.id + "_")
    database = (tmp_path / "store" / "labtrack.db").read_bytes() + b"".join(
        p.read_bytes() for p in (tmp_path / "store").glob("labtrack.db-wal"))
    secret = token[len("lt_" + info.id + "_"):].encode()  # (the secret may hold "_" itself)
    assert info.id.encode() in database and secret not in database


def test_a_host_header_that_is_not_allowed_is_refused(tmp_path: Path) -> None:
    import threading
    import time

    import uvicorn

    from labtrack.store import open_store

    store = open_store(str(tmp_path / "store"))
    app = create_app(store, allowed_hosts=["127.0.0.1", "localhost"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/health", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def test_an_admin_manages_tokens_through_the_server(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from labtrack.cli import main

    monkeypatch.setattr(auth, "CACHE_SECONDS", 0.0)
    monkeypatch.setenv("LABTRACK_TOKEN", served.token)
    monkeypatch.setenv("LABTRACK_STORE", served.url)
    made = CliRunner().invoke(main, ["token", "create", "--name", "laptop", "--role", "reader", "--json"])
    assert made.exit_code == 0, made.output
    import json

    token = json.loads(made.stdout)["token"]
    assert httpx.get(served.url + "/api/v1/experiments", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listed = CliRunner().invoke(main, ["token", "list"], env={"COLUMNS": "200"})
    assert "laptop" in listed.stdout and token not in listed.stdout
    assert CliRunner().invoke(main, ["token", "revoke", "laptop"]).exit_code == 0
    assert httpx.get(served.url + "/api/v1/experiments", headers={"Authorization": f"Bearer {token}"}).status_code == 401
