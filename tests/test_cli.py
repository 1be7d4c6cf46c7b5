"""The `labtrack` command, in process through click's CliRunner and once as the installed executable."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import labtrack as lt
from labtrack.cli import main
from labtrack.core import wire
from labtrack.core.environment import SECTIONS
from labtrack.core.model import RunRecord, Search
from labtrack.core.views import ExperimentRuns, RunDetail
from labtrack.store import open_store
from labtrack.store.schema import SCHEMA_REVISION

LABTRACK = Path(sys.executable).with_name("labtrack")


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def strict_json(text: str) -> Any:
    """Parse JSON that a strict parser (or another language) can read: no bare NaN or Infinity."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"bare {constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def make_runs(store: str | None = None) -> dict[str, lt.Run]:
    runs = {}
    with lt.start_run("mnist", params={"lr": 0.1}, tags={"team": "cv"}, store=store) as run:
        run.log_metric("acc", 0.9)
        run.log_metric("loss", math.nan)
        run.log_metric("gain", math.inf)
        run.log_text("hello", "notes/hello.txt")
    runs["good"] = run
    with lt.start_run("mnist", params={"lr": 0.5}, store=store) as run:
        run.log_metric("acc", 0.5)
    runs["worse"] = run
    with lt.start_run("cifar", store=store) as run:
        pass
    runs["other"] = run
    return runs


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("experiments", "runs", "show", "demo", "db"):
        assert name in result.stdout
    assert "upgrade" in invoke("db", "--help").stdout


def test_experiments_json_lists_experiments_with_run_counts() -> None:
    make_runs()
    result = invoke("experiments", "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert [(e["name"], e["runs"]) for e in data] == [("mnist", 2), ("cifar", 1)]


def test_experiments_table_names_each_experiment() -> None:
    make_runs()
    result = invoke("experiments")
    assert result.exit_code == 0, result.output
    assert "mnist" in result.stdout and "cifar" in result.stdout


def test_runs_json_is_strict_json_with_nan_and_infinity_as_strings() -> None:
    runs = make_runs()
    result = invoke("runs", "mnist", "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert {r["id"] for r in data} == {runs["good"].id, runs["worse"].id}
    good = next(r for r in data if r["id"] == runs["good"].id)
    assert good["status"] == "FINISHED"
    assert good["params"] == {"lr": 0.1}
    assert good["metrics"]["loss"]["last"] == "NaN"
    assert good["metrics"]["gain"]["last"] == "Infinity"
    assert good["metrics"]["acc"]["last"] == 0.9


def test_runs_sort_and_limit() -> None:
    runs = make_runs()
    result = invoke("runs", "mnist", "--sort", "metrics.acc asc", "--json")
    assert [r["id"] for r in strict_json(result.stdout)] == [runs["worse"].id, runs["good"].id]
    result = invoke("runs", "--limit", "1", "--json")
    assert [r["id"] for r in strict_json(result.stdout)] == [runs["other"].id]  # newest first
    table = invoke("runs", "mnist")
    assert table.exit_code == 0, table.output
    assert runs["good"].id[:8] in table.stdout and runs["other"].id[:8] not in table.stdout


def test_show_json_by_a_unique_prefix() -> None:
    runs = make_runs()
    result = invoke("show", runs["good"].id[:12], "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert data["id"] == runs["good"].id
    assert data["experiment"] == "mnist"
    assert data["params"] == {"lr": 0.1}
    assert data["tags"]["team"] == "cv"
    assert data["metrics"]["loss"]["last"] == "NaN"
    assert [a["path"] for a in data["artifacts"]] == ["notes/hello.txt"]
    assert data["environment"]["fingerprint"] == runs["good"].environment.fingerprint
    assert set(SECTIONS) <= set(data["environment"])


def test_json_output_is_the_wire_format_and_reads_back_into_records() -> None:
    runs = make_runs()
    listed = wire.loads(list[RunRecord], invoke("runs", "mnist", "--json").stdout)
    assert [r.id for r in listed] == [runs["worse"].id, runs["good"].id]
    good = listed[1]
    assert good == dataclasses.replace(runs["good"].record, metrics=good.metrics)  # NaN != NaN: metrics below
    assert math.isnan(good.metrics["loss"].last) and good.metrics["gain"].last == math.inf
    assert good.metrics["acc"] == runs["good"].record.metrics["acc"]
    shown = wire.loads(RunDetail, invoke("show", runs["good"].id, "--json").stdout)
    assert shown.artifacts == runs["good"].artifacts and shown.environment == runs["good"].environment
    counted = wire.loads(list[ExperimentRuns], invoke("experiments", "--json").stdout)
    assert [(e.name, e.runs) for e in counted] == [("mnist", 2), ("cifar", 1)]


def test_show_table_names_the_run_and_its_params() -> None:
    runs = make_runs()
    result = invoke("show", runs["good"].id)
    assert result.exit_code == 0, result.output
    assert runs["good"].id[:8] in result.stdout
    assert "lr" in result.stdout and "acc" in result.stdout and "FINISHED" in result.stdout


@pytest.mark.parametrize("name", ["0" * 32, "nothex", "abc-"], ids=["unknown-id", "not-hex", "punctuation"])
def test_show_of_an_unknown_run_exits_1_with_an_error_message(name: str) -> None:
    make_runs()
    result = invoke("show", name)
    assert result.exit_code == 1
    assert "Error:" in result.stderr
    assert "Traceback" not in result.output


def test_show_of_an_ambiguous_prefix_exits_1_and_asks_for_more_characters() -> None:
    ids = []
    for _ in range(17):  # 16 hex digits: two runs are sure to share the first
        with lt.start_run("p") as run:
            pass
        ids.append(run.id)
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    result = invoke("show", shared)
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "more characters" in " ".join(result.stderr.split())


def test_an_error_with_json_is_a_json_error_body() -> None:
    make_runs()
    result = invoke("show", "0" * 32, "--json")
    assert result.exit_code == 1
    body = strict_json(result.stderr)
    assert set(body) == {"error"}
    assert body["error"]["code"] == "RunNotFound" and body["error"]["status"] == 404 and body["error"]["message"]
    assert body["error"]["field"] is None
    assert isinstance(wire.error_from_wire(body), lt.RunNotFound)


def test_store_option_selects_the_store_before_or_after_the_command(tmp_path: Path) -> None:
    other = str(tmp_path / "other-store")
    make_runs(store=other)
    assert strict_json(invoke("experiments", "--json").stdout) == []  # the default store is empty
    after = strict_json(invoke("experiments", "--json", "--store", other).stdout)
    lt.set_store(None)
    before = strict_json(invoke("--store", other, "experiments", "--json").stdout)
    assert [e["name"] for e in after] == [e["name"] for e in before] == ["mnist", "cifar"]


def test_labtrack_store_environment_variable_selects_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "env-store"
    monkeypatch.setenv("LABTRACK_STORE", str(chosen))
    runs = make_runs()  # goes to LABTRACK_STORE
    assert (chosen / "labtrack.db").exists()
    assert not Path(".labtrack").exists()
    data = strict_json(invoke("show", runs["worse"].id[:10], "--json").stdout)
    assert data["params"] == {"lr": 0.5}


def test_store_option_wins_over_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_STORE", str(tmp_path / "env-store"))
    explicit = str(tmp_path / "explicit")
    make_runs(store=explicit)
    assert [e["name"] for e in strict_json(invoke("experiments", "--json", "--store", explicit).stdout)] == [
        "mnist", "cifar"]


def test_the_read_commands_work_on_every_backend(store_url: str) -> None:
    runs = make_runs(store=store_url)
    experiments = strict_json(invoke("experiments", "--json", "--store", store_url).stdout)
    assert [(e["name"], e["runs"]) for e in experiments] == [("mnist", 2), ("cifar", 1)]
    listed = strict_json(invoke("runs", "mnist", "--sort", "metrics.acc desc", "--json", "--store", store_url).stdout)
    assert [r["id"] for r in listed] == [runs["good"].id, runs["worse"].id]
    shown = strict_json(invoke("show", runs["good"].id[:9], "--json", "--store", store_url).stdout)
    assert shown["metrics"]["loss"]["last"] == "NaN"
    assert [a["path"] for a in shown["artifacts"]] == ["notes/hello.txt"]


def test_db_upgrade_creates_a_new_store_and_is_safe_to_repeat(tmp_path: Path) -> None:
    location = str(tmp_path / "fresh")
    first = invoke("db", "upgrade", "--store", location)
    assert first.exit_code == 0, first.output
    assert SCHEMA_REVISION in first.stdout
    again = invoke("db", "upgrade", "--store", location)
    assert again.exit_code == 0, again.output
    assert "already" in again.stdout
    store = open_store(location)
    try:
        assert store.list_experiments() == []
    finally:
        store.close()


def test_db_upgrade_on_an_existing_store_keeps_its_runs(tmp_path: Path) -> None:
    location = str(tmp_path / "existing")
    runs = make_runs(store=location)
    lt.set_store(None)
    result = invoke("db", "upgrade", "--store", location)
    assert result.exit_code == 0, result.output
    assert "already" in result.stdout
    assert strict_json(invoke("show", runs["good"].id, "--json", "--store", location).stdout)["params"] == {"lr": 0.1}


def test_demo_creates_six_finished_runs_in_the_default_store() -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    store = open_store(".labtrack")
    try:
        found = store.search_runs(Search(experiments=["demo-logreg"]))
    finally:
        store.close()
    assert len(found) == 6
    assert {r.status for r in found} == {lt.RunStatus.FINISHED}
    assert all("val_acc" in r.metrics and "lr" in r.params for r in found)
    assert len({(r.params["lr"], r.params["epochs"]) for r in found}) == 6
    assert Path(".labtrack", "labtrack.db").exists()


def test_the_installed_executable_reads_the_store_from_the_environment(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    store = str(tmp_path / "exe-store")
    runs = make_runs(store=store)
    env = {**python_env, "LABTRACK_STORE": store, "COLUMNS": "200"}
    listed = subprocess.run([str(LABTRACK), "runs", "mnist", "--json"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {r["id"] for r in strict_json(listed.stdout)} == {runs["good"].id, runs["worse"].id}
    shown = subprocess.run([str(LABTRACK), "show", runs["good"].id[:8]], env=env, capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert runs["good"].id[:8] in shown.stdout
    missing = subprocess.run([str(LABTRACK), "show", "f" * 32], env=env, capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert missing.returncode == 1
    assert "Error:" in missing.stderr and "Traceback" not in missing.stderr
    assert os.path.exists(os.path.join(store, "labtrack.db"))
