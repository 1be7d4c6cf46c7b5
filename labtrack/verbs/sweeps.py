"""Never run the same experiment twice: tracked functions and sweeps shared by many workers.

``@track("exp")`` turns a training function into one that is skipped when a FINISHED run with the same
key (experiment, params, code version, declared inputs) exists, returning the recorded result instead.

``sweep(fn, grid=...)`` runs every configuration not done yet. Workers — processes started by
``workers=N``, the tasks of an executor (``executor=``: ``labtrack.verbs.executor``), other ``sweep`` calls on
this machine, or on other machines sharing a PostgreSQL store or a tracking server —
cooperate through claims: before running a configuration a worker claims its key atomically in the
store, with a lease renewed by the run's heartbeat. A claim whose worker died (its lease expired) is
taken over by another worker, so every configuration runs exactly once and an interrupted sweep resumes
where it stopped. A configuration that fails is not retried within the same sweep, only by the next.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labtrack.core.errors import InvalidInput
from labtrack.core.identity import DEFAULT_IDENTITY, check_identity
from labtrack.run import process
from labtrack.run.handle import Run
from labtrack.settings import Settings
from labtrack.verbs.progress import SweepProgress
from labtrack.verbs.runs import RunClient

ClientSource = RunClient | Callable[[], RunClient]  # a client, or what opens it when a call needs it

__all__ = [
    "ClientSource",
    "SweepResult",
    "TrackedFunction",
    "expand_grid",
    "function_entry",
    "record_result",
    "recorded_result",
    "sweep",
    "track",
]



class TrackedFunction:
    """A function whose calls are runs, skipped when already done. Made by ``labtrack.track``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        experiment: str | None = None,
        *,
        identity: Sequence[str] | str = DEFAULT_IDENTITY,
        exclude: Sequence[str] = (),
        inputs: Sequence[str] | Mapping[str, Any] | None = None,
        trust_pickle: bool = False,
        source: ClientSource,
    ) -> None:
        self.fn = fn
        self.trust_pickle = trust_pickle  # results that only pickle holds are stored, and loaded on a skip
        self.experiment = experiment or fn.__name__
        self.identity = check_identity(identity)
        self.exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        self.inputs = inputs
        self.source = source
        self.signature = inspect.signature(fn)
        self._entry: dict[str, Any] | None = None
        functools.update_wrapper(self, fn)

    def client(self) -> RunClient:
        """The client whose store the calls are tracked in: ``Client.track``'s, or the module-level API's
        store as it is when the function is called (``set_store`` may come after the decorator)."""
        return self.source if isinstance(self.source, RunClient) else self.source()

    def __repr__(self) -> str:
        return f"<tracked {self.fn.__qualname__} experiment={self.experiment!r}>"

    # -- configuration -> params, inputs, key ---------------------------------------------------

    def params_of(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The call's arguments by name, defaults included (what the run records as params)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"{self.fn.__qualname__}: {exc}", field="params") from exc
        bound.apply_defaults()
        params: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                params.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                params[name] = list(value)
            else:
                params[name] = value
        return params

    def inputs_of(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Declared inputs: a fixed {name: path} dict, or names of params whose values are paths."""
        if self.inputs is None:
            return None
        if isinstance(self.inputs, Mapping):
            return dict(self.inputs)
        missing = [name for name in self.inputs if name not in params]
        if missing:
            raise InvalidInput(
                f"inputs {missing} name no parameter of {self.fn.__qualname__}", field="inputs"
            )
        return {name: params[name] for name in self.inputs}

    @property
    def entry(self) -> dict[str, Any]:
        """What runs, for the run key: the function's qualified name, the hash of its source (when the code
        is part of the identity: editing the function makes its calls new experiments), and the entry
        script for a function of the script itself (``__main__``)."""
        if self._entry is None:
            self._entry = function_entry(self.fn, code="code" in self.identity, settings=self.client().settings)
        return self._entry

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The run key a call with these arguments would have."""
        params = self.params_of(*args, **kwargs)
        return self.client().compute_key(
            self.experiment, params, inputs=self.inputs_of(params), identity=self.identity, exclude=self.exclude,
            entry=self.entry,
        )

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        force = False
        if "force" in kwargs and "force" not in self.signature.parameters:
            force = bool(kwargs.pop("force"))
        return self._call(args, kwargs, force=force)

    def force(self, *args: Any, **kwargs: Any) -> Any:
        """Run even if a FINISHED run with the same key exists."""
        return self._call(args, kwargs, force=True)

    def find(self, *args: Any, **kwargs: Any) -> Run | None:
        """The FINISHED run of a call with these arguments, if any."""
        client = self.client()
        key = self.key(*args, **kwargs)
        client.flush()
        found = client.store.find_finished_run(key)
        return client.get_run(found) if found else None

    def exists(self, *args: Any, **kwargs: Any) -> bool:
        """Whether a call with these arguments has already run to completion (one indexed lookup)."""
        return self.find(*args, **kwargs) is not None

    def on(self, source: ClientSource) -> TrackedFunction:
        """The same tracked function over another client ``source``, with this one's entry (so the same keys):
        what a sweep sends to an executor's workers, which open the store themselves."""
        other = TrackedFunction(self.fn, self.experiment, identity=self.identity, exclude=self.exclude,
                                inputs=self.inputs, trust_pickle=self.trust_pickle, source=source)
        other._entry = self.entry
        return other

    def run_config(self, config: dict[str, Any], *, claim: tuple[str, float] | None = None,
                   key: str | None = None) -> Any:
        """Run one configuration now, finished before or not: a sweep's worker holding its ``claim``, under
        the ``key`` its sweep computed (``None``: computed here)."""
        return self._call((), config, force=True, claim=claim, key=key)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, force: bool,
              claim: tuple[str, float] | None = None, key: str | None = None) -> Any:
        params = self.params_of(*args, **kwargs)
        inputs = self.inputs_of(params)
        client = self.client()
        if not force:
            key = client.compute_key(self.experiment, params, inputs=inputs, identity=self.identity,
                                     exclude=self.exclude, entry=self.entry)
            client.flush()
            found = client.store.find_finished_run(key)
            if found is not None:
                return recorded_result(client.get_run(found), trust_pickle=self.trust_pickle)
        with client.start_run(
            self.experiment, params=params, inputs=inputs, identity=self.identity, exclude=self.exclude,
            nested=process.active() is not None, claim=claim, entry=self.entry, key=key,
        ) as run:
            result = self.fn(*args, **kwargs)
            record_result(run, result, trust_pickle=self.trust_pickle)
        return result


