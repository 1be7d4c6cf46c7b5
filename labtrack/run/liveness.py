"""Is a RUNNING run still running? A run whose heartbeat is older than the timeout, or whose process on
this host is gone, is shown as CRASHED (and recorded so), never RUNNING forever."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from labtrack.core.errors import LabtrackError
from labtrack.core.model import RunRecord, RunStatus, effective_status
from labtrack.run.process import HOST
from labtrack.store.base import Store

__all__ = ["pid_alive", "resolve_liveness"]


def pid_alive(pid: int, started_before: float) -> bool:
    """Whether ``pid`` runs and is the same process (it started no later than the run did)."""
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return bool(process.create_time() <= started_before + 1.0)
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

    ``recover`` is called first when a run of this host turns out dead: its process may have left a spool
    (``labtrack.run.recovery``) whose points belong in the run before it is marked CRASHED."""
    now = time.time()
    for record in records:
        if record.status is not RunStatus.RUNNING:
            continue
        crashed = effective_status(record, now, timeout) is RunStatus.CRASHED
        if not crashed and record.host == HOST and record.pid and record.pid != os.getpid():
            crashed = not pid_alive(record.pid, record.start_time)
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
            record.end_time = record.heartbeat_time
