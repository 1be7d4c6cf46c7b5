"""Fixtures both sides of the benchmark use. Standard library only: the MLflow side imports this file
from its own virtualenv (the script's folder is on its sys.path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["small_git_repo"]

_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "-c", "commit.gpgsign=false"]


def small_git_repo(directory: str, script: str) -> str:
    """A small repository: ``train.py`` (``script``) and a few files, committed, then a tracked file edited."""
    repo = os.path.join(directory, "repo")
    os.makedirs(os.path.join(repo, "src"))
    files = {
        "train.py": script,
        "src/model.py": "".join(f"def layer_{i}(x):\n    return x * {i} + 1\n\n" for i in range(40)),
        "src/data.py": "".join(f"PATH_{i} = 'data/part-{i:03d}.csv'\n" for i in range(40)),
        "README.md": "# a small project\n" * 20,
        ".gitignore": "data/\n*.pyc\n",
    }
    for name, text in files.items():
        Path(repo, name).write_text(text)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run([*_GIT, *command], cwd=repo, check=True, capture_output=True, timeout=60)
    with open(os.path.join(repo, "src", "model.py"), "a") as f:  # uncommitted: the capture stores a git diff
        f.write("\ndef head(x):\n    return layer_3(x) - 1\n")
    return repo
