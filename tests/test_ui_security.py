"""The web UI's safety (issue 15, item 7), attacks first: hostile strings render as text on every page,
artifacts never run in the UI's origin, and with auth on, browser sessions are HttpOnly SameSite cookies
with a CSRF token on every unsafe request. Real server on loopback, Chromium through Playwright."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from ui_helpers import XSS, Site, watched_page

import labtrack as lt
from labtrack.core.tokens import Role
from labtrack.server import auth


def _no_injected_elements(page: Any) -> None:
    for selector in ("img[src=x]", "main svg", "main iframe", "b[onmouseover]", "main script"):
        assert page.query_selector(selector) is None, selector


@pytest.mark.parametrize("where", ["experiments", "runs", "run", "compare", "filter-error", "group", "preview"])
def test_hostile_names_params_tags_notes_and_artifacts_render_as_text(tab: Any, site: Site, where: str) -> None:
    experiment = quote(XSS["experiment"])
    xss, other = site.seeded.xss, site.seeded.old_env
    param = quote(f"params.`{XSS['param']}`")
    url = {
        "experiments": "/?metric=" + quote(XSS["metric"]),
        "runs": f"/runs?experiment={experiment}&col=params.p&col={param}&col=tags.t&col=" + quote(f"metrics.`{XSS['metric']}`"),
        "run": f"/run/{xss}",
        "compare": f"/compare?run={xss}&run={other}",
        "filter-error": f"/runs?experiment={experiment}&filter=" + quote("<img src=x onerror=alert(1)> = 1"),
        "group": f"/runs?experiment={experiment}&group=params.p",
        "preview": f"/run/{xss}",
    }[where]
    tab.goto(site.url + url)
    text = tab.inner_text("body")
    expected = {
        "experiments": [XSS["experiment"]],
        "runs": [XSS["experiment"], XSS["name"], XSS["param"], XSS["tag"]],
        "run": [XSS["name"], XSS["param"], XSS["tag"], XSS["note"], XSS["artifact"], XSS["metric"]],
        "compare": [XSS["name"], XSS["param"]],
        "filter-error": ["<img src=x onerror=alert(1)> = 1"],
        "group": [XSS["param"]],
        "preview": [],
    }[where]
    for value in expected:
        assert value in text, (where, value)
    if where == "preview":
        tab.click("#artifacts button")
        tab.wait_for_selector("#preview pre")
        assert tab.inner_text("#preview pre") == "<script>alert('content')</script>"
    if where in ("run", "compare"):
        for card in tab.query_selector_all(".card.chart"):
            card.scroll_into_view_if_needed()
        tab.wait_for_selector(".card.chart[data-state='drawn']")
        assert XSS["name"] in tab.inner_text(".card.chart .u-legend")  # legend labels are text too
    _no_injected_elements(tab)
    csp = tab.evaluate("async () => (await fetch(location.href)).headers.get('content-security-policy')")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_artifacts_are_downloads_that_never_run_and_only_raster_images_show_inline(site: Site, tmp_path: Any) -> None:
    client = lt.Client(site.seeded.store)
    with client.start_run("artifact-safety") as run:
        for name, body in (("page.html", "<script>alert(1)</script>"), ("logo.svg", '<svg onload="alert(1)"/>'),
                           ("plot.png", "not really a png"), ("data.json", '{"a": "<b>x</b>"}')):
            (tmp_path / name).write_text(body)
            run.log_artifact(str(tmp_path / name))
    client.close()
    for name, inline in (("page.html", False), ("logo.svg", False), ("plot.png", True), ("data.json", False)):
        answer = httpx.get(f"{site.url}/run/{run.id}/artifact/{name}?inline=1")
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"] == "default-src 'none'; sandbox"
        disposition = answer.headers["content-disposition"]
        assert disposition == "inline" if inline else disposition.startswith("attachment;"), (name, disposition)
        assert "html" not in answer.headers["content-type"] and "svg" not in answer.headers["content-type"]


@pytest.fixture
def guarded(site: Site) -> Iterator[Any]:
    """The same store behind a server with auth on, as `labtrack server` serves a team."""
    from server_helpers import serve_in_thread

    with serve_in_thread(site.seeded.store) as served:
        yield served


def sign_in(page: Any, url: str, token: str, target: str = "/") -> None:
    page.goto(url + target)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_signing_in_sets_an_httponly_samesite_cookie_and_signing_out_needs_the_csrf_token(browser: Any, guarded: Any) -> None:
    reader, _ = guarded.store.create_token("alice", Role.READER)
    with watched_page(browser, expected_status=(401, 403)) as watched:
        page = watched.page
        sign_in(page, guarded.url, "lt_wrong_token", "/runs?experiment=mnist")
        assert "not accepted" in page.inner_text(".error-box")
        page.fill("#token", reader)
        page.click("button[type=submit]")
        page.wait_for_url(guarded.url + "/runs?experiment=mnist")  # back where the user was going
        page.wait_for_selector("#runs tbody tr[data-id]")
        assert "alice (reader)" in page.inner_text("header")
        cookie = next(c for c in page.context.cookies() if c["name"] == "labtrack_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain HTTP here
        assert page.evaluate("document.cookie") == ""  # no script reads the session or the CSRF token's cookie
        refused = page.request.post(guarded.url + "/logout")  # the session cookie goes along, no CSRF token
        assert refused.status == 403 and "CSRF" in refused.json()["error"]["message"]
        page.click("header button:text-is('Sign out')")
        page.wait_for_url(re.compile(r"/login"))
        assert not [c for c in page.context.cookies() if c["name"] == "labtrack_session"]
        page.goto(guarded.url + "/")
        page.wait_for_url(re.compile(r"/login\?next=%2F"))


def test_another_site_cannot_make_a_signed_in_browser_post(browser: Any, guarded: Any) -> None:
    """The attack: a page elsewhere posts a form to the server. SameSite=Lax keeps the cookie from going
    along from another site; and even a request that carries it is refused without the page's CSRF token."""
    reader, _ = guarded.store.create_token("bob", Role.READER)
    with watched_page(browser, expected_status=(403,)) as watched:
        page = watched.page
        sign_in(page, guarded.url, reader)
        page.wait_for_selector("#experiments")
        # The attacker's page, on another site: Playwright answers for http://attacker.test itself.
        attack = f"""<form method="post" action="{guarded.url}/logout"><input name="x" value="1"></form>
                     <script>document.forms[0].submit()</script>"""
        page.route("http://attacker.test/**", lambda route: route.fulfill(body=attack, content_type="text/html"))
        with page.expect_response(lambda r: r.url.endswith("/logout")) as posted:
            page.goto("http://attacker.test/page")
        assert posted.value.status == 403
        page.goto(guarded.url + "/")
        page.wait_for_selector("#experiments")  # still signed in
    session = httpx.post(guarded.url + "/login", data={"token": reader, "csrf_token": "x" * 43},
                         cookies={"labtrack_csrf": "x" * 43})
    assert session.status_code == 303
    stolen = {"labtrack_session": reader, "labtrack_csrf": "y" * 43}  # even with the cookies, without the token:
    assert httpx.post(guarded.url + "/logout", cookies=stolen).status_code == 403
    assert httpx.post(guarded.url + "/logout", cookies=stolen, headers={"X-CSRF-Token": "z" * 43}).status_code == 403
    assert httpx.post(guarded.url + "/logout", cookies=stolen, headers={"X-CSRF-Token": "y" * 43}).status_code == 303
    login_csrf = httpx.post(guarded.url + "/login", data={"token": reader})  # signing a victim in as the attacker
    assert login_csrf.status_code == 403


