"""Process-wide state of labtrack: settings, open stores, the active-run stack, the background
writer, and the hooks that end runs properly when the process is interrupted or exits.

SIGTERM is turned into ``SystemExit(128 + signum)`` raised in the main thread (unless the program set
its own handler, which is then called), so ``with`` blocks and ``finally`` clauses run and the run ends
KILLED after its metrics are written. At interpreter exit, runs still active are ended: KILLED after a
signal, FAILED after an uncaught exception, FINISHED otherwise.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

from labtrack.core.model import RunStatus
from labtrack.settings import Settings, load_settings
from labtrack.run.writer import BackgroundWriter

if TYPE_CHECKING:
    from labtrack.core.environment import Environment
    from labtrack.env import Captured, CaptureOptions
    from labtrack.run.handle import Run
    from labtrack.store.base import Store

__all__ = ["error_of", "install_hooks", "set_store", "settings", "state", "store", "store_location", "writer"]


class _State:
    """Process-wide state: settings, open stores, the active-run stack, the background writer."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: Settings | None = None
        self.store_override: str | None = None
        self.stores: dict[str, Store] = {}
        self.stack: list[Run] = []
        self.writer: BackgroundWriter | None = None
        self.hooks_installed = False
        self.terminating: int | None = None  # the signal that is ending the process
        self.uncaught: BaseException | None = None
        self.host = socket.gethostname()
        self.seeds: dict[str, Any] | None = None  # from seed_everything, recorded on the next runs
        self.stored_envs: set[tuple[str, str]] = set()  # (store url, fingerprint) known to be stored
        self.last_fingerprint: tuple[dict[str, Any], str] | None = None  # (fingerprint subset, its hash)
        self.last_capture: tuple[Any, float, Any] | None = None  # (options, monotonic time, Captured)
        self.stored_diffs: dict[tuple[str, str], tuple[str, int]] = {}  # (store url, diff) -> (sha256, size)


state = _State()


def settings() -> Settings:
    if state.settings is None:
        state.settings = load_settings()
    return state.settings


def set_store(location: str | None) -> None:
    """Use ``location`` (a store URL) for this process, over LABTRACK_STORE and config files."""
    with state.lock:
        state.store_override = location


def store_location(location: str | None = None) -> str:
    """The store URL in effect: an explicit one, else set_store's, else the settings' (env, file, default)."""
    return location or state.store_override or settings().store


def store(location: str | None = None) -> Store:
    current = settings()
    location = store_location(location)
    with state.lock:
        opened = state.stores.get(location)
        if opened is None:
            from labtrack.store import open_store

            opened = open_store(location, artifacts=current.artifacts, busy_timeout=current.sqlite_busy_timeout)
            state.stores[location] = opened
        return opened


def writer() -> BackgroundWriter:
    if state.writer is None:
        current = settings()
        state.writer = BackgroundWriter(current.flush_interval, current.heartbeat_interval)
    return state.writer


def install_hooks() -> None:
    if state.hooks_installed:
        return
    state.hooks_installed = True
    atexit.register(_end_runs_at_exit)
    previous_hook = sys.excepthook

    def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        state.uncaught = exc
        previous_hook(exc_type, exc, tb)

    sys.excepthook = _excepthook
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        return

    def _on_sigterm(signum: int, frame: Any) -> None:
        state.terminating = signum
        if callable(previous):
            previous(signum, frame)  # the user's own handler decides; we mark runs KILLED if it exits
            return
        # Unwind like Ctrl-C does, so `with` blocks and `finally` clauses run and the run ends KILLED.
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        pass


def _after_fork_in_child() -> None:
    if state.writer is not None:
        state.writer.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _end_runs_at_exit() -> None:
    if threading.current_thread() is threading.main_thread():
        try:  # a second SIGTERM (a scheduler's grace period) must not cut this short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    if state.terminating is not None or isinstance(state.uncaught, KeyboardInterrupt):
        status = RunStatus.KILLED
    elif state.uncaught is not None:
        status = RunStatus.FAILED
    else:
        status = RunStatus.FINISHED
    while state.stack:
        run = state.stack[-1]
        if run._owner_pid != os.getpid():
            state.stack.pop()
            continue
        try:
            run.end(status, error=error_of(state.uncaught) if status is RunStatus.FAILED else None)
        except Exception as exc:  # the process is ending: report, do not raise
            print(f"labtrack: could not end run {run.id}: {exc}", file=sys.stderr)
            state.stack.pop() if state.stack and state.stack[-1] is run else None
    if state.writer is not None:
        state.writer.flush_all()


