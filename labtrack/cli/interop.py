"""`labtrack import mlflow SOURCE`: bring runs recorded by MLflow into the store (again: only what is new)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from labtrack.cli import render
from labtrack.cli.main import _command, _json_option, main
from labtrack.core.inert import json_inert

__all__ = ["import_group", "import_mlflow_command"]


@main.group(name="import")
def import_group() -> None:
    """Bring runs recorded by another tracker into the store."""


@import_group.command(name="mlflow")
@click.argument("source")
@click.option("--experiment", "experiments", multiple=True, metavar="NAME",
              help="Import only this MLflow experiment (repeatable; default: all).")
@click.option("--include-deleted", "include_deleted", is_flag=True,
              help="Also MLflow's deleted experiments and runs (they arrive deleted here, restorable).")
@click.option("--dry-run", "dry_run", is_flag=True, help="Count what would be imported; write nothing.")
@_json_option
@_command
def import_mlflow_command(source: str, experiments: tuple[str, ...], include_deleted: bool, dry_run: bool,
                          as_json: bool) -> None:
    """Import every experiment, run, param, metric history, tag and artifact of an MLflow store: SOURCE is
    an mlruns directory, a database URL (sqlite:///mlflow.db, postgresql://…) or an MLflow server URL
    (http://…). Importing again adds only what is new. Needs `pip install 'labtrack[mlflow]'`."""
    from labtrack.verbs import tracking
    from labtrack.verbs.mlflow_import import import_mlflow

    client = tracking.client()
    with _Bar(enabled=not as_json and sys.stderr.isatty()) as bar:
        summary = import_mlflow(client, source, experiments=experiments or None, include_deleted=include_deleted,
                                dry_run=dry_run, on_run=bar.update)
    if as_json:
        fields = {name: getattr(summary, name) for name in (
            "source", "experiments", "runs", "runs_new", "runs_updated", "runs_unchanged", "points", "artifacts",
            "dry_run", "problems")}
        click.echo(json_inert(json.dumps(fields, indent=2, ensure_ascii=False)))
        return
    verb = "would import" if dry_run else "imported"
    render.note(f"{summary.source}: {summary.experiments} experiment(s), {summary.runs} run(s): "
                f"{summary.runs_new} new, {summary.runs_updated} updated, {summary.runs_unchanged} unchanged; "
                f"{verb} {summary.points:,} metric point(s) and {summary.artifacts} artifact file(s)"
                + (" (dry run: nothing written)" if dry_run else ""))
    for problem in summary.problems:
        render.progress(f"warning: {problem}")


class _Bar:
    """A progress bar on stderr while runs are imported (none when stderr is no terminal, or for --json)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("importing runs"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[points]:,} points"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("import", total=None, points=0)
        return self

    def update(self, done: int, total: int, summary: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, points=summary.points)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
