"""The runs table shows what users compare (issue 13, finding 9), replayed at the terminal widths the user
had: metrics over long params when space is short, headers never split, env columns allowed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import labtrack as lt
from labtrack.cli import main

MODELS = ["LogisticRegression", "RandomForestClassifier"]


@pytest.fixture
def digits() -> None:
    for i in range(4):
        params = {"model": MODELS[i % 2], "n_estimators": 100 * (i + 1), "max_depth": 5, "criterion": "gini",
                  "dataset_path": "/data/sets/digits/v3/train.csv"}
        with lt.start_run("digits", params=params) as run:
            run.log_metrics({"test_acc": 0.9 + i / 100, "train_acc": 0.99, "fit_seconds": 1.5 + i})
    lt.flush()


def table(*args: str, width: int) -> str:
    done = CliRunner().invoke(main, list(args), env={"COLUMNS": str(width)})
    assert done.exit_code == 0, done.output
    return done.stdout


def header_of(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


@pytest.mark.parametrize("width", [80, 60])
def test_a_narrow_terminal_shows_metrics_rather_than_long_params(digits: None, width: int) -> None:
    text = table("runs", "digits", "--sort", "metrics.test_acc desc", width=width)
    header = header_of(text)
    assert "test_acc" in header  # what the runs are sorted by comes first
    assert "dataset_path" not in header and "model" not in header  # long params give way
    assert all(len(line) <= width for line in text.splitlines())
    if width == 80:
        assert "n_estimators" in header and "started" not in header  # the short param that tells runs apart


def test_group_by_headers_are_never_split_and_lose_the_params_prefix(digits: None) -> None:
    text = table("runs", "digits", "--group-by", "params.model", width=60)
    headers = [line for line in text.splitlines() if line.startswith("┃")]
    assert any("┃                  model ┃" in line for line in headers)  # whole, without its prefix
    assert not any("params" in line or "mod " in line for line in headers)
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert {row.split("│")[1].strip() for row in rows} == set(MODELS)  # every value on one line


def test_env_columns_and_env_groups_are_allowed(digits: None) -> None:
    import numpy

    done = CliRunner().invoke(main, ["runs", "digits", "--columns", "env.packages.numpy,metrics.test_acc", "--json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)["rows"]
    assert {row["values"]["env.packages.numpy"] for row in rows} == {numpy.__version__}
    done = CliRunner().invoke(main, ["runs", "digits", "--group-by", "env.python", "--json"])
    assert done.exit_code == 0, done.output
    (group,) = json.loads(done.stdout)["groups"]
    assert group["runs"] == 4
