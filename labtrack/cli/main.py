"""The `labtrack` command: one thin command per question. Options -> one library call -> render.

Every read command takes ``--json``: it prints the records the command shows in the wire format of
``labtrack.core.wire``, the one shape the server speaks too. Every command takes ``--store URL`` (also
accepted before the command name). Library errors become a one-line message on stderr (or the JSON
error body with ``--json``) and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from labtrack.cli import render
from labtrack.core import wire
from labtrack.core.errors import InvalidInput, LabtrackError
from labtrack.core.inert import json_inert, visible
from labtrack.core.model import ArtifactInfo, Collected, Lifecycle, RunRecord
from labtrack.core.query import parse_order_by
from labtrack.core.views import ExperimentRuns, RunDetail

__all__ = ["main"]


def _print_json(value: object, tp: object = None) -> None:
    """``value`` in the wire format (of type ``tp``, by default its own), as indented strict JSON."""
    click.echo(json_inert(wire.dumps(value, tp, indent=2)))


def _command(func: Callable[..., Any] | None = None, *, error_exit: int = 1) -> Any:
    """Adds --store, and turns LabtrackError into a clean message and exit status ``error_exit``
    (1; 3 for commands whose exit status is a verdict: check and reproduce)."""
    if func is None:
        return functools.partial(_command, error_exit=error_exit)

    @click.option("--store", "store", metavar="URL", envvar=None, help="Store URL (overrides LABTRACK_STORE).")
    @functools.wraps(func)
    def wrapper(*args: Any, store: str | None = None, **kwargs: Any) -> Any:
        from labtrack.verbs import tracking

        ctx = click.get_current_context()
        chosen = store or (ctx.obj or {}).get("store")
        as_json = kwargs.get("as_json", False)
        try:
            if chosen:
                tracking.set_store(chosen)
            return func(*args, **kwargs)
        except LabtrackError as exc:
            if as_json:
                click.echo(json_inert(wire.dumps(exc)), err=True)
            else:
                render.error(str(exc))
            sys.exit(error_exit)

    return wrapper


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", metavar="URL", help="Store URL for every command (overrides LABTRACK_STORE).")
@click.version_option(package_name="labtrack")
@click.pass_context
def main(ctx: click.Context, store: str | None) -> None:
    """labtrack: experiment tracking that makes every result explainable and reproducible."""
    ctx.obj = {"store": store}


_deleted_option = click.option("--deleted", "deleted", is_flag=True,
                               help="The deleted ones instead (restorable until `labtrack gc`).")


@main.command()
@_deleted_option
@_json_option
@_command
def experiments(deleted: bool, as_json: bool) -> None:
    """List experiments with their number of runs."""
    from labtrack.verbs import tracking

    found = tracking.list_experiments("deleted" if deleted else "active")
    if as_json:
        _print_json([ExperimentRuns.of(e, n) for e, n in found], list[ExperimentRuns])
    else:
        render.experiments(found, deleted=deleted)


@main.command()
@click.argument("experiment", required=False)
@click.option("--sort", "sort", multiple=True, metavar="TERM", help="Order, e.g. 'metrics.acc desc' (repeatable).")
@click.option("--filter", "filter_", metavar="EXPR", help="Filter expression, e.g. \"metrics.acc > 0.9\".")
@click.option("--key", "key", metavar="KEY", help="Only runs with this run key (see `labtrack show`).")
@click.option("--columns", "columns", metavar="FIELDS",
              help="Columns to show, e.g. 'params.lr,metrics.acc'; with --group-by, the metrics to summarise "
                   "(e.g. 'metrics.acc,metrics.loss.min').")
@click.option("--group-by", "group_by", metavar="FIELDS",
              help="Aggregate repeated runs by these fields (e.g. params.lr): metrics as mean ± std (n), over "
                   "every matching run unless --limit is given.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Most runs to show (default 50); with --group-by, most runs to aggregate (default all).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many runs (pagination).")
@_deleted_option
@_json_option
@_command
def runs(experiment: str | None, sort: tuple[str, ...], filter_: str | None, key: str | None, columns: str | None,
         group_by: str | None, limit: int | None, offset: int, deleted: bool, as_json: bool) -> None:
    """List runs (of EXPERIMENT, or all), newest first.

    \b
    Filter examples:
      --filter "metrics.acc > 0.9 and params.lr = 0.01"
      --filter "env.gpu.name LIKE '%A100%' and env.packages.torch >= '2.1'"
    """
    from labtrack.verbs import compare, tracking

    lifecycle = Lifecycle.DELETED if deleted else Lifecycle.ACTIVE
    if experiment is not None:  # a deleted run may be in a live experiment or a deleted one
        experiment = tracking.client().require_experiment(experiment, Lifecycle.ALL if deleted else lifecycle)
    if limit is None and not group_by:
        limit = 50
    # One run more than shown tells whether there are more.
    found = tracking.search_runs(experiment, filter=filter_, order_by=list(sort) or None,
                                 max_results=None if limit is None else limit + 1, offset=offset, key=key,
                                 lifecycle=lifecycle)
    more = limit is not None and len(found) > limit
    if more:
        del found[limit:]
    if group_by:
        # FINISHED runs only, unless the filter says which statuses it wants
        statuses = None if filter_ and _names_status(filter_) else ("FINISHED",)
        grouping = compare.group(found, _split(group_by), _split(columns) if columns else None,
                                 order=parse_order_by(list(sort)), statuses=statuses)
        if as_json:
            _print_json(grouping)
        else:
            render.groups(grouping, title=f"runs of {experiment} by {group_by}" if experiment else None)
            if more and limit:
                render.note(f"(over the newest {limit} matching runs only; without --limit, over all of them)")
        return
    if columns:
        view = compare.columns(found, _split(columns))
        if as_json:
            _print_json(view)
        else:
            render.columns(view)
    elif as_json:
        _print_json([run.record for run in found], list[RunRecord])
    else:
        lead = [term.key for term in parse_order_by(list(sort)) if term.kind == "metrics"]
        title = f"runs of {experiment}" if experiment else "runs"
        render.runs(found, title=f"deleted {title}" if deleted else title, lead=lead)
    if more and limit and not as_json:
        render.note(f"(the first {limit} shown; --limit N and --offset N show more)")


def _names_status(filter_: str) -> bool:
    """Whether a filter expression puts a condition on the run status (outside its quoted strings)."""
    import re

    return re.search(r"\b(attributes\.)?status\b", re.sub(r"'(?:[^'\\]|\\.)*'", "''", filter_)) is not None


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


@main.command(name="compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--all", "show_all", is_flag=True, help="Also show rows that are the same in every run.")
@_json_option
@_command
def compare_runs(run_ids: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """Params and metrics of several runs side by side; rows that differ are highlighted."""
    from labtrack.verbs import tracking

    found = [tracking.get_run(r) for r in run_ids]
    if as_json:
        _print_json([run.record for run in found], list[RunRecord])
    else:
        render.compare(found, show_all=show_all)


@main.command(name="diff")
@click.argument("run_a", metavar="A")
@click.argument("run_b", metavar="B")
@_json_option
@_command
def diff_command(run_a: str, run_b: str, as_json: bool) -> None:
    """Why do runs A and B differ? Params, metrics, code and environment, likeliest causes first."""
    from labtrack.verbs import tracking

    result = tracking.diff(run_a, run_b)
    if as_json:
        _print_json(result)
    else:
        render.diff(result)


@main.command()
@click.argument("run_id", metavar="RUN")
@click.option("--env", "full_env", is_flag=True, help="Show the whole environment, not only its summary.")
@_json_option
@_command
def show(run_id: str, full_env: bool, as_json: bool) -> None:
    """Show everything recorded about RUN (an id or a unique id prefix)."""
    from labtrack.verbs import tracking

    run = tracking.get_run(run_id)
    env = run.environment
    if as_json:
        _print_json(RunDetail.of(run.record, run.artifacts, env))
    else:
        render.run_detail(run)
        render.environment(env, full=full_env)


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--delete", "deletes", multiple=True, metavar="KEY", help="Remove this tag (repeatable).")
@_command
def tag(run_id: str, pairs: tuple[str, ...], deletes: tuple[str, ...]) -> None:
    """Set tags of RUN (KEY=VALUE ...), or remove them (--delete KEY); a finished run's tags can change."""
    from labtrack.verbs import tracking

    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput(f"{pair!r}: write KEY=VALUE (or --delete KEY)", field="tags")
        tags[key] = value
    if not tags and not deletes:
        raise InvalidInput("give tags to set (KEY=VALUE) or to remove (--delete KEY)", field="tags")
    run = tracking.get_run(run_id)
    if tags:
        run.set_tags(tags)
    for key in deletes:
        run.delete_tag(key)
    run.flush()
    render.note(f"run {run.id[:8]}: " + ", ".join([*(f"{k}={v}" for k, v in tags.items()),
                                                    *(f"removed {k}" for k in deletes)]))


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("text", metavar="TEXT")
@_command
def note(run_id: str, text: str) -> None:
    """Set the note of RUN to TEXT ("-" reads it from standard input)."""
    from labtrack.verbs import tracking

    run = tracking.get_run(run_id)
    run.set_note(sys.stdin.read() if text == "-" else text)
    run.flush()
    render.note(f"run {run.id[:8]}: note set")


