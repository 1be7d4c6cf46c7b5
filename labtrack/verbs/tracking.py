"""The module-level API: a default ``Client`` built from the settings, and the active run.

``start_run`` starts a run in the selected store and makes it the active run; ``log_*`` functions act on
the active run (and raise ``NoActiveRunError`` without one). The store is, highest first: a ``store=``
argument, ``set_store``, ``LABTRACK_STORE``, ``labtrack.toml``/``[tool.labtrack]``, ``.labtrack``.

Statuses: leaving a ``with start_run(...)`` block normally gives FINISHED, an exception FAILED (with
its type and message), Ctrl-C (KeyboardInterrupt) or SIGTERM KILLED. A process that dies without
ending its run stops renewing the heartbeat; readers then show the run as CRASHED (at once when the
dead process ran on the reader's own host, since its pid can be checked).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labtrack.core.errors import NoActiveRunError
from labtrack.core.identity import DEFAULT_IDENTITY
from labtrack.core.model import Experiment, Recovery, RunStatus, StoreCheck
from labtrack.run import process
from labtrack.run.handle import Run
from labtrack.settings import default_settings, reset_default_settings
from labtrack.verbs import capture
from labtrack.verbs.client import Client
from labtrack.verbs.runs import RunClient

if TYPE_CHECKING:
    from labtrack.core.checks import DoctorReport, Reproduction, Verdict
    from labtrack.core.diff import RunDiff
    from labtrack.verbs.mlflow_import import MlflowImport
    from labtrack.verbs.runlist import RunList
    from labtrack.verbs.sweeps import SweepResult, TrackedFunction

__all__ = [
    "DefaultClient",
    "active_run",
    "capture_environment",
    "check",
    "check_store",
    "client",
    "close_clients",
    "compute_key",
    "delete_experiment",
    "delete_run",
    "diff",
    "doctor",
    "end_run",
    "exists",
    "export",
    "find_run",
    "flush",
    "get_run",
    "import_mlflow",
    "list_experiments",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "recover",
    "reproduce",
    "reset",
    "restore_experiment",
    "restore_run",
    "run_of",
    "search_runs",
    "seed_everything",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "store_location",
    "sweep",
    "track",
    "upgrade_store",
]

_lock = threading.Lock()
_clients: dict[str, Client] = {}  # store location -> its client, opened on first use
_chosen: str | None = None  # set_store's


def set_store(location: str | None) -> None:
    """Use ``location`` (a store URL) for this process, over LABTRACK_STORE and config files."""
    global _chosen
    _chosen = location


def store_location(location: str | None = None) -> str:
    """The store URL in effect: an explicit one, else set_store's, else the settings' (env, file, default)."""
    return location or _chosen or default_settings().store


def flush(*, store: str | None = None) -> None:
    """Wait until the store has everything this process logged to it (``end_run`` makes it crash-safe and
    hands it to the background writer; reads from this process wait by themselves)."""
    client(store).flush()


def recover(*, store: str | None = None) -> Recovery:
    """Store what processes that died before their writes reached the store left in their spools (opening a
    store does it too), and mark their runs that never ended CRASHED; returns what was done."""
    with _lock:
        opened = _clients.get(store_location(store))
    if opened is not None:
        return opened.recover()
    done = client(store).recovered  # opening the store recovered what there was
    done.add(client(store).recover())
    return done


def client(store: str | None = None) -> Client:
    """The client of ``store`` (default: the store in effect), opened on first use."""
    location = store_location(store)
    found = _clients.get(location)
    if found is None:
        with _lock:
            found = _clients.get(location)
            if found is None:
                found = _clients[location] = Client(location)
    return found


def close_clients() -> None:
    """Close every client of the module-level API (each drains what this process logged to its store)."""
    with _lock:
        opened = list(_clients.values())
        _clients.clear()
    for each in opened:
        try:
            each.close()
        except Exception:  # closing must not hide what the caller is doing
            pass


def reset() -> None:
    """Close every client and forget set_store and the settings read (tests; a process changing stores)."""
    global _chosen
    close_clients()
    _chosen = None
    capture.reset()
    reset_default_settings()


def start_run(
    experiment: str = "default",
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    note: str | None = None,
    nested: bool = False,
    store: str | None = None,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
) -> Run:
    """Start a run and make it the active run; use it as a context manager to end it on leaving.

    ``store`` overrides the store URL for this run. With a run already active, pass ``nested=True``
    to start a child run (tagged ``labtrack.parent``) or end the active run first.

    The environment is captured and recorded (see ``capture_environment``), and the run gets its key:
    the sha256 of the experiment, params, code version and declared ``inputs`` (name -> file or
    directory, hashed by content), as ``identity`` selects, leaving out the params in ``exclude``.
    """
    return client(store).start_run(experiment, params, tags, name=name, note=note, nested=nested, inputs=inputs,
                                   identity=identity, exclude=exclude)


def active_run() -> Run | None:
    """The run that module-level ``log_*`` calls act on, or None."""
    found = process.active()
    return found if isinstance(found, Run) else None


def _require_active() -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError(
            "no active run: call labtrack.start_run(...) first, or use `with labtrack.start_run(...) as run:`"
        )
    return run


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run with ``status`` (FINISHED, FAILED or KILLED)."""
    _require_active().end(status)


