"""Which untracked files of a git work tree are a run's inputs, and which are not: labtrack's own store
(its database, WAL, spool and artifact blobs), virtualenvs, caches of tools and files too large to copy.

A run records its untracked inputs (path, size, hash) and ``labtrack reproduce`` copies them into the
rebuilt work tree; what is skipped is counted by reason, so a recording says what it left out instead of
copying a 13 MB store or a 5 GB checkpoint into every reproduction.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

__all__ = ["CACHE_DIRS", "MAX_INPUT_BYTES", "STORE_DIRS", "VENV_DIRS", "skip_reasons"]

MAX_INPUT_BYTES = 8 * 1024 * 1024  # an untracked file larger than this is not an input to copy
STORE_DIRS = frozenset({".labtrack", "mlruns", "wandb"})  # trackers' stores (labtrack's default, and peers')
VENV_DIRS = frozenset({".venv", "venv", ".conda", "site-packages"})
CACHE_DIRS = frozenset({
    "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".ipynb_checkpoints",
    "node_modules", ".cache", ".hypothesis", ".eggs",
})
_STORE_FILES = ("labtrack.db", "labtrack.db-wal", "labtrack.db-shm", "labtrack.db-journal")


def skip_reasons(paths: Iterable[str]) -> dict[str, str]:
    """For each of ``paths`` (posix, relative to the work tree) that is not an input: why — "store",
    "virtualenv" or "cache". A store or virtualenv in a directory of any name is recognised by the files
    that make it one (``labtrack.db``, ``pyvenv.cfg``) among the paths."""
    paths = list(paths)
    stores = {posixpath.dirname(p) for p in paths if posixpath.basename(p) == "labtrack.db"}
    venvs = {posixpath.dirname(p) for p in paths if posixpath.basename(p) == "pyvenv.cfg"}
    reasons: dict[str, str] = {}
    for path in paths:
        parts = path.rstrip("/").split("/")
        folders = parts[:-1]
        if (parts[-1] in _STORE_FILES or any(f in STORE_DIRS for f in folders)
                or any(_under(path, root, _STORE_PARTS) for root in stores)):
            reasons[path] = "store"
        elif any(f in VENV_DIRS for f in folders) or any(_under(path, root, _VENV_PARTS) for root in venvs):
            reasons[path] = "virtualenv"
        elif any(f in CACHE_DIRS or f.endswith(".egg-info") for f in folders) or parts[-1].endswith((".pyc", ".pyo")):
            reasons[path] = "cache"
    return reasons


_STORE_PARTS = ("spool/", "artifacts/")  # what a store directory holds besides its database files
_VENV_PARTS = ("bin/", "lib/", "lib64/", "include/", "Scripts/", "share/")


def _under(path: str, root: str, parts: tuple[str, ...]) -> bool:
    """Whether ``path`` lies in the store or virtualenv at ``root``: anywhere inside a folder of its own,
    only in its own sub-folders when it is the work tree's root itself (the project's files are not)."""
    if root == "":
        return path.startswith(parts)
    return path.startswith(root + "/")
