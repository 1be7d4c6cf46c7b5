"""`labtrack doctor`: the health of the current environment.

Dependency conflicts are found in real broken environments: throw-away virtualenvs (made with uv) with
labtrack installed and then a distribution pinned below what another one requires (installed with
``--no-deps``, as a careless ``pip install`` would leave it). CUDA consistency is checked on real snapshots
of this machine edited to carry a GPU and a framework build; invalid settings through the environment."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import labtrack as lt
from labtrack.core.checks import doctor_findings

REPO = Path(__file__).resolve().parent.parent
# rich requires pygments>=2.13.0,<3; 2.12.0 (a pure-Python wheel) breaks that pin
BAD_PIN = "pygments==2.12.0"


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        pytest.fail("uv is not installed (pip install -e '.[dev]')")
    return found


def make_venv(path: Path, *, broken: bool) -> Path:
    """A virtualenv with this labtrack checkout installed (editable) and, if ``broken``, a conflicting pin."""
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), "-e", str(REPO)], check=True,
                   capture_output=True, timeout=300)
    if broken:
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", BAD_PIN], check=True,
                       capture_output=True, timeout=300)
    return python


@pytest.fixture(scope="module")
def broken_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_venv(tmp_path_factory.mktemp("broken") / "venv", broken=True)


@pytest.fixture(scope="module")
def healthy_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_venv(tmp_path_factory.mktemp("healthy") / "venv", broken=False)


def installed_version(python: Path, name: str) -> str:
    return subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no labtrack settings, an empty cache, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABTRACK_", "VIRTUAL_ENV", "PYTHON")) or k == "PYTHONUNBUFFERED"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["COLUMNS"] = "250"
    env.update(extra)
    return env


def doctor(python: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "labtrack", "doctor", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line(text: str) -> str:
    return " ".join(text.split())


# -- dependency conflicts in real environments -----------------------------------------------------


def test_doctor_reports_a_broken_pin_like_pip_check(broken_python: Path, isolated_labtrack: Path,
                                                   tmp_path: Path) -> None:
    rich, pygments = installed_version(broken_python, "rich"), installed_version(broken_python, "pygments")
    assert pygments == "2.12.0"
    done = doctor(broken_python, isolated_labtrack, clean_env(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    text = one_line(done.stdout)
    assert "error" in text
    assert f"rich {rich} requires pygments<3.0.0,>=2.13.0, but" in text
    assert "2.12.0 is installed" in text.split(f"rich {rich} requires", 1)[1]
    assert "pygments 2.12.0" in text.lower()


def test_doctor_json_carries_the_conflict(broken_python: Path, isolated_labtrack: Path, tmp_path: Path) -> None:
    done = doctor(broken_python, isolated_labtrack, clean_env(tmp_path), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    conflicts = [f for f in report["findings"] if f["topic"] == "dependencies"]
    assert len(conflicts) == 1, report
    assert conflicts[0]["level"] == "error"
    assert conflicts[0]["message"].startswith("rich ")
    assert "requires pygments<3.0.0,>=2.13.0" in conflicts[0]["message"]
    assert conflicts[0]["message"].lower().endswith("pygments 2.12.0 is installed")


def test_doctor_answers_again_from_its_cache(broken_python: Path, isolated_labtrack: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    first = doctor(broken_python, isolated_labtrack, env, "--json")
    assert list((tmp_path / "cache" / "labtrack" / "conflicts").glob("*.json")), "no cache written"
    second = doctor(broken_python, isolated_labtrack, env, "--json")
    assert second.returncode == first.returncode == 1
    assert json.loads(second.stdout)["findings"] == json.loads(first.stdout)["findings"]


def test_fixing_the_pin_makes_doctor_healthy_again(tmp_path: Path, isolated_labtrack: Path) -> None:
    """The disk cache is keyed by the installed set: a repaired environment is not judged on stale results."""
    python = make_venv(tmp_path / "venv", broken=True)
    env = clean_env(tmp_path)
    assert doctor(python, isolated_labtrack, env).returncode == 1
    subprocess.run([_uv(), "pip", "install", "--quiet", "--python", str(python), "pygments>=2.13,<3"], check=True,
                   capture_output=True, timeout=300)
    done = doctor(python, isolated_labtrack, env, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["findings"] == []


def test_doctor_is_healthy_without_the_bad_pin(healthy_python: Path, isolated_labtrack: Path,
                                               tmp_path: Path) -> None:
    done = doctor(healthy_python, isolated_labtrack, clean_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no dependency conflicts" in done.stdout
    report = json.loads(doctor(healthy_python, isolated_labtrack, clean_env(tmp_path), "--json").stdout)
    assert report["ok"] is True
    assert [f for f in report["findings"] if f["level"] == "error"] == []


TRACKED = """
import labtrack as lt
with lt.start_run("broken-env") as run:
    run.log_metric("x", 1.0)