def log_param(key: str, value: Any) -> None:
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def log_metric(key: str, value: Any, step: int | None = None, timestamp: Any = None) -> None:
    _require_active().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, timestamp: Any = None) -> None:
    _require_active().log_metrics(metrics, step, timestamp)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _require_active().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _require_active().log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _require_active().log_text(text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    _require_active().log_dict(dictionary, artifact_file)


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, Any]:
    """Seed random, and numpy, torch and TensorFlow — those imported now at once, the others as the program
    imports them (never imported here) — set PYTHONHASHSEED for child processes, and record the seed and
    determinism settings on the active run and on runs started afterwards."""
    from labtrack.env import seed_everything as seed_all

    info = seed_all(seed, deterministic=deterministic)
    capture.remember_seeds(info)
    run = active_run()
    if run is not None:
        run.merge_context({"seeds": info})
    return info


def capture_environment() -> Any:
    """The environment snapshot (an ``Environment``) that runs record, captured now."""
    return capture.capture_environment(default_settings())


def compute_key(
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
    script: str | os.PathLike[str] | None = None,
    store: str | None = None,
) -> str:
    """The run key ``start_run`` would give a run of ``experiment`` with ``params`` here and now, in ``script``
    (default: this process's entry script)."""
    return client(store).compute_key(experiment, params, inputs=inputs, identity=identity, exclude=exclude,
                                 script=script)


def find_run(
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
    script: str | os.PathLike[str] | None = None,
    store: str | None = None,
) -> Run | None:
    """The latest FINISHED run with the same key (experiment, entry script, params, code, inputs), or None;
    ``script``: the entry script of the runs to look for (default: this process's).

    One indexed lookup, however many runs the store holds. FAILED, KILLED and CRASHED runs do not count.
    """
    return client(store).find_run(experiment, params, inputs=inputs, identity=identity, exclude=exclude,
                                 script=script)


def exists(
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
    script: str | os.PathLike[str] | None = None,
    store: str | None = None,
) -> bool:
    """Whether this configuration has already been run to completion (see ``find_run``)."""
    return client(store).exists(experiment, params, inputs=inputs, identity=identity, exclude=exclude,
                                 script=script)


def get_run(run_id: str, *, store: str | None = None) -> Run:
    """The run with this id (or unique id prefix)."""
    return client(store).get_run(run_id)


