"""The web UI's pages in a real browser (Chromium through Playwright) against a real server (issue 15):
experiments, the runs table (pages, sorting, filter and its errors, columns, group-by, differences only,
CSV, keyboard, URL state, live refresh), the run page and compare."""

from __future__ import annotations

import csv
import io
import os
import re
import statistics
import time
from typing import Any

from ui_helpers import NEW_TORCH, OLD_TORCH, Site, acc_of, runs_shown

import labtrack as lt
from labtrack.core.model import NewRun, RunStatus
from labtrack.core.series import Chunk


def open_runs(page: Any, site: Site, query: str = "") -> None:
    page.goto(f"{site.url}/runs?experiment=mnist{query}")
    page.wait_for_selector("#runs tbody tr[data-id]")


def test_the_experiments_page_lists_each_experiment_and_the_best_run_of_a_metric(tab: Any, site: Site) -> None:
    tab.goto(site.url + "/")
    rows = {tr.query_selector("td a").inner_text(): tr.query_selector_all("td")[1].inner_text()
            for tr in tab.query_selector_all("#experiments tbody tr")}
    assert rows["mnist"] == "130" and rows["envs"] == "2" and rows["charts"] == "1"
    tab.fill("input[name=metric]", "acc")
    tab.click("text=Show")
    tab.wait_for_url(re.compile(r"metric=acc"))
    best = tab.query_selector("#experiments tbody tr:has(a:text-is('mnist')) a[href^='/run/']")
    assert best.get_attribute("href") == f"/run/{site.seeded.best}"
    tab.click("#experiments a:text-is('mnist')")
    tab.wait_for_selector("#runs tbody tr[data-id]")
    assert tab.inner_text("h1").startswith("mnist")


def test_the_runs_table_pages_through_every_run_in_order_without_repeats(tab: Any, site: Site) -> None:
    expected = [r.id for r in lt.Client(site.seeded.store).search_runs("mnist", order_by="metrics.acc desc")]
    open_runs(tab, site, "&sort=metrics.acc+desc")
    assert len(runs_shown(tab)) == 50
    for shown in (100, 130):
        tab.click("tr.more button")
        tab.wait_for_selector(f"#runs tbody tr[data-id]:nth-child({shown})")
    assert runs_shown(tab) == expected  # runs without acc last, each run once
    assert set(runs_shown(tab)[-len(site.seeded.no_acc):]) == set(site.seeded.no_acc)
    assert tab.query_selector("tr.more") is None


def test_sorting_by_a_column_header_sorts_in_the_store_and_again_flips_it(tab: Any, site: Site) -> None:
    open_runs(tab, site)
    tab.click("#runs th[data-column='metrics.acc'] a.sort")
    tab.wait_for_url(re.compile(r"sort=metrics.acc\+desc"))
    assert runs_shown(tab)[0] == site.seeded.best
    assert tab.get_attribute("#runs th[data-column='metrics.acc'] a.sort", "aria-sort") == "descending"
    tab.click("#runs th[data-column='metrics.acc'] a.sort")
    tab.wait_for_url(re.compile(r"sort=metrics.acc\+asc"))
    values = [float(v) for v in tab.eval_on_selector_all(
        "#runs tbody tr[data-id]", "rows => rows.map(r => r.querySelectorAll('td')[9].textContent)") if v]
    assert values == sorted(values) and values[0] == min(acc_of(i) for i in range(130) if i % 26 != 5)


def test_the_filter_uses_the_query_language_and_points_at_a_mistake(tab: Any, site: Site) -> None:
    open_runs(tab, site)
    tab.fill("#filter", "metrics.acc > 0.8 and params.lr = 0.01")
    tab.press("#filter", "Enter")
    tab.wait_for_url(re.compile(r"filter="))
    client = lt.Client(site.seeded.store)
    expected = {r.id for r in client.search_runs("mnist", filter="metrics.acc > 0.8 and params.lr = 0.01")}
    assert expected and set(runs_shown(tab)) == expected
    tab.fill("#filter", "metrics.acc > and params.lr = 0.01")
    tab.press("#filter", "Enter")
    tab.wait_for_selector("#filter-error")
    assert tab.get_attribute("#filter", "aria-invalid") == "true"
    assert tab.input_value("#filter") == "metrics.acc > and params.lr = 0.01"  # what was typed is kept
    caret = tab.inner_text("#filter-error pre").split("\n")
    assert caret[0] == "metrics.acc > and params.lr = 0.01" and caret[1] == " " * 14 + "^"
    assert "column 15" in tab.inner_text("#filter-error")


