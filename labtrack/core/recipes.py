"""Recipes that rebuild a recorded run: pinned requirements, a Dockerfile, a conda environment, a script.

Pure: everything comes from the run's recorded environment (``Recipe.from_run``) and the uncommitted
diff text. Decisions, written down:

- requirements pin every distribution exactly (``name==version``) except pip, setuptools and wheel
  (as ``pip freeze`` does). Local builds such as ``torch==2.1.0+cu118`` get the PyTorch index that
  serves them (``--extra-index-url https://download.pytorch.org/whl/cu118``); VCS installs are pinned
  to their commit (``name @ git+URL@commit``).
- local and editable installs (labtrack itself, often, and the user's own packages) are part of the recipe,
  never a comment to act on: one that lives inside the recorded repository is installed from the rebuilt
  checkout (the recorded commit plus diff, so the code that ran); any other from its recorded path —
  ``name @ file:///path`` in requirements, in the script overridable with ``LABTRACK_LOCAL_<NAME>`` and a
  clear error when it is missing, in the Dockerfile a ``COPY`` from ``deps/<name>`` of the build context
  that fails the build naming what to provide. Each is installed with ``--no-deps`` after the pins.
- the Dockerfile is self-contained (requirements and diff are written inline with heredocs, so it
  builds from an empty context): ``python:<version>-slim`` for a CPU run, or an ``nvidia/cuda`` runtime
  image matching the run's CUDA and cuDNN builds for a GPU run (Python installed by uv), then the code
  at the recorded commit (cloned from the recorded remote) with the recorded diff applied, then the
  recorded command.
- arguments that were redacted when recorded stay ``[REDACTED]``: the recipe says to fill them in.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from labtrack.core.environment import section_of

__all__ = ["FORMATS", "LocalInstall", "Recipe", "render"]

FORMATS = ("requirements", "dockerfile", "conda", "script")
_SKIP = {"pip", "setuptools", "wheel", "distribute"}
_TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "torchtext", "torchdata"}
_LOCAL_INDEX = re.compile(r"^(cu\d+|cpu|rocm[\d.]+|xpu)$")
_PYTORCH_INDEX = "https://download.pytorch.org/whl/"
_REDACTED = "[REDACTED]"


def _inside_checkout(arg: str, root: str | None, cwd: str | None) -> str:
    """An absolute path into the repository becomes relative to the working directory, so the rebuilt
    checkout's file runs, not the one at the recorded location."""
    if root and cwd and arg.startswith(str(root).rstrip("/") + "/"):
        import posixpath

        return posixpath.relpath(arg, cwd)
    return arg


@dataclass(frozen=True)
class LocalInstall:
    """A distribution installed from a local path (editable or not), and where to install it from."""

    name: str
    version: str
    path: str  # the recorded path
    in_repo: str | None  # its path relative to the recorded repository's root, when it lives inside it

    @property
    def variable(self) -> str:
        """The script's override of its path: LABTRACK_LOCAL_<NAME>."""
        return "LABTRACK_LOCAL_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())


