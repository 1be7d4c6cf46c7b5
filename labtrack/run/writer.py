"""The background writer: one daemon thread per process that flushes buffered metrics and heartbeats.

Logging a metric only appends to the run's in-memory buffer; this thread writes the buffers in
batches every ``flush_interval`` seconds (sooner when a buffer reaches ``flush_points``) and renews the
heartbeat of every live run. A failing store is reported once per run as a warning and the points are
kept and retried: a broken store never stops training.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol

__all__ = ["BackgroundWriter", "Flushable"]


class Flushable(Protocol):
    def maintain_store(self) -> None:
        """Let the run's store do its periodic housekeeping."""

    def store_identity(self) -> int: ...

    def flush_in_background(self) -> bool:
        """Write what is buffered; return True when nothing is left and the run is not live."""

    def heartbeat_in_background(self, now: float) -> None: ...


class BackgroundWriter:
    def __init__(self, flush_interval: float, heartbeat_interval: float) -> None:
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self._runs: dict[int, Flushable] = {}
        self._live: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._last_beat = time.time()

    def reset_after_fork(self) -> None:
        """In a forked child: no thread, fresh locks, and none of the parent's runs (the parent writes its
        own buffers; a child writing copies of them would duplicate points)."""
        self._pid = os.getpid()
        self._thread = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._runs = {}
        self._live = set()

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # also reset by runtime's at-fork hook; this covers any gap
            self.reset_after_fork()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="labtrack-writer", daemon=True)
            self._thread.start()

    def add(self, run: Flushable, *, live: bool) -> None:
        """Flush ``run``'s buffer in the background; heartbeat it too when ``live``."""
        if self._pid != os.getpid():
            self.reset_after_fork()  # before taking a lock that the parent's thread may have held
        with self._lock:
            self._runs[id(run)] = run
            if live:
                self._live.add(id(run))
            self._ensure_thread()

    def discard(self, run: Flushable) -> None:
        with self._lock:
            self._runs.pop(id(run), None)
            self._live.discard(id(run))

    def flush_all(self) -> None:
        """Write every registered run's buffer now (at interpreter exit)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.flush_in_background()

    def kick(self) -> None:
        """Ask for a flush now (a buffer is filling up)."""
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(min(self.flush_interval, self.heartbeat_interval))
            self._wake.clear()
            with self._lock:
                refs = list(self._runs.items())
                live = set(self._live)
            now = time.time()
            beat = now - self._last_beat >= self.heartbeat_interval
            if beat:
                self._last_beat = now
            maintained: set[int] = set()
            for key, run in refs:
                idle = run.flush_in_background()
                store_id = run.store_identity()
                if store_id not in maintained:
                    maintained.add(store_id)
                    run.maintain_store()
                if key in live:
                    if beat:
                        run.heartbeat_in_background(now)
                elif idle:
                    with self._lock:
                        if key not in self._live:
                            self._runs.pop(key, None)
