"""Charts in the web UI, in Chromium against a real server: downsampled on the server to min-max buckets,
re-queried when zoomed, settings in the URL, only what is in view drawn, data and PNG export."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from ui_helpers import Site

CARD = ".card.chart[data-key='noise']"


def drawn(page: Any, card: str = CARD, draws: int = 1) -> None:
    """Wait until ``card`` has been drawn ``draws`` times (scrolled to first: only cards in view load)."""
    page.query_selector(card).scroll_into_view_if_needed()
    page.wait_for_selector(f"{card}[data-state='drawn'][data-draws='{draws}']", timeout=10_000)


def drag(page: Any, card: str, start: float, end: float) -> None:
    """Drag across the chart from ``start`` to ``end`` (fractions of its width)."""
    box = page.query_selector(f"{card} .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (start + end) / 2, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * end, y, steps=4)
    page.mouse.up()


def test_the_server_sends_min_max_buckets_that_keep_a_spike_and_full_points_when_zoomed_in(site: Site) -> None:
    url = f"{site.url}/ui/series?run={site.seeded.spike}&key=noise&width=400"
    whole = httpx.get(url).json()["series"][0]
    assert len(whole["x"]) == 800 and not whole["full"] and whole["points"] == whole["total"] == 20_000
    assert max(whole["high"]) == 42.0  # the spike: the top of its bucket's band
    assert max(whole["y"]) == pytest.approx((42.0 + sum(0.5 + 0.001 * (s % 10) for s in range(12_325, 12_350)) - 0.505)
                                            / 25)  # the line: its bucket's mean (25 points a bucket)
    assert httpx.get(url).json()["series"][0] == whole  # deterministic
    step = site.seeded.spike_step
    zoomed = httpx.get(f"{url}&x0={step - 50}&x1={step + 50}").json()["series"][0]
    assert zoomed["full"] and zoomed["points"] == 103 and 42.0 in zoomed["y"]
    assert zoomed["x"][0] == step - 51 and zoomed["x"][-1] == step + 51
    bad = httpx.get(f"{site.url}/ui/series?run={site.seeded.spike}&key=noise&width=99999")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "width"


def test_dragging_zooms_by_asking_the_server_again_and_a_double_click_resets(tab: Any, site: Site) -> None:
    asked: list[dict[str, list[str]]] = []
    tab.on("request", lambda r: asked.append(parse_qs(urlparse(r.url).query)) if "key=noise" in r.url else None)
    tab.goto(f"{site.url}/run/{site.seeded.spike}")
    drawn(tab)
    assert tab.get_attribute(CARD, "data-full") == "false"
    assert "min-max buckets" in tab.inner_text(f"{CARD} .status")
    asked.clear()
    drag(tab, CARD, 0.6, 0.64)
    drawn(tab, draws=2)
    assert tab.get_attribute(CARD, "data-zoomed") == "true"
    assert len(asked) == 1 and "x0" in asked[0] and "x1" in asked[0]
    x0, x1 = float(asked[0]["x0"][0]), float(asked[0]["x1"][0])
    assert 11_000 < x0 < x1 < 13_500 and x1 - x0 < 1_500
    drag(tab, CARD, 0.3, 0.4)  # closer still: few enough points to send every one
    drawn(tab, draws=3)
    assert tab.get_attribute(CARD, "data-full") == "true"
    tab.dblclick(f"{CARD} .u-over")
    drawn(tab, draws=4)
    assert tab.get_attribute(CARD, "data-zoomed") == "false" and tab.get_attribute(CARD, "data-full") == "false"
    assert "x0" not in asked[-1]


def test_chart_settings_redraw_and_live_in_the_url(tab: Any, site: Site) -> None:
    asked: list[str] = []
    tab.on("request", lambda r: asked.append(r.url) if "/ui/series?" in r.url else None)
    tab.goto(f"{site.url}/run/{site.seeded.spike}")
    drawn(tab)
    assert float(tab.get_attribute(CARD, "data-ymax")) >= 42
    tab.check("#chart-controls input[name=nooutliers]")  # the y range leaves the spike out
    drawn(tab, draws=2)
    assert float(tab.get_attribute(CARD, "data-ymax")) < 1
    tab.check("#chart-controls input[name=log]")
    drawn(tab, draws=3)
    tab.fill("#chart-controls input[name=smooth]", "0.9")
    drawn(tab, draws=4)
    legend = tab.inner_text(f"{CARD} .u-legend")
    assert "(smoothed)" in legend
    tab.select_option("#chart-controls select[name=x]", "wall")
    drawn(tab, draws=5)
    assert "x=wall" in asked[-1]
    query = parse_qs(urlparse(tab.url).query)
    assert query == {"x": ["wall"], "log": ["1"], "smooth": ["0.9"], "nooutliers": ["1"]}
    tab.reload()
    drawn(tab)
    assert tab.is_checked("#chart-controls input[name=log]") and tab.input_value("#chart-controls select[name=x]") == "wall"
    assert float(tab.get_attribute(CARD, "data-ymax")) < 1 and "(smoothed)" in tab.inner_text(f"{CARD} .u-legend")


def tensorboard_ema(values: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard's smoothing, written from its description: an EMA over the finite values, debiased."""
    out: list[float | None] = []
    last, n = 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out.append(last / (1 - weight ** n))
    return out


