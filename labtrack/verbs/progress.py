"""A sweep's live progress: a rich bar in a terminal, a widget in a Jupyter notebook.

rich draws into a notebook only through ipywidgets and warns without them, so in a notebook the bar is an
ipywidgets ``IntProgress`` with a text label when ipywidgets is installed, and plain lines (what the sweep
has to say, then its counts once at the end) when it is not. Where the bar goes is decided once, when the
sweep starts: ``display_kind``.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

__all__ = ["SweepProgress", "display_kind", "in_notebook"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (or Colab's): IPython's shell there is a ZMQInteractiveShell.

    IPython is looked up in ``sys.modules``, never imported: a kernel has it imported already, and importing
    it elsewhere would cost a terminal script a third of a second for nothing."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None) if ipython is not None else None
    shell = get_ipython() if callable(get_ipython) else None
    if shell is None:
        return False
    kind = type(shell)
    return kind.__name__ == "ZMQInteractiveShell" or "google.colab" in kind.__module__


def display_kind(*, notebook: bool | None = None, widgets: bool | None = None) -> str:
    """``"widget"`` (a notebook with ipywidgets), ``"notebook"`` (a notebook without) or ``"terminal"``; the
    arguments stand for what is found out otherwise (tests)."""
    if notebook is None:
        notebook = in_notebook()
    if not notebook:
        return "terminal"
    if widgets is None:
        widgets = importlib.util.find_spec("ipywidgets") is not None
    return "widget" if widgets else "notebook"


class SweepProgress:
    """Done / skipped / failed / running counts of a sweep, shown live where the sweep runs."""

    def __init__(self, name: str, total: int, *, enabled: bool, active: str = "running",
                 kind: str | None = None) -> None:
        self.name, self.total, self.enabled, self.active = name, total, enabled, active
        self.kind = (kind or display_kind()) if enabled else "off"
        self.counts = ""
        self._progress: Any = None  # rich's
        self._task: Any = None
        self._bar: Any = None  # the notebook widget's
        self._label: Any = None

    def __enter__(self) -> SweepProgress:
        if self.kind == "terminal":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("sweep [bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), transient=False,
            )
            # the name is the user's: escaped, so that "[red]" in it is text, not rich markup
            from rich.markup import escape

            self._task = self._progress.add_task(escape(self.name), total=self.total, counts="")
            self._progress.start()
        elif self.kind == "widget":
            self._start_widget()
        return self

    def _start_widget(self) -> None:
        import ipywidgets
        from IPython.display import display

        # Label values and descriptions are text (HTML only with description_allow_html): a name is inert.
        self._bar = ipywidgets.IntProgress(value=0, min=0, max=max(self.total, 1), description="sweep",
                                           bar_style="info")
        self._label = ipywidgets.Label(value=f"{self.name}: 0/{self.total}")
        display(ipywidgets.HBox([self._bar, self._label]))

    def show(self, *, done: int, skipped: int, failed: int, running: int) -> None:
        self.counts = f"done {done} · skipped {skipped} · failed {failed} · {self.active} {max(running, 0)}"
        settled = done + skipped + failed
        if self._progress is not None:
            self._progress.update(self._task, completed=settled, counts=self.counts)
        elif self._bar is not None:
            self._bar.value = settled
            self._label.value = f"{self.name}: {settled}/{self.total} — {self.counts}"
            if failed:
                self._bar.bar_style = "warning"

    def say(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        elif self.kind in ("widget", "notebook"):
            print(message, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif self._bar is not None:
            if self._bar.bar_style == "info":
                self._bar.bar_style = "success" if exc[0] is None else "danger"
        elif self.kind == "notebook":
            print(f"sweep {self.name}: {self.counts or 'nothing to do'}", flush=True)
