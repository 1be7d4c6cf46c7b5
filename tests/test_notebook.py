"""Notebooks (issue 16, §6): ``Run``, ``RunList`` and ``RunDiff`` render as HTML tables in Jupyter, with every
user string inert; a sweep's progress is a notebook widget in a Jupyter kernel.

The HTML is read back with ``html.parser`` (what a browser would build: tags, attributes, cell texts). The
notebook test starts a real IPython kernel (ipykernel) and reads what it sends to a front end.
"""

from __future__ import annotations

import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import labtrack as lt
from labtrack.core.html import runs_html
from labtrack.verbs.progress import SweepProgress, display_kind, in_notebook

ATTACKS = [
    "<script>alert(1)</script>",
    '"onmouseover="alert(1)',
    "<img src=x onerror=alert(1)>",
    "</td></tr></table><script>alert(1)</script>",
    "' onfocus='alert(1)' autofocus='",
]


class Page(HTMLParser):
    """What a browser would build from the markup: every tag with its attributes, and the tables' cell texts."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def cells(self) -> list[str]:
        return [cell for table in self.tables for row in table for cell in row]

    def dangerous(self) -> list[str]:
        """Tags that run code, and event-handler attributes, anywhere in the markup."""
        found = [tag for tag, _ in self.tags if tag in ("script", "img", "iframe", "svg", "object")]
        found += [f"{tag} {name}" for tag, attrs in self.tags for name, _ in attrs if name.lower().startswith("on")]
        return found


@pytest.fixture
def client(tmp_path: Path) -> lt.Client:
    return lt.Client(str(tmp_path / "store"))


def hostile_run(client: lt.Client, attack: str) -> lt.Run:
    with client.start_run(attack, params={attack: attack, "lr": 0.1}, tags={attack: attack}, name=attack,
                          note=attack) as run:
        run.log_metric(attack, 1.5)
        run.log_metric("loss", 0.25)
    return run


@pytest.mark.parametrize("attack", ATTACKS)
def test_user_strings_render_as_inert_text_in_every_table(client: lt.Client, attack: str) -> None:
    a = hostile_run(client, attack)
    b = hostile_run(client, attack)
    with client.start_run("other", params={attack: "changed", "lr": 0.01}) as c:
        c.log_metric(attack, 2.5)
    for markup in (a._repr_html_(), client.search_runs()._repr_html_(), client.diff(a, c)._repr_html_()):
        page = Page(markup)
        assert page.dangerous() == [], markup
        assert attack in "".join(page.text)  # shown as the characters it is made of
    assert attack in Page(a._repr_html_()).cells()  # experiment, name, param key and value, tag key and value
    assert b.id[:8] in Page(client.search_runs()._repr_html_()).cells()


def test_a_run_table_shows_its_identity_status_times_params_metrics_and_tags(client: lt.Client) -> None:
    with client.start_run("mnist", params={"lr": 0.01, "layers": [64, 32]}, tags={"team": "cv"}, name="baseline") as run:
        for step in range(3):
            run.log_metric("loss", 1 / (step + 1), step=step)
    page = Page(client.get_run(run.id)._repr_html_())
    head = dict(row for row in page.tables[0] if len(row) == 2)
    assert head["run"] == run.id and head["experiment"] == "mnist" and head["name"] == "baseline"
    assert head["status"] == "FINISHED" and head["started"] != "-" and head["ended"] != "-"
    tables = {tuple(map(tuple, table[1:])) for table in page.tables[1:]}
    assert (("layers", "[64, 32]"), ("lr", "0.01")) in tables or (("lr", "0.01"), ("layers", "[64, 32]")) in tables
    assert (("loss", "0.333333"),) in tables  # the last value
    assert (("team", "cv"),) in tables


def test_a_failed_run_table_says_its_error(client: lt.Client) -> None:
    with pytest.raises(ValueError), client.start_run("mnist") as run:
        raise ValueError("loss is NaN")
    head = dict(Page(client.get_run(run.id)._repr_html_()).tables[0])
    assert head["status"] == "FAILED" and "loss is NaN" in head["error"]


def test_a_run_list_is_a_table_like_labtrack_runs(client: lt.Client) -> None:
    for lr in (0.1, 0.01):
        with client.start_run("mnist", params={"lr": lr, "epochs": 3}) as run:
            run.log_metric("acc", 0.9 if lr == 0.1 else 0.95)
    found = client.search_runs("mnist", order_by="params.lr")
    table = Page(found._repr_html_()).tables[0]
    assert table[0] == ["run", "name", "status", "started", "took", "lr", "acc", "epochs"]  # varying, metrics, same
    assert [row[0] for row in table[1:]] == [run.id[:8] for run in found]
    assert [(row[5], row[6], row[7]) for row in table[1:]] == [("0.01", "0.95", "3"), ("0.1", "0.9", "3")]
    assert {row[2] for row in table[1:]} == {"FINISHED"}


def test_a_long_run_list_shows_its_first_rows_and_counts_the_rest(client: lt.Client) -> None:
    for i in range(55):
        client.start_run("many", params={"i": i}).end()
    page = Page(client.search_runs("many")._repr_html_())
    assert len(page.tables[0]) == 1 + 50
    assert "… 5 more runs" in "".join(page.text) and "55 runs" in "".join(page.text)


def test_a_run_list_of_several_experiments_names_each_run_s_experiment(client: lt.Client) -> None:
    for name in ("a", "b"):
        client.start_run(name).end()
    header = Page(client.search_runs()._repr_html_()).tables[0][0]
    assert header[:2] == ["run", "experiment"]


def test_a_run_list_caps_its_param_columns(client: lt.Client) -> None:
    client.start_run("wide", params={f"p{i}": i for i in range(40)}).end()
    page = Page(client.search_runs("wide")._repr_html_())
    assert len(page.tables[0][0]) == 5 + 30
    assert "10 more param and metric columns" in "".join(page.text)


def test_an_empty_run_list_says_so() -> None:
    assert "no runs" in runs_html([])


def test_a_diff_shows_the_changed_metrics_and_each_differing_section(client: lt.Client) -> None:
    with client.start_run("mnist", params={"lr": 0.1}) as a:
        a.log_metric("acc", 0.8)
    with client.start_run("mnist", params={"lr": 0.01}) as b:
        b.log_metric("acc", 0.9)
    page = Page(client.diff(a, b)._repr_html_())
    metrics = page.tables[0]
    assert metrics[0] == ["metric", "A", "B", "delta", "%"]
    assert metrics[1] == ["acc", "0.8", "0.9", "+0.1", "+12.50%"]
    words = "".join(page.text)
    assert f"diff {a.id[:8]} → {b.id[:8]}" in words
    assert "lr 0.1 → 0.01" in words
    assert "identical:" in words


# -- the progress bar: terminal or notebook ----------------------------------------------------------------


@pytest.mark.parametrize(("notebook", "widgets", "kind"), [
    (False, True, "terminal"),
    (False, False, "terminal"),
    (True, True, "widget"),
    (True, False, "notebook"),
])
def test_the_progress_display_follows_where_the_sweep_runs(notebook: bool, widgets: bool, kind: str) -> None:
    assert display_kind(notebook=notebook, widgets=widgets) == kind


def test_pytest_is_not_a_notebook_and_looking_does_not_import_ipython() -> None:
    had = "IPython" in sys.modules
    assert in_notebook() is False and display_kind() == "terminal"
    assert ("IPython" in sys.modules) == had


def test_without_widgets_a_notebook_sweep_prints_its_counts_once_at_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    with SweepProgress("<b>grid</b>", 3, enabled=True, kind="notebook") as bar:
        bar.show(done=2, skipped=1, failed=0, running=0)
        bar.say("waiting for 1 configuration")
    assert capsys.readouterr().out.splitlines() == [
        "waiting for 1 configuration", "sweep <b>grid</b>: done 2 · skipped 1 · failed 0 · running 0"]


KERNEL_CELL = """
    import labtrack as lt
    client = lt.Client({store!r})

    def train(lr):
        return lr * 2

    result = client.sweep(train, {{"lr": [0.1, 0.2, 0.3]}})
    client.search_runs("train")
