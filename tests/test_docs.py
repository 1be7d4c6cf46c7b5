"""Runnable, complete docs: every CLI command is in the README, the README's Python blocks run as
written, and every script in examples/ runs — each in a fresh process in an empty directory."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from framework_helpers import need

from labtrack.cli import main

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
EXAMPLES = REPO / "examples"


def readme() -> str:
    return README.read_text(encoding="utf-8") if README.exists() else ""


def cli_commands(group: click.Group = main, prefix: str = "") -> list[str]:
    """Every command path, e.g. "runs" and "db upgrade" (a group's subcommands, not the bare group)."""
    found = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found.extend(cli_commands(command, path + " "))
        else:
            found.append(path)
    return found


def python_blocks() -> list[str]:
    return re.findall(r"^```python[^\n]*\n(.*?)^```", readme(), flags=re.S | re.M)


def run_python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_has_the_commands_of_this_issue() -> None:
    assert {"experiments", "runs", "show", "demo", "db upgrade"} <= set(cli_commands())


@pytest.mark.parametrize("command", cli_commands())
def test_every_cli_command_is_documented_in_the_readme(command: str) -> None:
    if f"labtrack {command}" not in readme():
        pytest.fail(f"README.md does not mention `labtrack {command}`")


def test_the_readme_has_a_python_quickstart() -> None:
    assert python_blocks(), "README.md has no ```python code block"


@pytest.mark.parametrize("index", range(len(python_blocks())), ids=lambda i: f"block-{i + 1}")
def test_readme_python_blocks_run(index: int, tmp_path: Path, python_env: dict[str, str]) -> None:
    done = run_python(python_blocks()[index], tmp_path, python_env)
    assert done.returncode == 0, f"README python block {index + 1} failed:\n{done.stderr}"


def examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.py")) if EXAMPLES.is_dir() else []


def needs(script: Path) -> list[str]:
    """The modules an example names in its ``# needs: torch lightning`` line (the optional frameworks)."""
    found = re.search(r"^# needs: (.+)$", script.read_text(encoding="utf-8"), flags=re.M)
    return found.group(1).split() if found else []


def test_there_are_examples() -> None:
    assert examples(), "examples/ has no scripts"


@pytest.mark.parametrize("script", examples(), ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path, python_env: dict[str, str]) -> None:
    for module in needs(script):
        if importlib.util.find_spec(module) is None:  # found without importing it here (Keras would pick a backend)
            need(module)  # skips with the install command, and fails in CI
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=python_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stderr}"
