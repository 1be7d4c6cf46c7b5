"""Sweeps on an executor the user already has: each configuration is one task of a ``concurrent.futures.Executor``.

``sweep(fn, grid, executor=ex)`` submits one task per configuration to ``ex`` — a Dask cluster
(``distributed.Client(...).get_executor()``), Ray, a ``ProcessPoolExecutor`` — and lets it schedule them. Each
task claims its configuration in the store itself (the claims of ``workers=N``), then runs it, or reports it
finished or held by another worker, and returns a small ``Outcome``. So two sweeps of one grid at once (two
executors, or an executor beside a Slurm array) still run every configuration exactly once; a configuration
held by another worker is submitted again after ``poll`` seconds until it is settled, and a claim whose
worker died is taken over when its lease expires.

What travels with a task: the tracked function by reference (plain pickle needs a module-level function;
Dask's and Ray's cloudpickle also send a function of the main script), the configuration, its run key, and
the store's URL with the sweep's settings. A worker opens the store itself, whatever its working directory
or environment — except a tracking server's token, which a worker reads from its own environment
(``LABTRACK_TOKEN``): secrets never travel in tasks. The run carries the key that the sweep computed and
claimed: a worker process (a ``dask-worker``, say) may have no entry script or checkout of its own to compute
a code version from, so the sweep's code version stands for the code the workers run.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, NamedTuple, Protocol

from labtrack.core.errors import InvalidInput
from labtrack.run import process
from labtrack.settings import Settings
from labtrack.store import scheme_of
from labtrack.verbs.runs import RunClient

__all__ = [
    "Outcome", "Report", "StoreSource", "Tracked", "Trial", "check_executor", "portable_location", "run_on_executor",
    "run_trial",
]

Report = Callable[[str, int, str], None]


class Tracked(Protocol):
    """What a task runs: a ``labtrack.verbs.sweeps.TrackedFunction`` (named here by what it does: the sweeps
    module imports this one)."""

    fn: Callable[..., Any]

    def client(self) -> RunClient: ...

    def on(self, source: Callable[[], RunClient]) -> Tracked: ...

    def run_config(self, config: dict[str, Any], *, claim: tuple[str, float], key: str) -> Any: ...

_opened: dict[str, tuple[Settings, RunClient]] = {}  # this worker process's clients, by store URL
_opened_lock = threading.Lock()
# The stack of active runs is process-wide: an executor that runs several tasks in one process (threads)
# runs their trials one after the other, or each run would nest in the other.
_one_trial_at_a_time = threading.Lock()


class StoreSource:
    """Opens the sweep's store in whichever process calls it: one client per store URL and settings per
    process, reused by the next trial there (opening a store for every task costs more than a short trial).
    In the sweep's own process (an in-process executor) it is the sweep's client."""

    def __init__(self, location: str, settings: Settings, client: RunClient | None = None) -> None:
        self.location, self.settings = location, settings
        self._client = client  # not pickled: a worker opens its own

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], state["settings"])  # type: ignore[misc]

    def __call__(self) -> RunClient:
        if self._client is None:
            with _opened_lock:
                found = _opened.get(self.location)
                if found is None or found[0] != self.settings:
                    found = _opened[self.location] = (self.settings, RunClient(self.location, settings=self.settings))
            self._client = found[1]
        return self._client


def portable_location(client: RunClient) -> str:
    """The client's store URL as another process with another working directory finds it: a directory or
    SQLite file made absolute (a server or PostgreSQL URL is the same everywhere)."""
    scheme = scheme_of(client.location)
    if scheme == "":
        return os.path.abspath(os.path.expanduser(client.location))
    if scheme == "sqlite":
        return client.store.url  # absolute
    return client.location


class Trial(NamedTuple):
    """One configuration of a sweep, as an executor's task carries it."""

    tracked: Tracked  # over a StoreSource
    config: dict[str, Any]
    key: str  # the run key the sweep computed: what the task claims and the run records
    sweep_id: str
    lease: float
    attempt: int  # submitted again while another worker held it: a new task (Dask names pure tasks by content)


class Outcome(NamedTuple):
    """What a task did: ``ran``; ``failed`` (with the error); ``done`` (another worker finished it);
    ``busy`` (another worker holds it now); ``failed-earlier`` (it failed earlier in this sweep)."""

    state: str
    detail: str = ""


def run_trial(trial: Trial) -> Outcome:
    """Claim one configuration in the store, run it and release the claim, in this worker process. The
    trial's own failure comes back as an ``Outcome``: an exception would read as the executor's failure."""
    with _one_trial_at_a_time:
        try:
            client = trial.tracked.client()
            store = client.store
            owner = f"{trial.sweep_id}/{process.HOST}/{os.getpid()}"
            state = str(store.claim(trial.key, owner, trial.lease, store.now()))
        except Exception as exc:
            return Outcome("failed", f"the worker could not claim it in the store: {type(exc).__name__}: {exc}")
        if state != "claimed":
            return Outcome("failed-earlier" if state == "failed" else state)
        try:
            trial.tracked.run_config(trial.config, claim=(owner, trial.lease), key=trial.key)
        except Exception as exc:
            _release(client, trial.key, owner, done=False)
            return Outcome("failed", f"{type(exc).__name__}: {exc}")
        except BaseException:  # the worker is stopping: the run ended KILLED, the next sweep takes it at once
            _release(client, trial.key, owner, done=False)
            raise
        _release(client, trial.key, owner, done=True)  # after the FINISHED run is in the store
        return Outcome("ran")