def test_the_filter_completes_field_names_environment_facts_included(tab: Any, site: Site) -> None:
    open_runs(tab, site)
    tab.click("#filter")
    tab.keyboard.type("metrics.ac")
    tab.wait_for_selector(".suggest li")
    assert "metrics.acc" in tab.eval_on_selector_all(".suggest li", "items => items.map(i => i.textContent)")
    tab.keyboard.press("Tab")
    assert tab.input_value("#filter") == "metrics.acc "
    tab.keyboard.type("> 0.5 and env.pyth")
    tab.wait_for_selector(".suggest li:text-is('env.python')")
    tab.keyboard.press("Tab")
    assert tab.input_value("#filter") == "metrics.acc > 0.5 and env.python "


def test_the_column_chooser_shows_pins_and_adds_environment_columns(tab: Any, site: Site) -> None:
    open_runs(tab, site)
    tab.click("#columns-menu summary")
    tab.uncheck("#columns-form input[name=col][value='params.seed']")
    tab.check("#columns-form input[name=pin][value='metrics.acc']")
    tab.fill("#columns-form input[type=text][name=col]", "env.python")
    tab.click("#columns-form button[type=submit]")
    tab.wait_for_url(re.compile(r"col=env.python"))
    headers = tab.eval_on_selector_all("#runs thead th[data-column]", "hs => hs.map(h => h.dataset.column)")
    assert "params.seed" not in headers and "env.python" in headers
    assert headers[0] == "metrics.acc" and "pinned" in (tab.get_attribute("#runs th[data-column='metrics.acc']", "class") or "")
    python = tab.eval_on_selector("#runs tbody tr[data-id]", f"r => r.querySelectorAll('td')[{5 + headers.index('env.python')}].textContent")
    assert re.fullmatch(r"3\.\d+\.\d+", python)


def test_group_by_shows_n_and_mean_and_std_per_group(tab: Any, site: Site) -> None:
    open_runs(tab, site, "&group=params.lr&col=metrics.acc")
    groups = {row[0]: row for row in tab.eval_on_selector_all(
        "#groups tbody tr", "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(c => c.textContent.trim()))")}
    assert set(groups) == {"0.1", "0.01", "0.001"}
    for index, lr in enumerate((0.1, 0.01, 0.001)):
        accs = [acc_of(i) for i in range(130) if i % 3 == index and i % 26 != 5]
        row = groups[str(lr)]
        assert int(row[1]) == len([i for i in range(130) if i % 3 == index])
        assert row[2].startswith(f"{statistics.mean(accs):.4g} ± {statistics.stdev(accs):.2g}")


def test_differences_only_hides_the_columns_with_one_value(tab: Any, site: Site) -> None:
    open_runs(tab, site, "&filter=params.opt+%3D+%27adam%27")
    assert "params.opt" in tab.eval_on_selector_all("#runs thead th[data-column]", "hs => hs.map(h => h.dataset.column)")
    tab.check("#diff-only")
    tab.wait_for_url(re.compile(r"diff=1"))
    headers = tab.eval_on_selector_all("#runs thead th[data-column]", "hs => hs.map(h => h.dataset.column)")
    assert "params.opt" not in headers and "params.epochs" not in headers and "params.lr" in headers
    assert "params.opt" in tab.inner_text("#hidden-columns")


def test_csv_export_holds_every_run_of_the_view_in_its_order(tab: Any, site: Site) -> None:
    open_runs(tab, site, "&sort=metrics.acc+desc&filter=params.lr+%3D+0.1")
    with tab.expect_download() as download:
        tab.click("#csv")
    rows = list(csv.reader(io.StringIO(open(download.value.path()).read())))
    expected = [r.id for r in lt.Client(site.seeded.store).search_runs("mnist", filter="params.lr = 0.1",
                                                                       order_by="metrics.acc desc")]
    assert rows[0][:5] == ["id", "name", "status", "start_time", "end_time"] and "metrics.acc" in rows[0]
    assert [r[0] for r in rows[1:]] == expected and len(expected) == 44