@dataclass
class Recipe:
    run_id: str
    experiment: str
    python: str | None
    distributions: dict[str, dict[str, Any]]
    commit: str | None = None
    remote: str | None = None
    repo_root: str | None = None
    relative_cwd: str = "."
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cuda: str | None = None  # the CUDA build of the GPU framework the run used, when it used a GPU
    cudnn: str | None = None
    diff: str | None = None
    imported: list[str] | None = None  # the distributions the run imported (recorded at its end), if known

    @classmethod
    def from_run(cls, run_id: str, experiment: str, snapshot: dict[str, Any], diff: str | None) -> Recipe:
        packages, git, process = section_of(snapshot, "packages"), section_of(snapshot, "git"), section_of(snapshot, "process")
        gpu, frameworks = section_of(snapshot, "gpu"), section_of(snapshot, "frameworks")
        cuda = cudnn = None
        if isinstance(gpu.get("count"), int) and gpu["count"] > 0:
            for facts in frameworks.values():
                if isinstance(facts, dict) and facts.get("cuda"):
                    cuda, cudnn = str(facts["cuda"]), str(facts.get("cudnn") or "") or None
                    break
        root, cwd = git.get("root"), process.get("cwd")
        relative = "."
        if root and cwd and (cwd == root or str(cwd).startswith(str(root).rstrip("/") + "/")):
            relative = str(cwd)[len(str(root)) :].lstrip("/") or "."
        argv = list(process.get("orig_argv") or process.get("argv") or [])
        command = ["python", *(_inside_checkout(a, root, cwd) for a in argv[1:])] if argv else []
        if command[1:2] == ["-c"]:
            command = []  # an inline program: nothing to re-run
        return cls(
            run_id=run_id,
            experiment=experiment,
            python=(packages.get("python") or {}).get("version"),
            distributions=dict(packages.get("distributions") or {}),
            commit=git.get("commit") if git.get("repo") else None,
            remote=git.get("remote_url") if git.get("repo") else None,
            repo_root=root,
            relative_cwd=relative,
            command=command,
            env={k: str(v) for k, v in (process.get("env") or {}).items() if v != _REDACTED},
            cuda=cuda,
            cudnn=cudnn,
            diff=diff if diff and diff.strip() else None,
            imported=[str(n) for n in snapshot["imported"]] if isinstance(snapshot.get("imported"), list) else None,
        )

    # -- the pieces every format shares ----------------------------------------------------------

    def local_installs(self) -> list[LocalInstall]:
        """The distributions installed from a local path, in name order."""
        found = []
        root = str(self.repo_root).rstrip("/") if self.repo_root else None
        for name, info in sorted(self.distributions.items()):
            if info.get("source") not in ("local", "editable") or not info.get("version"):
                continue
            path = str(info.get("url") or "").removeprefix("file://")
            inside = None
            if root and path and (path == root or path.startswith(root + "/")):
                inside = path[len(root):].lstrip("/") or "."
            found.append(LocalInstall(name, str(info["version"]), path, inside))
        return found

    def requirement_lines(self, *, local: bool = True) -> tuple[list[str], list[str], list[str]]:
        """(index options, requirement lines, comments about what cannot be pinned). ``local``: local installs
        as ``name @ file:///path`` lines (for a requirements file; the script, Dockerfile and reproduce install
        them themselves, after the pins)."""
        indexes: list[str] = []
        lines: list[str] = []
        notes: list[str] = []
        for name, info in sorted(self.distributions.items()):
            version = info.get("version")
            if name in _SKIP or not version:
                continue
            source = info.get("source", "index")
            if source == "vcs" and info.get("url") and info.get("commit"):
                lines.append(f"{name} @ {info.get('vcs') or 'git'}+{info['url']}@{info['commit']}")
            elif source in ("local", "editable"):
                where = str(info.get("url") or "").removeprefix("file://")
                if local and where:
                    notes.append(f"{name}=={version} was installed from the local path {where}: installed from "
                                 "there (edit the line if your copy is elsewhere)")
                    lines.append(f"{name} @ file://{where}")
            elif source == "url" and info.get("url"):
                lines.append(f"{name} @ {info['url']}")
            else:
                build = str(version).partition("+")[2]
                if build and name in _TORCH_FAMILY and _LOCAL_INDEX.match(build):
                    option = f"--extra-index-url {_PYTORCH_INDEX}{build}"
                    if option not in indexes:
                        indexes.append(option)
                elif build:
                    notes.append(f"{name}=={version} is a local build: it may exist only where it was built")
                lines.append(f"{name}=={version}")
        return indexes, lines, notes

    def header(self) -> list[str]:
        text = [f"labtrack recipe for run {self.run_id} (experiment {self.experiment})"]
        if self.python:
            text.append(f"Python {self.python}" + (f", CUDA {self.cuda}" if self.cuda else ""))
        if self.commit:
            text.append(f"code: commit {self.commit}" + (f" of {self.remote}" if self.remote else "")
                        + (" plus the recorded uncommitted diff" if self.diff else ""))
        if _REDACTED in " ".join(self.command):
            text.append("some arguments were redacted when recorded: replace [REDACTED] with the real values")
        return text

    def command_text(self) -> str:
        return shlex.join(self.command) if self.command else ""


def _requirements(recipe: Recipe) -> str:
    indexes, lines, notes = recipe.requirement_lines()
    out = [f"# {line}" for line in recipe.header()]
    out += [f"# {note}" for note in notes]
    return "\n".join([*out, *indexes, *lines]) + "\n"


