"""The git section: real repositories built with the git binary in temporary directories."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from env_helpers import git, git_env, make_repo  # noqa: F401  (git_env is a fixture)

from labtrack.env import CaptureOptions, capture, gitcache
from labtrack.env import git as git_gatherer

pytestmark = pytest.mark.usefixtures("git_env")

GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def capture_git(repo: Path, **kw: object) -> tuple[dict, str | None]:
    captured = capture(CaptureOptions(sections=frozenset({"git"}), cwd=str(repo), **kw))  # type: ignore[arg-type]
    return captured.environment.snapshot["git"], captured.git_diff


def test_clean_repo_records_commit_and_branch_and_no_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    section, diff = capture_git(repo)
    assert section["repo"] is True
    assert section["commit"] == git(repo, "rev-parse", "HEAD")
    assert section["branch"] == "main"
    assert section["detached"] is False
    assert section["dirty"] is False
    assert section["diff_sha256"] is None and section["diff_bytes"] == 0
    assert section["untracked"] == [] and section["untracked_count"] == 0
    assert diff is None


def test_dirty_repo_records_the_diff_against_head_and_its_hash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": "lr = 0.1\n", "staged.py": "a = 1\n"})
    (repo / "train.py").write_text("lr = 0.01\n")
    (repo / "staged.py").write_text("a = 2\n")
    git(repo, "add", "staged.py")  # staged and unstaged changes both count: the diff is against HEAD
    section, diff = capture_git(repo)
    raw = subprocess.run(["git", "diff", "HEAD", "--no-color"], cwd=repo, capture_output=True, check=True).stdout
    assert section["dirty"] is True
    assert section["changed_files"] == 2
    assert section["diff_sha256"] == hashlib.sha256(raw).hexdigest()
    assert section["diff_bytes"] == len(raw)
    assert diff is not None and "+lr = 0.01" in diff and "+a = 2" in diff
    assert section["diff_truncated"] is False


def test_capture_from_a_subdirectory_finds_the_repository_root(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"pkg/mod.py": "x = 1\n"})
    (repo / "pkg" / "mod.py").write_text("x = 2\n")
    section, diff = capture_git(repo / "pkg")
    assert section["root"] == str(repo)
    assert diff is not None and "pkg/mod.py" in diff


def test_untracked_files_are_listed_with_size_and_hash_but_ignored_ones_are_not(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".gitignore": "*.log\ncache/\n"})
    (repo / "notes.txt").write_bytes(b"some notes\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "data.csv").write_bytes(b"a,b\n1,2\n")
    (repo / "run.log").write_text("ignored\n")
    (repo / "cache").mkdir()
    (repo / "cache" / "x.bin").write_bytes(b"ignored")
    section, diff = capture_git(repo)
    assert section["dirty"] is False  # untracked files do not make the tree dirty; they are listed
    assert diff is None
    assert section["untracked"] == [
        {"path": "notes.txt", "size": 11, "sha256": hashlib.sha256(b"some notes\n").hexdigest()},
        {"path": "sub/data.csv", "size": 8, "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest()},
    ]
    assert section["untracked_count"] == 2


def test_untracked_listing_is_capped_but_the_count_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "r")
    for i in range(5):
        (repo / f"u{i}.txt").write_text(str(i))
    monkeypatch.setattr(git_gatherer, "UNTRACKED_MAX_FILES", 3)
    section, _ = capture_git(repo)
    assert [u["path"] for u in section["untracked"]] == ["u0.txt", "u1.txt", "u2.txt"]
    assert section["untracked_count"] == 5
    assert section["untracked_truncated"] is True


def test_remote_url_is_recorded_without_credentials(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "remote", "add", "origin", f"https://alice:{GH_TOKEN}@github.com/acme/model.git")
    section, _ = capture_git(repo)
    assert section["remote_name"] == "origin"
    assert section["remote_url"] == "https://github.com/acme/model.git"
    assert GH_TOKEN not in json.dumps(section) and "alice" not in json.dumps(section)


def test_detached_head_has_no_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    section, _ = capture_git(repo)
    assert section["branch"] is None
    assert section["detached"] is True
    assert section["commit"] == head


def test_a_directory_outside_any_repository_records_repo_false(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    section, diff = capture_git(plain)
    assert section == {"repo": False}
    assert diff is None


def test_binary_files_are_listed_not_embedded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"weights.bin": bytes(range(256)) * 4, "a.py": "x = 1\n"})
    (repo / "weights.bin").write_bytes(bytes(reversed(range(256))) * 4)
    (repo / "a.py").write_text("x = 2\n")
    section, diff = capture_git(repo)
    assert section["binary_files"] == ["weights.bin"]
    assert diff is not None and "Binary files a/weights.bin and b/weights.bin differ" in diff
    assert "\x00" not in diff and "+x = 2" in diff


def test_a_diff_over_the_cap_is_truncated_at_a_line_with_a_note(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"big.txt": "start\n"})
    (repo / "big.txt").write_text("".join(f"line number {i}\n" for i in range(2000)))
    section, diff = capture_git(repo, git_diff_max_bytes=1000)
    raw = subprocess.run(["git", "diff", "HEAD"], cwd=repo, capture_output=True, check=True).stdout
    assert section["diff_truncated"] is True
    assert section["diff_bytes"] == len(raw) > 1000
    assert section["diff_sha256"] == hashlib.sha256(raw).hexdigest()  # the hash covers the whole diff
    assert diff is not None
    body, _, note = diff.partition("\n[labtrack: diff truncated:")
    assert note, "the truncation is noted"
    assert len(body.encode()) <= 1000
    assert body.endswith("\n") or body.splitlines()[-1].startswith("+line number")
    assert raw.decode().startswith(body)


def test_secrets_in_the_diff_are_redacted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"config.py": "x = 1\n"})
    (repo / "config.py").write_text(f'x = 1\nGITHUB = "{GH_TOKEN}"\ndb_password = "hunter2"\n')
    _, diff = capture_git(repo)
    assert diff is not None
    assert GH_TOKEN not in diff and "hunter2" not in diff
    assert "[REDACTED]" in diff


def test_unborn_branch_diffs_against_the_empty_tree(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "first.py").write_text("print('hi')\n")
    git(repo, "add", "first.py")
    section, diff = capture_git(repo)
    assert section["commit"] is None
    assert section["branch"] == "main"
    assert diff is not None and "+print('hi')" in diff


def test_submodule_commits_are_recorded(tmp_path: Path) -> None:
    lib = make_repo(tmp_path / "lib", {"lib.py": "v = 1\n"})
    repo = make_repo(tmp_path / "r")
    git(repo, "submodule", "add", "-q", str(lib), "vendor/lib")
    git(repo, "commit", "-qm", "add submodule")
    section, _ = capture_git(repo)
    assert section["submodules"] == [{"path": "vendor/lib", "commit": git(lib, "rev-parse", "HEAD"), "state": "ok"}]


def test_missing_git_executable_records_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "r")
    monkeypatch.setattr(git_gatherer, "_git_path", [])
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    section, diff = capture_git(repo)
    assert "git executable" in section["error"]
    assert diff is None


@pytest.fixture
def cache_without_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # Files written by a test are seconds old at most; git's racy-timestamp window would refuse to cache.
    monkeypatch.setattr(gitcache, "RACY_SECONDS", 0.0)


@pytest.mark.usefixtures("cache_without_racy_window")
def test_repeat_capture_reuses_the_git_result_until_a_file_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n", ".gitignore": ".venv/\n"})
    (repo / ".venv").mkdir()
    (repo / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    first, _ = capture_git(repo)
    assert gitcache.lookup(str(repo), 1_000_000) is not None, "an unchanged tree is served from the cache"
    again, _ = capture_git(repo)
    assert again == first

    (repo / ".venv" / "ignored.py").write_text("noise")  # ignored: the cached answer is still right
    assert gitcache.lookup(str(repo), 1_000_000) is not None

    (repo / "a.py").write_text("x = 2\n")  # same size, new content
    changed, diff = capture_git(repo)
    assert changed["dirty"] is True and diff is not None and "+x = 2" in diff

    (repo / "new_dir").mkdir()
    (repo / "new_dir" / "n.txt").write_text("n")
    with_untracked, _ = capture_git(repo)
    assert [u["path"] for u in with_untracked["untracked"]] == ["new_dir/n.txt"]

    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    committed, diff = capture_git(repo)
    assert committed["commit"] == git(repo, "rev-parse", "HEAD") != first["commit"]
    assert committed["dirty"] is False and diff is None


@pytest.mark.usefixtures("cache_without_racy_window")
def test_a_force_added_file_inside_an_ignored_directory_is_still_watched(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".gitignore": "build/\n"})
    (repo / "build").mkdir()
    (repo / "build" / "config.json").write_text('{"a": 1}')
    git(repo, "add", "-f", "build/config.json")
    git(repo, "commit", "-qm", "force-add")
    clean, _ = capture_git(repo)
    assert clean["dirty"] is False
    (repo / "build" / "config.json").write_text('{"a": 2}')
    changed, diff = capture_git(repo)
    assert changed["dirty"] is True and diff is not None and '+{"a": 2}' in diff


def test_a_just_modified_tree_is_not_cached(tmp_path: Path) -> None:
    """Timestamps are coarse: a file written within the racy window could change again unseen."""
    repo = make_repo(tmp_path / "r")
    (repo / "README.md").write_text("changed\n")
    capture_git(repo)
    assert gitcache.lookup(str(repo), 1_000_000) is None
    assert os.path.exists(repo / ".git")


def test_stores_virtualenvs_and_caches_are_not_inputs_wherever_they_are() -> None:
    from labtrack.env.untracked import skip_reasons

    paths = ["train.py", "data/x.csv", ".labtrack/labtrack.db", ".labtrack/spool/h-1-ab/points.00000000",
             "runs/db/labtrack.db", "runs/db/artifacts/ab/cdef", "mlruns/0/meta.yaml", "labtrack.db-wal",
             "spool/h-1/points.0", "artifacts/ab/cd", "notes/spool.md",
             "tools/env/pyvenv.cfg", "tools/env/lib/python3.11/site-packages/x.py", ".venv/bin/python",
             "src/__pycache__/m.cpython-311.pyc", "pkg.egg-info/PKG-INFO", ".pytest_cache/v/x"]
    paths.append("labtrack.db")  # a store at the root of the work tree: only its own files are the store's
    assert skip_reasons(paths) == {
        ".labtrack/labtrack.db": "store", ".labtrack/spool/h-1-ab/points.00000000": "store",
        "runs/db/labtrack.db": "store", "runs/db/artifacts/ab/cdef": "store", "mlruns/0/meta.yaml": "store",
        "labtrack.db-wal": "store", "labtrack.db": "store", "spool/h-1/points.0": "store", "artifacts/ab/cd": "store",
        "tools/env/pyvenv.cfg": "virtualenv", "tools/env/lib/python3.11/site-packages/x.py": "virtualenv",
        ".venv/bin/python": "virtualenv",
        "src/__pycache__/m.cpython-311.pyc": "cache", "pkg.egg-info/PKG-INFO": "cache", ".pytest_cache/v/x": "cache",
    }
