"""The smaller findings of a first real user (issue 13, finding 10), each replayed: seeding differences
named, a repository without commits, where a package came from, an unknown store scheme, and where a
database store's artifacts live."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from env_helpers import git, git_env  # noqa: F401  (git_env is a fixture)

import labtrack as lt
from labtrack.cli import main
from labtrack.core.diff import RunView, diff_runs
from labtrack.store import open_store


def test_a_seeding_difference_is_named_not_just_settings_differ() -> None:
    a = {"seeds": {"seed": 0, "seeded": ["random", "numpy"], "on_import": [], "deterministic": {}}}
    b = {"seeds": {"seed": 0, "seeded": ["random", "numpy", "torch"], "on_import": [],
                   "deterministic": {"torch.use_deterministic_algorithms": True}}}
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))
    (seeds,) = [s for s in result.sections if s.name == "seeds"]
    lines = [c.describe() for c in seeds.changes]
    assert lines == ["seeded random, numpy → random, numpy, torch",
                     "deterministic torch.use_deterministic_algorithms (none) → True"]
    assert not any("settings differ" in line for line in lines)


def test_a_package_of_the_same_version_from_another_source_reads_cleanly() -> None:
    a = {"packages": {"distributions": {"labtrack": {"version": "0.1.0", "source": "editable"}}}}
    b = {"packages": {"distributions": {"labtrack": {"version": "0.1.0", "source": "local"}}}}
    c = copy.deepcopy(b)
    c["packages"]["distributions"]["labtrack"]["commit"] = "1a2b3c4d5e6f7a8b"
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))
    (change,) = [ch for s in result.sections for ch in s.changes]
    assert change.describe() == "labtrack 0.1.0 (editable) → 0.1.0 (local) (other); same version, different source"
    result = diff_runs(RunView("a", environment=a), RunView("c", environment=c))
    (change,) = [ch for s in result.sections for ch in s.changes]
    assert change.b == "0.1.0 (local, commit 1a2b3c4d5e6f)"


def test_show_in_a_repository_without_commits_says_so(tmp_path: Path, git_env: None,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    monkeypatch.chdir(repo)
    with lt.start_run("fresh") as run:
        pass
    done = CliRunner().invoke(main, ["show", run.id])
    assert done.exit_code == 0, done.output
    text = " ".join(done.stdout.split())
    assert "no commits yet on master, clean" in text and "no comm " not in text
    assert "untracked" not in text  # the store's own files are no untracked inputs


@pytest.mark.parametrize("location", ["s3://bucket/runs", "ftp://host/runs"])
def test_an_unknown_store_scheme_names_only_what_this_version_opens(location: str) -> None:
    with pytest.raises(lt.InvalidInput) as caught:
        open_store(location)
    message = str(caught.value)
    assert "unknown scheme" in message and "postgresql+psycopg://" in message and "http://host:5000" in message
    assert "s3" not in message.split(";")[1]


def test_an_artifacts_location_on_s3_is_never_made_a_local_directory_and_doctor_checks_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> None:
    """The user's LABTRACK_ARTIFACTS=s3://bucket/x once made a directory named `s3:` while doctor said all was
    well. Now it is a bucket (issue 14): doctor asks it, and an unreachable one is an error."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("LABTRACK_S3_ENDPOINT_URL", s3_endpoint),
                        ("LABTRACK_STORE", str(tmp_path / "store")), ("LABTRACK_ARTIFACTS", "s3://no-such-bucket-x/p")):
        monkeypatch.setenv(name, value)
    done = CliRunner().invoke(main, ["doctor"], env={"COLUMNS": "250"})
    assert done.exit_code == 1 and "s3://no-such-bucket-x/p" in done.output and "bucket" in done.output
    assert not any(p.name.startswith("s3") for p in tmp_path.rglob("*"))


@pytest.mark.postgres
def test_a_database_stores_artifacts_are_found_from_any_directory_and_their_place_is_said(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABTRACK_ARTIFACTS", raising=False)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lt.set_store(postgres_url)
        with lt.start_run("art") as run:
            run.log_text("hello", "note.txt")
        lt.flush()
    assert any("kept on this machine only" in str(w.message) and "LABTRACK_ARTIFACTS" in str(w.message)
               for w in caught)
    assert not (tmp_path / "one" / ".labtrack").exists()
    from labtrack.verbs import tracking

    tracking.reset()
    monkeypatch.chdir(tmp_path / "two")
    lt.set_store(postgres_url)
    with pytest.warns(RuntimeWarning, match="kept on this machine only"):
        assert lt.get_run(run.id).open_artifact("note.txt").read() == b"hello"
    assert Path(os.environ["XDG_DATA_HOME"], "labtrack", "artifacts").is_dir()


