"""Every run records what it ran on: the environment stored once per fingerprint, the per-run parts
(command, git state, seeds) on the run, the uncommitted diff as an artifact, and the CLI that shows it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from env_helpers import git_env, make_repo  # noqa: F401  (git_env is a fixture)

import labtrack as lt
from labtrack.cli import main
from labtrack.core.environment import SECTIONS
from labtrack.env import gatherers
from labtrack.verbs import capture


def environment_rows(store: Path) -> list[tuple[str, str]]:
    lt.flush()  # what this process logged is in the store before it is read directly
    with sqlite3.connect(store / "labtrack.db") as conn:
        return conn.execute("SELECT fingerprint, snapshot FROM environments").fetchall()


@pytest.fixture
def no_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """seed_everything is process-wide; keep it from leaking into other tests."""
    capture.reset()


def test_a_run_records_every_section_and_the_fingerprint_of_this_machine(tmp_path: Path) -> None:
    with lt.start_run("e", params={"lr": 0.1}, store=str(tmp_path / "store")) as run:
        run.log_metric("loss", 0.5)
    stored = lt.get_run(run.id, store=str(tmp_path / "store"))
    env = stored.environment
    assert env is not None
    assert list(env.sections()) == list(SECTIONS)
    assert env.snapshot["hardware"]["logical_cores"] >= 1
    assert env.snapshot["packages"]["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env.snapshot["process"]["pid"] == stored.record.pid
    assert env.fingerprint == lt.capture_environment().fingerprint
    assert stored.record.env_fingerprint == env.fingerprint


def test_fifty_runs_in_one_process_store_one_environment(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ids = []
    for i in range(50):
        with lt.start_run("many", params={"i": i}, store=str(store)) as run:
            ids.append(run.id)
    rows = environment_rows(store)
    assert len(rows) == 1
    fingerprint, snapshot = rows[0]
    assert {r.record.env_fingerprint for r in lt.search_runs("many", store=str(store), max_results=100)} == {fingerprint}
    # the shared row holds no per-run parts; each run still gets its own
    shared = json.loads(snapshot)
    assert "process" not in shared and "git" not in shared
    for run_id in (ids[0], ids[-1]):
        env = lt.get_run(run_id, store=str(store)).environment
        assert env is not None and env.snapshot["process"]["argv"] and "git" in env.snapshot


SCRIPT = """
    import sys
    import labtrack as lt
    with lt.start_run("scripts", params={"script": sys.argv[0]}) as run:
        run.log_metric("x", 1.0)
    print(run.id)