def test_the_keyboard_moves_selects_and_compares(tab: Any, site: Site) -> None:
    open_runs(tab, site)
    tab.keyboard.press("/")
    assert tab.evaluate("document.activeElement.id") == "filter"
    tab.keyboard.press("Escape")
    for key in ("j", "x", "j", "j", "x"):
        tab.keyboard.press(key)
    shown = runs_shown(tab)
    assert tab.eval_on_selector_all("#runs tr.selected", "rows => rows.map(r => r.dataset.id)") == [shown[0], shown[2]]
    assert tab.url.count("sel=") == 2
    tab.keyboard.press("?")
    assert tab.evaluate("document.getElementById('keys').open")
    tab.keyboard.press("Escape")
    tab.keyboard.press("c")
    tab.wait_for_url(re.compile(r"/compare\?"))
    assert tab.inner_text("h1") == "Compare 2 runs"


def test_the_url_is_the_state_a_reload_or_a_shared_link_shows_the_same_view(tab: Any, site: Site, browser: Any) -> None:
    open_runs(tab, site, "&filter=params.lr+%3D+0.01&sort=metrics.acc+asc&col=metrics.acc&col=params.seed"
                         "&pin=params.seed&diff=1")
    tab.click("#runs tbody tr:nth-child(2) input.sel")
    tab.click("#runs tbody tr:nth-child(4) input.sel")
    view = _view(tab)
    assert len(view["selected"]) == 2
    tab.reload()
    tab.wait_for_selector("#runs tbody tr[data-id]")
    assert _view(tab) == view
    other = browser.new_context()  # someone the link was sent to
    try:
        page = other.new_page()
        page.goto(tab.url)
        page.wait_for_selector("#runs tbody tr[data-id]")
        assert _view(page) == view
    finally:
        other.close()


def _view(page: Any) -> dict[str, Any]:
    return {
        "rows": runs_shown(page),
        "columns": page.eval_on_selector_all("#runs thead th[data-column]", "hs => hs.map(h => [h.dataset.column, h.className])"),
        "filter": page.input_value("#filter"),
        "selected": page.eval_on_selector_all("#runs tr.selected", "rows => rows.map(r => r.dataset.id)"),
        "checked": page.eval_on_selector_all("input.sel:checked", "boxes => boxes.map(b => b.value)"),
        "diff": page.is_checked("#diff-only"),
    }


def test_a_running_row_refreshes_itself_until_its_run_ends(tab: Any, site: Site) -> None:
    store = site.served.store
    run_id = "f" * 32
    store.create_run(NewRun(run_id, "live", store.now(), name="in-progress", params={"lr": 0.5}))
    store.heartbeat(run_id, store.now())
    tab.goto(f"{site.url}/runs?experiment=live&col=metrics.acc")
    tab.wait_for_selector(f"tr[data-id='{run_id}'] .badge.RUNNING")
    store.log_metrics(run_id, {"acc": Chunk.from_points([(1, store.now(), 0.93)])}, frozenset({"acc"}))
    store.end_run(run_id, RunStatus.FINISHED, store.now())
    started = time.monotonic()
    tab.wait_for_selector(f"tr[data-id='{run_id}'] .badge.FINISHED", timeout=15_000)
    assert time.monotonic() - started < 12
    assert tab.eval_on_selector(f"tr[data-id='{run_id}']", "r => r.querySelectorAll('td')[5].textContent") == "0.93"
    assert tab.get_attribute(f"tr[data-id='{run_id}']", "hx-get") is None  # a finished row stops asking


