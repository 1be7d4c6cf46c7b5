"""The run monitor: one background thread per process that records system metrics (``system/...``) on every
live run this process owns and stores their console logs (``labtrack.verbs.console``) as they grow.

**One thread, however many runs.** ``watch`` (called by ``start_run``) registers a run and starts the
daemon thread ``labtrack-monitor`` if it is not running; the run's end (a hook of ``labtrack.run.process``,
called by ``Run.end`` before the end is written, at interpreter exit too) stores the final console log and
unregisters it; the thread ends one second after the last run ended, unless another run started meanwhile
(a sweep of quick runs then starts one thread, not one per run: a thread start costs ~0.5 ms). A forked child starts with no runs and no thread
(its parent's thread does not exist there) and starts its own on its first run.

**System metrics** (setting ``system_metrics``, ``LABTRACK_SYSTEM_METRICS``: seconds, default 10, or
``off``): a run's first sample is taken 1 second after it starts (the reader's baseline is taken when the
thread starts, so CPU % and the I/O rates have something to compare against) — a 3-second run has a
point — then every interval. Step n is the run's n-th sample; the point's timestamp is the reading's. One
reading serves every run that is due. Readings come from ``labtrack.env.usage`` (psutil, NVML), which
never raises: a failing group of series warns once and stops. A run shorter than a second gets no sample.

**Cost.** The thread sleeps until the next sample or, while a console log has unsaved output, at most a
second. A reading costs well under a millisecond (bench: ``python -m bench --only system_metrics``).
Starting and ending a run adds a dictionary entry, a tee, and at most a thread start.

**Never in the way.** Whatever fails here warns once and training goes on.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labtrack.core.model import RunStatus
from labtrack.run import process
from labtrack.verbs import console

if TYPE_CHECKING:
    from labtrack.env.usage import UsageReader
    from labtrack.run.handle import Run

__all__ = ["FIRST_SAMPLE_AFTER", "monitor_thread", "unwatch", "use_nvml", "watch"]

FIRST_SAMPLE_AFTER = 1.0  # seconds from a run's start to its first system sample
_CONSOLE_TICK = 1.0  # seconds between looks at console logs with unsaved output
_LINGER = 1.0  # seconds the thread waits for another run after the last one ended, before it ends


@dataclass
class _Watched:
    run: Run
    interval: float  # seconds between system samples; 0: none
    next_sample: float
    capture: console.Capture | None
    step: int = 0


class _Monitor:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.runs: dict[str, _Watched] = {}
        self.thread: threading.Thread | None = None
        self.reader: UsageReader | None = None  # kept between threads: psutil and NVML are loaded once
        self.nvml: Any = None  # a test's NVML double (``use_nvml``)
        self.warned: set[str] = set()
        self.wake_at = 0.0  # when the thread wakes up next (monotonic); 0: at the next notify

    def watch(self, run: Run) -> None:
        settings = run.settings
        interval = float(settings.system_metrics or 0.0)
        capture = console.attach(run.id, int(settings.console_log_max_mb * (1 << 20))) \
            if settings.console_log else None
        if not interval and capture is None:
            return
        now = time.monotonic()
        with self.cond:
            watched = self.runs[run.id] = _Watched(run, interval, now + min(FIRST_SAMPLE_AFTER, interval), capture)
            if self.thread is not None:
                need = min(watched.next_sample if interval else now + 3600.0,
                           now + _CONSOLE_TICK if capture is not None else now + 3600.0)
                if need < self.wake_at:  # the thread would sleep past this run's first need (or lingers)
                    self.cond.notify()
                return
            try:
                self.thread = threading.Thread(target=self._loop, name="labtrack-monitor", daemon=True)
                self.thread.start()
            except BaseException:  # no thread (the process is at its thread limit): no tee left behind
                self.thread = None
                self.runs.pop(run.id, None)
                console.detach(run.id)
                raise

    def unwatch(self, run_id: str, status: RunStatus | None = None, error: Mapping[str, str] | None = None) -> None:
        with self.cond:  # the thread finds out at its next wake-up, then lingers and ends
            watched = self.runs.pop(run_id, None)
        if watched is None or watched.capture is None:
            return
        capture = watched.capture
        try:
            capture.store(watched.run, final=True, extra=_traceback_to_add(capture, status, error))
        except Exception as exc:
            self.warn("console", f"labtrack: could not store the console log of run {run_id[:8]}: {exc}")
        finally:
            console.detach(run_id)

    def _loop(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must not go unnoticed, nor stop training
            self.warn("thread", f"labtrack: the run monitor stopped: {type(exc).__name__}: {exc}")
            with self.cond:
                self.thread = None

    def _run(self) -> None:
        primed = False  # the reader's baseline is taken when a run first needs samples
        while True:
            with self.cond:
                if not self.runs:  # a sweep's next run usually starts within milliseconds: wait for it
                    until = time.monotonic() + _LINGER
                    self.wake_at = 0.0  # any new run wakes the thread
                    while not self.runs:
                        left = until - time.monotonic()
                        if left <= 0:
                            self.thread = None
                            return
                        self.cond.wait(left)
                now = time.monotonic()
                sampling = [w for w in self.runs.values() if w.interval]
                prime = bool(sampling) and not primed
                due = [w for w in sampling if w.next_sample <= now]
                saving = [w for w in self.runs.values() if w.capture is not None and w.capture.due(now)]
                if not prime and not due and not saving:
                    wake = min((w.next_sample for w in sampling), default=now + 3600.0)
                    if any(w.capture is not None for w in self.runs.values()):
                        wake = min(wake, now + _CONSOLE_TICK)
                    self.wake_at = wake
                    self.cond.wait(max(0.0, wake - now))
                    continue
            if prime:
                primed = True
                if self.reader is not None:
                    self.reader.start()  # a fresh baseline
                else:
                    self._reader()
                continue
            if due:
                self._sample(due)
            for watched in saving:
                try:
                    watched.capture.store(watched.run)  # type: ignore[union-attr]
                except Exception as exc:
                    self.warn("console", f"labtrack: could not store the console log of run "
                                         f"{watched.run.id[:8]}: {exc}")

    def _reader(self) -> UsageReader:
        if self.reader is None:
            from labtrack.env.usage import UsageReader

            self.reader = UsageReader(nvml=self.nvml)
            self.reader.start()
        return self.reader

    def _sample(self, due: list[_Watched]) -> None:
        reading = self._reader().read()
        stamp, now = time.time(), time.monotonic()
        for watched in due:
            watched.next_sample += watched.interval
            if watched.next_sample <= now:  # fell behind (a suspended laptop): no burst of catch-up samples
                watched.next_sample = now + watched.interval
            if not reading:
                continue
            try:
                watched.run.log_metrics(reading, step=watched.step, timestamp=stamp)
                watched.step += 1
            except Exception as exc:  # the run ended meanwhile (InvalidInput), or its spool failed
                if watched.run.owned_here():
                    self.warn("metrics", f"labtrack: could not record system metrics: {exc}")

    def warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def after_fork_in_child(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.runs = {}
        self.thread = None
        self.wake_at = 0.0
        self.reader = None  # its NVML handles and counters are the parent's


_monitor = _Monitor()


def _traceback_to_add(capture: console.Capture, status: RunStatus | None, error: Mapping[str, str] | None) -> str:
    """A failed run's traceback, which Python prints only after the ``with`` block has ended the run: added
    to the log unless it is there already (a run ended at exit, after the traceback was printed)."""
    if status is not RunStatus.FAILED or not error or not error.get("traceback"):
        return ""
    traceback = error["traceback"]
    last = traceback.rstrip().rsplit("\n", 1)[-1]
    if last and last in capture.text()[-len(traceback) - 200:]:
        return ""
    return traceback if traceback.endswith("\n") else traceback + "\n"


def _on_end(run: Any, status: RunStatus, error: Mapping[str, str] | None) -> None:
    _monitor.unwatch(run.id, status, error)


def watch(run: Run) -> None:
    """Record system metrics on ``run`` and capture its console, as its settings say (never raises)."""
    try:
        _monitor.watch(run)
    except Exception as exc:
        _monitor.warn("watch", f"labtrack: no system metrics or console log for this run: {exc}")


def unwatch(run: Run) -> None:
    """Stop watching ``run`` (its end does this)."""
    _monitor.unwatch(run.id)


def monitor_thread() -> threading.Thread | None:
    """The monitor thread of this process, if it is running."""
    return _monitor.thread


def use_nvml(nvml: Any) -> None:
    """Read GPUs through ``nvml`` (an NVML binding or a test double) from the next reader on; None: the real one."""
    _monitor.nvml = nvml
    _monitor.reader = None


def _after_fork_in_child() -> None:
    _monitor.after_fork_in_child()
    console.reset_after_fork()


process.on_end(_on_end)
os.register_at_fork(after_in_child=_after_fork_in_child)
