"""The web UI under test: a real server on loopback, Debian's Chromium driven by Playwright, and a store of
runs that exercises every page.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (``.ci/run`` installs it with
apt). CI sets LABTRACK_REQUIRE_BROWSER=1, so these tests fail there instead of skipping when it is missing.
Every page a test opens is watched for script errors and for dialogs (an ``alert`` would mean an injected
script ran): either fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import labtrack as lt
from labtrack.core.model import NewRun

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("LABTRACK_REQUIRE_BROWSER") == "1"  # read at import: the tests' fixture clears LABTRACK_*
LAUNCH_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]
XSS = {
    "experiment": "<script>alert('experiment')</script>",
    "name": "<img src=x onerror=alert('name')>",
    "param": '"><svg onload=alert("param")>',
    "tag": "<iframe src=javascript:alert('tag')>",
    "note": "<b onmouseover=alert('note')>bold</b>",
    "artifact": "<img src=x onerror=alert('artifact')>.txt",
    "metric": "<img src=x onerror=alert('metric')>",
}
OLD_TORCH, NEW_TORCH = "2.1.0+cu118", "2.3.1+cu121"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, but LABTRACK_REQUIRE_BROWSER=1 (.ci/run installs chromium and playwright)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, and what went wrong on it: script errors, console errors, dialogs."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextmanager
def watched_page(browser: Any, *, expected_status: tuple[int, ...] = (), **options: Any) -> Iterator[Watched]:
    """A page in a new browser context; ``expected_status``: HTTP statuses the test provokes on purpose (the
    browser logs each as a console error)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True, **options)
    page = context.new_page()
    found = Watched(page)
    expected = tuple(f"status of {status} " for status in expected_status)

    def console(message: Any) -> None:
        if message.type == "error" and not any(e in message.text for e in expected):
            found.errors.append(f"console: {message.text}")

    page.on("pageerror", lambda error: found.errors.append(f"script error: {error}"))
    page.on("console", console)

    def dialog(d: Any) -> None:
        found.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    try:
        yield found
    finally:
        context.close()
    assert not found.dialogs, f"a dialog opened (an injected script ran): {found.dialogs}"
    assert not found.errors, found.errors


# -- the store the pages show --------------------------------------------------------------------------------

@dataclass
class Seeded:
    store: str
    mnist: list[str]  # run ids of experiment mnist, oldest first
    best: str  # the mnist run with the highest acc
    no_acc: list[str]  # mnist runs without an acc metric
    spike: str  # a run whose "noise" metric has 20,000 points and one spike
    spike_step: int
    xss: str
    old_env: str
    new_env: str
    dirty: str  # a run started in a git repository with uncommitted changes


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@x"})


def acc_of(i: int) -> float:
    return round(0.5 + (i * 37 % 101) / 250, 6)