def error_of(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    from labtrack.core.redact import redact_text

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {  # redacted: an exception's text may quote a credentialed URL or a token
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": redact_text(str(exc)[:4000]),
        "traceback": redact_text(text[-10000:]),
    }


# -- runs ------------------------------------------------------------------------------------------


def settle() -> None:
    """Write what this process still holds for its active runs, so reads see them."""
    for run in list(state.stack):
        if run._owner_pid == os.getpid():
            run._settle()


def capture_options() -> CaptureOptions:
    from labtrack.env import CaptureOptions

    current = settings()
    return CaptureOptions(
        sections=frozenset(current.capture),
        record_hostname=current.record_hostname,
        extra_env_vars=tuple(current.env_vars),
        git_diff_max_bytes=current.git_diff_max_bytes,
    )


RECAPTURE_SECONDS = 0.2


def capture() -> Captured | None:
    """This process's environment for a new run, or None when capture is turned off (capture = none).

    Runs started in quick succession (a loop, a sweep) share one capture for ``RECAPTURE_SECONDS``,
    except the ``process`` and ``git`` sections, read again for each run: the command line, directory
    and variables may change between runs, and so may the code, whose version is part of the run key
    (git answers from its own cache after a stat check of the work tree). A package installed by the
    process itself is seen by runs started ``RECAPTURE_SECONDS`` later.
    """
    if not settings().capture:
        return None
    import time as _time

    from labtrack.core.environment import fingerprint_subset
    from labtrack.env import capture as capture_env

    options = capture_options()
    now = _time.monotonic()
    last = state.last_capture
    if last is not None and last[0] == options and now - last[1] < RECAPTURE_SECONDS:
        return capture_env(options, reuse=last[2])
    captured = capture_env(options)
    # Hashing the snapshot costs more than capturing it again; reuse the hash while nothing it covers changed.
    subset = fingerprint_subset(captured.environment.snapshot)
    if state.last_fingerprint is not None and state.last_fingerprint[0] == subset:
        captured.environment.__dict__["fingerprint"] = state.last_fingerprint[1]
    else:
        state.last_fingerprint = (subset, captured.environment.fingerprint)
    state.last_capture = (options, now, captured)
    return captured


def capture_environment() -> Environment:
    """The environment snapshot that runs record (``labtrack.capture_environment()``)."""
    from labtrack.env import capture as capture_env

    return capture_env(capture_options()).environment


def store_environment(target: Store, env: Environment) -> str:
    """Store the shared part of ``env`` once per (store, fingerprint); return the fingerprint."""
    fingerprint = env.fingerprint
    known = (target.url, fingerprint)
    if known not in state.stored_envs:
        per_run = env.per_run()
        shared = {k: v for k, v in env.snapshot.items() if k not in per_run or k == "system"}
        system = shared.get("system")
        if isinstance(system, dict) and isinstance(per_run.get("system"), dict):
            shared["system"] = {k: v for k, v in system.items() if k not in per_run["system"]}
        target.put_environment(fingerprint, shared)
        state.stored_envs.add(known)
    return fingerprint


def code_version(env: Environment | None) -> dict[str, Any] | None:
    """What identifies the code a run executes, for the run key.

    In a git repository: the commit and the sha256 of the uncommitted diff against HEAD (untracked files
    do not count — they are often outputs; ``git add -N`` a new source file to make it count). Outside
    one: the sha256 of the entry script. None when neither is known.
    """
    if env is None:
        return None
    git = env.snapshot.get("git")
    if isinstance(git, dict) and git.get("repo") and git.get("commit"):
        return {"commit": git["commit"], "diff": git.get("diff_sha256") if git.get("dirty") else None}
    process = env.snapshot.get("process")
    entry = process.get("entry") if isinstance(process, dict) else None
    if isinstance(entry, dict) and entry.get("sha256"):
        return {"script": entry["sha256"]}
    return None
