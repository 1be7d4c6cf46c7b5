"""The web UI workloads, measured in headless Chromium driven by Playwright (Debian's ``/usr/bin/chromium``).

The store is served by ``labtrack ui`` (uvicorn, one worker, no sign-in, 127.0.0.1) in a process of its own;
the browser is another set of processes, driven from this one. Times are taken in the page, not around
Playwright's calls: an init script watches the document (a ``MutationObserver``) and notes
``performance.now()`` — milliseconds since the navigation started — when what a user waits for is there
(the table's rows, a chart card's ``data-state="drawn"``, every chart card drawn). A page is *interactive*
when that is there and its ``load`` event is done.

- ``ui_table``: the runs table of an experiment of ``n`` runs (``bench.synthetic``: 10 params, 3 tags,
  5 metrics each), first at MLflow's store size (``compare_n``): its first page, then sorting by a metric
  (a click on the column header: from the click to the new page's rows, across the navigation — the click
  time rides in ``sessionStorage``); the JS and CSS the page loads, gzip -9. The MLflow side
  (``bench/workloads_mlflow_ui.py``) serves MLflow's own UI over a store of its size and runs
  ``mlflow_browse`` below, in this environment (MLflow's has no Playwright).
- ``ui_charts``: a run with a ``points``-point metric: its chart drawn after the navigation to the run page,
  then a zoom (a mouse drag across the middle of the plot, from the mouseup to the redraw from the re-query);
  the compare page of ``runs`` runs of ``steps`` steps of ``keys`` metrics each: every chart drawn.

Each figure is the median of ``reps`` loads in one browser (its cache warm, as a returning user's) of a
warm server; the first load (a fresh server, an empty browser cache) is reported apart. Run by
``python -m bench.workloads_ui NAME`` (``Workload.labtrack_module``).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode

from bench.children import child_env
from bench.fixtures import store_dir, synthetic_run, workload_main
from bench.serving import ServerProcess, free_port

__all__ = ["Browser", "mlflow_browse", "ui_charts", "ui_table"]

Result = dict[str, Any]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
TALL = {"width": 1400, "height": 2400}  # every chart card in view: only cards in (or near) the viewport load
TIMEOUT_MS = 60_000

ROWS = "#runs tbody tr[data-id]"
MLFLOW_ROWS = ".ag-row a[href*='/runs/']"  # a run's link in a row of MLflow's runs table (ag-grid)
SEARCH = "/runs/search"  # MLflow's UI asks its server for the runs (ajax-api/2.0/mlflow/runs/search)
CHART_KEY = "loss"

# What the init script watches for, by name: a CSS selector (present) or a JS expression (true).
_MARKS = {
    "rows": f"document.querySelector({json.dumps(ROWS)})",
    "mlflow_rows": f"document.querySelector({json.dumps(MLFLOW_ROWS)})",
    "chart": f"document.querySelector('.card.chart[data-key=\"{CHART_KEY}\"][data-state=\"drawn\"]')",
    "charts": "(() => { const c = document.querySelectorAll('.card.chart'); "
              "return c.length > 0 && Array.from(c).every((e) => e.dataset.state === 'drawn'); })()",
}
_INIT = """(() => {
  if (window.__bench) return;
  const bench = window.__bench = { marks: {}, epoch: {}, watch: null };
  const tests = { TESTS };
  const check = () => {
    for (const name in tests) {
      if (!(name in bench.marks) && tests[name]()) { bench.marks[name] = performance.now(); bench.epoch[name] = Date.now(); }
    }
    const w = bench.watch;
    if (w && w.at === null && w.test()) w.at = performance.now();
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true,
    attributeFilter: ["data-state", "data-zoomed", "data-draws"] });
})();""".replace("TESTS", ", ".join(f"{name}: () => Boolean({test})" for name, test in _MARKS.items()))

# The navigation's timings and the watched mark, in ms since the navigation started; the requests whose URL has
# ``needle`` (the charts' data, MLflow's runs search): when the last ended, the longest time the server took.
_TIMINGS = """([mark, needle]) => {
  const nav = performance.getEntriesByType("navigation")[0];
  const series = performance.getEntriesByType("resource").filter((e) => e.name.includes(needle));
  return { mark: window.__bench.marks[mark], load: nav.loadEventEnd, html_start: nav.requestStart,
           html_end: nav.responseEnd, dcl: nav.domContentLoadedEventEnd,
           series_end: series.length ? Math.max(...series.map((e) => e.responseEnd)) : null,
           series_server: series.length ? Math.max(...series.map((e) => e.responseStart - e.requestStart)) : null };
}"""


# -- the browser ----------------------------------------------------------------------------------


class Browser:
    """Headless Chromium (Debian's) under Playwright; ``page()`` opens a page in a fresh context (an empty
    cache) with the marks' init script."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception:
            self._playwright.stop()
            raise
        self.version = self.browser.version

    def page(self, viewport: dict[str, int] = VIEWPORT) -> Any:
        context = self.browser.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(_INIT)
        return context.new_page()

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()