def run_of(run: Run | str, *, store: str | None = None) -> Run:
    """``run`` itself, or the run that an id (or unique id prefix) names: for verbs that take either."""
    return run if isinstance(run, Run) else get_run(run, store=store)


def list_experiments(lifecycle: str = "active", *, store: str | None = None) -> list[tuple[Experiment, int]]:
    """Every experiment in the store with its number of runs (``lifecycle``: active, deleted or all)."""
    return client(store).list_experiments(lifecycle)


def delete_run(run: Run | str, *, store: str | None = None) -> bool:
    """Delete a run: hidden from searches, its configuration counts as not run; restorable until
    `labtrack gc`. False if it was deleted already."""
    return client(store).delete_run(run)


def restore_run(run: Run | str, *, store: str | None = None) -> bool:
    """Bring back a deleted run; False if it was not deleted."""
    return client(store).restore_run(run)


def delete_experiment(name: str, *, store: str | None = None) -> int:
    """Delete an experiment and its runs (restorable until `labtrack gc`); returns how many runs."""
    return client(store).delete_experiment(name)


def restore_experiment(name: str, *, store: str | None = None) -> int:
    """Bring back a deleted experiment with the runs deleted with it; returns how many runs."""
    return client(store).restore_experiment(name)


def check_store(store: str | None = None) -> StoreCheck:
    """Check every stored metric chunk against its checksum, and on SQLite the database's structure (what
    `labtrack db check` does)."""
    return client(store).check_data()


def upgrade_store(store: str | None = None) -> tuple[str | None, str, int]:
    """Migrate the store's schema to this labtrack's revision (what `labtrack db upgrade` does); returns
    (revision before, revision after, ended runs whose frames were written)."""
    from labtrack.store import upgrade_store as upgrade

    location = store_location(store)
    with _lock:
        opened = _clients.pop(location, None)
    if opened is not None:
        opened.close()
    return upgrade(location)


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: str | Sequence[str] | None = None,
    max_results: int | None = None,
    offset: int = 0,
    *,
    key: str | None = None,
    lifecycle: str = "active",
    store: str | None = None,
) -> RunList:
    """Runs of ``experiment`` (a name, a list of names, or None for all), newest first by default.

    ``order_by`` takes terms such as ``"metrics.acc desc"``, ``"params.lr"``, ``"metrics.loss.min"``,
    ``"attributes.start_time"``; runs missing the key sort last. ``key`` keeps only runs with that run key.
    ``lifecycle``: ``"active"`` (live runs, the default), ``"deleted"`` or ``"all"``.
    """
    return client(store).search_runs(experiment, filter, order_by, max_results, offset, key=key, lifecycle=lifecycle)


# -- the verbs built on runs, over the default client -------------------------------------------------


@dataclass(frozen=True)
class DefaultClient:
    """Opens the module-level API's client of ``store`` when called: what a tracked function uses, so that
    ``set_store`` after the decorator still counts (and a spawned sweep worker opens its own)."""

    store: str | None = None

    def __call__(self) -> RunClient:
        return client(self.store)


def import_mlflow(source: str, *, experiments: Sequence[str] | None = None, include_deleted: bool = False,
                  dry_run: bool = False, store: str | None = None) -> MlflowImport:
    """Import an MLflow store (an ``mlruns`` directory, a database URL or a server URL) into the store:
    every experiment (or those named), run, param, metric history, tag and artifact; importing again adds
    only what is new. Needs ``pip install 'labtrack[mlflow]'``. As ``labtrack import mlflow SOURCE``."""
    from labtrack.verbs.mlflow_import import import_mlflow as run_import

    return run_import(client(store), source, experiments=experiments, include_deleted=include_deleted,
                      dry_run=dry_run)


def diff(a: Run | str, b: Run | str, *, store: str | None = None) -> RunDiff:
    """What differs between two runs, most likely causes first (``.to_dict()``, ``.differing()``)."""
    return client(store).diff(a, b)