@main.command()
@click.argument("run_id", metavar="RUN")
@click.option("--download", "download", type=click.Path(file_okay=False), metavar="DIR",
              help="Copy the artifacts into DIR.")
@click.option("--path", "path", metavar="PATH", help="Only the artifacts under PATH.")
@_json_option
@_command
def artifacts(run_id: str, download: str | None, path: str | None, as_json: bool) -> None:
    """List the artifacts of RUN, or copy them into a directory (--download DIR)."""
    from labtrack.verbs import tracking

    run = tracking.get_run(run_id)
    if download:
        written = run.download_artifacts(download, path=path)
        if as_json:
            _print_json([str(p) for p in written], list[str])
        else:
            render.note(f"copied {len(written)} artifact(s) of run {run.id[:8]} into {download}")
        return
    items = run.list_artifacts(path)
    if as_json:
        _print_json(items, list[ArtifactInfo])
    else:
        render.artifacts(items, run.id)


@main.command()
@click.option("--section", "sections", multiple=True, metavar="NAME",
              help="Only these sections (hardware, gpu, frameworks, packages, system, process, git).")
@_json_option
@_command
def env(sections: tuple[str, ...], as_json: bool) -> None:
    """Show this machine's environment, as runs record it."""
    from labtrack.verbs import tracking

    snapshot = tracking.capture_environment()
    if as_json:
        data = wire.to_wire(snapshot)
        if sections and isinstance(data, dict):  # the asked sections only; the fingerprint is the whole one's
            data = {k: v for k, v in data.items() if k in sections or k in ("schema", "captured_at", "fingerprint")}
        click.echo(json_inert(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)))
    else:
        render.environment(snapshot, full=True, only=sections)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the created runs as JSON.")
