"""Artifacts: files and directories stored by content (sha256), listed, opened and downloaded back."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import labtrack as lt

BLOBS = Path(".labtrack", "artifacts", "sha256")


def blob_files() -> list[Path]:
    lt.flush()  # what this process logged is in the store before its files are listed
    return sorted(p for p in BLOBS.rglob("*") if p.is_file()) if BLOBS.exists() else []


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)), "sub/deeper/c.txt": b"gamma\n", "empty.txt": b""}
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def contents(run: lt.Run) -> dict[str, bytes]:
    out = {}
    for item in run.artifacts:
        with run.open_artifact(item.path) as handle:
            out[item.path] = handle.read()
    return out


def test_log_artifact_stores_a_file_under_its_name(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"\x00weights\xff" * 1000)
    with lt.start_run("art") as run:
        run.log_artifact(model)
        lt.log_artifact(str(model), artifact_path="checkpoints/best")
    got = lt.get_run(run.id)
    assert contents(got) == {"model.pt": model.read_bytes(), "checkpoints/best/model.pt": model.read_bytes()}
    item = got.artifacts[0]
    assert item.size == model.stat().st_size
    assert item.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert len(blob_files()) == 1  # one content, stored once


def test_log_artifact_of_a_directory_keeps_its_name_and_everything_in_it(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "outputs")
    with lt.start_run("art") as run:
        run.log_artifact(tmp_path / "outputs")
        run.log_artifact(tmp_path / "outputs", artifact_path="copy")
    got = contents(lt.get_run(run.id))
    expected = {f"outputs/{k}": v for k, v in files.items()} | {f"copy/outputs/{k}": v for k, v in files.items()}
    assert got == expected


def test_log_artifacts_stores_the_contents_of_a_directory(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "outputs")
    with lt.start_run("art") as run:
        lt.log_artifacts(tmp_path / "outputs")
        run.log_artifacts(tmp_path / "outputs", artifact_path="x/y")
    got = contents(lt.get_run(run.id))
    assert got == files | {f"x/y/{k}": v for k, v in files.items()}


def test_identical_content_from_two_runs_is_stored_once(tmp_path: Path) -> None:
    (tmp_path / "one.bin").write_bytes(b"same bytes" * 100)
    (tmp_path / "two.bin").write_bytes(b"same bytes" * 100)
    with lt.start_run("art") as a:
        a.log_artifact(tmp_path / "one.bin")
        a.log_text("same bytes" * 100, "as-text.bin")
    with lt.start_run("art") as b:
        b.log_artifact(tmp_path / "two.bin")
    assert len(blob_files()) == 1
    assert contents(lt.get_run(a.id)) == {"one.bin": b"same bytes" * 100, "as-text.bin": b"same bytes" * 100}
    assert contents(lt.get_run(b.id)) == {"two.bin": b"same bytes" * 100}
    (tmp_path / "three.bin").write_bytes(b"other")
    with lt.start_run("art") as c:
        c.log_artifact(tmp_path / "three.bin")
    assert len(blob_files()) == 2


def test_a_symlink_pointing_outside_a_logged_directory_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    outputs = tmp_path / "outputs"
    make_tree(outputs)
    os.symlink(secret, outputs / "sub" / "leak.txt")
    with lt.start_run("art") as run:
        with pytest.raises(lt.InvalidInput) as caught:
            run.log_artifact(outputs)
        assert "leak.txt" in str(caught.value)
        with pytest.raises(lt.InvalidInput):
            run.log_artifacts(outputs)
    assert lt.get_run(run.id).artifacts == []
    assert blob_files() == []


def test_a_symlinked_directory_pointing_outside_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_tree(elsewhere)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "ok.txt").write_text("ok")
    os.symlink(elsewhere, outputs / "linked", target_is_directory=True)
    with lt.start_run("art") as run:
        with pytest.raises(lt.InvalidInput):
            run.log_artifacts(outputs)
    assert lt.get_run(run.id).artifacts == []
    assert blob_files() == []


def test_a_symlink_pointing_inside_the_logged_directory_is_stored(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    files = make_tree(outputs)
    os.symlink(outputs / "a.txt", outputs / "alias.txt")
    os.symlink("deeper/c.txt", outputs / "sub" / "relative-alias.txt")
    with lt.start_run("art") as run:
        run.log_artifacts(outputs)
    got = contents(lt.get_run(run.id))
    assert got == files | {"alias.txt": b"alpha", "sub/relative-alias.txt": b"gamma\n"}


def test_download_artifacts_round_trips_the_tree(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "outputs")
    with lt.start_run("art") as run:
        run.log_artifacts(tmp_path / "outputs", artifact_path="out")
        run.log_text("note", "top.txt")
    got = lt.get_run(run.id)
    written = got.download_artifacts(tmp_path / "download")
    assert {p.relative_to(tmp_path / "download").as_posix() for p in written} == {f"out/{k}" for k in files} | {
        "top.txt"}
    for name, data in files.items():
        assert (tmp_path / "download" / "out" / name).read_bytes() == data
    only = got.download_artifacts(tmp_path / "partial", path="out/sub")
    assert sorted(p.relative_to(tmp_path / "partial").as_posix() for p in only) == [
        "out/sub/b.bin", "out/sub/deeper/c.txt"]


def test_log_text_stores_utf8_text() -> None:
    with lt.start_run("art") as run:
        lt.log_text("héllo wörld ✓\n", "notes/readme.md")
    with lt.get_run(run.id).open_artifact("notes/readme.md") as handle:
        assert handle.read().decode("utf-8") == "héllo wörld ✓\n"


def test_log_dict_stores_json() -> None:
    config = {"model": {"layers": [64, 32], "dropout": 0.1}, "name": "ünïcode", "flag": True, "none": None}
    with lt.start_run("art") as run:
        lt.log_dict(config, "config.json")
    with lt.get_run(run.id).open_artifact("config.json") as handle:
        assert json.loads(handle.read()) == config


def test_log_dict_as_yaml_needs_pyyaml() -> None:
    config = {"model": {"layers": [64, 32]}, "lr": 0.01}
    try:
        import yaml
    except ImportError:
        with lt.start_run("art") as run:
            with pytest.raises(lt.InvalidInput, match="PyYAML"):
                run.log_dict(config, "config.yaml")
        assert lt.get_run(run.id).artifacts == []
        return
    with lt.start_run("art") as run:
        run.log_dict(config, "config.yaml")
        run.log_dict(config, "config.yml")
    got = lt.get_run(run.id)
    for name in ("config.yaml", "config.yml"):
        with got.open_artifact(name) as handle:
            assert yaml.safe_load(handle.read()) == config


def test_open_artifact_of_an_unknown_path_raises_invalid_input() -> None:
    with lt.start_run("art") as run:
        run.log_text("x", "there.txt")
    with pytest.raises(lt.InvalidInput, match=r"missing\.txt"):
        lt.get_run(run.id).open_artifact("missing.txt")


def test_logging_the_same_path_again_replaces_the_content() -> None:
    with lt.start_run("art") as run:
        run.log_text("first", "result.txt")
        run.log_text("second", "result.txt")
    got = lt.get_run(run.id)
    assert [a.path for a in got.artifacts] == ["result.txt"]
    assert got.open_artifact("result.txt").read() == b"second"


def test_a_stored_blob_cannot_be_changed_through_the_original_file(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"v1")
    with lt.start_run("art") as run:
        run.log_artifact(source)
    source.write_bytes(b"v2 changed later")
    assert lt.get_run(run.id).open_artifact("weights.bin").read() == b"v1"


def test_a_fifo_or_other_special_file_is_skipped_in_a_directory_and_refused_alone(tmp_path: Path) -> None:
    import os
    import threading

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    os.mkfifo(folder / "pipe")  # opening it to read would wait for a writer forever
    done = threading.Event()

    def log() -> None:
        with lt.start_run("fifo") as run:
            run.log_artifacts(str(folder))
            with pytest.raises(lt.InvalidInput, match="not a regular file") as caught:
                run.log_artifact(str(folder / "pipe"))
            assert caught.value.field == "local_path"
        done.set()
        holder.append(run.id)

    holder: list[str] = []
    thread = threading.Thread(target=log, daemon=True)
    thread.start()
    assert done.wait(20), "log_artifacts blocked on a FIFO"
    assert [a.path for a in lt.get_run(holder[0]).artifacts] == ["weights.bin"]


def test_download_refuses_a_file_and_a_directory_of_one_name_before_writing_anything(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "model").mkdir(parents=True)
    (source / "model" / "config.json").write_text("{}")
    single = tmp_path / "model"
    single.write_text("weights")
    with lt.start_run("clash") as run:
        run.log_artifact(str(single))  # the artifact "model"
        run.log_artifacts(str(source))  # and "model/config.json"
    target = tmp_path / "dest"
    with pytest.raises(lt.InvalidInput, match="'model' is both a file and a directory") as caught:
        lt.get_run(run.id).download_artifacts(str(target))
    assert caught.value.field == "path"
    assert not target.exists() or list(target.iterdir()) == []  # nothing half-written
    written = lt.get_run(run.id).download_artifacts(str(target), path="model/config.json")
    assert [p.read_text() for p in written] == ["{}"]


def test_download_refuses_a_path_too_long_for_the_file_system_before_writing(tmp_path: Path) -> None:
    with lt.start_run("long") as run:  # an artifact path of ~6,000 characters: stored fine
        run.log_text("x", "/".join(["d" * 200] * 30) + "/f.txt")
        run.log_text("y", "short.txt")
    target = tmp_path / "dest"
    with pytest.raises(lt.InvalidInput, match="too long") as caught:
        lt.get_run(run.id).download_artifacts(str(target))
    assert caught.value.field == "path"
    assert not target.exists() or list(target.iterdir()) == []


FULL_DISK_CHILD = r"""
import os, resource, signal, sys, glob
import labtrack as lt
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
lt.set_store(sys.argv[1])
big = os.path.join(sys.argv[2], "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(4 << 20))
with lt.start_run("full") as run:
    run.log_metric("before", 1.0)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    try:
        run.log_artifact(big)
        print("logged")
    except lt.InvalidInput as exc:
        print("refused:", exc.field, "|", exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    run.log_metric("after", 2.0)
leftovers = [p for p in glob.glob(os.path.join(os.environ["LABTRACK_SPOOL_DIR"], "**", "*"), recursive=True)
             if os.path.basename(p).startswith(("in-", "blob-"))]
print("leftovers:", leftovers)
print("run:", run.id)
"""


def test_a_write_that_fails_for_want_of_space_leaves_no_temp_file_and_loses_nothing(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(FULL_DISK_CHILD)
    store = str(tmp_path / "store")
    done = subprocess.run([sys.executable, str(script), store, str(tmp_path)], env=python_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: local_path |") and "could not be copied" in lines[0], lines
    assert lines[1] == "leftovers: []"
    lt.set_store(store)
    run = lt.get_run(lines[2].removeprefix("run: "))
    assert run.status is lt.RunStatus.FINISHED and run.metrics == {"before": 1.0, "after": 2.0}
    # Only the console log (what the child printed, the refusal included): the file that did not fit is not there.
    assert [a.path for a in run.artifacts] == ["labtrack/console.log"]
    assert "refused: local_path" in run.open_artifact("labtrack/console.log").read().decode()


def test_stale_temporary_blobs_are_removed_when_the_store_opens(tmp_path: Path) -> None:
    import os
    import time

    store = tmp_path / "store"
    lt.set_store(str(store))
    with lt.start_run("tmp"):
        pass
    tmp = store / "artifacts" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stale, fresh = tmp / "blob-stale", tmp / "blob-fresh"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    from labtrack.verbs import tracking

    tracking.reset()
    lt.set_store(str(store))
    lt.search_runs("tmp")  # opens the store
    assert not stale.exists() and fresh.exists()  # a fresh one may be another process's write in progress