def test_the_run_page_shows_what_ran_how_and_on_what(tab: Any, site: Site) -> None:
    tab.goto(f"{site.url}/run/{site.seeded.dirty}")
    facts = tab.inner_text("#facts")
    assert site.seeded.dirty in facts and "mnist" in facts and "uncommitted changes" in facts
    assert re.search(r"git\s+[0-9a-f]{12}", facts)
    diff = tab.inner_text("#git-diff")
    assert "-lr = 0.1" in diff and "+lr = 0.01  # tuned" in diff
    assert tab.get_attribute("#git-diff div:has-text('+lr = 0.01')", "class") == "add"
    assert "lr" in tab.inner_text("#params") and "team" in tab.inner_text("#tags")
    metrics = tab.inner_text("#metrics")
    assert "loss" in metrics and "acc" in metrics
    environment = tab.inner_text("#environment")
    assert "python" in environment and "cpu" in environment
    tab.wait_for_selector(".card.chart[data-key='loss'][data-state='drawn']")
    with tab.expect_download() as download:
        tab.click("a:text-is('requirements')")
    assert "labtrack" in open(download.value.path()).read()


def test_the_run_page_previews_artifacts_and_downloads_them_all(tab: Any, site: Site) -> None:
    import zipfile

    tab.goto(f"{site.url}/run/{site.seeded.old_env}")
    tab.click("#artifacts tr:has-text('config.json') button")
    tab.wait_for_selector("#preview pre")
    assert '"layers": [\n    64,' in tab.inner_text("#preview pre")  # JSON pretty-printed
    tab.click("#artifacts tr:has-text('notes.yaml') button")
    tab.wait_for_selector("#preview pre:has-text('model: mlp')")
    tab.click("#artifacts tr:has-text('plot.png') button")
    tab.wait_for_selector("#preview img")
    assert tab.eval_on_selector("#preview img", "img => img.complete && img.naturalWidth") == 8
    with tab.expect_download() as download:
        tab.click("text=Download all (zip)")
    names = set(zipfile.ZipFile(download.value.path()).namelist())
    assert {"config.json", "notes.yaml", "plot.png"} <= names


def test_compare_puts_the_environment_difference_first_and_highlights_what_changed(tab: Any, site: Site) -> None:
    tab.goto(f"{site.url}/compare?run={site.seeded.old_env}&run={site.seeded.new_env}")
    tab.wait_for_selector(".card.chart[data-key='acc'][data-state='drawn']")
    if os.environ.get("LABTRACK_TEST_SCREENSHOTS"):  # the README's picture of this page
        tab.set_viewport_size({"width": 1100, "height": 820})
        tab.screenshot(path=os.path.join(os.environ["LABTRACK_TEST_SCREENSHOTS"], "compare-env.png"))
    why = tab.inner_text("#why")
    assert f"torch {OLD_TORCH} → {NEW_TORCH} (minor)" in why
    assert why.index("torch cuda 11.8 → 12.1") < why.index(f"torch {OLD_TORCH} → {NEW_TORCH}")  # ranked: builds first
    acc = tab.query_selector("#compare-table tr:has(th:has-text('metrics.acc'))")
    assert [c.inner_text() for c in acc.query_selector_all("td")] == ["0.8", "0.75"]
    assert all("changed" in (c.get_attribute("class") or "") for c in acc.query_selector_all("td"))
    assert "changed" not in (tab.get_attribute("#compare-table tr:has(th:has-text('params.lr')) td", "class") or "")
    tab.click("#diff-toggle")
    tab.wait_for_url(re.compile(r"diff=1"))
    assert tab.query_selector("#compare-table tr:has(th:has-text('params.lr'))") is None
    assert tab.query_selector("#compare-table tr:has(th:has-text('metrics.acc'))") is not None
    tab.wait_for_selector(".card.chart[data-key='acc'][data-state='drawn']")
    legend = tab.inner_text(".card.chart[data-key='acc'] .u-legend")
    assert "torch-old" in legend and "torch-new" in legend


def test_the_run_link_mlflows_client_prints_opens_the_run_page(tab: Any, site: Site) -> None:
    """MLflow's client, logging through the MLflow-compatible endpoint, prints "View run at
    http://host/#/experiments/<id>/runs/<run id>": the fragment never reaches the server, the page follows it."""
    tab.goto(f"{site.url}/#/experiments/1/runs/{site.seeded.best}")
    tab.wait_for_url(re.compile(rf"/run/{site.seeded.best}$"))
    assert site.seeded.best in tab.content() and "FINISHED" in tab.text_content("h1")
    tab.goto(f"{site.url}/#/experiments/1/runs/not-a-run-id")  # anything else stays on the experiments page
    assert tab.query_selector("#experiments") is not None