"""


def test_in_a_jupyter_kernel_a_sweep_shows_a_widget_bar_and_a_run_list_shows_a_table(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    """A real IPython kernel (ipykernel) runs a cell; what it sends to the front end is what a notebook shows."""
    from framework_helpers import need

    need("ipykernel")
    need("ipywidgets")
    from jupyter_client.manager import start_new_kernel

    # the native kernel: this interpreter, as Jupyter starts it beside the notebook server
    manager, kernel = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=python_env)
    try:
        messages = _execute(kernel, textwrap.dedent(KERNEL_CELL.format(store=str(tmp_path / "store"))))
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert errors == []
    opened = {m["content"]["comm_id"]: m["content"]["data"]["state"] for m in messages
              if m["msg_type"] == "comm_open" and "state" in m["content"].get("data", {})}
    bars = [comm for comm, state in opened.items() if state.get("_model_name") == "IntProgressModel"]
    assert len(bars) == 1 and opened[bars[0]]["max"] == 3
    updates: dict[str, Any] = {}
    for m in messages:
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == bars[0]:
            updates.update(m["content"]["data"].get("state", {}))
    assert updates.get("value") == 3 and updates.get("bar_style") == "success"
    shown = [m["content"]["data"] for m in messages if m["msg_type"] == "execute_result"]
    assert len(shown) == 1 and 'class="labtrack-runs"' in shown[0]["text/html"]
    assert "3 runs" in shown[0]["text/html"]
    streams = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert "install \"ipywidgets\"" not in streams and "━" not in streams  # no terminal bar in the notebook


def _execute(kernel: Any, code: str) -> list[dict[str, Any]]:
    """Run ``code`` in the kernel; every message it published until it was idle again."""
    msg_id = kernel.execute(code)
    messages = []
    while True:
        message = kernel.get_iopub_msg(timeout=120)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return messages
