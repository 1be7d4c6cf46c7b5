"""This machine's environment as runs record it: captured per run, cheaply, and what identifies the code.

Runs started in quick succession (a loop, a sweep) share one capture for ``RECAPTURE_SECONDS``, except the
``process`` and ``git`` sections, read again for each run: the command line, directory and variables may
change between runs, and so may the code, whose version is part of the run key (git answers from its own
cache after a stat check of the work tree). A package installed by the process itself is seen by runs
started ``RECAPTURE_SECONDS`` later. These caches describe the machine, so they are process-wide; so are
the seeds ``seed_everything`` set (the random generators they seed are the process's).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

from labtrack.core.errors import InvalidInput
from labtrack.settings import Settings

if TYPE_CHECKING:
    from labtrack.core.environment import Environment
    from labtrack.env import Captured, CaptureOptions

__all__ = ["RECAPTURE_SECONDS", "capture_environment", "capture_options", "code_version", "for_run",
           "known_conflicts", "remember_seeds", "reset", "script_entry", "seeds"]

RECAPTURE_SECONDS = 0.2


class _Cache:
    def __init__(self) -> None:
        self.last: tuple[Any, float, Any] | None = None  # (options, monotonic time, Captured)
        self.fingerprint: tuple[dict[str, Any], str] | None = None  # (fingerprint subset, its hash)
        self.seeds: dict[str, Any] | None = None  # from seed_everything, recorded on the next runs
        self.conflicts: tuple[str, list[dict[str, Any]]] | None = None  # (fingerprint, its known conflicts)
        self.options: tuple[Settings, CaptureOptions] | None = None  # the last settings' (frozen) options


_cache = _Cache()


def reset() -> None:
    """Forget the cached capture and the seeds (tests; a process that changed its environment)."""
    global _cache
    _cache = _Cache()


def known_conflicts(env: Environment) -> list[dict[str, Any]] | None:
    """The dependency conflicts of the packages ``env`` recorded, if already known; else None, and they are
    looked for in the background (for the run's end to record). Remembered for the environment's
    fingerprint, which covers its packages: runs that share a capture do not look again."""
    known = _cache.conflicts
    if known is not None and known[0] == env.fingerprint:
        return known[1]
    from labtrack.env.conflicts import find_conflicts_cached, start_background

    try:
        found = find_conflicts_cached(compute=False)
    except Exception:  # conflicts are information; never a reason to fail a run
        return None
    if found is None:
        start_background()
    elif env.fingerprint:
        _cache.conflicts = (env.fingerprint, found)
    return found


def seeds() -> dict[str, Any] | None:
    return _cache.seeds


def remember_seeds(info: dict[str, Any]) -> None:
    _cache.seeds = info


def capture_options(settings: Settings) -> CaptureOptions:
    known = _cache.options
    if known is not None and known[0] is settings:  # Settings is frozen: same object, same options
        return known[1]
    from labtrack.env import CaptureOptions

    options = CaptureOptions(
        sections=frozenset(settings.capture),
        record_hostname=settings.record_hostname,
        extra_env_vars=tuple(settings.env_vars),
        git_diff_max_bytes=settings.git_diff_max_bytes,
    )
    _cache.options = (settings, options)
    return options


def for_run(settings: Settings) -> Captured | None:
    """This process's environment for a new run, or None when capture is off (capture = none) or failed
    (a warning says why: capture never stops a run from starting)."""
    if not settings.capture:
        return None
    try:
        return _capture(settings)
    except InvalidInput:
        raise
    except Exception as exc:  # capture must never stop a run from starting
        warnings.warn(f"labtrack: environment capture failed: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _capture(settings: Settings) -> Captured:
    from labtrack.core.environment import Environment, fingerprint_subset
    from labtrack.env import Captured, capture

    options = capture_options(settings)
    now = time.monotonic()
    last = _cache.last
    if last is not None and last[0] == options and now - last[1] < RECAPTURE_SECONDS:
        return capture(options, reuse=last[2])
    captured = capture(options)
    # Hashing the snapshot costs more than capturing it again; reuse the hash while nothing it covers changed.
    subset = fingerprint_subset(captured.environment.snapshot)
    known = _cache.fingerprint
    if known is not None and known[0] == subset:
        captured = Captured(Environment(captured.environment.snapshot, fingerprint=known[1]), captured.git_diff)
    else:
        _cache.fingerprint = (subset, captured.environment.fingerprint)
    _cache.last = (options, now, captured)
    return captured


def capture_environment(settings: Settings) -> Environment:
    """The environment snapshot that runs record (``labtrack.capture_environment()``), captured now."""
    from labtrack.env import capture

    return capture(capture_options(settings)).environment


def script_entry(env: Environment | None, script: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What runs, for the run key, when it is a script (``script``, or this process's entry script): its
    path relative to the git work tree's root, or its file name outside one — the same on every clone and
    machine. ``{"script": None}`` for an interactive session, ``python -c`` or a notebook."""
    path: str | None = None
    if script is not None:
        path = os.fspath(script)
    elif env is not None:
        process = env.snapshot.get("process")
        entry = process.get("entry") if isinstance(process, dict) else None
        path = entry.get("path") if isinstance(entry, dict) else None
    elif sys.argv and sys.argv[0] not in ("", "-c", "-m") and os.path.isfile(sys.argv[0]):
        path = sys.argv[0]  # capture is switched off: the command line says it
    if not path:
        return {"script": None}
    path = os.path.realpath(path)
    git = env.snapshot.get("git") if env is not None else None
    root = git.get("root") if isinstance(git, dict) and git.get("repo") else None
    if isinstance(root, str) and (path == root or path.startswith(root.rstrip(os.sep) + os.sep)):
        return {"script": os.path.relpath(path, root).replace(os.sep, "/")}
    return {"script": os.path.basename(path)}


def code_version(env: Environment | None, script: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """What identifies the code a run executes, for the run key.

    In a git repository: the commit and the sha256 of the uncommitted diff against HEAD (untracked files
    do not count — they are often outputs; ``git add -N`` a new source file to make it count). Outside
    one: the sha256 of the entry script (or of ``script``, for a key asked about another script). None when
    neither is known.
    """
    if env is None:
        return None
    git = env.snapshot.get("git")
    if isinstance(git, dict) and git.get("repo") and git.get("commit"):
        return {"commit": git["commit"], "diff": git.get("diff_sha256") if git.get("dirty") else None}
    if script is not None:
        from labtrack.env.files import sha256_file

        digest = sha256_file(os.path.realpath(os.fspath(script)))
        return {"script": digest} if digest else None
    process = env.snapshot.get("process")
    entry = process.get("entry") if isinstance(process, dict) else None
    if isinstance(entry, dict) and entry.get("sha256"):
        return {"script": entry["sha256"]}
    return None
