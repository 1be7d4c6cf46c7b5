"""Basics users expect from MLflow (issue 13, finding 8, in part): readable run names accepted wherever an
id is, tags and notes edited from the CLI, and `labtrack artifacts` to list and download."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

import labtrack as lt
from labtrack.cli import main


def cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    done = CliRunner().invoke(main, list(args), input=input, env={"COLUMNS": "160"})
    return done.exit_code, done.stdout, " ".join(done.stderr.split())


def test_every_run_gets_a_readable_name_that_stands_for_its_id() -> None:
    with lt.start_run("named") as run:
        run.log_metric("acc", 0.9)
    with lt.start_run("named", name="baseline") as given:
        pass
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", run.name or "")
    assert given.name == "baseline"
    assert lt.get_run(run.name).id == run.id and lt.get_run("baseline").id == given.id
    code, out, _ = cli("runs", "named")
    assert code == 0 and run.name in out and "baseline" in out
    code, out, _ = cli("show", run.name)
    assert code == 0 and run.id in out


def test_a_name_several_runs_share_is_ambiguous_and_says_which() -> None:
    ids = []
    for _ in range(2):
        with lt.start_run("twins", name="twin") as run:
            ids.append(run.id)
    code, _, err = cli("show", "twin")
    assert code == 1 and "several runs are named 'twin'" in err and all(i[:8] in err for i in ids)


def test_tags_and_notes_of_a_finished_run_are_edited_from_the_cli() -> None:
    with lt.start_run("edit", tags={"stage": "draft"}) as run:
        pass
    assert cli("tag", run.id[:8], "reviewed=yes", "stage=final")[0] == 0
    assert cli("tag", run.name or "", "--delete", "reviewed")[0] == 0
    assert cli("note", run.id, "-", input="diverged after epoch 3\n")[0] == 0
    again = lt.get_run(run.id)
    assert again.tags.get("stage") == "final" and "reviewed" not in again.tags
    assert again.note == "diverged after epoch 3\n"
    code, _, err = cli("tag", run.id, "no-equals-sign")
    assert code == 1 and "write KEY=VALUE" in err


def test_artifacts_are_listed_and_downloaded(tmp_path: Path) -> None:
    with lt.start_run("arts") as run:
        run.log_text("hello", "notes/a.txt")
        run.log_text("{}", "config.json")
    code, out, _ = cli("artifacts", run.id)
    assert code == 0 and "notes/a.txt" in out and "config.json" in out
    code, out, _ = cli("artifacts", run.id, "--download", str(tmp_path / "dl"), "--path", "notes")
    assert code == 0 and (tmp_path / "dl" / "notes" / "a.txt").read_text() == "hello"
    assert not (tmp_path / "dl" / "config.json").exists()