"""


def test_runs_from_different_scripts_share_the_snapshot_but_keep_their_own_command(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    store = tmp_path / "store"
    ids = {}
    for name, flag in (("prepare.py", "--fast"), ("train.py", "--epochs=3")):
        script = tmp_path / name
        script.write_text(textwrap.dedent(SCRIPT))
        out = subprocess.run([sys.executable, str(script), flag], env={**python_env, "LABTRACK_STORE": str(store)},
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        ids[name] = out.stdout.strip()
    envs = {name: lt.get_run(run_id, store=str(store)).environment for name, run_id in ids.items()}
    prepare, train = envs["prepare.py"], envs["train.py"]
    assert prepare is not None and train is not None
    assert prepare.snapshot["process"]["argv"][1:] == ["--fast"]
    assert train.snapshot["process"]["argv"][1:] == ["--epochs=3"]
    assert prepare.snapshot["process"]["entry"]["path"] == str(tmp_path / "prepare.py")
    assert train.snapshot["process"]["entry"]["path"] == str(tmp_path / "train.py")
    assert prepare.snapshot["process"]["pid"] != train.snapshot["process"]["pid"]
    assert prepare.fingerprint == train.fingerprint
    assert len(environment_rows(store)) == 1


def test_a_dirty_repository_stores_its_diff_as_an_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_env: None  # noqa: F811
) -> None:
    repo = make_repo(tmp_path / "project", {"train.py": "lr = 0.1\n"})
    monkeypatch.chdir(repo)
    (repo / "train.py").write_text("lr = 0.05  # tuned\n")
    store = str(tmp_path / "store")
    with lt.start_run("e", store=store) as run:
        pass
    stored = lt.get_run(run.id, store=store)
    assert "labtrack/git.diff" in [a.path for a in stored.artifacts]
    with stored.open_artifact("labtrack/git.diff") as f:
        diff = f.read().decode()
    assert "-lr = 0.1" in diff and "+lr = 0.05  # tuned" in diff
    env = stored.environment
    assert env is not None
    assert env.snapshot["git"]["dirty"] is True and env.snapshot["git"]["root"] == str(repo)


def test_a_clean_repository_stores_no_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_env: None  # noqa: F811
) -> None:
    repo = make_repo(tmp_path / "project", {"train.py": "lr = 0.1\n"})
    monkeypatch.chdir(repo)
    with lt.start_run("e", store=str(tmp_path / "store")) as run:
        pass
    assert "labtrack/git.diff" not in [a.path for a in run.artifacts]
    env = run.environment
    assert env is not None and env.snapshot["git"]["dirty"] is False


def test_capture_none_records_no_environment_and_the_run_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_CAPTURE", "none")
    store = tmp_path / "store"
    with lt.start_run("e", params={"lr": 0.1}, store=str(store)) as run:
        run.log_metric("loss", 0.25, step=0)
    stored = lt.get_run(run.id, store=str(store))
    assert stored.status is lt.RunStatus.FINISHED
    assert stored.metrics == {"loss": 0.25}
    assert stored.environment is None
    assert environment_rows(store) == []


def test_capture_of_some_sections_records_only_those(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_CAPTURE", "hardware,git")
    with lt.start_run("e", store=str(tmp_path / "store")) as run:
        pass
    env = lt.get_run(run.id, store=str(tmp_path / "store")).environment
    assert env is not None
    assert set(env.sections()) == {"hardware", "git"}
    for absent in ("gpu", "frameworks", "packages", "system", "process"):
        assert absent not in env.snapshot


def test_seed_everything_before_a_run_is_recorded_on_it(tmp_path: Path, no_seeds: None) -> None:
    lt.seed_everything(7)
    with lt.start_run("e", store=str(tmp_path / "store")) as run:
        pass
    env = lt.get_run(run.id, store=str(tmp_path / "store")).environment
    assert env is not None
    assert env.snapshot["seeds"]["seed"] == 7
    assert "random" in env.snapshot["seeds"]["seeded"]


def test_seed_everything_during_a_run_is_recorded_on_that_run(tmp_path: Path, no_seeds: None) -> None:
    store = str(tmp_path / "store")
    with lt.start_run("e", store=store) as before:
        pass
    with lt.start_run("e", store=store) as run:
        lt.seed_everything(11)
    during = lt.get_run(run.id, store=store).environment
    assert during is not None and during.snapshot["seeds"]["seed"] == 11
    earlier = lt.get_run(before.id, store=store).environment
    assert earlier is not None and "seeds" not in earlier.snapshot


def test_a_failing_gatherer_leaves_an_error_and_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(options: Any) -> Any:
        raise RuntimeError("no /etc/os-release today")

    monkeypatch.setitem(gatherers.GATHERERS, "system", broken)
    store = str(tmp_path / "store")
    with lt.start_run("e", params={"lr": 0.1}, store=store) as run:
        run.log_metric("loss", 1.0)
    stored = lt.get_run(run.id, store=store)
    assert stored.status is lt.RunStatus.FINISHED
    env = stored.environment
    assert env is not None
    assert env.snapshot["system"] == {"error": "RuntimeError: no /etc/os-release today"}
    assert "error" not in env.snapshot["hardware"]  # the other sections are captured


# -- the CLI ---------------------------------------------------------------------------------------


def test_env_json_is_the_snapshot_with_its_fingerprint() -> None:
    result = CliRunner().invoke(main, ["env", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for section in SECTIONS:
        assert isinstance(data[section], dict), section
    assert data["fingerprint"] == lt.capture_environment().fingerprint


def test_env_section_json_keeps_only_that_section() -> None:
    result = CliRunner().invoke(main, ["env", "--section", "hardware", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "hardware" in data and "packages" not in data and "git" not in data


def test_env_shows_the_hardware_and_gpu_sections() -> None:
    result = CliRunner().invoke(main, ["env"])
    assert result.exit_code == 0, result.output
    assert "hardware" in result.output
    assert "gpu" in result.output
    assert "logical_cores" in result.output
    assert "fingerprint" in result.output


def test_show_summarises_the_environment_and_env_shows_it_all(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with lt.start_run("e", params={"lr": 0.1}, store=store) as run:
        pass
    summary = CliRunner().invoke(main, ["--store", store, "show", run.id[:8]])
    assert summary.exit_code == 0, summary.output
    assert "environment" in summary.output
    assert "python" in summary.output and sys.version.split()[0] in summary.output
    assert "--env" in summary.output  # says how to see everything
    assert "logical_cores" not in summary.output  # a summary, not every field
    full = CliRunner().invoke(main, ["--store", store, "show", run.id[:8], "--env"])
    assert full.exit_code == 0, full.output
    for section in ("hardware", "packages", "process", "git"):
        assert section in full.output
    assert "logical_cores" in full.output
    as_json = CliRunner().invoke(main, ["--store", store, "show", run.id, "--json"])
    env = json.loads(as_json.output)["environment"]
    assert set(SECTIONS) <= set(env)


def test_show_says_when_no_environment_was_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_CAPTURE", "none")
    store = str(tmp_path / "store")
    with lt.start_run("e", store=store) as run:
        pass
    result = CliRunner().invoke(main, ["--store", store, "show", run.id])
    assert result.exit_code == 0, result.output
    assert "not recorded" in result.output
