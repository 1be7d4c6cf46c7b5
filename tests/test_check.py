"""`labtrack check RUN`: can this machine reproduce a run? Verdicts from a real snapshot of this machine,
edited to simulate each case, and the command end to end against a real store whose recorded snapshot
is edited in the SQLite file."""

from __future__ import annotations

import copy
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import labtrack as lt
from labtrack.core.checks import LEVELS, check_reproducibility

Snapshot = dict[str, Any]


@pytest.fixture
def recorded() -> Snapshot:
    """The snapshot a run on this machine records."""
    return copy.deepcopy(lt.capture_environment().to_dict())


def dists(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    return snapshot["packages"]["distributions"]


def set_package(snapshot: Snapshot, name: str, version: str | None) -> None:
    if version is None:
        dists(snapshot).pop(name, None)
    else:
        dists(snapshot)[name] = {"version": version, "source": "index"}


def set_gpus(snapshot: Snapshot, count: int, name: str = "NVIDIA A100-SXM4-80GB", *, driver: str = "535.104.05",
             cuda_driver: str = "12.2") -> None:
    snapshot["gpu"] = {
        "count": count,
        "devices": [{"index": i, "name": name, "compute_capability": "8.0"} for i in range(count)],
        "driver_version": driver,
        "cuda_driver_version": cuda_driver,
    }


def set_torch(snapshot: Snapshot, version: str, cuda: str | None, cudnn: str | None = "8.9.2") -> None:
    snapshot["frameworks"]["torch"] = {"version": version, "module": "torch", "imported": True, "cuda": cuda,
                                       "cudnn": cudnn, "arch_list": ["sm_70", "sm_80", "sm_90"]}
    set_package(snapshot, "torch", version)


def no_gpus(snapshot: Snapshot) -> None:
    snapshot["gpu"] = {"count": 0, "devices": [], "reason": "no NVIDIA driver: kernel module not loaded"}


def verdict_for(recorded: Snapshot, edit_recorded: Callable[[Snapshot], None],
                edit_current: Callable[[Snapshot], None]) -> Any:
    current = copy.deepcopy(recorded)
    edit_recorded(recorded)
    edit_current(current)
    return check_reproducibility(recorded, current)


def nothing(snapshot: Snapshot) -> None:
    pass


def all_of(*edits: Callable[[Snapshot], None]) -> Callable[[Snapshot], None]:
    def edit(snapshot: Snapshot) -> None:
        for one in edits:
            one(snapshot)

    return edit


# (id, edit the recorded snapshot, edit the current one, expected verdict, words the worst reason must contain)
CASES: list[tuple[str, Callable[[Snapshot], None], Callable[[Snapshot], None], str, tuple[str, ...]]] = [
    ("unchanged machine", nothing, nothing, "identical", ()),
    ("kernel upgraded", nothing, lambda s: s["system"].update(kernel="5.15.0-105-generic"), "compatible",
     ("kernel", "5.15.0-105-generic")),
    ("another package's patch release", lambda s: set_package(s, "tqdm", "4.66.1"),
     lambda s: set_package(s, "tqdm", "4.66.2"), "compatible", ("tqdm", "4.66.1", "4.66.2")),
    ("numpy minor bump", lambda s: set_package(s, "numpy", "1.25.2"), lambda s: set_package(s, "numpy", "1.26.4"),
     "at-risk", ("numpy", "1.25.2", "1.26.4")),
    ("ordinary package missing", lambda s: set_package(s, "tqdm", "4.66.1"), lambda s: set_package(s, "tqdm", None),
     "at-risk", ("tqdm", "not installed")),
    ("python minor version", lambda s: s["packages"]["python"].update(version="3.10.13"), nothing, "at-risk",
     ("Python", "3.10.13")),
    ("GPU model A100 to H100", lambda s: set_gpus(s, 1, "NVIDIA A100-SXM4-80GB"),
     lambda s: set_gpus(s, 1, "NVIDIA H100 80GB HBM3"), "at-risk", ("A100", "H100")),
    ("torch CUDA build 11.8 to 12.1",
     all_of(lambda s: set_gpus(s, 1), lambda s: set_torch(s, "2.1.0+cu118", "11.8")),
     all_of(lambda s: set_gpus(s, 1), lambda s: set_torch(s, "2.1.0+cu121", "12.1")), "at-risk", ("torch", "11.8", "12.1")),
    ("run used 2 GPUs, none here", lambda s: set_gpus(s, 2), no_gpus, "incompatible", ("2 GPU", "none")),
    ("driver too old for the recorded CUDA build",
     all_of(lambda s: set_gpus(s, 1, cuda_driver="12.2"), lambda s: set_torch(s, "2.1.0+cu121", "12.1")),
     all_of(lambda s: set_gpus(s, 1, driver="520.61.05", cuda_driver="11.8"),
            lambda s: set_torch(s, "2.1.0+cu121", "12.1")),
     "incompatible", ("torch", "12.1", "11.8")),
    ("torch major 1 to 2", lambda s: set_package(s, "torch", "1.13.1"), lambda s: set_package(s, "torch", "2.1.0"),
     "incompatible", ("torch", "1.13.1", "2.1.0")),
    ("numerical package missing here", lambda s: set_package(s, "scipy", "1.11.4"),
     lambda s: set_package(s, "scipy", None), "incompatible", ("scipy", "1.11.4", "not installed")),
    ("python 2 to 3", lambda s: s["packages"]["python"].update(version="2.7.18"), nothing, "incompatible",
     ("Python", "2.7.18")),
]


@pytest.mark.parametrize(("edit_recorded", "edit_current", "expected", "words"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict_from_an_edited_real_snapshot(recorded: Snapshot, edit_recorded: Callable[[Snapshot], None],
                                              edit_current: Callable[[Snapshot], None], expected: str,
                                              words: tuple[str, ...]) -> None:
    verdict = verdict_for(recorded, edit_recorded, edit_current)
    assert verdict.level == expected, verdict.to_dict()
    assert verdict.exit_code == {"identical": 0, "compatible": 0, "at-risk": 1, "incompatible": 2}[expected]
    if expected == "identical":
        assert verdict.reasons == []
        return
    worst = verdict.reasons[0]
    assert worst.level == expected
    for word in words:
        assert word in worst.message, (word, worst.message)


def test_reasons_are_ranked_worst_first(recorded: Snapshot) -> None:
    def current(s: Snapshot) -> None:
        s["system"]["kernel"] = "5.15.0-105-generic"  # compatible
        set_package(s, "numpy", "1.26.4")  # at-risk
        no_gpus(s)  # incompatible

    verdict = verdict_for(recorded, all_of(lambda s: set_gpus(s, 1), lambda s: set_package(s, "numpy", "1.25.2")),
                          current)
    levels = [r.level for r in verdict.reasons]
    assert verdict.level == "incompatible"
    assert {"compatible", "at-risk", "incompatible"} <= set(levels)
    assert levels == sorted(levels, key=LEVELS.index, reverse=True)
    assert [r["level"] for r in verdict.to_dict()["reasons"]] == levels


def test_verdict_is_the_worst_reason(recorded: Snapshot) -> None:
    verdict = verdict_for(recorded, lambda s: set_package(s, "numpy", "1.25.2"),
                          all_of(lambda s: set_package(s, "numpy", "1.26.4"),
                                 lambda s: s["system"].update(kernel="5.15.0-105-generic")))
    assert verdict.level == "at-risk"
    assert [r.level for r in verdict.reasons] == ["at-risk", "compatible"]


# -- the command, end to end ---------------------------------------------------------------------------


def check_cli(run_id: str, python_env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labtrack", "check", run_id, *extra], capture_output=True,
                          text=True, env={**python_env, "COLUMNS": "200"}, timeout=120)


def edit_stored_snapshot(store_dir: Path, run_id: str, edit: Callable[[Snapshot], None]) -> None:
    lt.flush()  # this process's runs are in the store before it is edited behind labtrack's back
    with sqlite3.connect(store_dir / "labtrack.db") as db:
        (fingerprint,) = db.execute("SELECT env_fingerprint FROM runs WHERE id = ?", (run_id,)).fetchone()
        (text,) = db.execute("SELECT snapshot FROM environments WHERE fingerprint = ?", (fingerprint,)).fetchone()
        snapshot = json.loads(text)
        edit(snapshot)
        db.execute("UPDATE environments SET snapshot = ? WHERE fingerprint = ?", (json.dumps(snapshot), fingerprint))


def test_check_command_verdicts_follow_the_stored_snapshot(isolated_labtrack: Path, python_env: dict[str, str]) -> None:
    import numpy  # noqa: F401 - the run uses numpy: a change of it matters (one it never imported would not)

    with lt.start_run("check-me") as run:
        run.log_metric("acc", 0.9)
    store_dir = isolated_labtrack / ".labtrack"

    same = check_cli(run.id[:8], python_env)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "identical" in same.stdout

    numpy_now = dists(lt.capture_environment().to_dict())["numpy"]["version"]  # numpy is a dev dependency
    major, minor = numpy_now.split(".")[:2]
    recorded_numpy = f"{major}.{int(minor) + 1}.0"  # the run used another minor release than the one here
    edit_stored_snapshot(store_dir, run.id, lambda s: set_package(s, "numpy", recorded_numpy))
    risky = check_cli(run.id, python_env)
    assert risky.returncode == 1, risky.stdout + risky.stderr
    assert "at-risk" in risky.stdout
    assert f"numpy {recorded_numpy}" in risky.stdout

    edit_stored_snapshot(store_dir, run.id, lambda s: set_gpus(s, 1))
    gpu = check_cli(run.id, python_env, "--json")
    assert gpu.returncode == 2, gpu.stdout + gpu.stderr
    body = json.loads(gpu.stdout)
    assert set(body) == {"level", "exit_code", "reasons"}
    assert body["level"] == "incompatible" and body["exit_code"] == 2
    assert all(set(r) == {"level", "message"} for r in body["reasons"])
    assert body["reasons"][0]["level"] == "incompatible"
    assert "GPU" in body["reasons"][0]["message"] and "A100" in body["reasons"][0]["message"]
    assert any("numpy" in r["message"] and r["level"] == "at-risk" for r in body["reasons"])


def test_check_of_an_unknown_run_is_a_clean_error(isolated_labtrack: Path, python_env: dict[str, str]) -> None:
    with lt.start_run("check-me"):
        pass
    done = check_cli("0123456789abcdef", python_env)
    assert done.returncode not in (0, 1)
    assert "Traceback" not in done.stderr
    assert "0123456789abcdef" in done.stdout + done.stderr