def seed_store(root: Path) -> Seeded:
    """Runs for every page: 130 mnist runs (three pages) with params, metric series and tags; runs without
    acc; a 20k-point series with a spike; hostile strings everywhere; two runs whose environments differ by
    their torch build; a run with uncommitted changes; artifacts of each previewable kind."""
    repo = root / "project"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.1\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "train.py").write_text("lr = 0.01  # tuned\n")
    location = str(root / "store")
    here = os.getcwd()
    os.chdir(repo)
    try:
        client = lt.Client(location)
        mnist: list[str] = []
        no_acc: list[str] = []
        for i in range(130):
            lr = (0.1, 0.01, 0.001)[i % 3]
            with client.start_run("mnist", params={"lr": lr, "seed": i // 3, "opt": "adam" if i % 2 else "sgd",
                                                   "epochs": 3}, tags={"team": "cv"}) as run:
                run.log_batch({"loss": [1.0 / (s + 1 + i % 7) for s in range(40)]}, steps=list(range(40)))
                if i % 26 != 5:
                    run.log_metric("acc", acc_of(i))
                else:
                    no_acc.append(run.id)
            mnist.append(run.id)
        best = max((r for r in mnist if r not in no_acc), key=lambda r: client.get_run(r).metrics["acc"])
        with client.start_run("charts", name="spiky", params={"lr": 0.1}) as run:
            values = [0.5 + 0.001 * (s % 10) for s in range(20_000)]
            spike_step = 12_345
            values[spike_step] = 42.0
            run.log_batch({"noise": values}, steps=list(range(20_000)))
            run.log_metric("acc", 0.7)
            for k in range(12):  # more charts than a screen holds
                run.log_batch({f"m{k:02d}": [float(k + s) for s in range(20)]}, steps=list(range(20)))
            spike = run.id
        with client.start_run(XSS["experiment"], name=XSS["name"], params={"p": XSS["param"], XSS["param"]: 1},
                              tags={"t": XSS["tag"]}) as run:
            run.set_note(XSS["note"])
            run.log_metric(XSS["metric"], 1.0)
            (root / "evil.txt").write_text("<script>alert('content')</script>")
            run.log_artifact(str(root / "evil.txt"), XSS["artifact"])
            xss = run.id
        with client.start_run("envs", name="torch-old", params={"lr": 0.1}) as run:
            run.log_metric("acc", 0.8)
            (root / "config.json").write_text(json.dumps({"layers": [64, 64], "dropout": 0.1}))
            (root / "notes.yaml").write_text("model: mlp\nlayers: 2\n")
            (root / "plot.png").write_bytes(_png())
            for name in ("config.json", "notes.yaml", "plot.png"):
                run.log_artifact(str(root / name))
            old_env = run.id
        dirty = mnist[-1]
        new_env = _run_with_another_torch(client, old_env)
        client.close()
    finally:
        os.chdir(here)
    return Seeded(location, mnist, best, no_acc, spike, spike_step, xss, old_env, new_env, dirty)


def _run_with_another_torch(client: Any, like: str) -> str:
    """A run recorded on another machine: the same as ``like`` but with other torch and CUDA builds (written
    through the store, as a run from that machine arrives)."""
    import copy
    import uuid

    from labtrack.core.environment import Environment

    run = client.get_run(like)
    snapshot = copy.deepcopy(run.environment.snapshot)
    snapshot.setdefault("frameworks", {})["torch"] = {"version": NEW_TORCH, "cuda": "12.1", "cudnn": "8902"}
    distributions = snapshot.setdefault("packages", {}).setdefault("distributions", {})
    distributions["torch"] = {"version": NEW_TORCH}
    old = copy.deepcopy(snapshot)
    old["frameworks"]["torch"] = {"version": OLD_TORCH, "cuda": "11.8", "cudnn": "8700"}
    old["packages"]["distributions"]["torch"] = {"version": OLD_TORCH}
    store = client.store
    old_env = Environment(old)
    store.put_environment(old_env.fingerprint, old_env.to_dict())
    new_env = Environment(snapshot)
    store.put_environment(new_env.fingerprint, new_env.to_dict())
    record = run.record
    store.merge_context(record.id, {}, env_fingerprint=old_env.fingerprint)
    new_id = uuid.uuid4().hex
    store.create_run(NewRun(new_id, "envs", record.start_time + 1, name="torch-new", params={"lr": 0.1},
                            env_fingerprint=new_env.fingerprint))
    from labtrack.core.model import RunStatus
    from labtrack.core.series import Chunk

    store.log_metrics(new_id, {"acc": Chunk.from_points([(0, record.start_time + 2, 0.75)])}, frozenset({"acc"}))
    store.end_run(new_id, RunStatus.FINISHED, record.start_time + 3)
    return new_id


def _png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@dataclass
class Site:
    url: str
    seeded: Seeded
    served: Any


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Site]:
    """The seeded store behind a real server on loopback, open to this machine as `labtrack ui` serves it."""
    from server_helpers import serve_in_thread

    seeded = seed_store(tmp_path_factory.mktemp("ui"))
    with serve_in_thread(seeded.store, open_access=True) as served:
        yield Site(served.url, seeded, served)


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """A fresh browser tab (its own cookies and storage), watched for script errors and dialogs."""
    with watched_page(browser) as found:
        yield found.page


def runs_shown(page: Any) -> list[str]:
    return [str(x) for x in page.eval_on_selector_all("#runs tbody tr[data-id]", "rows => rows.map(r => r.dataset.id)")]