def function_entry(fn: Callable[..., Any], *, code: bool, settings: Settings) -> dict[str, Any]:
    """A tracked function's part of its run keys (see ``TrackedFunction.entry``)."""
    import hashlib

    from labtrack.verbs import capture

    target = inspect.unwrap(fn)
    module = getattr(target, "__module__", None) or "?"
    entry: dict[str, Any] = {"function": f"{module}.{getattr(target, '__qualname__', repr(target))}"}
    if module == "__main__":  # two scripts may each define a train(): the script tells them apart
        captured = capture.for_run(settings)
        entry["script"] = capture.script_entry(captured.environment if captured is not None else None)["script"]
    if code:
        try:
            source = inspect.getsource(target)
        except (OSError, TypeError):  # defined in a REPL: its compiled code stands for its source
            compiled = getattr(target, "__code__", None)
            source = repr((compiled.co_code, compiled.co_consts, compiled.co_names)) if compiled else repr(target)
        entry["source"] = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return entry


def track(
    experiment: str | Callable[..., Any] | None = None,
    *,
    identity: Sequence[str] | str = DEFAULT_IDENTITY,
    exclude: Sequence[str] = (),
    inputs: Sequence[str] | Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    source: ClientSource,
) -> Any:
    """Decorator: each call runs inside a new run, or returns the recorded result of a FINISHED run
    with the same key without running (``force=True`` or ``fn.force(...)`` re-runs).

    ``identity`` picks what the key covers (params, code, inputs, env); ``exclude`` names params that
    must not count (a seed, an output directory); ``inputs`` names params whose values are paths to
    hash by content, or gives a fixed {name: path} dict. The return value is recorded as the run's
    result as data (JSON, tuples, sets, numpy arrays and scalars: see ``labtrack.core.results``); a result
    that only pickle can hold needs ``trust_pickle=True``, which also lets a skip load a pickled result —
    only for a store whose every writer you trust.
    """
    if callable(experiment):  # used bare: @track
        return TrackedFunction(experiment, source=source)

    def wrap(fn: Callable[..., Any]) -> TrackedFunction:
        return TrackedFunction(fn, experiment, identity=identity, exclude=exclude, inputs=inputs,
                               trust_pickle=trust_pickle, source=source)

    return wrap