def _delimiter(*texts: str) -> str:
    """A heredoc delimiter that occurs in none of the texts."""
    n = 0
    while any(f"LABTRACK_EOF_{n}" in t for t in texts):
        n += 1
    return f"LABTRACK_EOF_{n}"


def _cuda_image(cuda: str, cudnn: str | None) -> str:
    major_minor = ".".join(cuda.split(".")[:2])
    cudnn_major = (cudnn or "").split(".")[0]
    flavour = f"cudnn{cudnn_major}-runtime" if cudnn_major.isdigit() else "runtime"
    return f"nvidia/cuda:{major_minor}.0-{flavour}-ubuntu22.04"


def _dockerfile(recipe: Recipe) -> str:
    requirements = _requirements_without_local(recipe)
    diff = recipe.diff or ""
    eof = _delimiter(requirements, diff)
    out = ["# syntax=docker/dockerfile:1.4", *[f"# {line}" for line in recipe.header()]]
    python = recipe.python or "3"
    if recipe.cuda:
        out += [
            f"FROM {_cuda_image(recipe.cuda, recipe.cudnn)}",
            "RUN apt-get update && apt-get install -y --no-install-recommends git curl ca-certificates "
            "&& rm -rf /var/lib/apt/lists/*",
            "RUN curl -LsSf https://astral.sh/uv/install.sh | sh",
            f"RUN /root/.local/bin/uv venv --python {python} /opt/venv",
            'ENV VIRTUAL_ENV=/opt/venv PATH="/opt/venv/bin:$PATH"',
            "RUN /root/.local/bin/uv pip install pip",
        ]
    else:
        out += [
            f"FROM python:{python}-slim",
            "RUN apt-get update && apt-get install -y --no-install-recommends git "
            "&& rm -rf /var/lib/apt/lists/*",
        ]
    # Quoted delimiters: BuildKit must not expand $VARIABLES inside the files' contents.
    out += [f"COPY <<'{eof}' /tmp/requirements.txt", requirements.rstrip("\n"), eof,
            "RUN python -m pip install --no-cache-dir -r /tmp/requirements.txt"]
    if recipe.commit and recipe.remote:
        out.append(f"RUN git clone {shlex.quote(recipe.remote)} /work && git -C /work checkout {recipe.commit}")
    elif recipe.commit:
        out += ["# no remote was recorded: build from a checkout of the repository at this commit",
                f"# (git checkout {recipe.commit}), with that checkout as the build context",
                "COPY . /work"]
    else:
        out += ["# the run was not in a git repository: copy its code into the build context", "COPY . /work"]
    if diff:
        out += [f"COPY <<'{eof}' /tmp/labtrack.diff", diff.rstrip("\n"), eof,
                "RUN git -C /work apply --whitespace=nowarn /tmp/labtrack.diff"]
    for item in recipe.local_installs():
        if item.in_repo is not None:
            out.append(f"RUN python -m pip install --no-cache-dir --no-deps {shlex.quote('/work/' + item.in_repo)}")
        else:
            out += [f"# {item.name}=={item.version} was installed from {item.path}: put a copy of its source in the "
                    f"build context as deps/{item.name}",
                    f"COPY deps/{item.name} /deps/{item.name}",
                    f"RUN python -m pip install --no-cache-dir --no-deps /deps/{item.name}"]
    out.append("WORKDIR /work" if recipe.relative_cwd == "." else f"WORKDIR /work/{recipe.relative_cwd}")
    if recipe.env:
        out.append("ENV " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(recipe.env.items())))
    if recipe.command:
        out.append("CMD " + _json_list(recipe.command))
    return "\n".join(out) + "\n"


def _json_list(items: list[str]) -> str:
    return json.dumps(items)


def _conda(recipe: Recipe) -> str:
    indexes, lines, notes = recipe.requirement_lines()
    out = [f"# {line}" for line in recipe.header()] + [f"# {note}" for note in notes]
    out += [f"name: labtrack-{recipe.run_id[:8]}", "channels:", "  - conda-forge", "dependencies:"]
    if recipe.python:
        out.append(f"  - python={recipe.python}")
    out += ["  - pip", "  - pip:"]
    out += [f"      - {line}" for line in [*indexes, *lines]]
    return "\n".join(out) + "\n"


