"""``RunClient``: the run verbs over one store — start, get, search and find runs.

``labtrack.Client`` (``labtrack.verbs.client``) adds the verbs built on these (diff, check, export,
reproduce, sweep, track); the modules of those verbs take a ``RunClient``, so none of them depends on the
whole client. A client pickles as its location and settings (a spawned sweep worker opens the store
itself).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labtrack.core.errors import ExperimentNotFound, InvalidInput, RunNotFound
from labtrack.core.identity import DEFAULT_IDENTITY, check_identity, run_key
from labtrack.core.model import Collected, Experiment, Lifecycle, NewRun, Recovery, Search, StoreCheck
from labtrack.core.names import id_prefix, run_name
from labtrack.core.query import parse_order_by
from labtrack.core.validation import check_key, check_note, checked_params, checked_tags, parse_age
from labtrack.run import process
from labtrack.run.factory import begin
from labtrack.run.handle import Run
from labtrack.run.liveness import resolve_liveness
from labtrack.run.writer import spool_root, writer
from labtrack.settings import Settings, default_settings
from labtrack.store import Store, default_artifacts, open_store, scheme_of
from labtrack.verbs import capture, monitor
from labtrack.verbs.inputs import hash_inputs

if TYPE_CHECKING:
    import datetime

    from labtrack.core.environment import Environment
    from labtrack.verbs.runlist import RunList

__all__ = ["RunClient"]


class RunClient:
    """The run verbs over one store: a store URL (``None``: the settings' store) or a ``Store`` object.

    ``recover=False``: leave the spools of dead processes on this machine alone (a server reading the store
    for a browser is not where a training script's leftovers belong)."""

    def __init__(self, store: str | Store | None = None, *, settings: Settings | None = None,
                 recover: bool = True) -> None:
        self.settings = settings or default_settings()
        if isinstance(store, Store):
            self.store = store
            self.location = store.url
        else:
            self.location = store or self.settings.store
            self.store = open_store(self.location, artifacts=self.settings.artifacts,
                                    busy_timeout=self.settings.sqlite_busy_timeout)
            if self.settings.artifacts is None and scheme_of(self.location) == "postgresql":
                import warnings

                warnings.warn(
                    f"labtrack: the artifacts of the shared store {self.store.display_url} are kept on this machine "
                    f"only ({default_artifacts(self.location)}); set LABTRACK_ARTIFACTS to a directory every "
                    "machine using the store can read (a shared file system)", RuntimeWarning, stacklevel=3,
                )
        # what dead processes left in their spools for this store
        self.recovered = self.recover() if recover else Recovery()

    def __repr__(self) -> str:
        return f"<labtrack.{type(self).__name__} {self.store.display_url}>"

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], settings=state["settings"])  # type: ignore[misc]

    def close(self) -> None:
        """Write what this process still holds for the store, then release it."""
        writer().release(self.store, self.settings.flush_timeout)
        self.store.close()

    def recover(self, spools: str | os.PathLike[str] | None = None) -> Recovery:
        """Store what processes that died before their writes reached this store left in their spools
        (done when the client opens the store; ``labtrack recover`` does it by hand). ``spools``: a spool
        directory of this store brought from another machine (``labtrack sync --spool DIR``)."""
        from pathlib import Path

        from labtrack.run.recovery import recover  # (as the filter language and RunList: on first use)

        if spools is not None and (Path(spools) / "meta.json").exists():
            raise InvalidInput(f"{spools} is one process's spool: give the directory that holds it "
                               f"({Path(spools).parent})", field="spool")
        return recover(self.store, Path(spools) if spools is not None else spool_root(self.store, self.settings))

    def flush(self) -> None:
        """Wait until the store has everything this process logged to it (reads call this first)."""
        writer().flush(self.store, self.settings.flush_timeout)

    # -- runs -----------------------------------------------------------------------------------

    def start_run(
        self,
        experiment: str = "default",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        note: str | None = None,
        nested: bool = False,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        identity: Sequence[str] | str = DEFAULT_IDENTITY,
        exclude: Sequence[str] = (),
        claim: tuple[str, float] | None = None,
        entry: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> Run:
        """Start a run and make it the active run; use it as a context manager to end it on leaving.

        With a run already active, pass ``nested=True`` to start a child run (tagged ``labtrack.parent``)
        or end the active run first. The environment is captured and recorded, and the run gets its key:
        the sha256 of the experiment, params, code version and declared ``inputs`` (name -> file or
        directory, hashed by content), as ``identity`` selects, leaving out the params in ``exclude``.
        ``claim``: a sweep's (owner, lease) on the configuration, renewed with the run's heartbeat.
        ``entry``: what runs, for the key (``@track`` passes its function); by default the entry script.
        ``key``: the run key decided elsewhere, used as it is: a sweep's trial on an executor's worker runs
        under the key its sweep computed and claimed (the worker's own code version may not be knowable there).
        """
        experiment = check_key(experiment, "experiment")
        valid_params = checked_params(params)
        valid_tags = checked_tags(tags)
        parts = check_identity(identity)
        excluded = _checked_exclude(exclude)
        if name is not None:
            name = check_key(name, "name")
        if note is not None:
            note = check_note(note)
        input_hashes = hash_inputs(inputs) if inputs else {}
        parent = process.active()
        if parent is not None and not nested:
            raise InvalidInput(
                f"run {parent.id[:8]} is already active; end it first (labtrack.end_run()) "
                "or pass nested=True to start a child run",
                field="nested",
            )
        if parent is not None:
            valid_tags.setdefault("labtrack.parent", parent.id)
        if self.settings.reproduces:
            valid_tags.setdefault("reproduces", self.settings.reproduces)
        start_time, started = time.time(), time.monotonic()
        captured = capture.for_run(self.settings)
        env = captured.environment if captured is not None else None
        context: dict[str, Any] = env.per_run() if env is not None else {}
        seeds = capture.seeds()
        if seeds is not None:
            context["seeds"] = seeds
        if env is not None and "packages" in env.snapshot:
            conflicts = capture.known_conflicts(env)
            if conflicts is not None:
                context["conflicts"] = conflicts
            from labtrack.env.packages import imported_of

            imported = imported_of(env.snapshot)
            if imported is not None:  # what the program has loaded so far; the end adds what came later
                context["imported"] = imported
        key = key if key is not None else run_key(
            experiment, valid_params, identity=parts, exclude=excluded, code=capture.code_version(env),
            inputs=input_hashes, env_fingerprint=env.fingerprint if env is not None else None,
            entry=dict(entry) if entry is not None else capture.script_entry(env),
        )
        run_id = uuid.uuid4().hex
        new = NewRun(
            id=run_id, experiment=experiment, start_time=start_time, name=name or run_name(run_id), host=process.HOST,
            pid=os.getpid(), params=valid_params, tags=valid_tags, note=note, run_key=key,
            env_fingerprint=env.fingerprint if env is not None else None, context=context or None,
        )
        run = begin(self.store, new, self.settings, environment=env,
                    git_diff=captured.git_diff if captured is not None else None, claim=claim,
                    conflicts_recorded="conflicts" in context or env is None, started=started)
        monitor.watch(run)  # system metrics and the console log (settings system_metrics, console_log)
        return run

    def get_run(self, run_id: str) -> Run:
        """The run with this id (or unique id prefix)."""
        self.flush()
        record = None
        if len(run_id) == 32 and id_prefix(run_id) == run_id:  # a full id: one read (one request)
            try:
                record = self.store.get_run(run_id)
            except RunNotFound:
                pass  # a run's name may look like an id
        if record is None:
            record = self.store.get_run(self.store.resolve_run_id(run_id))
        full_id = record.id
        self._resolve_liveness([record])
        for live in process.running():
            if live.id == full_id and isinstance(live, Run) and live.store is self.store:
                return live
        return Run(self.store, full_id, record, settings=self.settings)

    def run_of(self, run: Run | str) -> Run:
        """``run`` itself, or the run that an id (or unique id prefix) names: for verbs that take either."""
        return run if isinstance(run, Run) else self.get_run(run)

    def search_runs(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        max_results: int | None = None,
        offset: int = 0,
        *,
        key: str | None = None,
        lifecycle: Lifecycle | str = Lifecycle.ACTIVE,
    ) -> RunList:
        """Runs of ``experiment`` (a name, a list of names, or None for all), newest first by default.

        ``order_by`` takes terms such as ``"metrics.acc desc"``, ``"params.lr"``, ``"metrics.loss.min"``,
        ``"attributes.start_time"``; runs missing the key sort last. ``key`` keeps only runs with that run key.
        ``lifecycle``: ``"active"`` (live runs, the default), ``"deleted"`` or ``"all"``.
        """
        if max_results is not None and (not isinstance(max_results, int) or max_results < 0):
            raise InvalidInput(f"max_results must be an integer >= 0, got {max_results!r}", field="max_results")
        names = [experiment] if isinstance(experiment, str) else (list(experiment) if experiment is not None else None)
        if names is not None:
            names = [check_key(n, "experiment") for n in names]
        from labtrack.core.filters import parse_filter
        from labtrack.verbs.runlist import RunList

        node = parse_filter(filter) if filter else None
        terms = parse_order_by(order_by if isinstance(order_by, (str, type(None))) else list(order_by))
        self.flush()
        search = Search(experiments=names, order_by=terms, max_results=max_results, offset=offset, run_key=key,
                        filter=node, stale_before=self.store.now() - self.settings.heartbeat_timeout,
                        lifecycle=_lifecycle(lifecycle))
        return RunList.from_search(self, self.store.search_ids(search), search)

    def check_data(self) -> StoreCheck:
        """Read every stored metric point and check it against its chunk's checksum; on SQLite also the
        database's structure (``labtrack db check``)."""
        self.flush()
        return self.store.check_data()

    def require_experiment(self, name: str, lifecycle: Lifecycle = Lifecycle.ACTIVE) -> str:
        """``name`` (normalised) if the store has that experiment (live, deleted or either, as ``lifecycle``
        says), else ExperimentNotFound naming the closest names (a typo must not look like an experiment
        without runs) or saying that it is deleted."""
        name = check_key(name, "experiment")
        found = {experiment.name: experiment for experiment, _ in self.list_experiments(Lifecycle.ALL)}
        wanted = [n for n, e in found.items() if lifecycle is Lifecycle.ALL or
                  (e.deleted_time is not None) == (lifecycle is Lifecycle.DELETED)]
        if name in wanted:
            return name
        if name in found:
            state = f"deleted (`labtrack restore --experiment {name}` brings it back)" \
                if lifecycle is Lifecycle.ACTIVE else "not deleted"
            raise ExperimentNotFound(f"experiment {name!r} in store {self.store.display_url} is {state}")
        import difflib

        close = difflib.get_close_matches(name, wanted, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
        raise ExperimentNotFound(f"no experiment named {name!r} in store {self.store.display_url}{hint} "
                                 "(`labtrack experiments` lists them)")

    def list_experiments(self, lifecycle: Lifecycle | str = Lifecycle.ACTIVE) -> list[tuple[Experiment, int]]:
        """Every experiment in the store with its number of runs; ``lifecycle="deleted"`` lists the deleted
        ones (with the runs deleted with them), ``"all"`` both."""
        self.flush()
        return self.store.list_experiments(_lifecycle(lifecycle))

    # -- deleting and restoring -----------------------------------------------------------------

    def delete_run(self, run: Run | str) -> bool:
        """Delete a run (an id, unique id prefix, name, or ``Run``): searches and listings hide it and its
        configuration counts as not run, but it keeps everything until ``gc`` and ``restore_run`` brings it
        back. Returns False if it was deleted already."""
        return bool(self.delete_runs([run]))

    def delete_runs(self, runs: Sequence[Run | str]) -> list[str]:
        """Delete several runs (see ``delete_run``); returns the ids of those that were not deleted yet."""
        self.flush()
        return self.store.delete_runs([self._run_id(r) for r in runs])

    def restore_run(self, run: Run | str) -> bool:
        """Bring back a deleted run (and its experiment, if that was deleted); False if it was not deleted."""
        return bool(self.restore_runs([run]))

    def restore_runs(self, runs: Sequence[Run | str]) -> list[str]:
        """Bring back several deleted runs; returns the ids of those that were deleted."""
        self.flush()
        return self.store.restore_runs([self._run_id(r) for r in runs])

    def delete_experiment(self, name: str) -> int:
        """Delete an experiment and its runs (restorable until ``gc``); returns how many runs were deleted
        with it. Starting a run in a deleted experiment brings the experiment back, without its old runs."""
        self.flush()
        return self.store.delete_experiment(self.require_experiment(name, Lifecycle.ALL))

    def restore_experiment(self, name: str) -> int:
        """Bring back a deleted experiment with the runs deleted with it (not those deleted before);
        returns how many runs."""
        self.flush()
        restored = self.store.restore_experiment(self.require_experiment(name, Lifecycle.DELETED))
        return restored or 0

    def gc(self, older_than: float | str | datetime.timedelta = 0, *, dry_run: bool = False, compact: bool = False) -> Collected:
        """Remove for good the runs deleted more than ``older_than`` ago (seconds, a timedelta, or text such
        as ``"30d"``), the deleted experiments left without runs, and the artifact content no remaining run
        lists. Deleted runs still running stay until they end. ``dry_run``: count, remove nothing;
        ``compact``: give the freed space back to the file system (SQLite's VACUUM)."""
        age = parse_age(older_than)
        self.flush()
        now = self.store.now()
        return self.store.collect_garbage(now - age, stale_before=now - self.settings.heartbeat_timeout,
                                          dry_run=dry_run, compact=compact)

    def _run_id(self, run: Run | str) -> str:
        return run.id if isinstance(run, Run) else self.store.resolve_run_id(run)

    def _resolve_liveness(self, records: Sequence[Any]) -> None:
        resolve_liveness(self.store, records, self.settings.heartbeat_timeout, recover=self.recover)

    def resolve_liveness(self, records: Sequence[Any]) -> None:
        """Show RUNNING runs whose process is gone as CRASHED (recovering their spools first)."""
        self._resolve_liveness(records)

    # -- identity -------------------------------------------------------------------------------

    def compute_key(
        self,
        experiment: str,
        params: Mapping[str, Any] | None = None,
        *,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        identity: Sequence[str] | str = DEFAULT_IDENTITY,
        exclude: Sequence[str] = (),
        script: str | os.PathLike[str] | None = None,
        entry: Mapping[str, Any] | None = None,
    ) -> str:
        """The run key ``start_run`` would give a run of ``experiment`` with ``params`` here and now, in
        ``script`` (default: this process's entry script; ``entry``: a tracked function's, see start_run)."""
        experiment = check_key(experiment, "experiment")
        parts = check_identity(identity)
        captured = capture.for_run(self.settings)
        env = captured.environment if captured is not None else None
        if entry is None:
            entry = capture.script_entry(env, script)
        return run_key(
            experiment, checked_params(params), identity=parts, exclude=_checked_exclude(exclude),
            code=capture.code_version(env, script) if "code" in parts else None,
            inputs=hash_inputs(inputs) if inputs else {},
            env_fingerprint=env.fingerprint if env is not None and "env" in parts else None, entry=dict(entry),
        )

    def find_run(
        self,
        experiment: str,
        params: Mapping[str, Any] | None = None,
        *,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        identity: Sequence[str] | str = DEFAULT_IDENTITY,
        exclude: Sequence[str] = (),
        script: str | os.PathLike[str] | None = None,
    ) -> Run | None:
        """The latest FINISHED run with the same key (experiment, entry script, params, code, inputs), or
        None. ``script``: the entry script of the runs to look for (default: this process's).

        One indexed lookup, however many runs the store holds. FAILED, KILLED and CRASHED runs do not count.
        """
        key = self.compute_key(experiment, params, inputs=inputs, identity=identity, exclude=exclude, script=script)
        self.flush()
        found = self.store.find_finished_run(key)
        return Run(self.store, found, settings=self.settings) if found is not None else None

    def exists(
        self,
        experiment: str,
        params: Mapping[str, Any] | None = None,
        *,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        identity: Sequence[str] | str = DEFAULT_IDENTITY,
        exclude: Sequence[str] = (),
        script: str | os.PathLike[str] | None = None,
    ) -> bool:
        """Whether this configuration has already been run to completion (see ``find_run``)."""
        return self.find_run(experiment, params, inputs=inputs, identity=identity, exclude=exclude,
                             script=script) is not None

    def capture_environment(self) -> Environment:
        """The environment snapshot (an ``Environment``) that runs record, captured now."""
        return capture.capture_environment(self.settings)

    def upgrade(self) -> tuple[str | None, str, int]:
        """Migrate the store's schema to this labtrack's revision (``labtrack db upgrade``)."""
        from labtrack.store import upgrade_store

        self.store.close()
        try:
            return upgrade_store(self.location)
        finally:
            self.store = open_store(self.location, artifacts=self.settings.artifacts,
                                    busy_timeout=self.settings.sqlite_busy_timeout)


def _checked_exclude(exclude: Sequence[str]) -> tuple[str, ...]:
    if isinstance(exclude, str):
        exclude = (exclude,)
    return tuple(check_key(k, "exclude") for k in exclude)


def _lifecycle(lifecycle: Lifecycle | str) -> Lifecycle:
    try:
        return Lifecycle(lifecycle)
    except ValueError:
        raise InvalidInput(f"lifecycle: choose active, deleted or all, got {lifecycle!r}", field="lifecycle") from None
