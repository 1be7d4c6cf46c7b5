"""`labtrack export RUN --format requirements|dockerfile|conda|script`: pinned recipes that rebuild a run.

Runs are recorded for real (a script in a temp git repository with an uncommitted change); the recorded
environment is then edited in the store to carry what this machine does not have (a CUDA build of torch,
a VCS install, an editable install, a GPU). Outputs are validated with the tools that read them:
``packaging`` for requirements, ``dockerfile_parse`` for the Dockerfile, PyYAML for conda, and bash runs
the script."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from env_helpers import git, git_env, make_repo  # noqa: F401  (git_env is a fixture)
from packaging.requirements import Requirement

import labtrack as lt
from labtrack.core.errors import InvalidInput

pytestmark = pytest.mark.usefixtures("git_env")

REPO = Path(__file__).resolve().parent.parent
REMOTE = "https://example.com/team/proj.git"
VCS_COMMIT = "3f2a9c1b" * 5

TRAIN = """\
import labtrack as lt

SCALE = 1.0
with lt.start_run("export-me", params={"scale": SCALE}) as run:
    run.log_metric("loss", 0.5 * SCALE)
print("trained with scale", SCALE)
"""
# The uncommitted change: another constant, and a line a shell or Dockerfile heredoc would mangle.
DIRTY = TRAIN.replace("SCALE = 1.0", 'SCALE = 2.0\nLABEL = "costs $PRICE or ${PRICE} \\\\ each"')

CRAFTED = {
    "torch": {"version": "2.1.0+cu118", "source": "index"},
    "numpy": {"version": "1.26.4", "source": "index"},
    "requests": {"version": "2.31.0", "source": "index"},
    "mylib": {"version": "0.3.0", "source": "vcs", "vcs": "git", "url": "https://github.com/example/mylib.git",
              "commit": VCS_COMMIT},
    "localpkg": {"version": "0.1.0", "source": "editable", "url": "file:///home/me/src/localpkg"},
    "pip": {"version": "23.3.1", "source": "index"},
    "setuptools": {"version": "68.2.2", "source": "index"},
    "wheel": {"version": "0.41.3", "source": "index"},
}


def record(tmp_path: Path, python_env: dict[str, str], *, remote: str | None, source: str = TRAIN,
           dirty: str | None = DIRTY, extra_env: dict[str, str] | None = None) -> tuple[str, Path, Path]:
    """Run train.py in a new repository (committed ``source``, working tree ``dirty``); (run id, repo, store)."""
    repo = make_repo(tmp_path / "repo", {"train.py": source})
    if remote:
        git(repo, "remote", "add", "origin", remote)
    if dirty is not None:
        (repo / "train.py").write_text(dirty)
    store = tmp_path / "store"
    env = {**python_env, "LABTRACK_STORE": str(store), **(extra_env or {})}
    done = subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = lt.search_runs("export-me", store=str(store))
    return run.id, repo, store


def edit_snapshot(store: Path, run_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    lt.flush()  # this process's runs are in the store before it is edited behind labtrack's back
    with sqlite3.connect(store / "labtrack.db") as db:
        (fingerprint,) = db.execute("SELECT env_fingerprint FROM runs WHERE id = ?", (run_id,)).fetchone()
        (text,) = db.execute("SELECT snapshot FROM environments WHERE fingerprint = ?", (fingerprint,)).fetchone()
        snapshot = json.loads(text)
        edit(snapshot)
        db.execute("UPDATE environments SET snapshot = ? WHERE fingerprint = ?", (json.dumps(snapshot), fingerprint))


def crafted(snapshot: dict[str, Any]) -> None:
    snapshot["packages"]["distributions"] = json.loads(json.dumps(CRAFTED))


def on_gpu(snapshot: dict[str, Any]) -> None:
    crafted(snapshot)
    snapshot["gpu"] = {"count": 1, "driver_version": "535.104.05", "cuda_driver_version": "12.2",
                       "devices": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}]}
    snapshot["frameworks"]["torch"] = {"version": "2.1.0+cu118", "module": "torch", "imported": True, "cuda": "11.8",
                                       "cudnn": "8.7.0", "arch_list": ["sm_70", "sm_80", "sm_90"]}


def python_version(store: Path, run_id: str) -> str:
    snapshot = lt.get_run(run_id, store=str(store)).environment.snapshot
    return str(snapshot["packages"]["python"]["version"])


def recorded_diff(store: Path, run_id: str) -> str:
    run = lt.get_run(run_id, store=str(store))
    with run.open_artifact("labtrack/git.diff") as f:
        return f.read().decode()


# -- requirements ------------------------------------------------------------------------------------


def requirement_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith(("#", "-"))]


def test_requirements_pin_everything_and_parse(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=REMOTE)
    edit_snapshot(store, run_id, crafted)
    text = lt.export(run_id, "requirements", store=str(store))

    parsed = {Requirement(line).name: Requirement(line) for line in requirement_lines(text)}
    assert set(parsed) == {"torch", "numpy", "requests", "mylib", "localpkg"}
    for name in ("torch", "numpy", "requests"):
        assert str(parsed[name].specifier) == f"=={CRAFTED[name]['version']}"
    assert "torch==2.1.0+cu118" in text.splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cu118" in text.splitlines()
    assert parsed["mylib"].url == f"git+https://github.com/example/mylib.git@{VCS_COMMIT}"
    assert not parsed["mylib"].specifier
    # pip, setuptools and wheel are the installer's business, as in `pip freeze`
    assert not re.search(r"^(pip|setuptools|wheel)\b", text, re.MULTILINE)
    # the editable install is installed from where it came from (a comment says to edit the line if needed)
    assert parsed["localpkg"].url == "file:///home/me/src/localpkg"
    notes = [line for line in text.splitlines() if line.startswith("#") and "localpkg" in line]
    assert notes and "/home/me/src/localpkg" in notes[0]


def test_requirements_of_a_real_run_are_this_environment(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=None)
    text = lt.export(run_id, "requirements", store=str(store))
    pins = {Requirement(line).name: Requirement(line) for line in requirement_lines(text)}
    from importlib.metadata import version

    assert str(pins["click"].specifier) == f"=={version('click')}"
    assert pins["labtrack"].url == f"file://{REPO}"  # installed editable from this checkout: from there


# -- Dockerfile ------------------------------------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "COMMENT"}
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


def split_heredocs(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(the Dockerfile without heredoc bodies, [{delimiter, quoted, instruction, body}]) — BuildKit syntax,
    which dockerfile_parse does not know."""
    outside: list[str] = []
    heredocs: list[dict[str, Any]] = []
    lines = iter(text.splitlines())
    for line in lines:
        outside.append(line)
        if line.lstrip().startswith("#"):
            continue
        for match in _HEREDOC.finditer(line):
            body = []
            for inner in lines:
                if (inner.lstrip("\t") if match.group(1) else inner) == match.group(3):
                    break
                body.append(inner)
            else:
                raise AssertionError(f"heredoc {match.group(3)} is never closed")
            heredocs.append({"delimiter": match.group(3), "quoted": bool(match.group(2)), "instruction": line,
                             "body": "\n".join(body)})
    return "\n".join(outside) + "\n", heredocs


