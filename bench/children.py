"""Child processes of the labtrack side: ``python -m bench.workloads_labtrack NAME`` in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.fixtures import CHILD_TIMEOUT

__all__ = ["child_env", "run_child", "spawn_child"]

Result = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a child importing labtrack from this checkout, with ``extra`` variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("LABTRACK_STORE", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def spawn_child(name: str, directory: str, args: dict[str, Any], env: dict[str, str] | None = None,
                stderr: int = subprocess.PIPE, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.workloads_labtrack", name, "--dir", directory, "--args", json.dumps(args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=directory,
                            env=child_env(env), preexec_fn=preexec_fn)


def run_child(name: str, directory: str, args: dict[str, Any], env: dict[str, str] | None = None) -> Result:
    """Run the child to its end; its last line of output, as JSON."""
    child = spawn_child(name, directory, args, env)
    try:
        stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise RuntimeError(f"{name} timed out after {CHILD_TIMEOUT:.0f} s") from None
    if child.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {child.returncode}): {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])