@_command
def demo(as_json: bool) -> None:
    """Train a small logistic regression six ways, track every run, and show the runs."""
    from labtrack.verbs import tracking
    from labtrack.verbs.demo import DEMO_EXPERIMENT, run_demo

    location = tracking.store_location()
    if not as_json:
        render.note(f"Tracking 6 demo runs into {location} ...")
    ids = run_demo(on_run=None if as_json else render.demo_progress)
    found = tracking.search_runs(DEMO_EXPERIMENT, order_by=["metrics.val_acc desc"], max_results=len(ids) * 4)
    if as_json:
        _print_json([run.record for run in found if run.id in ids], list[RunRecord])
        return
    render.runs(
        [r for r in found if r.id in ids], title=f"{DEMO_EXPERIMENT}: best validation accuracy first",
        lead=["val_acc", "val_loss"],
    )
    render.note(f"Next: labtrack show {ids[0][:8]}   ·   labtrack runs {DEMO_EXPERIMENT} --sort 'metrics.val_loss'")


@main.command()
@_json_option
@_command
def doctor(as_json: bool) -> None:
    """Check this environment: dependency conflicts, CUDA consistency, settings, the store. Exit 1 on errors."""
    from labtrack.verbs import tracking

    report = tracking.doctor()
    if as_json:
        _print_json(report)
    else:
        render.doctor(report)
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("run_id", metavar="RUN")
@_json_option
@_command(error_exit=3)
def check(run_id: str, as_json: bool) -> None:
    """Can this machine reproduce RUN? Exit 0 identical or compatible, 1 at-risk, 2 incompatible, 3 error."""
    from labtrack.verbs import tracking

    verdict = tracking.check(run_id)
    if as_json:
        _print_json(verdict)
    else:
        render.verdict(verdict, run_id)
    sys.exit(verdict.exit_code)


