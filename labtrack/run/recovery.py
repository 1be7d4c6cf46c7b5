"""Recovery: the spools of processes that died before their writes reached the store, stored now.

A process holds a lock on its spool while it lives (``labtrack.run.spool``); the kernel releases it when
the process dies, however it dies. So a spool whose lock can be taken belongs to a dead process: its
contents are read cut by cut (``labtrack.run.drain``) and written carefully — what the store already
holds from it (its ingest marks) is left out, so every point is stored exactly once however often
recovery is interrupted and started again. Then its runs that never ended are marked CRASHED, and the
spool is removed. The next process that opens the store does this, and so does ``labtrack recover``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from labtrack.core.errors import LabtrackError
from labtrack.core.model import IngestMark, Recovery, RunStatus
from labtrack.run.drain import SpoolReader, read_cut, remove_staged
from labtrack.run.writer import RunNotStoredYet, store_cut, store_key
from labtrack.store.base import Store

__all__ = ["Recovery", "recover"]

_STALE_MAKING = 3600.0  # a spool directory still being made after this long was abandoned
_GIVE_UP_AFTER = 86400.0  # a dead spool's writes to a run that never reached the store are dropped after this


def recover(store: Store, root: Path) -> Recovery:
    """Store the contents of every dead process's spool for ``store`` under ``root``."""
    report = Recovery()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return report
    key = store_key(store)
    later: list[Path] = []
    for path in entries:
        if _recover_path(store, path, key, report, wait=True) == "later":
            later.append(path)  # its runs come from another spool (a forked child's): after the others
    for path in later:
        _recover_path(store, path, key, report, wait=False)
    return report


def _recover_path(store: Store, path: Path, key: str, report: Recovery, *, wait: bool) -> str | None:
    """Recover one spool directory; "later" when its writes wait for runs another spool creates."""
    if path.name.startswith("."):
        if path.name.endswith(".new") and _older_than(path, _STALE_MAKING):
            shutil.rmtree(path, ignore_errors=True)
        return None
    if not path.is_dir():
        return None
    fd = _take_lock(path)
    if fd is None:
        return None  # its process is alive
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("store") != key:
            report.problems.append(f"spool {path} was recorded for another store URL than {store.display_url}: "
                                   "not shipped here (sync it with LABTRACK_STORE set to the URL its runs used)")
            return None
        # Writes to runs another process creates (a forked child's, to its parent's run) wait for them:
        # first for the other spools here, then for a parent still alive (the spool stays for the next
        # attempt), and are dropped once the spool is a day old.
        young = time.time() - float(meta.get("created") or 0.0) < _GIVE_UP_AFTER
        _recover_one(store, path, meta, report, wait_for=lambda _run: wait or young)
    except RunNotStoredYet as exc:
        if wait:
            return "later"
        report.problems.append(f"spool {path}: {exc}; it stays for the next attempt")
    except (OSError, ValueError) as exc:
        report.problems.append(f"spool {path}: {exc}")
    except LabtrackError as exc:
        report.problems.append(f"spool {path}: {exc}; it stays for the next attempt")
    finally:
        os.close(fd)
    return None


def _take_lock(path: Path) -> int | None:
    try:
        fd = os.open(path / "lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _recover_one(store: Store, path: Path, meta: dict[str, object], report: Recovery,
                 wait_for: Callable[[str], bool]) -> None:
    source = str(meta["source"])
    reader = SpoolReader(path)
    try:
        names = reader.names()
        runs = {run_id for run_id, _key in names.values()}
        marks = {run_id: mark for run_id in runs if (mark := store.ingest_mark(run_id, source)) is not None}
        journal, points = reader.drained()
        ended: set[str] = set()
        last_seen: dict[str, float] = {}  # the latest point each run logged: when its process was last alive
        while True:
            cut = read_cut(reader, source, journal, points, names=names, marks=marks)
            if (cut.journal, cut.points) == (journal, points):
                break
            if not cut.empty:
                store_cut(store, cut, retry=True, wait_for=wait_for)
                remove_staged(cut.staged)
            for run_id, write in cut.writes.items():
                runs.add(run_id)
                report.points += write.points
                if write.end is not None:
                    ended.add(run_id)
                if write.mark is not None:
                    marks[run_id] = IngestMark(source, cut.journal, cut.points)
                for chunk in write.metrics.values():
                    last_seen[run_id] = max(last_seen.get(run_id, 0.0), max(chunk.timestamps))
            journal, points = cut.journal, cut.points
            _set_drained(path, journal, points)
            reader.forget_below(journal, points)
    finally:
        reader.close()
    report.spools += 1
    report.runs |= runs
    for run_id in sorted(runs - ended):
        try:
            record = store.get_run(run_id)
        except LabtrackError:
            continue
        if record.status is RunStatus.RUNNING and record.pid == meta.get("pid") and record.host == meta.get("host"):
            last = max(record.heartbeat_time or record.start_time, last_seen.get(run_id, 0.0))
            if store.mark_crashed(run_id, record.heartbeat_time, end_time=last):
                report.crashed.append(run_id)
    shutil.rmtree(path, ignore_errors=True)


def _set_drained(path: Path, journal: int, points: int) -> None:
    fd = os.open(path / "drained", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, journal.to_bytes(8, "little", signed=True) + points.to_bytes(8, "little", signed=True), 0)
    finally:
        os.close(fd)
