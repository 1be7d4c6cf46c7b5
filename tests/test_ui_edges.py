"""The web UI on odd data and odd requests, over real HTTP (findings of a review, each replayed here): pages
of a table keep their columns, NaN metrics and names with quotes and backslashes page completely, unsortable
columns are not offered, out-of-range times and huge values render, cookies of other applications do not
end a session, and a request from another origin is refused."""

from __future__ import annotations

import html
import http.client
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from server_helpers import serve_in_thread

import labtrack as lt
from labtrack.core.model import NewRun, RunStatus
from labtrack.core.series import Chunk
from labtrack.core.tokens import Role

NAMES = ["plain", "O'Brien", "back\\slash", "both\\'", "\\\\share\\x", "'quoted'", "end\\"]


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("odd")
    location = str(root / "store")
    client = lt.Client(location)
    for i in range(120):  # the newest runs (60..119) have other keys than the oldest
        params = {"old_lr": 0.1 * (i % 3), "phase": 1} if i < 60 else {"lr": 0.01 * (i % 5), "phase": 2}
        with client.start_run("cols", params={**params, "seed": i}) as run:
            run.log_metric("loss" if i < 60 else "val_loss", 1.0 / (i + 1))
    for i in range(60):
        with client.start_run("nan", params={"i": i}) as run:
            if i % 20 == 3:
                run.log_metric("acc", math.nan)
            elif i % 20 != 7:
                run.log_metric("acc", float(i % 9))  # ties, to page through
    for i in range(110):
        with client.start_run("names", name=f"{NAMES[i % len(NAMES)]}-{i % 11}", tags={"t": NAMES[i % len(NAMES)]}) as run:
            run.log_metric("acc", 0.5)
    with client.start_run("values", name="=HYPERLINK(\"http://evil.example\")", params={"k,comma": 3}) as run:
        run.log_batch({"huge": [1e308] * 5000}, steps=list(range(5000)))
        huge = run.id
    client.close()
    with serve_in_thread(location, open_access=True) as served:
        store = served.store
        old = "e" * 32  # a time in milliseconds where seconds belong
        store.create_run(NewRun(old, "values", 1.7e12, name="from-ms"))
        store.end_run(old, RunStatus.FINISHED, 1.7e12 + 5)
        resumed = "d" * 32  # steps logged again after a restart: time order is not step order
        store.create_run(NewRun(resumed, "values", 1000.0, name="resumed"))
        points = [(s, 1000.0 + s, float(s)) for s in range(10)] + [(s, 1005.0 + s, 10.0 + s) for s in range(5, 10)]
        store.log_metrics(resumed, {"loss": Chunk.from_points(points)}, frozenset({"loss"}))
        store.end_run(resumed, RunStatus.FINISHED, 1100.0)
        yield {"url": served.url, "served": served, "store": location, "huge": huge, "old": old, "resumed": resumed}


def walk(url: str, first: str) -> tuple[list[str], list[list[str]]]:
    """Every run id of a table, following its "more" links, and each page's column headers."""
    ids: list[str] = []
    pages: list[list[str]] = []
    headers: list[str] = []
    target: str | None = first
    while target:
        answer = httpx.get(url + target)
        assert answer.status_code == 200, (target, answer.text[:300])
        text = answer.text
        if not headers:
            headers = re.findall(r'<th class="[^"]*" data-column="([^"]*)"', text)
            headers = [html.unescape(h) for h in headers]
        rows = re.findall(r'<tr data-id="([0-9a-f]{32})"[^>]*>(.*?)</tr>', text, re.S)
        for run_id, body in rows:
            assert body.count("<td") == 5 + len(headers), (target, run_id)
        ids += [run_id for run_id, _ in rows]
        more = re.search(r'hx-get="(/ui/rows\?[^"]*)"', text)
        target = html.unescape(more.group(1)) if more else None
        if target:
            pages.append(urlsplit(target).query)
    return ids, [headers]


def test_later_pages_keep_the_first_pages_columns_and_differences_only_is_decided_once(odd: Any) -> None:
    for query in ("", "&diff=1"):
        ids, _ = walk(odd["url"], "/runs?experiment=cols" + query)
        assert len(ids) == 120 and len(set(ids)) == 120
        first = httpx.get(odd["url"] + "/runs?experiment=cols" + query).text
        more = html.unescape(re.search(r'hx-get="(/ui/rows\?[^"]*)"', first).group(1))
        columns = [html.unescape(c) for c in re.findall(r'<th class="[^"]*" data-column="([^"]*)"', first)]
        assert httpx.QueryParams(urlsplit(more).query).get_list("col") == columns
        assert "params.lr" in columns and "params.old_lr" not in columns  # the first page's runs decide
        assert ("params.phase" in columns) == (query == "")  # one value on the first page: hidden by diff=1
        assert "diff=1" not in more


@pytest.mark.parametrize("sort", ["metrics.acc desc", "metrics.acc asc", "metrics.acc.min desc", ""])
def test_runs_with_a_nan_metric_or_none_page_through_in_the_stores_order(odd: Any, sort: str) -> None:
    ids, _ = walk(odd["url"], "/runs?experiment=nan&col=metrics.acc" + (f"&sort={quote(sort)}" if sort else ""))
    expected = [r.id for r in lt.Client(odd["store"]).search_runs("nan", order_by=sort or None)]
    assert ids == expected and len(ids) == 60


