"""The store's clock: the time by which liveness and sweep leases are judged, whoever reads them.

Heartbeats and leases are written by one machine and judged by another; judged by the reader's own clock,
a reader 300 s ahead would mark every live run CRASHED and a sweep worker 120 s ahead would take
configurations that others hold. So every such time is the store's: PostgreSQL's ``clock_timestamp()``
for a server store, read through an offset to this process's clock (measured again every minute, and at
once when this host's wall clock steps: its distance to the monotonic clock moves). A SQLite store lives
on one host, whose clock every process using it shares: there the store's clock is the host's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["REFRESH", "STEP", "ServerClock"]

REFRESH = 60.0  # seconds between measurements of the offset
STEP = 0.5  # a move of the wall clock against the monotonic one larger than this is a step: measure again


class ServerClock:
    def __init__(self, read_server: Callable[[], float]) -> None:
        self._read_server = read_server
        self._lock = threading.Lock()
        self._offset: float | None = None
        self._measured = 0.0  # monotonic time of the last measurement
        self._wall_minus_mono = 0.0  # at the last measurement

    def now(self) -> float:
        wall, mono = time.time(), time.monotonic()
        offset = self._offset
        if offset is None or mono - self._measured > REFRESH or abs(wall - mono - self._wall_minus_mono) > STEP:
            offset = self._measure(offset)
        return wall + offset

    def _measure(self, previous: float | None) -> float:
        with self._lock:
            before = time.time()
            try:
                server = self._read_server()
            except Exception:  # unreachable: keep the last offset (or this host's clock) and try again later
                self._measured = time.monotonic()
                self._wall_minus_mono = time.time() - self._measured
                return previous or 0.0
            after = time.time()
            self._offset = server - (before + after) / 2  # the round trip's middle
            self._measured = time.monotonic()
            self._wall_minus_mono = time.time() - self._measured
            return self._offset
