"""Reusing the last git capture while nothing git could see has changed.

Starting git costs a few milliseconds per process, which is the whole budget of a repeat capture (a
sweep starting runs in one process, a notebook re-running a cell). Getting this wrong is worse than
being slow, though: the diff hash is part of the run key, so a stale diff would skip a run that
should have happened. So the cache is only reused when a full stat *signature* of everything git's
answer depends on is unchanged:

* ``.git/HEAD``, the ref it names, ``packed-refs``, ``index``, ``config`` and ``info/exclude``;
* every file and directory of the work tree, walked with ``os.scandir``, except the directories git
  reported as ignored (``.venv/``, ``data/``…) and any ``.git``; a directory's mtime changes when an
  entry is created or removed in it, so new untracked files are seen too;
* tracked files inside ignored directories (``git add -f``), stat'ed one by one.

Each entry contributes (mtime, ctime, size, inode). Like git's own "racy" index check, a capture is not
cached at all when anything in the signature changed within ``RACY_SECONDS`` before git started:
file-system timestamps are coarse, and a file rewritten twice within one tick keeps its mtime.
Repositories with submodules, linked worktrees (``.git`` is a file) or more than ``MAX_ENTRIES`` paths
are never cached — there, git itself is the cheaper or the only correct check. Changes to global
git configuration (a new global excludes file) are not noticed within a process.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ENTRIES", "RACY_SECONDS", "clear", "lookup", "mark_start", "store"]

RACY_SECONDS = 2.0
MAX_ENTRIES = 20_000

_Signature = tuple[tuple[Any, ...], ...]


@dataclass
class _Entry:
    cap: int
    signature: _Signature
    tracked_in_ignored: tuple[str, ...]
    ignored_dirs: frozenset[str]
    section: dict[str, Any]
    diff: str | None


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()
_start_ns: dict[str, int] = {}


class _TooBig(Exception):
    pass


def _stat_key(path: str, rel: str) -> tuple[Any, ...]:
    try:
        st = os.lstat(path)
    except OSError:
        return (rel, None)
    return (rel, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _meta(root: str) -> list[tuple[Any, ...]] | None:
    gitdir = os.path.join(root, ".git")
    if not os.path.isdir(gitdir):
        return None
    names = ["HEAD", "index", "packed-refs", "config", os.path.join("info", "exclude")]
    try:
        with open(os.path.join(gitdir, "HEAD"), encoding="utf-8", errors="replace") as f:
            head = f.read().strip()
    except OSError:
        return None
    if head.startswith("ref: "):
        names.append(head[5:])
    return [_stat_key(os.path.join(gitdir, n), ".git/" + n) for n in names]


def _walk(root: str, ignored: frozenset[str], out: list[tuple[Any, ...]]) -> None:
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir)) as it:
                for entry in it:
                    if entry.name == ".git":
                        continue
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    if len(out) > MAX_ENTRIES:
                        raise _TooBig
                    if rel in ignored:  # its contents are ignored, and so is its mtime (which they change)
                        out.append((rel, "ignored"))
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        out.append((rel, None))
                        continue
                    out.append((rel, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(rel)
        except FileNotFoundError:
            out.append((rel_dir, None))


def _signature(root: str, ignored: frozenset[str], tracked_in_ignored: tuple[str, ...]) -> _Signature | None:
    meta = _meta(root)
    if meta is None or os.path.exists(os.path.join(root, ".gitmodules")):
        return None
    entries: list[tuple[Any, ...]] = [_stat_key(root, ".")]
    try:
        _walk(root, ignored, entries)
    except _TooBig:
        return None
    entries.extend(_stat_key(os.path.join(root, rel), rel) for rel in tracked_in_ignored)
    return tuple(meta) + tuple(entries)


def _newest_ns(signature: _Signature) -> int:
    return max((max(e[1], e[2]) for e in signature if len(e) > 2), default=0)


def mark_start(root: str) -> None:
    """Record that git is about to run for ``root`` (the reference time of the racy check)."""
    with _lock:
        _start_ns[root] = time.time_ns()


def store(root: str, section: dict[str, Any], diff: str | None, cap: int, tracked: list[str],
          untracked: list[str], ignored_dirs: list[str]) -> None:
    """Remember a fresh capture of ``root`` if it can be validated cheaply and safely later."""
    if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:
        return
    ignored = frozenset(ignored_dirs)
    tracked_in_ignored = tuple(
        p for p in tracked if any(p.startswith(d + "/") for d in ignored)
    ) if ignored else ()
    signature = _signature(root, ignored, tracked_in_ignored)
    with _lock:
        started = _start_ns.pop(root, 0)
    if signature is None or not started or _newest_ns(signature) >= started - int(RACY_SECONDS * 1e9):
        with _lock:
            _entries.pop(root, None)
        return
    with _lock:
        _entries[root] = _Entry(cap, signature, tracked_in_ignored, ignored, copy.deepcopy(section), diff)


def lookup(root: str, cap: int) -> tuple[dict[str, Any], str | None] | None:
    """The remembered (section, diff) of ``root`` if its signature is unchanged, else None."""
    with _lock:
        entry = _entries.get(root)
    if entry is None or entry.cap != cap:
        return None
    if _signature(root, entry.ignored_dirs, entry.tracked_in_ignored) != entry.signature:
        return None
    return copy.deepcopy(entry.section), entry.diff


def clear() -> None:
    """Forget every remembered capture."""
    with _lock:
        _entries.clear()
        _start_ns.clear()
