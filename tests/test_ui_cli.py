"""`labtrack ui` as a new user meets it (issue 15, "done when"): after `labtrack demo`, `labtrack ui` serves the
local store on loopback without sign-in, and in the browser they find the best run, open it, compare it with
another and see why they differ. Screenshots of the main pages are kept (not compared pixel by pixel):
set LABTRACK_TEST_SCREENSHOTS=DIR to keep them there (docs/screenshots for the README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from server_helpers import environ_without_labtrack, free_port
from ui_helpers import watched_page

from labtrack.cli import main

SCREENSHOTS = os.environ.get("LABTRACK_TEST_SCREENSHOTS")


def start_ui(directory: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "labtrack", "ui", "--port", str(port)], cwd=directory,
                               env=environ_without_labtrack(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(process.stdout.read().decode() if process.stdout else "labtrack ui exited") from None
        import time

        time.sleep(0.05)
    process.kill()
    raise RuntimeError("labtrack ui did not start")


def test_after_the_demo_labtrack_ui_finds_the_best_run_and_explains_a_difference(browser: Any, tmp_path: Path) -> None:
    work = Path.cwd()
    assert CliRunner().invoke(main, ["demo"]).exit_code == 0
    port = free_port()
    process = start_ui(work, port)
    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(url + "/api/v1/experiments").status_code == 200  # no token on this machine
        with watched_page(browser) as watched:
            page = watched.page
            page.goto(url + "/")
            page.fill("input[name=metric]", "val_acc")
            page.click("text=Show")
            page.wait_for_url(re.compile(r"metric=val_acc"))
            page.screenshot(path=str(shots / "experiments.png"))
            best = page.get_attribute("#experiments tbody a[href^='/run/']", "href")
            page.click("#experiments tbody td:first-child a")
            page.wait_for_selector("#runs tbody tr[data-id]")
            page.click("#runs th[data-column='metrics.val_acc'] a.sort")
            page.wait_for_url(re.compile(r"sort=metrics.val_acc"))
            assert page.get_attribute("#runs tbody tr:first-child a[href^='/run/']", "href") == best
            page.click("#runs tbody tr:nth-child(1) input.sel")
            page.click("#runs tbody tr:nth-child(2) input.sel")
            page.screenshot(path=str(shots / "runs.png"))
            page.click(f"#runs a[href='{best}']")
            page.wait_for_selector(".card.chart[data-state='drawn']")
            page.screenshot(path=str(shots / "run.png"), full_page=True)
            page.go_back()
            page.wait_for_selector("#runs tbody tr.selected")
            page.click("#compare")
            page.wait_for_selector("#why")
            page.wait_for_selector(".card.chart[data-state='drawn']")
            # the demo's runs share code and environment: the headline says so, the params table shows the rest
            assert "same code, seeds, environment and command" in page.inner_text("#why")
            assert page.query_selector_all("#compare-table tr.differs")
            page.screenshot(path=str(shots / "compare.png"), full_page=True)
        with watched_page(browser, color_scheme="dark") as watched:
            watched.page.goto(url + "/runs?experiment=demo-logreg&sort=metrics.val_acc+desc")
            watched.page.screenshot(path=str(shots / "runs-dark.png"))
    finally:
        process.terminate()
        process.wait(10)
    for name in ("experiments", "runs", "run", "compare", "runs-dark"):
        assert (shots / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    output = process.stdout.read().decode() if process.stdout else ""
    assert f"labtrack ui: http://127.0.0.1:{port}/ shows .labtrack" in output


def test_labtrack_ui_listens_on_this_machine_only() -> None:
    result = CliRunner().invoke(main, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "loopback only" in result.output and "labtrack server --host 0.0.0.0" in result.output


def test_labtrack_ui_on_a_tracking_servers_store_points_at_the_servers_own_ui() -> None:
    result = CliRunner().invoke(main, ["--store", "http://tracking.example:5000", "ui"])
    assert result.exit_code == 1
    assert "serves the web UI itself: open http://tracking.example:5000/ in a browser" in result.output