@pytest.mark.parametrize("sort", ["attributes.name desc", "attributes.name asc", "tags.t desc", "tags.t asc",
                                  "attributes.heartbeat_time desc", "attributes.status asc"])
def test_names_and_tags_with_quotes_and_backslashes_page_through_completely(odd: Any, sort: str) -> None:
    ids, _ = walk(odd["url"], f"/runs?experiment=names&sort={quote(sort)}")
    expected = [r.id for r in lt.Client(odd["store"]).search_runs("names", order_by=sort)]
    assert ids == expected and len(ids) == 110


def test_environment_columns_are_shown_but_not_offered_for_sorting(odd: Any) -> None:
    text = httpx.get(odd["url"] + "/runs?experiment=cols&col=env.python&col=params.seed").text
    env = re.search(r'data-column="env.python"[^>]*>(.*?)</th>', text, re.S).group(1)
    seed = re.search(r'data-column="params.seed"[^>]*>(.*?)</th>', text, re.S).group(1)
    assert "<a" not in env and 'class="sort"' in seed


def test_a_key_with_a_comma_is_one_column_and_a_formula_name_is_neutralised_in_csv(odd: Any) -> None:
    column = quote("params.`k,comma`")
    text = httpx.get(f"{odd['url']}/runs?experiment=values&col={column}").text
    assert 'data-column="params.`k,comma`"' in text and "error-box" not in text
    assert re.search(r'<tr data-id="[0-9a-f]{32}".*?<td class="num" title="3">3</td>', text, re.S)
    csv = httpx.get(f"{odd['url']}/runs.csv?experiment=values&col={column}").text
    assert "'=HYPERLINK" in csv and "\n" + '=HYPERLINK' not in csv and ",=HYPERLINK" not in csv


def test_a_time_no_calendar_holds_and_a_sum_past_the_largest_float_still_render(odd: Any) -> None:
    for path in ("/", "/runs?experiment=values", f"/run/{odd['old']}"):
        answer = httpx.get(odd["url"] + path)
        assert answer.status_code == 200, path
    assert "1.7e+12" in httpx.get(odd["url"] + f"/run/{odd['old']}").text
    series = httpx.get(f"{odd['url']}/ui/series?run={odd['huge']}&key=huge&width=100")
    assert series.status_code == 200
    found = series.json()["series"][0]
    assert max(found["y"]) == pytest.approx(1e308) and max(found["high"]) == 1e308


def test_time_axes_put_a_resumed_runs_points_in_time_order(odd: Any) -> None:
    for axis in ("wall", "relative"):
        found = httpx.get(f"{odd['url']}/ui/series?run={odd['resumed']}&key=loss&width=100&x={axis}").json()["series"][0]
        assert found["x"] == sorted(found["x"]) and len(found["x"]) == 15
        assert found["x"][0] == (1000.0 if axis == "wall" else 0.0)


def test_a_malformed_cookie_of_another_application_does_not_end_a_session(odd: Any) -> None:
    with serve_in_thread(odd["store"]) as guarded:  # auth on
        token, _ = guarded.store.create_token("dora", Role.READER)
        for other in ('prefs={"a":1}', "ga=GA1 x", "theme=dark mode"):
            cookie = f"{other}; labtrack_session={token}; last=dark mode"
            answer = httpx.get(guarded.url + "/", headers={"Cookie": cookie, "Accept": "text/html"})
            assert answer.status_code == 200, other


def test_a_request_from_another_origin_is_refused_even_with_a_matching_token(odd: Any) -> None:
    url = odd["url"]
    cookies = {"labtrack_csrf": "a" * 43}
    sent = {"token": "x", "csrf_token": "a" * 43}
    assert httpx.post(url + "/login", data=sent, cookies=cookies,
                      headers={"Origin": "http://evil.example"}).status_code == 403
    assert httpx.post(url + "/login", data=sent, cookies=cookies, headers={"Origin": url}).status_code == 401
    planted = httpx.get(url + "/login", cookies={"labtrack_csrf": 'x", "HX-Trigger": "boom'})
    assert 'HX-Trigger' not in planted.text and "labtrack_csrf=" in planted.headers["set-cookie"]  # replaced
    body = re.search(r"hx-headers='([^']*)'", planted.text).group(1)
    assert set(httpx.Response(200, content=html.unescape(body)).json()) == {"X-CSRF-Token"}


def test_static_paths_that_climb_out_of_the_static_folder_find_nothing(odd: Any) -> None:
    host, port = urlsplit(odd["url"]).netloc.split(":")
    for raw in ("/static/../labtrack.db", "/static/%2e%2e/labtrack.db", "/static/..%2fserver/auth.py",
                "/static/vendor/../../ui/app.py"):
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.putrequest("GET", raw, skip_accept_encoding=True)  # sent as written: nothing normalises it
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status in (401, 404), (raw, answer.status)
        assert b"import" not in answer.read()
        connection.close()

