"""Query mistakes are refused or answered honestly, never silently wrong (issue 13, finding 3): the user's
`labtrack runs` commands replayed on a store with FINISHED and FAILED runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import labtrack as lt
from labtrack.cli import main


@pytest.fixture
def digits(tmp_path: object) -> None:
    for i, (lr, status) in enumerate([(0.1, "FINISHED"), (0.1, "FAILED"), (0.01, "FINISHED"), (0.01, "FINISHED"),
                                      (0.001, "FINISHED")]):
        run = lt.start_run("digits-sklearn", params={"lr": lr, "i": i})
        run.log_metric("test_acc", [0.9, 0.1, 0.7, 0.8, 0.6][i])
        run.end(status)
    lt.flush()


def cli(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(main, list(args))
    return done.exit_code, done.stdout, " ".join(done.stderr.split())


def test_a_misspelled_direction_is_refused(digits: None) -> None:
    code, _, err = cli("runs", "digits-sklearn", "--sort", "metrics.test_acc descending")
    assert code == 1 and "'descending' is not a direction" in err


def test_a_grouped_table_is_sorted_as_asked(digits: None) -> None:
    code, out, _ = cli("runs", "digits-sklearn", "--group-by", "params.lr", "--sort", "metrics.test_acc desc",
                       "--json")
    assert code == 0
    assert [g["key"] for g in json.loads(out)["groups"]] == [[0.1], [0.01], [0.001]]  # 0.9, 0.75, 0.6
    code, out, _ = cli("runs", "digits-sklearn", "--group-by", "params.lr", "--sort", "params.lr desc", "--json")
    assert [g["key"] for g in json.loads(out)["groups"]] == [[0.1], [0.01], [0.001]]
    code, _, err = cli("runs", "digits-sklearn", "--group-by", "params.lr", "--sort", "params.i")
    assert code == 1 and "sorts by a metric (its mean) or a --group-by field" in err


def test_a_misspelled_experiment_exits_non_zero_and_suggests_the_closest_names(digits: None) -> None:
    code, out, err = cli("runs", "digits-sklern")
    assert code == 1 and "No runs found" not in out
    assert "no experiment named 'digits-sklern'" in err and "did you mean 'digits-sklearn'?" in err


def test_group_averages_are_over_finished_runs_unless_the_filter_says_otherwise(digits: None) -> None:
    code, out, _ = cli("runs", "digits-sklearn", "--group-by", "params.lr", "--json")
    grouping = json.loads(out)
    by_lr = {g["key"][0]: g for g in grouping["groups"]}
    assert by_lr[0.1]["runs"] == 1 and by_lr[0.1]["metrics"]["metrics.test_acc"]["mean"] == 0.9  # not the FAILED 0.1
    assert grouping["statuses"] == ["FINISHED"] and grouping["left_out"] == 1
    code, out, _ = cli("runs", "digits-sklearn", "--group-by", "params.lr")
    assert code == 0 and "FINISHED runs only — 1 run of other statuses left out" in " ".join(out.split())
    code, out, _ = cli("runs", "digits-sklearn", "--group-by", "params.lr", "--json",
                       "--filter", "attributes.status IN ('FINISHED', 'FAILED')")
    assert code == 0
    grouping = json.loads(out)
    assert {g["key"][0]: g["runs"] for g in grouping["groups"]}[0.1] == 2 and grouping["statuses"] is None


def test_a_bad_column_is_named_as_a_column_not_a_filter(digits: None) -> None:
    code, _, err = cli("runs", "digits-sklearn", "--columns", "params.lr,bogus.x")
    assert code == 1 and "invalid field in --columns" in err and "filter" not in err
    code, _, err = cli("runs", "digits-sklearn", "--group-by", "bogus.x")
    assert code == 1 and "invalid field in --group-by" in err