def _requirements_without_local(recipe: Recipe) -> str:
    indexes, lines, notes = recipe.requirement_lines(local=False)
    out = [f"# {line}" for line in recipe.header()] + [f"# {note}" for note in notes]
    out += [f"# {item.name}=={item.version} (a local install) is installed after these"
            for item in recipe.local_installs()]
    return "\n".join([*out, *indexes, *lines]) + "\n"


def _script_local(recipe: Recipe) -> list[str]:
    """Lines of the script that install the local installs, from the rebuilt checkout or their path."""
    out = []
    for item in recipe.local_installs():
        if item.in_repo is not None:
            out.append(f'"$WORK/venv/bin/python" -m pip install --no-deps "$WORK/src"/{shlex.quote(item.in_repo)}')
            continue
        out += [
            f"# {item.name}=={item.version} was installed from {item.path}; {item.variable}=/path overrides it",
            f'LOCAL="${{{item.variable}:-{item.path}}}"',
            f'[ -e "$LOCAL" ] || {{ echo "{item.name}=={item.version} was installed from {item.path}, which is not '
            f'here: set {item.variable} to a copy of its source and run again" >&2; exit 1; }}',
            '"$WORK/venv/bin/python" -m pip install --no-deps "$LOCAL"',
        ]
    return out


def _script(recipe: Recipe) -> str:
    requirements = _requirements_without_local(recipe)
    diff = recipe.diff or ""
    eof = _delimiter(requirements, diff)
    workdir = f"labtrack-{recipe.run_id[:8]}"
    out = ["#!/usr/bin/env bash", *[f"# {line}" for line in recipe.header()],
           "# Rebuilds the run in a virtualenv under ./" + workdir + " and runs its command.",
           "set -euo pipefail", f'WORK="${{1:-{workdir}}}"', 'mkdir -p "$WORK"']
    python = recipe.python or "3"
    short = ".".join(python.split(".")[:2])
    out += [f'PY="${{PYTHON:-python{short}}}"',
            f'"$PY" -c \'import platform,sys; v=platform.python_version(); '
            f'sys.exit(0 if v=="{python}" else print("warning: Python", v, "here, the run used {python}"))\' || true',
            '"$PY" -m venv "$WORK/venv"',
            f"cat > \"$WORK/requirements.txt\" <<'{eof}'", requirements.rstrip("\n"), eof,
            '"$WORK/venv/bin/python" -m pip install -r "$WORK/requirements.txt"']
    if recipe.commit and recipe.remote:
        out.append(f'[ -d "$WORK/src" ] || git clone {shlex.quote(recipe.remote)} "$WORK/src"')
        out.append(f'git -C "$WORK/src" checkout --detach {recipe.commit}')
    elif recipe.commit and recipe.repo_root:
        out.append(f'[ -d "$WORK/src" ] || git -C {shlex.quote(recipe.repo_root)} worktree add --detach '
                   f'"$(cd "$WORK" && pwd)/src" {recipe.commit}')
    else:
        out.append('echo "the run was not in a git repository: copy its code to $WORK/src" >&2; mkdir -p "$WORK/src"')
    if diff:
        out += [f"cat > \"$WORK/labtrack.diff\" <<'{eof}'", diff.rstrip("\n"), eof,
                'git -C "$WORK/src" apply --whitespace=nowarn "$WORK/labtrack.diff"']
    out += _script_local(recipe)
    for key, value in sorted(recipe.env.items()):
        out.append(f"export {key}={shlex.quote(value)}")
    if recipe.command:
        out.append('VENV_PY="$(cd "$WORK/venv/bin" && pwd)/python"')
        out.append(f'cd "$WORK/src"/{shlex.quote(recipe.relative_cwd)}')
        out.append(f'exec "$VENV_PY" {shlex.join(recipe.command[1:])}')
    return "\n".join(out) + "\n"


def render(recipe: Recipe, fmt: str) -> str:
    """The recipe in one of FORMATS."""
    renderers = {"requirements": _requirements, "dockerfile": _dockerfile, "conda": _conda, "script": _script}
    if fmt not in renderers:
        from labtrack.core.errors import InvalidInput

        raise InvalidInput(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}", field="format")
    return renderers[fmt](recipe)