@contextmanager
def browser() -> Iterator[Browser]:
    found = Browser()
    try:
        yield found
    finally:
        found.close()


def visit(page: Any, url: str, mark: str, needle: str = "/ui/series") -> dict[str, float]:
    """Navigate to ``url`` as a new document (from about:blank: a hash route would not reload) and wait for
    the mark and the load event; the page's timings (ms since the navigation started), ``ready`` = both."""
    page.goto("about:blank")
    page.goto(url, wait_until="load")
    page.wait_for_function("(m) => window.__bench && m in window.__bench.marks && "
                           "performance.getEntriesByType('navigation')[0].loadEventEnd > 0", arg=mark)
    found = page.evaluate(_TIMINGS, [mark, needle])
    found["ready"] = max(found["mark"], found["load"])
    return found


def shipped(page: Any, url: str, mark: str, needle: str = "/ui/series") -> tuple[dict[str, float], dict[str, int]]:
    """``visit`` with an empty cache, noting every script and stylesheet the page loads: their gzip -9 sizes."""
    responses: list[Any] = []

    def seen(response: Any) -> None:
        if response.request.resource_type in ("script", "stylesheet"):
            responses.append(response)

    page.on("response", seen)
    try:
        timings = visit(page, url, mark, needle)
        page.wait_for_timeout(500)  # chunks loaded after the mark
    finally:
        page.remove_listener("response", seen)
    sizes = {}
    for response in responses:
        if response.ok:
            sizes[response.url] = len(gzip.compress(response.body(), compresslevel=9, mtime=0))
    return timings, sizes


def _median(samples: list[dict[str, float]], key: str) -> float:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def _measure(page: Any, url: str, mark: str, reps: int, needle: str = "/ui/series") -> list[dict[str, float]]:
    return [visit(page, url, mark, needle) for _ in range(reps)]


# -- the server -----------------------------------------------------------------------------------