def check(run: Run | str, *, store: str | None = None) -> Verdict:
    """Can this machine reproduce ``run``? ``identical``, ``compatible``, ``at-risk`` or ``incompatible``,
    with the reasons, worst first."""
    return client(store).check(run)


def export(run: Run | str, fmt: str = "requirements", *, store: str | None = None) -> str:
    """A recipe that rebuilds ``run``: ``requirements``, ``dockerfile``, ``conda`` or ``script``."""
    return client(store).export(run, fmt)


def reproduce(run: Run | str, *, workdir: str | os.PathLike[str] | None = None, rtol: float = 1e-6,
              atol: float = 0.0, ignore: Sequence[str] = (), keep: bool = False, store: str | None = None,
              log: Callable[[str], None] = lambda message: None) -> Reproduction:
    """Rebuild ``run`` (packages, code, diff) in ``workdir``, run its command again, and compare; metrics
    matching ``ignore`` (globs) or marked noisy on the run do not decide the verdict; ``keep`` keeps the
    virtualenv and checkout."""
    return client(store).reproduce(run, workdir=workdir, rtol=rtol, atol=atol, ignore=ignore, keep=keep, log=log)


def doctor() -> DoctorReport:
    """This environment's health: dependency conflicts, CUDA consistency, settings and the store."""
    from labtrack.verbs.reproduction import doctor as diagnose

    return diagnose(DefaultClient())  # opening the store is one of the checks


def track(experiment: str | Callable[..., Any] | None = None, *, identity: Sequence[str] | str = DEFAULT_IDENTITY,
          exclude: Sequence[str] = (), inputs: Sequence[str] | Mapping[str, Any] | None = None,
          trust_pickle: bool = False, store: str | None = None) -> Any:
    """Decorator: each call runs inside a new run, or returns the recorded result of a FINISHED run
    with the same key without running (``force=True`` or ``fn.force(...)`` re-runs).

    ``identity`` picks what the key covers (params, code, inputs, env); ``exclude`` names params that
    must not count (a seed, an output directory); ``inputs`` names params whose values are paths to
    hash by content, or gives a fixed {name: path} dict. The return value is recorded as the run's
    result as data (JSON, tuples, sets, numpy arrays and scalars); one that only pickle can hold needs
    ``trust_pickle=True``, which also lets a skip load a pickled result — only for a store whose every
    writer you trust (loading a pickle runs whatever code its writer chose).
    """
    from labtrack.verbs.sweeps import track as tracked

    return tracked(experiment, identity=identity, exclude=exclude, inputs=inputs, trust_pickle=trust_pickle,
                   source=DefaultClient(store))


def sweep(fn: Callable[..., Any] | TrackedFunction, grid: Mapping[str, Iterable[Any]] | None = None, *,
          configs: Iterable[Mapping[str, Any]] | None = None, workers: int | None = None, executor: Any = None,
          experiment: str | None = None, lease: float | None = None, poll: float = 0.5,
          progress: bool = True) -> SweepResult:
    """Run every configuration of ``grid`` (or ``configs``) that has no FINISHED run yet.

    ``fn`` is a ``@track``-ed function or a plain one (tracked under ``experiment``, default its name).
    ``workers=N`` runs N local processes; ``executor=`` takes any ``concurrent.futures.Executor`` (a Dask
    cluster's ``client.get_executor()``, Ray, a ``ProcessPoolExecutor``) and runs each configuration as one
    of its tasks. Several sweeps (here or on other machines sharing the store) may run at once: each
    configuration is claimed atomically and runs exactly once; a claim whose worker died is taken over once
    its ``lease`` (seconds, default 3 heartbeats and at least 60) expires.
    """
    from labtrack.verbs.sweeps import sweep as run_sweep

    return run_sweep(fn, grid, configs=configs, workers=workers, executor=executor, experiment=experiment,
                     lease=lease, poll=poll, progress=progress, source=DefaultClient())