def record_result(run: Run, result: Any, *, trust_pickle: bool = False) -> None:
    """Store a tracked function's return value as data (``labtrack.core.results``), so that a skipped
    call returns it exactly; anything that only pickle can hold needs ``trust_pickle``."""
    from labtrack.core.results import TRUST_PICKLE, NotData, encode_result, pickled

    try:
        encoded, files = encode_result(result)
    except NotData as exc:
        if not trust_pickle:
            raise InvalidInput(
                f"the result of {run.experiment} holds a {exc} object, which only pickle can store: return "
                "plain values (JSON, tuples, sets, numpy arrays and scalars), or pass trust_pickle=True to "
                f"track to pickle it; {TRUST_PICKLE}", field="result",
            ) from None
        try:
            encoded, files = pickled(result)
        except Exception as exc:
            raise InvalidInput(f"the result of {run.experiment} can be stored neither as data nor with pickle "
                               f"({exc}); return plain values", field="result") from exc
    for path, data in files:
        run.log_bytes(data, path)
    run.set_result(encoded)


def recorded_result(run: Run, *, trust_pickle: bool = False) -> Any:
    return run.load_result(trust_pickle=trust_pickle)


# -- sweeps ----------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What a sweep did. ``ran``: configurations this call ran; ``skipped``: already done before it;
    ``failed``: (config, error) pairs; ``done_elsewhere``: finished by other workers meanwhile."""

    total: int
    ran: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    done_elsewhere: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed and len(self.ran) + len(self.skipped) + len(self.done_elsewhere) == self.total


def expand_grid(grid: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest: {"a": [1, 2], "b": [3]} -> [{a:1,b:3}, {a:2,b:3}]."""
    if not isinstance(grid, Mapping) or not grid:
        raise InvalidInput("grid must be a non-empty dict of name -> list of values", field="grid")
    names = list(grid)
    values = []
    for name in names:
        options = grid[name]
        if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
            raise InvalidInput(f"grid[{name!r}] must be a list of values, got {options!r}", field=f"grid[{name!r}]")
        values.append(list(options))
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def _configs(grid: Mapping[str, Iterable[Any]] | None, configs: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if (grid is None) == (configs is None):
        raise InvalidInput("give exactly one of grid= or configs=", field="grid")
    if grid is not None:
        return expand_grid(grid)
    out = []
    for i, config in enumerate(configs or ()):
        if not isinstance(config, Mapping):
            raise InvalidInput(f"configs[{i}] must be a dict of params, got {type(config).__name__}", field="configs")
        out.append(dict(config))
    return out


def _work(tracked: TrackedFunction, configs: list[dict[str, Any]], keys: list[str], sweep_id: str,
          lease: float, poll: float, report: Callable[[str, int, str], None]) -> None:
    """One worker's loop: claim what is free, run it, wait for what others hold, until all is settled."""
    client = tracked.client()
    store = client.store
    owner = f"{sweep_id}/{process.HOST}/{os.getpid()}"
    pending = list(range(len(configs)))
    told = False
    while pending:
        waiting = []
        for i in pending:
            state = store.claim(keys[i], owner, lease, store.now())
            if state == "busy":
                waiting.append(i)
                continue
            if state != "claimed":
                report(state, i, "")  # "done" (finished by someone) or "failed" (earlier in this sweep)
                continue
            report("running", i, "")
            try:
                tracked._call((), configs[i], force=True, claim=(owner, lease))
            except Exception as exc:
                client.flush()
                store.release_claim(keys[i], owner, done=False)
                report("failed", i, f"{type(exc).__name__}: {exc}")
            except BaseException:  # Ctrl-C, SIGTERM: the run ended KILLED; the next sweep takes it at once
                try:
                    store.release_claim(keys[i], owner, done=False)
                finally:
                    report("interrupted", i, "")
                raise
            else:
                client.flush()  # the run is FINISHED in the store before its claim says done
                store.release_claim(keys[i], owner, done=True)
                report("ran", i, "")
        pending = waiting
        if pending:
            if not told:
                told = True
                report("waiting", len(pending), f"waiting for {len(pending)} configuration(s) that other workers "
                       "are running; a claim whose worker died is taken over when its lease expires "
                       f"(at most {lease:.0f} s), at once if that worker ran on this machine")
            time.sleep(poll)


def _worker_main(tracked: TrackedFunction, configs: list[dict[str, Any]], keys: list[str], sweep_id: str,
                 lease: float, poll: float, events: Any) -> None:
    def report(kind: str, i: int, detail: str) -> None:
        events.put((kind, i, detail))

    try:
        _work(tracked, configs, keys, sweep_id, lease, poll, report)
    except KeyboardInterrupt:  # Ctrl-C reached every worker: the parent says it once
        pass


def sweep(
    fn: Callable[..., Any],
    grid: Mapping[str, Iterable[Any]] | None = None,
    *,
    configs: Iterable[Mapping[str, Any]] | None = None,
    workers: int | None = None,
    executor: Any = None,
    experiment: str | None = None,
    lease: float | None = None,
    poll: float = 0.5,
    progress: bool = True,
    source: ClientSource,
) -> SweepResult:
    """Run every configuration of ``grid`` (or ``configs``) that has no FINISHED run yet.

    ``fn`` is a ``@track``-ed function or a plain one (tracked under ``experiment``, default its name).
    ``workers=N`` runs N local processes; ``executor=`` (any ``concurrent.futures.Executor``: a Dask
    cluster's ``client.get_executor()``, Ray, a process pool) runs each configuration as one of its tasks
    (``labtrack.verbs.executor``). Several sweeps (here or on other machines sharing the store) may run at
    once: each configuration is claimed atomically and runs exactly once; a claim whose worker died is taken
    over once its ``lease`` (seconds, default 3 heartbeats and at least 60) expires.
    """
    tracked = fn if isinstance(fn, TrackedFunction) else TrackedFunction(fn, experiment, source=source)
    all_configs = _configs(grid, configs)
    if executor is not None and workers is not None:
        raise InvalidInput(f"give workers= or executor=, not both (workers={workers!r}): the executor decides "
                           "how many trials run at once", field="executor")
    workers = 1 if workers is None else workers
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InvalidInput(f"workers must be an integer >= 1, got {workers!r}", field="workers")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InvalidInput(f"executor must be a concurrent.futures.Executor (something with submit()), got "
                           f"{type(executor).__name__}", field="executor")
    settings = tracked.client().settings
    if lease is None:
        lease = max(60.0, 3 * settings.heartbeat_interval)
    if lease <= settings.heartbeat_interval:
        raise InvalidInput(
            f"lease ({lease}s) must be longer than the heartbeat interval "
            f"({settings.heartbeat_interval}s, LABTRACK_HEARTBEAT_INTERVAL)", field="lease",
        )
    keys = [tracked.key(**config) for config in all_configs]
    tracked.client().flush()  # runs this process ended are in the store first
    store = tracked.client().store
    before = store.finished_keys(keys)
    sweep_id = uuid.uuid4().hex[:12]
    ran: set[int] = set()
    failed: dict[int, str] = {}
    settled: set[int] = set()  # finished, by this sweep's workers or another sweep
    interrupted: set[int] = set()  # running when Ctrl-C came: KILLED, free for the next sweep at once
    running = 0
    bar = SweepProgress(tracked.experiment, len(all_configs), enabled=progress,
                        active="submitted" if executor is not None else "running")

    def report(kind: str, i: int, detail: str) -> None:
        # Events from several worker processes arrive in any order: tally sets, decide at the end.
        nonlocal running
        if kind in ("running", "submitted"):
            running += 1
        elif kind == "returned":  # a task that ran nothing: done elsewhere, held by another worker
            running -= 1
        elif kind == "ran":
            running -= 1
            ran.add(i)
        elif kind == "failed" and detail:
            running -= 1
            failed[i] = detail
        elif kind == "done":
            settled.add(i)
        elif kind == "interrupted":
            running -= 1
            interrupted.add(i)
        elif kind in ("waiting", "say"):
            bar.say(detail)
            return
        skipped = sum(1 for k in settled | ran if keys[k] in before)
        bar.show(done=len((settled | ran) - {k for k in settled if keys[k] in before}), skipped=skipped,
                 failed=len(failed), running=running)

    try:
        with bar:
            if executor is not None:
                from labtrack.verbs.executor import run_on_executor

                todo = [i for i, key in enumerate(keys) if key not in before]  # no task for what is done
                for i in (i for i, key in enumerate(keys) if key in before):
                    report("done", i, "")
                run_on_executor(executor, tracked, all_configs, keys, todo, sweep_id, lease, poll, report)
            elif workers == 1:
                _work(tracked, all_configs, keys, sweep_id, lease, poll, report)
            else:
                _run_processes(tracked, all_configs, keys, sweep_id, lease, poll, workers, report)
    except KeyboardInterrupt as exc:
        import sys

        print(f"labtrack: sweep {tracked.experiment} interrupted — {len(ran)} ran, "
              f"{sum(key in before for key in keys)} skipped, {len(interrupted)} stopped "
              "(KILLED); run it again to continue: finished configurations are skipped", file=sys.stderr)
        exc.labtrack_reported = True  # type: ignore[attr-defined]  # labtrack's excepthook prints no traceback
        process.install_hooks()  # (a parent of workers may have started no run itself)
        raise
    result = SweepResult(total=len(all_configs))
    for i, config in enumerate(all_configs):
        if i in ran:
            result.ran.append(config)
        elif i in failed:
            result.failed.append((config, failed[i]))
        elif keys[i] in before:
            result.skipped.append(config)
        elif i in settled:
            result.done_elsewhere.append(config)
    return result


def _run_processes(tracked: TrackedFunction, configs: list[dict[str, Any]], keys: list[str], sweep_id: str,
                   lease: float, poll: float, workers: int, report: Callable[[str, int, str], None]) -> None:
    import multiprocessing
    import queue

    context: Any = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    events = context.Queue()
    processes = [
        context.Process(target=_worker_main, args=(tracked, configs, keys, sweep_id, lease, poll, events),
                        name=f"labtrack-sweep-{n}")
        for n in range(workers)
    ]
    for worker in processes:
        worker.start()
    try:
        while True:
            try:
                report(*events.get(timeout=0.2))
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    break
    except KeyboardInterrupt:  # the workers got it too: they release their claims and leave quietly
        for worker in processes:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        while True:
            try:
                report(*events.get_nowait())
            except (queue.Empty, OSError, ValueError):
                break
        raise
    while True:  # drain what the last workers sent just before exiting
        try:
            report(*events.get_nowait())
        except queue.Empty:
            break
    for worker in processes:
        worker.join()