def test_the_session_cookie_is_secure_behind_tls_and_next_stays_on_this_server(guarded: Any) -> None:
    reader, _ = guarded.store.create_token("carol", Role.READER)
    answer = httpx.post(guarded.url + "/login", data={"token": reader, "csrf_token": "c" * 43, "next": "//evil.example/x"},
                        cookies={"labtrack_csrf": "c" * 43}, headers={"X-Forwarded-Proto": "https"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"  # never to another site
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie


def test_a_revoked_token_ends_its_sessions_and_a_limited_token_sees_only_its_experiments(
        browser: Any, guarded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "CACHE_SECONDS", 0.0)
    limited, info = guarded.store.create_token("envs-only", Role.READER, experiments=["envs"])
    with watched_page(browser, expected_status=(404,)) as watched:
        page = watched.page
        sign_in(page, guarded.url, limited)
        page.wait_for_selector("#experiments")
        assert [a.inner_text() for a in page.query_selector_all("#experiments tbody td:first-child a")] == ["envs"]
        hidden = page.goto(guarded.url + "/runs?experiment=mnist")
        assert hidden.status == 404
        guarded.store.revoke_token(info.id)
        page.goto(guarded.url + "/")
        page.wait_for_url(re.compile(r"/login\?next="))
        assert not [c for c in page.context.cookies() if c["name"] == "labtrack_session"]


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(browser: Any, site: Site) -> None:
    with watched_page(browser, color_scheme="dark") as watched:
        page = watched.page
        page.goto(site.url + "/")
        background = "getComputedStyle(document.body).backgroundColor"
        assert page.evaluate(background) == "rgb(20, 23, 28)"
        page.click("#theme")  # system -> dark
        page.click("#theme")  # dark -> light
        assert page.evaluate(background) == "rgb(255, 255, 255)"
        page.goto(site.url + f"/run/{site.seeded.spike}")
        assert page.evaluate(background) == "rgb(255, 255, 255)"  # remembered across pages
        assert page.evaluate("localStorage.getItem('labtrack-theme')") == "light"
        page.click("#theme")  # light -> system: dark again
        assert page.evaluate(background) == "rgb(20, 23, 28)" and "system" in page.inner_text("#theme")


def test_static_files_are_cached_by_version_and_imports_revalidate(site: Site) -> None:
    from labtrack import __version__

    linked = httpx.get(f"{site.url}/static/app.js?v={__version__}")
    assert linked.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert linked.headers["x-content-type-options"] == "nosniff" and "javascript" in linked.headers["content-type"]
    imported = httpx.get(f"{site.url}/static/charts.js")  # as app.js imports it: no version in the URL
    assert imported.headers["cache-control"] == "no-cache"
    again = httpx.get(f"{site.url}/static/charts.js", headers={"If-None-Match": imported.headers["etag"]})
    assert again.status_code == 304
    page = httpx.get(f"{site.url}/runs?experiment=mnist")
    assert f"/static/app.js?v={__version__}" in page.text and page.headers["cache-control"] == "no-store"
