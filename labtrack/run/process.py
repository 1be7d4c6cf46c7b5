"""What is truly process-wide: the stack of active runs, and the hooks that end them properly when the
process is interrupted or exits.

SIGTERM is turned into ``SystemExit(128 + signum)`` raised in the main thread (unless the program set
its own handler, which is then called), so ``with`` blocks and ``finally`` clauses run and the run ends
KILLED after its writes are in the store. At interpreter exit, runs still active are ended: KILLED after
a signal, FAILED after an uncaught exception, FINISHED otherwise; then the background writer drains every
spool (a spool it cannot drain stays for recovery, and says so).
"""

from __future__ import annotations

import atexit
import os
import platform
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from labtrack.core.model import RunStatus

__all__ = [
    "HOST",
    "ActiveRun",
    "active",
    "ending",
    "error_of",
    "exit_status",
    "install_hooks",
    "on_end",
    "push",
    "remove",
    "running",
    "state",
]

HOST = platform.node()  # the host name, as socket.gethostname() says it (without importing socket)


class ActiveRun(Protocol):
    """What the stack holds: a run this process started (``labtrack.run.handle.Run``)."""

    id: str

    def owned_here(self) -> bool: ...

    def end(self, status: RunStatus | str = ..., error: Mapping[str, str] | None = ...) -> None: ...


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stack: list[ActiveRun] = []
        self.hooks_installed = False
        self.terminating: int | None = None  # the signal that is ending the process
        self.uncaught: BaseException | None = None
        self.at_exit: list[Any] = []  # callables run after the active runs are ended (the writer's drain)
        self.exit_hooked_pid = 0  # the process whose multiprocessing exit runs the exit hook (see below)
        self.exited_pid = 0  # the process that ran the exit hook already
        self.end_hooks: list[Callable[[ActiveRun, RunStatus, Mapping[str, str] | None], None]] = []


state = _State()


def _after_fork_in_child() -> None:
    state.lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def active() -> ActiveRun | None:
    """The innermost active run of this process (a forked child does not inherit its parent's)."""
    with state.lock:
        if state.stack and state.stack[-1].owned_here():
            return state.stack[-1]
    return None


def running() -> list[ActiveRun]:
    """The runs this process started and has not ended, outermost first."""
    with state.lock:
        return [run for run in state.stack if run.owned_here()]


def push(run: ActiveRun) -> ActiveRun | None:
    """Make ``run`` the active run; returns the run that was active (its parent, if nested)."""
    with state.lock:
        if state.stack and not state.stack[-1].owned_here():
            state.stack.clear()  # inherited through fork: the parent process owns those runs
        parent = state.stack[-1] if state.stack else None
        state.stack.append(run)
        return parent


def remove(run: ActiveRun) -> None:
    with state.lock:
        if run in state.stack:
            state.stack.remove(run)


def on_end(hook: Callable[[ActiveRun, RunStatus, Mapping[str, str] | None], None]) -> None:
    """Call ``hook(run, status, error)`` whenever this process ends a run it started, before the end is
    written (the run takes writes still). The run monitor stores the final console log there."""
    if hook not in state.end_hooks:
        state.end_hooks.append(hook)


def ending(run: ActiveRun, status: RunStatus, error: Mapping[str, str] | None) -> None:
    """Run the ``on_end`` hooks for ``run``; one that fails is reported, and the run ends all the same."""
    for hook in state.end_hooks:
        try:
            hook(run, status, error)
        except Exception as exc:
            print(f"labtrack: while ending run {run.id}: {exc}", file=sys.stderr)


def install_hooks() -> None:
    _hook_multiprocessing_exit()
    if state.hooks_installed:
        return
    state.hooks_installed = True
    atexit.register(_end_runs_at_exit)
    previous_hook = sys.excepthook

    def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        state.uncaught = exc
        if isinstance(exc, KeyboardInterrupt) and getattr(exc, "labtrack_reported", False):
            return  # Ctrl-C during a sweep: the sweep said what happened in one line
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


def exit_status() -> RunStatus:
    """The status that ending the process gives its active runs."""
    if state.terminating is not None or isinstance(state.uncaught, KeyboardInterrupt):
        return RunStatus.KILLED
    if state.uncaught is not None:
        return RunStatus.FAILED
    return RunStatus.FINISHED


def _hook_multiprocessing_exit() -> None:
    """A multiprocessing child leaves with ``os._exit`` after its finalizers, without ``atexit``: end its
    runs and drain its spool in one of those finalizers (once per process)."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or state.exit_hooked_pid == os.getpid() or multiprocessing.parent_process() is None:
        return
    state.exit_hooked_pid = os.getpid()
    from multiprocessing import util

    util.Finalize(None, _end_runs_at_exit, exitpriority=10)


def _end_runs_at_exit() -> None:
    if state.exited_pid == os.getpid():
        return  # both the multiprocessing finalizer and atexit: the first one did it
    state.exited_pid = os.getpid()
    if threading.current_thread() is threading.main_thread():
        try:  # a second SIGTERM (a scheduler's grace period) must not cut this short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    status = exit_status()
    while state.stack:
        run = state.stack[-1]
        if not run.owned_here():
            state.stack.pop()
            continue
        try:
            run.end(status, error=error_of(state.uncaught) if status is RunStatus.FAILED else None)
        except Exception as exc:  # the process is ending: report, do not raise
            print(f"labtrack: could not end run {run.id}: {exc}", file=sys.stderr)
        remove(run)
    for hook in state.at_exit:
        try:
            hook()
        except Exception as exc:
            print(f"labtrack: {exc}", file=sys.stderr)


def error_of(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    import traceback

    from labtrack.core.redact import redact_text

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {  # redacted: an exception's text may quote a credentialed URL or a token
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": redact_text(str(exc)[:4000]),
        "traceback": redact_text(text[-10000:]),
    }
