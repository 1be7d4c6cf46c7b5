"""The tracking server's API behaving as a first-class service (issue 14, items 1, 3 and 5), over real HTTP:
one JSON error shape, a gzip bomb refused without being inflated, 503 with Retry-After when busy,
Prometheus metrics, artifact downloads that no browser runs, content checked against its name."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import httpx
import pytest
from server_helpers import serve_in_thread, use_server

import labtrack as lt
from labtrack.server import api
from labtrack.store.remote import RemoteStore


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    with serve_in_thread(str(tmp_path / "store")) as s:
        yield s


def _auth(served) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {served.token}"}


def test_every_error_has_one_json_shape_and_no_traceback(served) -> None:  # type: ignore[no-untyped-def]
    for method, path, body in (("GET", "/api/v1/runs/" + "0" * 32, None), ("GET", "/api/v1/nothing", None),
                               ("POST", "/api/v1/runs/search", b"{not json"), ("POST", "/api/v1/runs/search", b"[1]"),
                               ("DELETE", "/api/v1/experiments", None)):
        answer = httpx.request(method, served.url + path, content=body,
                               headers={**_auth(served), "Content-Type": "application/json"})
        error = answer.json()["error"]
        assert set(error) == {"code", "message", "field", "status"} and error["status"] == answer.status_code
        assert answer.status_code in (400, 404, 405) and "Traceback" not in answer.text, (path, answer.text)


def test_a_gzip_bomb_is_refused_without_being_inflated(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(api, "MAX_BODY", 1 << 20)  # 1 MiB for the test; the bomb inflates to 512 MiB
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = b" " * (1 << 20)
    body = bomb.compress(b"[") + b"".join(bomb.compress(spaces) for _ in range(512)) + bomb.flush()
    assert len(body) < 1 << 20
    answer = httpx.post(served.url + "/api/v1/runs/get", content=body,
                        headers={**_auth(served), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "RequestTooLarge"
    ok = httpx.post(served.url + "/api/v1/runs/get", content=gzip.compress(b"[]"),
                    headers={**_auth(served), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json() == []


def test_a_busy_server_answers_503_with_retry_after_and_the_client_says_so(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(str(tmp_path / "store"), max_in_flight=0) as busy:
        answer = httpx.get(busy.url + "/api/v1/experiments", headers=_auth(busy))
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "ServerBusy"
        assert httpx.get(busy.url + "/health").status_code == 200  # health is never refused
        monkeypatch.setattr("labtrack.store.remote._MAX_WAIT", 0.01)
        store = RemoteStore(busy.url, token=busy.token)
        with pytest.raises(lt.StoreError, match="busy"):
            store.list_experiments()
        store.close()


def test_metrics_count_requests_by_route_and_points_ingested(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    use_server(served, monkeypatch)
    with lt.start_run("observed") as run:
        for step in range(100):
            run.log_metric("loss", 1 / (step + 1), step=step)
    lt.get_run(run.id)
    text = httpx.get(served.url + "/metrics", headers=_auth(served)).text
    assert "labtrack_points_ingested_total 100" in text
    assert 'route="/api/v1/runs/{run_id}",status="200"' in text  # the template, not one series per run
    assert run.id not in text
    assert httpx.get(served.url + "/metrics").status_code == 401


def test_downloads_are_attachments_no_browser_runs_and_uploads_are_checked(served) -> None:  # type: ignore[no-untyped-def]
    page = b"<script>alert(document.cookie)</script>"
    sha = hashlib.sha256(page).hexdigest()
    assert httpx.put(f"{served.url}/api/v1/blobs/{sha}", content=page, headers=_auth(served)).status_code == 200
    answer = httpx.get(f"{served.url}/api/v1/blobs/{sha}", headers=_auth(served))
    assert answer.content == page
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"] == "attachment"
    assert "sandbox" in answer.headers["content-security-policy"]
    assert answer.headers["content-type"] == "application/octet-stream"
    wrong = httpx.put(f"{served.url}/api/v1/blobs/{'0' * 64}", content=b"other bytes", headers=_auth(served))
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "sha256"
    assert httpx.get(f"{served.url}/api/v1/blobs/{'1' * 64}", headers=_auth(served)).status_code == 404
    assert httpx.get(f"{served.url}/api/v1/blobs/..%2f..%2fetc%2fpasswd", headers=_auth(served)).status_code in (400, 404)


def test_the_client_finds_its_token_in_a_netrc_file_and_never_in_the_url(served, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login labtrack\n  password {served.token}\n")
    netrc.chmod(0o600)
    monkeypatch.delenv("LABTRACK_TOKEN", raising=False)
    monkeypatch.setenv("LABTRACK_NETRC", str(netrc))
    store = RemoteStore(served.url)
    try:
        assert store.list_experiments() == []
    finally:
        store.close()
    with pytest.raises(lt.InvalidInput, match="LABTRACK_TOKEN, never in the URL"):
        RemoteStore(served.url.replace("http://", f"http://x:{served.token}@"))


def test_a_bad_field_in_a_body_is_named_by_its_path(served) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.post(served.url + "/api/v1/runs/search", headers=_auth(served),
                        json={"experiments": 5, "order_by": []})
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "experiments"
    gzipped = httpx.post(served.url + "/api/v1/runs/get", content=gzip.compress(b'["a", 3]'),
                         headers={**_auth(served), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert gzipped.status_code == 400 and gzipped.json()["error"]["field"] == "[1]"


def test_a_page_on_another_site_cannot_make_a_browser_write_through_a_loopback_server(tmp_path: Path) -> None:
    """A `--no-auth` server on loopback answers a browser on this machine too: a page on any site could post
    a form (a "simple" cross-site request: text/plain, no preflight) to delete runs. Bodies must be JSON."""
    with serve_in_thread(str(tmp_path / "store"), open_access=True) as served:
        lt.set_store(served.url)
        with lt.start_run("precious") as run:
            pass
        lt.flush()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": content_type} if content_type else {}
            answer = httpx.post(served.url + "/api/v1/runs/delete", content=f'["{run.id}"]', headers=headers)
            assert answer.status_code == 415, (content_type, answer.text)
            assert answer.json()["error"]["field"] == "content-type"
        assert lt.get_run(run.id).record.deleted_time is None
        ok = httpx.post(served.url + "/api/v1/runs/delete", json=[run.id])
        assert ok.status_code == 200 and ok.json() == [run.id]