@main.command()
@click.argument("run_id", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(["requirements", "dockerfile", "conda", "script"]),
              default="requirements", show_default=True, help="What to write.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE.")
@_command
def export(run_id: str, fmt: str, output: str | None) -> None:
    """A pinned recipe that rebuilds RUN: requirements, Dockerfile, conda environment or shell script."""
    from labtrack.verbs import tracking

    text = tracking.export(run_id, fmt)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        if fmt == "script":
            import os

            os.chmod(output, 0o755)
        render.note(f"wrote {output}")
    else:
        click.echo(visible(text) if sys.stdout.isatty() else text, nl=False)  # a file or pipe gets it exact


@main.command(name="reproduce")
@click.argument("run_id", metavar="RUN")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to build (default: a new temp dir).")
@click.option("--rtol", type=float, default=1e-6, show_default=True, help="Relative tolerance for metrics.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance for metrics.")
@click.option("--ignore", "ignore", multiple=True, metavar="METRIC",
              help="A metric (or glob, e.g. '*_seconds') that may differ: reported, not in the verdict (repeatable).")
@click.option("--keep", is_flag=True, help="Keep the virtualenv and the checkout (removed by default).")
@_json_option
@_command(error_exit=3)
def reproduce_command(run_id: str, workdir: str | None, rtol: float, atol: float, ignore: tuple[str, ...],
                      keep: bool, as_json: bool) -> None:
    """Rebuild RUN (packages, commit, diff), run its command again, compare.

    Exit 0 reproduced, 1 differs, 2 failed to run, 3 error (e.g. no such run)."""
    from labtrack.verbs import tracking

    result = tracking.reproduce(run_id, workdir=workdir, rtol=rtol, atol=atol, ignore=ignore, keep=keep,
                                 log=render.progress if as_json else render.note)
    if as_json:
        _print_json(result)
    else:
        render.reproduction(result)
    sys.exit(result.exit_code)


@main.command()
@_json_option
@_command
def recover(as_json: bool) -> None:
    """Store what processes that died before their writes reached the store left in their spools.

    Opening a store does it too; this does it now and says what it did. Runs whose process died without
    ending them are marked CRASHED once their writes are in."""
    from labtrack.verbs import tracking

    report = tracking.recover()
    if as_json:
        _print_json(report)
    else:
        render.recovery(report)


@main.command()
@click.option("--spool", "spool", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="A spool directory of this store brought from another machine (an air-gapped node's).")
@_json_option
@_command
def sync(spool: str | None, as_json: bool) -> None:
    """Ship to the store what runs recorded while it was unreachable: this machine's spools, or DIR's.

    Every point goes in once, however often sync runs; a process still running ships its own."""
    from labtrack.verbs import tracking

    report = tracking.client().recover(spool) if spool else tracking.recover()
    if as_json:
        _print_json(report)
    else:
        render.recovery(report)


@main.command()
@click.argument("run_ids", nargs=-1, metavar="RUN...")
@click.option("--experiment", "experiment", metavar="NAME", help="Delete this experiment and its runs instead.")
@_command
def delete(run_ids: tuple[str, ...], experiment: str | None) -> None:
    """Delete runs (ids, id prefixes or names), or an experiment with its runs (--experiment NAME).

    Deleted runs are hidden from listings and searches, and their configurations count as not run (a sweep
    runs them again); they keep everything until `labtrack gc`, and `labtrack restore` brings them back."""
    from labtrack.verbs import tracking

    client = tracking.client()
    if experiment is not None:
        if run_ids:
            raise InvalidInput("give runs or --experiment NAME, not both", field="experiment")
        name = client.require_experiment(experiment, Lifecycle.ALL)
        if any(e.name == name for e, _ in client.list_experiments(Lifecycle.DELETED)):
            render.lifecycle_note(f"experiment {name} was deleted already")
            return
        count = client.delete_experiment(name)
        render.lifecycle_note(f"deleted experiment {name} with {count:,} run(s)",
                              f"labtrack restore --experiment {name}")
        return
    ids = _resolved(run_ids)
    done = client.delete_runs(ids)
    render.lifecycle_note(_runs_message("deleted", done, ids, "deleted already"),
                          f"labtrack restore {' '.join(i[:8] for i in done)}" if done else None)