print(run.id)
"""


def test_runs_record_the_conflicts_of_their_environment(broken_python: Path, isolated_labtrack: Path,
                                                        tmp_path: Path) -> None:
    """A run shows that it ran in a broken environment, even when nothing had computed the conflicts before
    (a fresh cache): the first run may find them in the background, the next ones must carry them."""
    script = isolated_labtrack / "train.py"
    script.write_text(TRACKED)
    env = clean_env(tmp_path, LABTRACK_STORE=str(tmp_path / "store"))
    ids = []
    for _ in range(2):
        done = subprocess.run([str(broken_python), str(script)], cwd=isolated_labtrack, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip().splitlines()[-1])
    shown = subprocess.run([str(broken_python), "-m", "labtrack", "show", ids[-1], "--json"], cwd=isolated_labtrack,
                           env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    conflicts = json.loads(shown.stdout)["environment"].get("conflicts")
    assert conflicts, "the run in a broken environment recorded no dependency conflicts"
    assert any("requires pygments<3.0.0,>=2.13.0" in c["message"] for c in conflicts)


def test_a_run_records_conflicts_that_doctor_already_found(broken_python: Path, isolated_labtrack: Path,
                                                          tmp_path: Path) -> None:
    script = isolated_labtrack / "train.py"
    script.write_text(TRACKED)
    env = clean_env(tmp_path, LABTRACK_STORE=str(tmp_path / "store"))
    assert doctor(broken_python, isolated_labtrack, env).returncode == 1
    done = subprocess.run([str(broken_python), str(script)], cwd=isolated_labtrack, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = lt.get_run(done.stdout.strip().splitlines()[-1], store=str(tmp_path / "store"))
    assert run.environment is not None
    messages = [c["message"] for c in run.environment.snapshot.get("conflicts") or []]
    assert any(m.startswith("rich ") and "pygments<3.0.0,>=2.13.0" in m for m in messages), messages


# -- invalid settings ----------------------------------------------------------------------------------


def test_invalid_setting_is_an_error_naming_it(isolated_labtrack: Path, python_env: dict[str, str]) -> None:
    env = {**python_env, "LABTRACK_FLUSH_INTERVAL": "abc", "XDG_CACHE_HOME": str(isolated_labtrack / "cache")}
    done = subprocess.run([sys.executable, "-m", "labtrack", "doctor", "--json"], cwd=isolated_labtrack, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    settings = [f for f in report["findings"] if f["topic"] == "settings"]
    assert settings and settings[0]["level"] == "error"
    assert "LABTRACK_FLUSH_INTERVAL" in settings[0]["message"]
    assert "abc" in settings[0]["message"]

    plain = subprocess.run([sys.executable, "-m", "labtrack", "doctor"], cwd=isolated_labtrack, env=env,
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1
    assert "LABTRACK_FLUSH_INTERVAL" in plain.stdout + plain.stderr


# -- CUDA consistency, on real snapshots edited to carry a GPU ---------------------------------------


@pytest.fixture
def snapshot() -> dict[str, Any]:
    return copy.deepcopy(lt.capture_environment().to_dict())


def with_gpu(snapshot: dict[str, Any], *, capability: str = "8.0", cuda_driver: str = "12.2",
             name: str = "NVIDIA A100-SXM4-80GB") -> dict[str, Any]:
    snapshot["gpu"] = {"count": 1, "driver_version": "535.104.05", "cuda_driver_version": cuda_driver,
                       "devices": [{"index": 0, "name": name, "compute_capability": capability}]}
    return snapshot


def with_torch(snapshot: dict[str, Any], *, cuda: str = "12.1", arch: list[str] | None = None) -> dict[str, Any]:
    snapshot["frameworks"]["torch"] = {"version": f"2.1.0+cu{cuda.replace('.', '')}", "module": "torch",
                                       "imported": True, "cuda": cuda, "cudnn": "8.9.2",
                                       "arch_list": arch if arch is not None else ["sm_70", "sm_80", "sm_90"]}
    return snapshot


def errors(findings: list[Any], topic: str = "cuda") -> list[str]:
    return [f.message for f in findings if f.level == "error" and f.topic == topic]


def test_this_machine_has_no_cuda_errors(snapshot: dict[str, Any]) -> None:
    assert errors(doctor_findings(snapshot, [])) == []


def test_framework_built_for_a_newer_cuda_than_the_driver(snapshot: dict[str, Any]) -> None:
    found = errors(doctor_findings(with_torch(with_gpu(snapshot, cuda_driver="11.8"), cuda="12.1"), []))
    assert len(found) == 1
    assert "torch" in found[0] and "12.1" in found[0] and "11.8" in found[0]


def test_driver_new_enough_is_not_an_error(snapshot: dict[str, Any]) -> None:
    assert errors(doctor_findings(with_torch(with_gpu(snapshot, cuda_driver="12.2"), cuda="12.1"), [])) == []


def test_gpu_newer_than_the_build_kernels(snapshot: dict[str, Any]) -> None:
    found = errors(doctor_findings(with_torch(with_gpu(snapshot, capability="9.0", name="NVIDIA H100 80GB HBM3"),
                                              arch=["sm_70", "sm_80"]), []))
    assert len(found) == 1
    assert "H100" in found[0] and "9.0" in found[0] and "sm_80" in found[0]


def test_ptx_in_the_build_lets_a_newer_gpu_jit(snapshot: dict[str, Any]) -> None:
    findings = doctor_findings(with_torch(with_gpu(snapshot, capability="9.0"), arch=["sm_70", "sm_80", "compute_80"]),
                               [])
    assert errors(findings) == []


def test_ptx_for_a_newer_architecture_does_not_help(snapshot: dict[str, Any]) -> None:
    """PTX JIT-compiles forward only: compute_90 code cannot run on a compute capability 8.6 GPU."""
    findings = doctor_findings(with_torch(with_gpu(snapshot, capability="8.6"), arch=["sm_70", "sm_90", "compute_90"]),
                               [])
    assert len(errors(findings)) == 1


def test_conflicts_become_error_findings(snapshot: dict[str, Any]) -> None:
    message = "pandas 1.4.0 requires numpy<1.25.0,>=1.18.5, but numpy 1.25.2 is installed"
    findings = doctor_findings(snapshot, [{"package": "pandas", "version": "1.4.0", "requires": "numpy<1.25.0,>=1.18.5",
                                           "installed": "1.25.2", "message": message}])
    assert errors(findings, "dependencies") == [message]


def test_a_gpu_runs_kernels_built_for_an_older_minor_of_its_architecture(snapshot: dict[str, Any]) -> None:
    """CUDA binaries are compatible within a major architecture: sm_86 kernels run on an sm_89 GPU (an RTX 4090
    with the stock PyTorch wheels, whose arch list has no sm_89). That is a working setup, not an error."""
    stock = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]  # torch 2.1.0+cu121
    findings = doctor_findings(with_torch(with_gpu(snapshot, capability="8.9", name="NVIDIA GeForce RTX 4090"),
                                          arch=stock), [])
    assert errors(findings) == []