@contextmanager
def ui_server(directory: str, store: str) -> Iterator[ServerProcess]:
    """``labtrack ui`` over the store directory ``store`` on a free loopback port, started; stopped at the end."""
    port = free_port()
    command = [sys.executable, "-m", "labtrack", "ui", "--store", store, "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(command, port=port, log=os.path.join(directory, "ui.log"), env=child_env(), cwd=directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _server_errors(server: ServerProcess) -> list[str]:
    try:
        with open(server.log, errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return [line.strip()[:300] for line in text.splitlines()
            if line.rstrip().endswith(" failed") or "Exception in ASGI application" in line or "Traceback" in line]


# -- 1. the runs table ----------------------------------------------------------------------------


def _sort_by_metric(page: Any, key: str) -> dict[str, Any]:
    """Click the header of ``metrics.KEY``: from the click (the page's own clock, kept in sessionStorage
    across the navigation) to the new page's rows, and to its load event; what it then shows."""
    link = f"#runs th[data-column=\"metrics.{key}\"] a.sort"
    page.evaluate("""(sel) => document.querySelector(sel).addEventListener("click",
        () => sessionStorage.setItem("bench-click", String(Date.now())), { capture: true })""", link)
    with page.expect_navigation(wait_until="load"):
        page.click(link)
    page.wait_for_function("() => window.__bench && 'rows' in window.__bench.marks && "
                           "performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
    return page.evaluate("""(link) => {
      const nav = performance.getEntriesByType("navigation")[0];
      const click = Number(sessionStorage.getItem("bench-click"));
      const a = document.querySelector(link);
      return { sort: window.__bench.epoch.rows - click, sort_load: performance.timeOrigin + nav.loadEventEnd - click,
               sort_html: performance.timeOrigin + nav.responseEnd - click, sort_server: nav.responseEnd - nav.requestStart,
               direction: a ? a.getAttribute("aria-sort") : null,
               names: Array.from(document.querySelectorAll("#runs tbody tr[data-id] td.name a"), (e) => e.textContent) };
    }""", link)


def _check_sorted(found: dict[str, Any], n: int, key: str, problems: list[str]) -> None:
    values = {f"run-{i}": synthetic_run(i)[2][key] for i in range(n)}
    shown = [values.get(name) for name in found["names"]]
    descending = found["direction"] == "descending"
    best = (max if descending else min)(values.values())
    ordered = all(a is not None and b is not None and (a >= b if descending else a <= b)
                  for a, b in itertools.pairwise(shown))
    if found["direction"] is None or not shown or shown[0] != best or not ordered:
        problems.append(f"sorted by metrics.{key}: {len(shown)} rows, direction {found['direction']}, the first "
                        f"{shown[:1]} not the {'max' if descending else 'min'} {best:.4f} or out of order")


def _table(server: ServerProcess, chromium: Browser, size: int, reps: int, key: str, problems: list[str]) -> Result:
    """The first load (a fresh server, an empty cache: the scripts and styles it ships), then ``reps`` loads
    and ``reps`` sorts by ``metrics.KEY``."""
    from bench.synthetic import EXPERIMENT

    url = f"{server.url}/runs?{urlencode({'experiment': EXPERIMENT})}"
    page = chromium.page()
    try:
        first, sizes = shipped(page, url, "rows")
        loads = _measure(page, url, "rows", reps)
        count = page.evaluate("(sel) => document.querySelectorAll(sel).length", ROWS)
        if count != min(50, size):
            problems.append(f"{size:,} runs: the first page shows {count} rows")
        sorts = []
        for _ in range(reps):
            visit(page, url, "rows")
            sorts.append(_sort_by_metric(page, key))
        _check_sorted(sorts[0], size, key, problems)
    finally:
        page.context.close()
    return {"table_first_ms": first["ready"], "table_ms": _median(loads, "ready"),
            "table_html_ms": _median(loads, "html_end"),
            "table_server_ms": statistics.median(s["html_end"] - s["html_start"] for s in loads),
            "table_dcl_ms": _median(loads, "dcl"), "sort_ms": _median(sorts, "sort"),
            "sort_load_ms": _median(sorts, "sort_load"), "sort_html_ms": _median(sorts, "sort_html"),
            "sort_server_ms": _median(sorts, "sort_server"), "rows_shown": count,
            "assets_kb": round(sum(sizes.values()) / 1024, 1), "assets_n": f"{len(sizes)} files",
            "assets": {u.rsplit("/", 1)[-1]: s for u, s in sizes.items()}}


def ui_table(directory: str, n: int, compare_n: int, reps: int, key: str = "acc", **_: Any) -> Result:
    """A store of each size (MLflow's first), each served by a fresh `labtrack ui`."""
    from bench.synthetic import SyntheticStore

    problems: list[str] = []
    result: Result = {"n": n, "cmp_n": compare_n, "reps": reps, "build_s": 0.0, "size": f"{n:,} runs, median of {reps}",
                      "cmp_size": f"{compare_n:,} runs, median of {reps}", "first_size": f"{n:,} runs"}
    with browser() as chromium:
        result["browser"] = chromium.version
        for size, prefix in ((compare_n, "cmp_"), (n, "")):
            location = store_dir(directory, f"store-{size}")
            store = SyntheticStore(location)
            store.grow(size)
            store.engine.dispose()
            result["build_s"] += store.build_s
            with ui_server(directory, location) as server:
                measured = _table(server, chromium, size, reps, key, problems)
                problems += [f"server: {line}" for line in _server_errors(server)]
            result.update({f"{prefix}{k}": v for k, v in measured.items()})
    if problems:
        result["problems"] = problems
    return result


# -- 2. charts: a run with a long metric, compare -------------------------------------------------


def _log_runs(location: str, points: int, runs: int, steps: int, keys: int) -> tuple[str, list[str], float]:
    """A run with ``points`` points of ``loss``; ``runs`` runs of ``steps`` steps of ``keys`` metrics. Their ids
    and the seconds that took (log_batch with numpy columns, every point in the store at the end)."""
    import numpy as np

    import labtrack as lt

    t0 = time.perf_counter()
    lt.set_store(location)
    rng = np.random.default_rng(7)
    names = [CHART_KEY, "acc", "lr", "grad_norm", "val_loss", "val_acc"][:keys]
    with lt.start_run("long", params={"points": points}) as run:
        x = np.arange(points, dtype=np.int64)
        run.log_batch({CHART_KEY: np.exp(-x / (points / 5)) + 0.05 * rng.standard_normal(points)}, steps=x)
    long_id = run.id
    ids = []
    x = np.arange(steps, dtype=np.int64)
    for r in range(runs):
        with lt.start_run("compare", params={"lr": 0.1 / (r + 1), "seed": r}) as run:
            run.log_batch({name: np.exp(-x / (steps / (2 + r + k))) + 0.02 * rng.standard_normal(steps)
                           for k, name in enumerate(names)}, steps=x)
        ids.append(run.id)
    lt.flush()
    stored = len(lt.get_run(long_id).history(CHART_KEY))
    if stored != points:
        raise RuntimeError(f"the long run has {stored} of {points} points in the store")
    return long_id, ids, time.perf_counter() - t0


def _zoom(page: Any, key: str, shift: float) -> dict[str, float]:
    """Drag across the middle of the chart's plot (``shift`` moves the range a little, so no two zooms ask
    for the same thing); from the mouseup to the redraw of the zoomed re-query."""
    card = f".card.chart[data-key=\"{key}\"]"
    page.evaluate("""(card) => {
      const el = document.querySelector(card);
      const before = Number(el.dataset.draws || 0);
      const watch = window.__bench.watch = { at: null, start: null,
        test: () => el.dataset.zoomed === "true" && el.dataset.state === "drawn" && Number(el.dataset.draws) > before };
      window.addEventListener("mouseup", () => { watch.start = performance.now(); }, { capture: true, once: true });
    }""", card)
    box = page.locator(f"{card} .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + box["width"] * (0.40 + shift)
    x1 = box["x"] + box["width"] * (0.60 + shift)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => window.__bench.watch.at !== null")
    found = page.evaluate("""(card) => {
      const w = window.__bench.watch, el = document.querySelector(card);
      const series = performance.getEntriesByType("resource").filter((e) => e.name.includes("/ui/series"));
      const last = series[series.length - 1];
      return { zoom: w.at - w.start, zoom_fetch: last.responseEnd - w.start, zoom_server: last.responseStart - last.requestStart,
               full: el.dataset.full, status: el.querySelector(".status").textContent };
    }""", card)
    return found


def ui_charts(directory: str, points: int, runs: int, steps: int, keys: int, reps: int, **_: Any) -> Result:
    location = store_dir(directory)
    long_id, ids, build_s = _log_runs(location, points, runs, steps, keys)
    problems: list[str] = []
    result: Result = {"n": f"{points:,} points", "compare_n": f"{runs} runs × {steps:,} steps × {keys} metrics",
                      "reps": reps, "build_s": build_s, "size": f"{points:,} points, median of {reps}",
                      "compare_size": f"{runs} runs × {steps:,} steps × {keys} metrics, median of {reps}"}
    run_url_path = f"/run/{long_id}"
    compare_path = "/compare?" + "&".join(f"run={quote(i)}" for i in ids)
    with ui_server(directory, location) as server, browser() as chromium:
        result["browser"] = chromium.version
        page = chromium.page(TALL)
        first = visit(page, server.url + run_url_path, "chart")  # a fresh server: reads the history
        result.update(chart_first_ms=first["mark"], chart_first_series_ms=first["series_end"])
        charts, zooms = [], []
        for r in range(reps):
            charts.append(visit(page, server.url + run_url_path, "chart"))
            zooms.append(_zoom(page, CHART_KEY, 0.02 * (r % 5) - 0.04))
        status = zooms[-1]["status"]
        if str(points) not in status.replace(",", "").replace("\u202f", ""):
            problems.append(f"the chart says {status!r}")
        result.update(chart_ms=_median(charts, "mark"), chart_series_ms=_median(charts, "series_end"),
                      chart_series_server_ms=_median(charts, "series_server"), chart_html_ms=_median(charts, "html_end"),
                      zoom_ms=_median(zooms, "zoom"), zoom_fetch_ms=_median(zooms, "zoom_fetch"),
                      zoom_server_ms=_median(zooms, "zoom_server"), zoom_status=status)
        page.context.close()

        page = chromium.page(TALL)
        first = visit(page, server.url + compare_path, "charts")
        cards = page.evaluate("() => document.querySelectorAll('.card.chart').length")
        if cards != keys:
            problems.append(f"compare shows {cards} chart cards, expected {keys}")
        compares = _measure(page, server.url + compare_path, "charts", reps)
        result.update(compare_first_ms=first["mark"], compare_ms=_median(compares, "mark"),
                      compare_html_ms=_median(compares, "html_end"), compare_load_ms=_median(compares, "load"),
                      compare_series_ms=_median(compares, "series_end"), compare_cards=cards)
        page.context.close()
        problems += [f"server: {line}" for line in _server_errors(server)]
    if problems:
        result["problems"] = problems
    return result


# -- MLflow's UI, in this environment's browser ---------------------------------------------------


def mlflow_browse(directory: str, url: str, reps: int, **_: Any) -> Result:
    """MLflow's experiment page (its runs table) at ``url``, served by the MLflow side's `mlflow server`: the
    first load (empty cache), then ``reps`` loads; until a run's row shows and the load event is done."""
    with browser() as chromium:
        page = chromium.page()
        first, sizes = shipped(page, url, "mlflow_rows", SEARCH)
        loads = _measure(page, url, "mlflow_rows", reps, SEARCH)
        rows = page.evaluate("(sel) => document.querySelectorAll(sel).length", MLFLOW_ROWS)
        return {"table_first_ms": first["ready"], "table_ms": _median(loads, "ready"),
                "table_html_ms": _median(loads, "html_end"), "table_load_ms": _median(loads, "load"),
                "table_search_ms": _median(loads, "series_end"), "table_search_server_ms": _median(loads, "series_server"),
                "assets_kb": round(sum(sizes.values()) / 1024, 1), "assets_n": f"{len(sizes)} files", "rows_shown": rows,
                "browser": chromium.version}


WORKLOADS: dict[str, Callable[..., Result]] = {
    "ui_table": ui_table,
    "ui_charts": ui_charts,
    # internal: run by bench/workloads_mlflow_ui.py (MLflow's virtualenv has no Playwright)
    "mlflow_browse": mlflow_browse,
}


def main(argv: list[str] | None = None) -> None:
    workload_main(WORKLOADS, __doc__, argv)


if __name__ == "__main__":
    main()