def _release(client: RunClient, key: str, owner: str, *, done: bool) -> None:
    """Release a claim; a store that fails now leaves the claim to expire (a FINISHED run counts as done anyway)."""
    try:
        client.flush()
        client.store.release_claim(key, owner, done=done)
    except Exception:
        pass


def check_executor(executor: Any, trial: Trial) -> None:
    """InvalidInput unless ``executor`` can take ``trial``: it has ``submit``, and the task pickles (plain
    pickle for a process pool; cloudpickle, which Dask and Ray use, for the others)."""
    if not callable(getattr(executor, "submit", None)):
        raise InvalidInput(f"executor must be a concurrent.futures.Executor (something with submit()), got "
                           f"{type(executor).__name__}", field="executor")
    try:
        pickle.dumps(trial)
        return
    except Exception as exc:
        error: Exception = exc
    if not isinstance(executor, ProcessPoolExecutor):
        try:
            import cloudpickle

            cloudpickle.dumps(trial)
            return
        except ImportError:
            pass
        except Exception as exc:
            error = exc
    raise InvalidInput(
        f"the sweep's tasks cannot be sent to the executor's workers ({type(error).__name__}: {error}): define "
        f"{trial.tracked.fn.__qualname__} at the top level of a module (plain pickle sends functions by name) and "
        "give params that pickle", field="fn",
    ) from error


def run_on_executor(executor: Any, tracked: Tracked, configs: list[dict[str, Any]], keys: list[str], todo: list[int],
                    sweep_id: str, lease: float, poll: float, report: Report) -> None:
    """Submit a task for each configuration of ``todo`` (indexes: those not finished when the sweep started),
    tally what each did, and submit again those another worker held, until every one is settled. Ctrl-C cancels
    the tasks not started yet; those running finish there."""
    client = tracked.client()
    remote = tracked.on(StoreSource(portable_location(client), client.settings, client))
    pending = list(todo)
    if pending:
        check_executor(executor, Trial(remote, configs[pending[0]], keys[pending[0]], sweep_id, lease, 0))
    attempt, told = 0, False
    while pending:
        futures: dict[Future[Outcome], int] = {}
        try:
            for i in pending:
                futures[executor.submit(run_trial, Trial(remote, configs[i], keys[i], sweep_id, lease, attempt))] = i
                report("submitted", i, "")
            pending = []
            for future in _completed(futures):
                i = futures[future]
                outcome = _outcome_of(future)
                if outcome.state == "busy":
                    report("returned", i, "")
                    pending.append(i)
                elif outcome.state == "ran":
                    report("ran", i, "")
                elif outcome.state == "failed":
                    report("failed", i, outcome.detail or "failed")
                else:  # done elsewhere, or failed earlier in this sweep
                    report("returned", i, "")
                    report("done" if outcome.state == "done" else "failed", i, "")
        except BaseException:
            cancelled = sum(1 for future in futures if future.cancel())
            left = sum(1 for future in futures if not future.done())
            if futures:  # said whether the bar shows or not, as the sweep's own interruption message
                print(f"labtrack: cancelled {cancelled} task(s) not started yet; {left} already running on the "
                      "executor finish there (their configurations count as done when they do)", file=sys.stderr)
            raise
        attempt += 1
        if pending:
            if not told:
                told = True
                report("say", 0, f"waiting for {len(pending)} configuration(s) that other workers are running; a "
                       f"claim whose worker died is taken over when its lease expires (at most {lease:.0f} s)")
            time.sleep(poll)


def _completed(futures: dict[Future[Outcome], int]) -> Iterator[Future[Outcome]]:
    """The futures as they complete, like ``as_completed`` — but one the executor cancelled is complete too:
    ``shutdown(cancel_futures=True)`` (and a Dask client closing) cancels queued tasks without telling the
    waiters of ``as_completed``/``wait``, which then wait for them forever. So the wait looks again every
    second."""
    left = set(futures)
    while left:
        finished, _ = wait(left, timeout=_LOOK_AGAIN, return_when=FIRST_COMPLETED)
        finished |= {future for future in left if future.done()}
        for future in finished:
            left.discard(future)
            yield future


_LOOK_AGAIN = 1.0  # seconds between looks for tasks the executor cancelled


def _outcome_of(future: Future[Outcome]) -> Outcome:
    """A task's outcome; the executor's own failure to run it (a lost worker, say) is the configuration's."""
    if future.cancelled():
        return Outcome("failed", "the executor cancelled it before it ran (shut down?); the next sweep runs it")
    try:
        outcome = future.result()
    except Exception as exc:
        return Outcome("failed", f"the executor could not run it: {type(exc).__name__}: {exc}")
    if not isinstance(outcome, Outcome):  # a worker with another labtrack sends a plain tuple back
        outcome = Outcome(*outcome)
    return outcome