def parse_dockerfile(text: str, tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parsed and linted: known instructions only, FROM first, exec-form CMD; and its heredocs."""
    rest, heredocs = split_heredocs(text)
    parser = DockerfileParser(path=str(tmp_path / "Dockerfile"))
    parser.content = rest
    instructions = [i for i in parser.structure if i["instruction"] != "COMMENT"]
    assert {i["instruction"] for i in instructions} <= INSTRUCTIONS, [i["instruction"] for i in instructions]
    assert instructions[0]["instruction"] == "FROM"
    assert text.splitlines()[0] == "# syntax=docker/dockerfile:1.4"  # heredocs need BuildKit's syntax 1.4+
    cmds = [i for i in instructions if i["instruction"] == "CMD"]
    assert len(cmds) <= 1
    if cmds:
        json.loads(cmds[0]["value"])  # the exec form: no shell between Docker and the command
    return instructions, heredocs


def values(instructions: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in instructions if i["instruction"] == name]


def test_dockerfile_for_a_cpu_run(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=REMOTE)
    edit_snapshot(store, run_id, crafted)
    text = lt.export(run_id, "dockerfile", store=str(store))
    instructions, heredocs = parse_dockerfile(text, tmp_path)
    commit = lt.get_run(run_id, store=str(store)).environment.snapshot["git"]["commit"]

    assert values(instructions, "FROM") == [f"python:{python_version(store, run_id)}-slim"]
    runs = values(instructions, "RUN")
    # the requirements, written inline and installed
    (requirements,) = [h for h in heredocs if "/tmp/requirements.txt" in h["instruction"]]
    exported = lt.export(run_id, "requirements", store=str(store))
    assert requirement_lines(requirements["body"]) == [line for line in requirement_lines(exported)
                                                       if "localpkg" not in line]  # installed after the code
    # the local install: from a copy the build context must hold, named in a comment; then installed
    assert "COPY deps/localpkg /deps/localpkg" in text and "/home/me/src/localpkg" in text
    assert any("pip install" in r and "--no-deps /deps/localpkg" in r for r in values(instructions, "RUN"))
    install = next(i for i, r in enumerate(runs) if "pip install" in r and "-r /tmp/requirements.txt" in r)
    # the code at the recorded commit, from the recorded remote
    clone = next(i for i, r in enumerate(runs) if f"git clone {REMOTE} /work" in r)
    assert f"checkout {commit}" in runs[clone]
    # the recorded diff, applied on top
    (diff,) = [h for h in heredocs if "/tmp/labtrack.diff" in h["instruction"]]
    assert diff["body"].strip() == recorded_diff(store, run_id).strip()
    apply = next(i for i, r in enumerate(runs) if "git -C /work apply" in r and "/tmp/labtrack.diff" in r)
    assert install < clone < apply
    assert values(instructions, "WORKDIR") == ["/work"]
    assert json.loads(values(instructions, "CMD")[0]) == ["python", "train.py"]


def test_dockerfile_for_a_gpu_run_uses_the_matching_cuda_image(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=REMOTE)
    edit_snapshot(store, run_id, on_gpu)
    instructions, _ = parse_dockerfile(lt.export(run_id, "dockerfile", store=str(store)), tmp_path)
    assert values(instructions, "FROM") == ["nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"]
    runs = values(instructions, "RUN")
    python = python_version(store, run_id)
    assert any(f"--python {python}" in r for r in runs), runs  # the recorded Python, not the image's
    assert any("pip install" in r and "-r /tmp/requirements.txt" in r for r in runs)
    assert json.loads(values(instructions, "CMD")[0]) == ["python", "train.py"]


def test_dockerfile_writes_the_recorded_diff_verbatim(tmp_path: Path, python_env: dict[str, str]) -> None:
    """BuildKit expands $VARIABLES and backslash escapes in a heredoc whose delimiter is not quoted
    (Dockerfile reference, "Here-Documents"): the diff must be in a quoted heredoc, or `git apply` gets
    another patch than the one recorded (here ``$PRICE`` and ``${PRICE}`` would be replaced by empty strings)."""
    run_id, _, store = record(tmp_path, python_env, remote=REMOTE)
    _, heredocs = parse_dockerfile(lt.export(run_id, "dockerfile", store=str(store)), tmp_path)
    (diff,) = [h for h in heredocs if "/tmp/labtrack.diff" in h["instruction"]]
    assert "$PRICE" in diff["body"] and "\\\\" in diff["body"]
    assert diff["quoted"], f"the diff is in an unquoted heredoc, which BuildKit expands: {diff['instruction']}"


def test_dockerfile_without_a_remote_builds_from_a_checkout(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=None, dirty=None)
    text = lt.export(run_id, "dockerfile", store=str(store))
    instructions, heredocs = parse_dockerfile(text, tmp_path)
    commit = lt.get_run(run_id, store=str(store)).environment.snapshot["git"]["commit"]
    assert "COPY . /work" in [f"COPY {v}" for v in values(instructions, "COPY")]
    assert f"git checkout {commit}" in text  # the comment says which checkout is the build context
    assert not any("git clone" in r for r in values(instructions, "RUN"))
    assert not [h for h in heredocs if "labtrack.diff" in h["instruction"]]  # a clean tree: no diff


# -- conda -----------------------------------------------------------------------------------------------


def test_conda_environment(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=REMOTE)
    edit_snapshot(store, run_id, crafted)
    env = yaml.safe_load(lt.export(run_id, "conda", store=str(store)))
    assert env["name"].startswith("labtrack-") and run_id.startswith(env["name"].removeprefix("labtrack-"))
    deps = env["dependencies"]
    assert f"python={python_version(store, run_id)}" in deps
    assert "pip" in deps
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict)]
    assert "--extra-index-url https://download.pytorch.org/whl/cu118" in pip
    requirements = [Requirement(line) for line in pip if not line.startswith("-")]
    assert {r.name for r in requirements} == {"torch", "numpy", "requests", "mylib", "localpkg"}
    assert "torch==2.1.0+cu118" in pip


# -- script ----------------------------------------------------------------------------------------------

USES_DEP = """\
import labtrack as lt
import tinydep

SCALE = 1.0
with lt.start_run("export-me", params={"scale": SCALE}) as run:
    run.log_metric("loss", 0.5 * SCALE * tinydep.VALUE)
print("trained with scale", SCALE, "and tinydep", tinydep.VALUE)
"""


def build_wheel(directory: Path) -> Path:
    """A tiny pure-Python wheel (tinydep 1.0.0), for pip to install offline from --find-links."""
    directory.mkdir(parents=True, exist_ok=True)
    info = "tinydep-1.0.0.dist-info"
    files = {
        "tinydep.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: labtrack-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
        record_lines.append(f"{name},sha256={digest},{len(content.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record_lines, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / "tinydep-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return wheel


def test_exported_script_rebuilds_and_runs_the_run(tmp_path: Path, python_env: dict[str, str]) -> None:
    """The script makes a virtualenv, installs the pinned requirements (offline, from a local wheel), checks
    the commit out in a worktree of the recorded repository (no remote was recorded), applies the recorded
    diff and runs the recorded command, whose output shows the diff and the installed package."""
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "tinydep.py").write_text("VALUE = 42\n")
    dirty = USES_DEP.replace("SCALE = 1.0", 'SCALE = 2.0\nLABEL = "costs $PRICE or ${PRICE} \\\\ each"')
    run_id, repo, store = record(tmp_path, python_env, remote=None, source=USES_DEP, dirty=dirty,
                                 extra_env={"PYTHONPATH": f"{deps}{os.pathsep}{python_env['PYTHONPATH']}"})

    def small(snapshot: dict[str, Any]) -> None:  # what the run needed: tinydep from an index, labtrack from here
        dists = snapshot["packages"]["distributions"]
        snapshot["packages"]["distributions"] = {"tinydep": {"version": "1.0.0", "source": "index"},
                                                 "labtrack": dists["labtrack"], "pip": dists["pip"]}

    edit_snapshot(store, run_id, small)
    script = tmp_path / "rebuild.sh"
    exported = subprocess.run([sys.executable, "-m", "labtrack", "export", run_id[:10], "--format", "script",
                               "-o", str(script)], env={**python_env, "LABTRACK_STORE": str(store)},
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    assert script.read_text() == lt.export(run_id, "script", store=str(store))
    assert script.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0

    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    # labtrack was installed editable from this checkout: the script installs it from there, which needs its
    # build backend; the rest of the script runs offline, from these wheels.
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels), "hatchling"],
                             capture_output=True, text=True, timeout=300)
    assert fetched.returncode == 0, fetched.stderr
    site = sysconfig.get_paths()["purelib"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LABTRACK_", "PYTHON", "VIRTUAL_ENV", "PIP_"))},
        "PYTHON": sys.executable,
        "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONPATH": site,  # labtrack's own dependencies (the edited snapshot pins only tinydep); not labtrack
        "LABTRACK_STORE": str(store),
    }
    work = tmp_path / "rebuilt"
    done = subprocess.run(["bash", str(script), str(work)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "trained with scale 2.0 and tinydep 42" in done.stdout
    assert (work / "venv" / "lib").exists()
    installed = list((work / "venv").glob("lib/python*/site-packages/tinydep-1.0.0.dist-info"))
    assert installed, "tinydep was not installed into the script's virtualenv"
    ours = list((work / "venv").glob("lib/python*/site-packages/labtrack/__init__.py"))
    assert ours, "labtrack was not installed into the script's virtualenv (No module named 'labtrack')"
    assert (work / "src" / "train.py").read_text() == dirty  # the recorded diff, applied byte for byte
    assert git(repo, "status", "--porcelain") == "M train.py"  # the original working tree is left alone
    assert (repo / "train.py").read_text() == dirty
    runs = lt.search_runs("export-me", store=str(store))
    assert len(runs) == 2
    rerun = next(r for r in runs if r.id != run_id)
    assert rerun.metrics["loss"] == lt.get_run(run_id, store=str(store)).metrics["loss"] == 0.5 * 2.0 * 42


def test_unknown_format_is_invalid_input(tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=None, dirty=None)
    with pytest.raises(InvalidInput, match="requirements, dockerfile, conda, script"):
        lt.export(run_id, "wheel", store=str(store))
    done = subprocess.run([sys.executable, "-m", "labtrack", "export", run_id, "--format", "wheel"],
                          env={**python_env, "LABTRACK_STORE": str(store)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "wheel" in done.stderr


def test_a_script_whose_local_install_is_missing_stops_and_says_what_to_provide(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    run_id, _, store = record(tmp_path, python_env, remote=None)

    def elsewhere(snapshot: dict[str, Any]) -> None:
        snapshot["packages"]["distributions"] = {
            "labtrack": {"version": "0.1.0", "source": "editable", "url": "file:///nowhere/labtrack"}}

    edit_snapshot(store, run_id, elsewhere)
    script = lt.export(run_id, "script", store=str(store))
    assert 'LOCAL="${LABTRACK_LOCAL_LABTRACK:-/nowhere/labtrack}"' in script
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LABTRACK_", "PYTHON", "VIRTUAL_ENV", "PIP_"))},
           "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(["bash", "-c", script, "rebuild", str(tmp_path / "rebuilt")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert ("labtrack==0.1.0 was installed from /nowhere/labtrack, which is not here: set LABTRACK_LOCAL_LABTRACK"
            in done.stderr)
