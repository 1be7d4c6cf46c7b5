"""Is a RUNNING run still running? A run whose process on this host is gone, or (elsewhere) whose heartbeat
is older than the timeout by the store's clock, is shown as CRASHED (and recorded so), never RUNNING
forever."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from labtrack.core.errors import LabtrackError
from labtrack.core.model import RunRecord, RunStatus, effective_status
from labtrack.run.process import HOST
from labtrack.store.base import Store

__all__ = ["process_state", "resolve_liveness"]


def process_state(pid: int, started_before: float) -> bool | None:
    """Whether ``pid`` is the process that started a run at ``started_before``: True (it runs), False (no
    such process), None (a process with that pid started later: the pid was reused — or this host's clock
    stepped since, which moves the start times it reports)."""
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return True if process.create_time() <= started_before + 1.0 else None
    except Exception:  # psutil.NoSuchProcess, AccessDenied, ...: treat as gone only when surely gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def resolve_liveness(store: Store, records: Sequence[RunRecord], timeout: float,
                     recover: Callable[[], object] | None = None) -> None:
    """Show RUNNING runs whose process is gone as CRASHED (and record that in the store).

    A run of this host is judged by its process, which needs no clock: alive is RUNNING however old its
    heartbeat looks, gone is CRASHED at once. Other runs are judged by their heartbeat against the store's
    clock (``Store.now``), never this machine's. ``recover`` is called first when a run of this host turns
    out dead: its process may have left a spool (``labtrack.run.recovery``) whose points belong in the run
    before it is marked CRASHED."""
    now: float | None = None
    for record in records:
        if record.status is not RunStatus.RUNNING:
            continue
        alive = None
        if record.host == HOST and record.pid:
            alive = process_state(record.pid, record.start_time)
        if alive is None:
            if now is None:
                now = store.now()
            crashed = effective_status(record, now, timeout) is RunStatus.CRASHED
        else:
            crashed = not alive
            if crashed and recover is not None:
                recover()
                try:
                    fresh = store.get_run(record.id)
                except LabtrackError:
                    fresh = record
                if fresh.status is not RunStatus.RUNNING:  # the spool held its end
                    record.__dict__.update(fresh.__dict__)
                    continue
                record.heartbeat_time = fresh.heartbeat_time
        if crashed:
            try:
                store.mark_crashed(record.id, record.heartbeat_time)
            except LabtrackError:
                pass  # shown as CRASHED anyway; a later reader records it
            record.status = RunStatus.CRASHED
            beat = record.heartbeat_time
            record.end_time = None if beat is None else max(beat, record.start_time)  # as the store records it
