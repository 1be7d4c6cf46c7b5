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
from labtrack.writer import BackgroundWriter

if TYPE_CHECKING:
    from labtrack.run import Run
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


def _end_runs_at_exit() -> None:
    if state.terminating is not None:
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
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": str(exc)[:4000],
        "traceback": text[-10000:],
    }


# -- runs ------------------------------------------------------------------------------------------
