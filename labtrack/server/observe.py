"""What a platform team watches and what keeps a busy server answering: request metrics in Prometheus's
text format (``/metrics``, a reader's token), and a cap on requests in flight per process — past it the
server answers 503 with ``Retry-After`` at once instead of queueing until clients time out (the remote
store waits and tries again).

Each worker process counts its own requests; Prometheus scrapes each, or sums them behind the balancer.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labtrack.core.errors import StoreError

__all__ = ["MAX_IN_FLIGHT", "Metrics", "ObserveMiddleware", "ServerBusy"]

MAX_IN_FLIGHT = 64


class ServerBusy(StoreError):
    """The server has as many requests in flight as it takes: try again after ``Retry-After`` seconds."""

    status_code = 503


class Metrics:
    """Counters of one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (method, route, status) -> count
        self.seconds: dict[str, float] = defaultdict(float)  # route -> total seconds
        self.points = 0  # metric points received in writes
        self.runs_created = 0
        self.in_flight = 0
        self.refused_busy = 0

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.seconds[route] += seconds

    def ingested(self, points: int, created: int) -> None:
        with self._lock:
            self.points += points
            self.runs_created += created

    def text(self) -> str:
        """The Prometheus exposition format."""
        with self._lock:
            lines = ["# HELP labtrack_requests_total HTTP requests answered, by method, route and status.",
                     "# TYPE labtrack_requests_total counter"]
            lines += [f'labtrack_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}'
                      for (m, r, s), n in sorted(self.requests.items())]
            lines += ["# HELP labtrack_request_seconds_total Seconds spent answering, by route.",
                      "# TYPE labtrack_request_seconds_total counter"]
            lines += [f'labtrack_request_seconds_total{{route="{r}"}} {v:.6f}' for r, v in sorted(self.seconds.items())]
            lines += ["# HELP labtrack_points_ingested_total Metric points received in writes.",
                      "# TYPE labtrack_points_ingested_total counter", f"labtrack_points_ingested_total {self.points}",
                      "# HELP labtrack_runs_created_total Runs created through this server.",
                      "# TYPE labtrack_runs_created_total counter", f"labtrack_runs_created_total {self.runs_created}",
                      "# HELP labtrack_requests_in_flight Requests being answered now.",
                      "# TYPE labtrack_requests_in_flight gauge", f"labtrack_requests_in_flight {self.in_flight}",
                      "# HELP labtrack_requests_refused_busy_total Requests answered 503 because too many were in flight.",
                      "# TYPE labtrack_requests_refused_busy_total counter",
                      f"labtrack_requests_refused_busy_total {self.refused_busy}"]
        return "\n".join(lines) + "\n"


class ObserveMiddleware:
    """Counts and times every HTTP request by its route template (never by its raw path: ids would make
    one series per run), and refuses with 503 past ``max_in_flight`` requests at once."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, route_of: Callable[[Scope], str],
                 send_error: Callable[[Any], Any], max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of
        self.send_error = send_error
        self.max_in_flight = max_in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        if metrics.in_flight >= self.max_in_flight and scope["path"] not in ("/health", "/ready"):
            metrics.refused_busy += 1
            await self.send_error(ServerBusy("the server is busy; try again in a second"))(scope, receive, _with_retry_after(send))
            return
        metrics.in_flight += 1
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.in_flight -= 1
            metrics.request(scope["method"], self.route_of(scope), status, time.perf_counter() - started)


def _with_retry_after(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"retry-after", b"1")]}
        await send(message)

    return sending
