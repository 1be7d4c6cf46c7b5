"""Tracking servers as real processes on 127.0.0.1, for the server workloads of both sides: started, waited
on, watched (memory) and stopped — every process of the server, even when the workload fails.

Standard library only: the MLflow side imports this file from its own virtualenv (the script's folder is on
its sys.path), as it does ``fixtures``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["MemoryWatch", "ServerProcess", "collect", "free_port", "http_get", "on_parent_death", "stop_all",
           "summarise_errors"]

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (0 and the error when nothing answers)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc).encode()


class ServerProcess:
    """A server started by ``command`` in a session of its own (so that it and the workers it forks can be
    stopped together), ready when ``url + ready_path`` answers 200."""

    def __init__(self, command: list[str], *, port: int, log: str, env: dict[str, str] | None = None,
                 ready_path: str = "/ready", cwd: str | None = None) -> None:
        self.command = command
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = env
        self.ready_path = ready_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s = float("nan")  # spawn -> first 200 from ready_path

    def start(self, timeout: float = 60.0) -> float:
        """Spawn the server and wait until it answers; the seconds that took."""
        with open(self.log, "ab") as out:
            t0 = time.perf_counter()
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd, start_new_session=True, preexec_fn=_stop_with_parent)
        deadline = t0 + timeout
        ready = self.url + self.ready_path
        while True:
            status, _ = http_get(ready, timeout=2.0)
            if status == 200:
                self.started_s = time.perf_counter() - t0
                return self.started_s
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}): {self.log_tail()}")
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer {ready} within {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.005)

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return " | ".join(line.strip() for line in f.read().splitlines()[-lines:] if line.strip())
        except OSError:
            return ""

    def tree(self) -> dict[int, list[int]]:
        """The server's process and every process below it: pid -> its children."""
        if self.process is None or self.process.poll() is not None:
            return {}
        found: dict[int, list[int]] = {}
        queue = [self.process.pid]
        while queue:
            pid = queue.pop()
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    found[pid] = [int(child) for child in f.read().split()]
            except OSError:
                found[pid] = []
            queue.extend(found[pid])
        return found

    def pids(self) -> list[int]:
        return list(self.tree())

    def workers(self) -> list[int]:
        """The processes that answer requests: those at the bottom of the tree (the server's own process
        when it has no workers; uvicorn's workers below `labtrack server` or below `mlflow server`'s
        uvicorn), not helpers such as multiprocessing's resource tracker."""
        return [pid for pid, children in self.tree().items()
                if not children and "resource_tracker" not in _cmdline(pid)]

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL to the whole session after ``grace`` seconds; idempotent."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the session we started for it: workers left behind go too
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def on_parent_death(signum: int) -> Callable[[], None]:
    """A ``preexec_fn``: the new process gets ``signum`` when the process that started it dies (a benchmark
    worker killed at its time-out leaves no server or client behind). Linux's prctl(PR_SET_PDEATHSIG)."""

    def arrange() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    return arrange


_stop_with_parent = on_parent_death(signal.SIGTERM)  # a server: it stops its workers on the way out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rss_kb(pid: int) -> tuple[int, int]:
    """(resident, peak resident) of a process in KiB; (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


class MemoryWatch:
    """Samples the memory of a server's processes every ``interval`` seconds, on a thread, while in its
    ``with`` block: the peak RSS of the busiest worker (the kernel's own high-water mark, VmHWM, read at the
    end too) and the peak of all the server's processes together."""

    def __init__(self, server: ServerProcess, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.worker_peak_kb = 0
        self.total_peak_kb = 0
        self.workers = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        pids = self.server.pids()
        workers = set(self.server.workers())
        self.workers = max(self.workers, len(workers))
        self.processes = max(self.processes, len(pids))
        total = 0
        for pid in pids:
            rss, peak = _rss_kb(pid)
            total += rss
            if pid in workers:
                self.worker_peak_kb = max(self.worker_peak_kb, peak)
        self.total_peak_kb = max(self.total_peak_kb, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def result(self) -> dict[str, Any]:
        plural = "es" if self.processes > 1 else ""
        return {"server_rss_mb": self.worker_peak_kb / 1024, "server_total_rss_mb": self.total_peak_kb / 1024,
                "server_workers": self.workers, "server_processes": self.processes,
                "memory_n": f"peak of the busiest of {self.workers} worker{'s' * (self.workers > 1)}",
                "memory_total_n": f"{self.processes} process{plural}"}


def summarise_errors(messages: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for message in messages:
        counts[message] = counts.get(message, 0) + 1
    return [f"{count}× {message}" for message, count in sorted(counts.items())]


def collect(children: list[subprocess.Popen[str]], timeout: float, parse: Callable[[str], Any], *,
            warnings_count: bool = True) -> tuple[list[Any], list[str], int]:
    """Wait for every child (killing one that outlives ``timeout``, counted from now); their parsed outputs,
    the error messages of those that failed, and how many failed (``warnings_count``: a child that printed
    an error or a warning, as a user would see it, counts as failed too)."""
    deadline = time.monotonic() + timeout
    outputs, messages, failed = [], [], 0
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
            stderr += "\n(timed out, killed)"
        lines = stdout.strip().splitlines()
        if child.returncode != 0 or not lines:
            failed += 1
            tail = [line for line in stderr.strip().splitlines() if line.strip()]
            messages.append(tail[-1] if tail else f"exit {child.returncode}")
            continue
        output = parse(lines[-1])
        warned = [line for line in stderr.splitlines() if "Error" in line or "Warning" in line]
        if warned and warnings_count:  # what reaches the user's terminal counts too (e.g. a retried write)
            failed += 1
            messages.append(warned[0].strip()[:300])
        outputs.append(output)
    return outputs, messages, failed


def stop_all(children: list[subprocess.Popen[str]]) -> None:
    """Kill the children still running (after an error): none outlives its workload."""
    for child in children:
        if child.poll() is None:
            child.kill()
            try:
                child.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                pass