@main.command()
@click.argument("run_ids", nargs=-1, metavar="RUN...")
@click.option("--experiment", "experiment", metavar="NAME",
              help="Restore this deleted experiment with the runs deleted with it instead.")
@_command
def restore(run_ids: tuple[str, ...], experiment: str | None) -> None:
    """Bring back deleted runs, or a deleted experiment with the runs deleted with it (--experiment NAME).
    `labtrack runs --deleted` and `labtrack experiments --deleted` list what can be restored."""
    from labtrack.verbs import tracking

    client = tracking.client()
    if experiment is not None:
        if run_ids:
            raise InvalidInput("give runs or --experiment NAME, not both", field="experiment")
        name = client.require_experiment(experiment, Lifecycle.DELETED)
        render.lifecycle_note(f"restored experiment {name} with {client.restore_experiment(name):,} run(s)")
        return
    ids = _resolved(run_ids)
    done = client.restore_runs(ids)
    render.lifecycle_note(_runs_message("restored", done, ids, "not deleted"))


def _resolved(run_ids: tuple[str, ...]) -> list[str]:
    """Full ids of the runs named on the command line (every one checked before anything changes)."""
    from labtrack.verbs import tracking

    if not run_ids:
        raise InvalidInput("name the runs (ids, id prefixes or names), or give --experiment NAME", field="runs")
    client = tracking.client()
    client.flush()
    return list(dict.fromkeys(client.store.resolve_run_id(run_id) for run_id in run_ids))


def _runs_message(verb: str, done: list[str], asked: list[str], otherwise: str) -> str:
    skipped = [i for i in asked if i not in set(done)]
    text = f"{verb} {len(done)} run(s)" + (f": {', '.join(i[:8] for i in done)}" if done else "")
    if skipped:
        text += f"; {len(skipped)} {otherwise}: {', '.join(i[:8] for i in skipped)}"
    return text


@main.command()
@click.option("--older-than", "older_than", default="0", show_default=True, metavar="AGE",
              help="Only runs deleted longer ago than AGE (e.g. 30d, 12h, 1d12h).")
@click.option("--dry-run", "dry_run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--vacuum", "vacuum", is_flag=True,
              help="Then give the freed space back to the file system (SQLite; other writers wait meanwhile).")
@_json_option
@_command
def gc(older_than: str, dry_run: bool, vacuum: bool, as_json: bool) -> None:
    """Remove deleted runs for good: their params, metrics, tags and artifact records, deleted experiments
    left without runs, and artifact content that no remaining run lists. Deleted runs still running stay
    until they end."""
    from labtrack.verbs import tracking

    report = tracking.client().gc(older_than, dry_run=dry_run, compact=vacuum)
    if as_json:
        _print_json(report, Collected)
    else:
        render.collected(report, tracking.store_location())


@main.group()
def db() -> None:
    """Manage the store's database schema."""


@db.command()
@_command
def upgrade() -> None:
    """Migrate the store's schema to this labtrack version (safe to run again)."""
    from labtrack.verbs import tracking

    before, after, filled = tracking.upgrade_store()
    if before == after:
        render.note(f"store {tracking.store_location()} is already at schema revision {after}")
    else:
        render.note(f"store {tracking.store_location()} upgraded from revision {before or 'none'} to {after}")
    if filled:
        render.note(f"wrote the column summaries (frames) of {filled:,} ended runs")


@db.command(name="check")
@_json_option
@_command
def check_db(as_json: bool) -> None:
    """Read every stored metric point and check it against its checksum (and, on SQLite, the database's
    structure); list what is damaged. Exit 1 if anything is."""
    from labtrack.verbs import tracking

    report = tracking.check_store()
    if as_json:
        _print_json(report)
    else:
        render.store_check(report, tracking.store_location())
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