def test_smoothing_is_tensorboards_debiased_ema(tab: Any, site: Site) -> None:
    tab.goto(f"{site.url}/run/{site.seeded.spike}")
    drawn(tab)
    values = [1.0, 2.0, None, 4.0, 3.5, -1.0]
    for weight in (0.0, 0.5, 0.9, 0.99):
        smoothed = tab.evaluate("async ([v, w]) => (await import('/static/charts.js')).ema(v, w)", [values, weight])
        assert smoothed == pytest.approx(tensorboard_ema(values, weight))
    assert tensorboard_ema([1.0, 2.0, None, 4.0], 0.5) == [1.0, 1.25 / 0.75, None, 2.625 / 0.875]


def test_only_the_charts_in_view_load_and_the_rest_load_when_scrolled_to(tab: Any, site: Site) -> None:
    asked: list[str] = []
    tab.on("request", lambda r: asked.append(parse_qs(urlparse(r.url).query)["key"][0]) if "/ui/series?" in r.url else None)
    tab.goto(f"{site.url}/run/{site.seeded.spike}")
    drawn(tab, ".card.chart[data-key='acc']")
    cards = tab.eval_on_selector_all(".card.chart", "cs => cs.map(c => [c.dataset.key, c.dataset.state || ''])")
    assert len(cards) == 14
    waiting = [key for key, state in cards if state == ""]
    assert "m11" in waiting and len(waiting) >= 6 and not set(waiting) & set(asked)
    tab.query_selector(".card.chart[data-key='m11']").scroll_into_view_if_needed()
    drawn(tab, ".card.chart[data-key='m11']")
    assert "m11" in asked


def test_hovering_one_chart_shows_the_values_of_every_chart_at_that_x(tab: Any, site: Site) -> None:
    tab.goto(f"{site.url}/run/{site.seeded.spike}")
    for key in ("m00", "m01"):
        drawn(tab, f".card.chart[data-key='{key}']")
    box = tab.query_selector(".card.chart[data-key='m00'] .u-over").bounding_box()
    tab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    values = tab.eval_on_selector_all(".card.chart[data-key='m01'] .u-legend .u-value",
                                      "cells => cells.map(c => c.textContent)")
    assert values[0] != "--" and values[1] != "--"  # its cursor moved with the hovered chart's
    step = float(values[0])
    assert float(values[1]) == 1 + step  # m01 = 1 + step


def test_a_chart_exports_its_full_data_and_a_png_with_its_legend(tab: Any, site: Site) -> None:
    tab.goto(f"{site.url}/run/{site.seeded.spike}")
    drawn(tab)
    with tab.expect_download() as download:
        tab.click(f"{CARD} a:text-is('CSV')")
    lines = open(download.value.path()).read().splitlines()
    assert lines[0] == "step,timestamp,value" and len(lines) == 20_001
    assert lines[site.seeded.spike_step + 1].startswith(f"{site.seeded.spike_step},") and lines[site.seeded.spike_step + 1].endswith(",42.0")
    with tab.expect_download() as download:
        tab.click(f"{CARD} a:text-is('JSON')")
    data = json.loads(open(download.value.path()).read())
    assert len(data["value"]) == 20_000 and data["value"][site.seeded.spike_step] == 42.0
    with tab.expect_download() as download:
        tab.click(f"{CARD} button.png")
    assert download.value.suggested_filename == "noise.png"
    png = open(download.value.path(), "rb").read()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    assert re.search(rb"IHDR", png)
