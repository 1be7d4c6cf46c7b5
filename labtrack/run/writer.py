"""The background writer: moves every spool of this process into its store, and keeps live runs' heartbeats.

Every write made during a run lands in the process's spool for that store (``labtrack.run.spool``) before
the logging call returns; a ``Drainer`` per spool moves it into the store a cut at a time
(``labtrack.run.drain``), in one ``Store.write`` transaction per cut. The writer thread runs each drainer
every ``flush_interval`` seconds (sooner when ``flush_points`` points are waiting); ``flush`` does it on
the calling thread and waits until the store has everything logged before the call.

A failing store never reaches the training loop: the cut that failed stays pending and is retried as it
is (``retry=True``: the store checks instead of trusting, so an attempt that committed although it
reported an error is not stored twice), with exponential backoff, after one warning per outage. A dead
connection is replaced by the store on the next attempt. A write the store refuses for good (a param
logged with another value by another process, a run deleted meanwhile) is reported once and dropped; the
rest of its cut is stored.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from labtrack.core.errors import InvalidInput, LabtrackError, ParamConflict, RunNotFound, StoreConflict, StoreError
from labtrack.core.model import RunWrite
from labtrack.run import process
from labtrack.run.spool import Spool
from labtrack.settings import Settings
from labtrack.store.base import Store

if TYPE_CHECKING:
    from labtrack.run.drain import Cut

__all__ = ["MISSING_WAIT", "BackgroundWriter", "Drainer", "RunNotStoredYet", "spool_root", "store_cut", "store_key",
           "writer"]

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 10.0
_FORK_FLUSH_SECONDS = 5.0  # the most a fork waits for the store to take what its runs logged
MISSING_WAIT = 600.0  # how long writes to a run another process creates wait for it to reach the store


class RunNotStoredYet(StoreError):
    """Writes to a run that another process creates (a forked child logging to its parent's run) reached
    the store before the run did: they are retried, not dropped."""


def spool_root(store: Store, settings: Settings) -> Path:
    """Where this machine keeps its spools for ``store``: beside a directory store, else in the user's cache
    (``LABTRACK_SPOOL_DIR`` overrides both)."""
    key = store_key(store)
    if settings.spool_dir:
        return Path(settings.spool_dir) / key
    home = getattr(store, "home", None)
    if home is not None:
        return Path(home) / "spool"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "labtrack" / "spool" / key


def store_key(store: Store) -> str:
    return hashlib.sha256(store.url.encode("utf-8")).hexdigest()[:16]


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=2)


class Drainer:
    """Moves one spool's contents into its store (see the module docstring)."""

    def __init__(self, store: Store, spool: Spool, settings: Settings) -> None:
        self.store = store
        self.spool = spool
        self.settings = settings
        self.flush_points = settings.flush_points
        self.last_drain = time.monotonic()
        self.last_beat = time.monotonic()
        from labtrack.run.drain import SpoolReader  # the reading side loads with the first run, not at import

        self.reader = SpoolReader(spool.path, live=spool)
        self.lock = threading.Lock()  # one drain at a time
        self.drained = (0, 0)  # (journal, points): the store has everything below
        self.pending: Cut | None = None  # a cut whose write failed, retried as it is
        self.stored_series: set[int] = set()  # series with points in the store (their keys are not new)
        self.created: set[str] = set()  # runs this spool created in the store
        self.missing: dict[str, float] = {}  # runs created elsewhere, not in the store yet -> first seen
        self.live: dict[str, tuple[str, float] | None] = {}  # live run id -> its sweep claim (owner, lease)
        self.failures = 0
        self.retry_at = 0.0
        self.outage: str | None = None  # the error of the outage in progress (warned once)
        self.closed = False
        spool.kick_every = settings.flush_points
        spool.kick_at = settings.flush_points
        spool.max_bytes = settings.spool_max_mb << 20

    # -- one cut --------------------------------------------------------------------------------

    def step(self, *, wait: bool = False) -> bool:
        """Store the next cut (or retry the pending one). Returns False when the store failed."""
        from labtrack.run.drain import read_cut

        if not self.lock.acquire(blocking=wait):
            return True  # another thread is draining right now
        try:
            if self.closed:
                return True
            cut = self.pending
            try:
                if cut is None:
                    cut = read_cut(self.reader, self.spool.source, *self.drained)
                    if (cut.journal, cut.points) == self.drained:
                        return True
                if not cut.empty:
                    self._store(cut, retry=self.pending is not None)
            except Exception as exc:
                self._failed(cut, exc)
                return False
            self._stored(cut)
            return True
        finally:
            self.lock.release()

    def _store(self, cut: Cut, *, retry: bool) -> None:
        cut.writes = {run_id: self._with_hints(cut, write) for run_id, write in cut.writes.items()}
        store_cut(self.store, cut, retry=retry, wait_for=self._may_wait)

    def _may_wait(self, run_id: str) -> bool:
        """Whether writes to ``run_id``, missing from the store, should wait for another process to create
        it (a run this spool created and the store lost was deleted: no)."""
        if run_id in self.created:
            return False
        first = self.missing.setdefault(run_id, time.monotonic())
        return time.monotonic() - first < MISSING_WAIT

    def _with_hints(self, cut: Cut, write: RunWrite) -> RunWrite:
        """Metrics of runs this spool created whose keys never reached the store have no points there yet."""
        if write.create is not None or write.run_id not in self.created or not write.metrics:
            return write
        new = frozenset(k for k in write.metrics if cut.series.get((write.run_id, k)) not in self.stored_series)
        return replace(write, new_keys=new) if new else write

    def _stored(self, cut: Cut) -> None:
        from labtrack.run.drain import remove_staged

        remove_staged(cut.staged)
        self.stored_series.update(cut.series.values())
        self.created |= cut.created
        self.pending = None
        self.failures = 0
        self.drained = (cut.journal, cut.points)
        self.spool.set_drained(cut.journal, cut.points)
        self.spool.kick_at = cut.points + self.flush_points
        if self.outage is not None:
            self.outage = None
            print(f"labtrack: store {self.store.display_url} is reachable again; everything kept meanwhile is "
                  "being written", file=sys.stderr)

    def _failed(self, cut: Cut | None, exc: Exception) -> None:
        self.pending = cut
        self.failures += 1
        delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay * _jitter()
        if self.outage is None:
            self.outage = str(exc)
            detail = str(exc) if isinstance(exc, LabtrackError) else _traceback(exc)
            _warn(f"labtrack: cannot write to store {self.store.display_url} ({detail}); what is logged is kept "
                  f"in {self.spool.path} and retried — training goes on")

    # -- waiting for the store ------------------------------------------------------------------

    def flush(self, timeout: float) -> None:
        """Return once the store has everything logged before the call; raise StoreError after ``timeout``
        seconds of failing (nothing is lost: it stays in the spool)."""
        if self.closed:
            return
        target = (self.spool.journal_end, self.spool.take_slot() + 1)
        deadline = time.monotonic() + timeout
        while True:
            journal, points = self.drained
            if journal >= target[0] and points >= target[1]:
                return
            if self.step(wait=True):
                continue
            now = time.monotonic()
            if now >= deadline:
                raise StoreError(
                    f"store {self.store.display_url} is unreachable ({self.outage}); everything logged is kept in "
                    f"{self.spool.path} and is written when the store is back (by this process, the next one "
                    "that opens the store, or `labtrack recover`)"
                )
            time.sleep(max(0.0, min(self.retry_at - now, deadline - now, 1.0)))

    def pending_work(self) -> bool:
        """Whether anything logged is not in the store yet (a final check: it takes a points slot)."""
        if self.pending is not None or self.drained[0] < self.spool.journal_end:
            return True
        return self.spool.take_slot() > self.drained[1]

    def next_due(self) -> float:
        """When this drainer next has something to do (monotonic clock)."""
        due = min(self.last_drain + self.settings.flush_interval, self.last_beat + self.settings.heartbeat_interval)
        return min(due, self.retry_at) if self.pending is not None else due

    def tick(self, now: float, kicked: bool) -> None:
        """One turn of the writer thread: drain when due (or woken), retry when the backoff is over, keep
        the store and the live runs' heartbeats going."""
        if self.pending is not None:
            if self.retry_at <= now:
                self.step()
        elif kicked or now - self.last_drain >= self.settings.flush_interval:
            self.last_drain = now
            self.step()
        try:
            self.store.maintain()
        except Exception:  # housekeeping must never disturb a run
            pass
        if now - self.last_beat >= self.settings.heartbeat_interval:
            self.last_beat = now
            try:
                store_now = self.store.now()  # heartbeats and leases are times of the store's clock
            except Exception:
                store_now = time.time()
            self.heartbeat(store_now)

    def heartbeat(self, now: float) -> None:
        for run_id, claim in list(self.live.items()):
            try:
                self.store.heartbeat(run_id, now)
                if claim is not None:  # a sweep's claim on this configuration: keep it alive
                    self.store.renew_claims(claim[0], claim[1], now)
            except Exception:  # a missed heartbeat is harmless; the outage is reported by the drain
                pass


def store_cut(store: Store, cut: Cut, *, retry: bool, wait_for: Callable[[str], bool] | None = None) -> None:
    """Write a cut: its environments and staged artifact content first, then its runs in one transaction.

    A hint that proves wrong is retried carefully at once; a write the store refuses for good (a param
    logged with another value by another process, a run deleted meanwhile) is reported once and dropped,
    and the others of the cut are stored (each is idempotent when written carefully). Any other error is
    raised: the caller keeps the cut and retries it. So is ``RunNotStoredYet`` when a run missing from the
    store was created by another process (the write does not create it) and ``wait_for(run_id)`` says its
    creation may still come."""
    for fingerprint, snapshot in cut.environments.items():
        store.put_environment(fingerprint, snapshot)
    for item in cut.staged:
        if item.path.exists():
            store.blobs.put_file(item.path, move=True)
        elif not store.blobs.exists(item.sha256):
            _warn(f"labtrack: the content of an artifact ({item.sha256[:12]}) was lost before it reached the "
                  f"store {store.display_url}; the run lists it but cannot open it")
    writes = list(cut.writes.values())
    try:
        try:
            store.write(writes, retry=retry)
        except StoreConflict:
            store.write(writes, retry=True)  # a hint proved wrong: check instead of trusting
    except (InvalidInput, RunNotFound):
        waiting: list[str] = []
        for write in writes:
            try:
                store.write([write], retry=True)
            except ParamConflict as exc:
                _warn(f"labtrack: run {write.run_id[:8]}: {exc} (logged by another process?); the run's other "
                      "writes were stored")
                create = None if write.create is None else replace(write.create, params=None)
                store.write([replace(write, params={}, create=create)], retry=True)
            except (InvalidInput, RunNotFound) as exc:
                if isinstance(exc, RunNotFound) and write.create is None and wait_for and wait_for(write.run_id):
                    waiting.append(write.run_id)
                    continue
                _warn(f"labtrack: run {write.run_id[:8]}: the store refused its writes for good ({exc}); "
                      f"{write.points} points and the rest of what was logged were dropped")
        if waiting:
            names = ", ".join(r[:8] for r in waiting)
            raise RunNotStoredYet(f"run(s) {names} not in the store yet: another process (the parent of this one?) "
                                  "creates them; their writes are retried until they are") from None


class BackgroundWriter:
    """One daemon thread per process running every drainer, and the registry of spools (one per store)."""

    def __init__(self) -> None:
        self._drainers: dict[int, Drainer] = {}  # id(store) -> its drainer
        self._spools: dict[int, tuple[Store, Spool, Settings]] = {}  # kept across forks (renewed in the child)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._hooked = False
        os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)

    def drainer(self, store: Store, settings: Settings) -> Drainer:
        """The drainer (and spool) of ``store`` in this process, made on first use (with ``settings``)."""
        found = self._drainers.get(id(store))
        if found is not None:
            return found
        with self._lock:
            found = self._drainers.get(id(store))
            if found is None:
                entry = self._spools.get(id(store))
                if entry is None:
                    spool = Spool(spool_root(store, settings), store_key(store), store.display_url)
                    spool.on_wake = self.kick
                    spool.on_renew = self._renewed
                    entry = self._spools[id(store)] = (store, spool, settings)
                found = self._drainers[id(store)] = Drainer(store, entry[1], entry[2])
            self._ensure_thread()
            if not self._hooked:  # at exit, after the active runs are ended, drain every spool
                self._hooked = True
                process.state.at_exit.append(self.close_all)
            process.install_hooks()  # (in a multiprocessing child too: see process._hook_multiprocessing_exit)
            return found

    def _renewed(self, spool: Spool) -> None:
        """A forked child's first write renewed an inherited spool: drain it from this process."""
        for key, (store, known, settings) in list(self._spools.items()):
            if known is spool and key not in self._drainers:
                self.drainer(store, settings)

    def _before_fork(self) -> None:
        """Store what the runs of this process logged before a child is made (up to a few seconds), so that
        the store has the runs the child writes to. Not during an outage, which would hold up every fork
        (a DataLoader's workers): the child's writes then wait in its spool for the runs to arrive."""
        if self._pid != os.getpid():
            return
        for drainer in list(self._drainers.values()):
            if drainer.live and drainer.outage is None:
                try:
                    drainer.flush(_FORK_FLUSH_SECONDS)
                except Exception:  # a store that is down: the child's writes wait for it in its spool
                    pass

    def _after_fork_in_child(self) -> None:
        """No thread, fresh locks, no drainers: the parent drains its own spools. Each spool forgets the
        parent's files now and gets files of its own on its first use in the child."""
        self._pid = os.getpid()
        self._thread = None
        self._wake = threading.Event()
        self._lock = threading.RLock()
        self._drainers = {}
        for _store, spool, _settings in self._spools.values():
            spool.forked()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="labtrack-writer", daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Ask for a drain now (points are piling up)."""
        self._wake.set()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            due = [d.next_due() for d in list(self._drainers.values())] or [now + 1.0]
            kicked = self._wake.wait(max(0.01, min(due) - now))
            self._wake.clear()
            now = time.monotonic()
            for drainer in list(self._drainers.values()):  # read after waking: a new one may have woken us
                drainer.tick(now, kicked)

    def flush(self, store: Store, timeout: float) -> None:
        """Wait until ``store`` has everything this process logged to it (nothing to do if it logged none)."""
        found = self._drainers.get(id(store))
        if found is not None:
            found.flush(timeout)

    def release(self, store: Store, timeout: float) -> None:
        """The store is being closed: drain its spool, then forget both (a spool the store cannot take
        stays on disk for recovery)."""
        with self._lock:
            found = self._drainers.pop(id(store), None)
            self._spools.pop(id(store), None)
        if found is None:
            return
        try:
            found.flush(timeout)
        except StoreError as exc:
            print(f"labtrack: {exc}", file=sys.stderr)
        if found.live:  # runs of this store still log into the spool: it stays open, and is drained at exit
            with self._lock:
                self._drainers[id(store)] = found
                self._spools[id(store)] = (store, found.spool, found.settings)
            return
        with found.lock:
            found.spool.close(remove=not found.pending_work())
            found.closed = True

    def flush_all(self) -> list[str]:
        """Drain every spool (at exit); returns what could not be written, as messages."""
        problems = []
        for drainer in list(self._drainers.values()):
            try:
                drainer.flush(drainer.settings.flush_timeout)
            except StoreError as exc:
                problems.append(str(exc))
        return problems

    def close_all(self) -> None:
        """At interpreter exit: drain (waiting up to each store's ``flush_timeout``), then remove the spools
        the store has wholly (the others stay for recovery, and say so)."""
        for message in self.flush_all():
            print(f"labtrack: {message}", file=sys.stderr)
        with self._lock:
            drainers = list(self._drainers.values())
            self._drainers.clear()
        for drainer in drainers:
            with drainer.lock:
                drainer.spool.close(remove=not drainer.pending_work())
                drainer.closed = True


_writer: BackgroundWriter | None = None
_writer_lock = threading.Lock()


def writer() -> BackgroundWriter:
    """This process's background writer."""
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                _writer = BackgroundWriter()
    return _writer


def _jitter() -> float:
    import random  # (and traceback below) only once a write failed, not at ``import labtrack``

    return random.uniform(0.5, 1.0)


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))
