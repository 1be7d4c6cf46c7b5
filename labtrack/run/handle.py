"""``Run``: a handle on one run, to log to it and read what it recorded."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from labtrack.run import process as runtime
from labtrack.core.errors import InvalidInput, LabtrackError, StoreConflict, StoreError
from labtrack.core.model import ArtifactInfo, MetricHistory, MetricSummary, RunRecord, RunStatus, effective_status
from labtrack.core.series import Chunk
from labtrack.core.validation import (
    check_artifact_path,
    check_key,
    coerce_metric_value,
    coerce_param_value,
    coerce_step,
    coerce_tag_value,
    coerce_timestamp,
)

if TYPE_CHECKING:
    from labtrack.core.environment import Environment
    from labtrack.verbs.runlist import Batch
    from labtrack.store.base import Store

__all__ = ["GIT_DIFF_ARTIFACT", "Run", "checked_params", "checked_tags", "resolve_liveness"]

GIT_DIFF_ARTIFACT = "labtrack/git.diff"  # the uncommitted diff against HEAD, when the tree was dirty

_MAX_STEP = 2**63
_TERMINAL_CHOICES = {s.value: s for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)}
_now = time.time
_LOGGING_STATE = frozenset({"_owner_pid", "_buffer", "_columns", "_next_step", "_known_keys", "_written_keys",
                            "_flush_lock", "_flush_points", "_hard_limit"})
_logging_init_lock = threading.Lock()


class Run:
    """A handle on one run: log to it, and read what it recorded.

    Reading (``params``, ``metrics``, ``status`` ...) returns the store's current view; on a run this
    process is logging to, buffered metric points are written first so reads see them.
    """

    # Defaults shared by every run until one sets its own.
    _record: RunRecord | None = None
    _live = False
    _claim: tuple[str, float] | None = None  # (owner, lease) when a sweep runs it
    _batch: Batch | None = None  # the search result this run came from, loaded together
    _conflicts_recorded = True  # start_run sets False when they were not known yet
    _created_here = False  # set by start_run: then keys not yet written are known to be new
    _warned = False
    _registered = False
    _environment: Environment | None = None  # the snapshot captured at start (live runs)
    # The state of logging (set by _init_logging).
    _owner_pid: int
    _buffer: list[tuple[str, int, float, float]]
    _columns: list[tuple[str, Chunk]]
    _next_step: dict[str, int]
    _known_keys: set[str]
    _written_keys: set[str]
    _flush_lock: threading.RLock
    _flush_points: int
    _hard_limit: int

    def __init__(self, store: Store, run_id: str, record: RunRecord | None = None) -> None:
        self._store = store
        self.id = run_id
        self._record = record
        self._init_logging()

    @classmethod
    def _found(cls, store: Store, run_id: str, batch: Batch) -> Run:
        """A run a search found: most are only read, so the state of logging is made on first use
        (``__getattr__``) — a search of 100k runs would otherwise spend a third of a second on it."""
        run = cls.__new__(cls)
        run._store, run.id, run._batch = store, run_id, batch
        return run

    def _init_logging(self) -> None:
        self._owner_pid = os.getpid()
        self._buffer = []
        self._columns = []
        self._next_step = {}
        self._known_keys = set()
        self._written_keys = set()
        self._flush_lock = threading.RLock()
        current = runtime.settings()
        self._flush_points = current.flush_points
        self._hard_limit = current.flush_points * 4

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not set: the state of logging of a run made by _found.
        if name in _LOGGING_STATE:
            with _logging_init_lock:
                if "_buffer" not in self.__dict__:
                    self._init_logging()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<Run {self.id[:8]} experiment={self.experiment!r} status={self.status.value}>"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt) or (
            issubclass(exc_type, SystemExit) and runtime.state.terminating is not None
        ):
            self.end(RunStatus.KILLED, error={"type": exc_type.__name__, "message": "interrupted"})
        elif issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (0, None):
            self.end(RunStatus.FINISHED)
        else:
            self.end(RunStatus.FAILED, error=runtime.error_of(exc))

    # -- reading ------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Write the points this process still buffers for the run, so that reads see them."""
        if self._buffer or self._columns:
            self.flush()

    def _fetch(self) -> RunRecord:
        if self._record is None and self._batch is not None:
            self._batch.load()  # the whole search result in one round of queries, not one run at a time
        if self._record is not None and self._record.status.is_terminal and not self._live:
            return self._record
        self._settle()
        record = self._store.get_run(self.id)
        resolve_liveness(self._store, [record])
        self._record = record
        return record

    @property
    def record(self) -> RunRecord:
        return self._fetch()

    @property
    def experiment(self) -> str:
        return self._record.experiment if self._record is not None else self._fetch().experiment

    @property
    def name(self) -> str | None:
        return self._fetch().name

    @property
    def status(self) -> RunStatus:
        return self._fetch().status

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._fetch().params)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._fetch().tags)

    @property
    def metrics(self) -> dict[str, float]:
        """The last value of every metric (highest step; among equal steps the latest logged)."""
        return {k: m.last for k, m in self._fetch().metrics.items()}

    @property
    def metric_summaries(self) -> dict[str, MetricSummary]:
        return dict(self._fetch().metrics)

    @property
    def start_time(self) -> float:
        return self._fetch().start_time

    @property
    def end_time(self) -> float | None:
        return self._fetch().end_time

    @property
    def error(self) -> dict[str, str] | None:
        return self._fetch().error

    @property
    def key(self) -> str | None:
        return self._fetch().run_key

    @property
    def note(self) -> str | None:
        return self._fetch().note

    @property
    def result(self) -> Any:
        """A tracked function's recorded return value (None for other runs), exactly as returned."""
        value = self._fetch().result
        if isinstance(value, dict) and value.get("__labtrack__") == "pickled":
            import pickle

            with self.open_artifact(value["artifact"]) as f:
                return pickle.loads(f.read())  # written by labtrack.track from this store's own runs
        return value

    @property
    def environment(self) -> Environment | None:
        """What the run ran on: the shared snapshot (by fingerprint) with this run's own parts
        (command, git state, seeds, hostname) merged in. None if capture was turned off."""
        from labtrack.core.environment import Environment

        record = self._fetch()  # settles first
        snapshot: dict[str, Any] = {}
        if record.env_fingerprint:
            snapshot = self._store.get_environment(record.env_fingerprint) or {}
        context = self._store.get_context(self.id) or {}
        if not snapshot and not context:
            return None
        for name, section in context.items():
            if isinstance(section, dict) and isinstance(snapshot.get(name), dict):
                snapshot[name] = {**snapshot[name], **section}
            else:
                snapshot[name] = section
        return Environment(snapshot)

    def set_result(self, result: Any) -> None:
        """Record a JSON-able value as the run's result (what ``labtrack.track`` returns on a skip)."""
        try:
            json.dumps(result, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"result must be JSON-serialisable (dicts, lists, numbers, strings): {exc}", field="result"
            ) from exc
        self._settle()
        self._store.set_result(self.id, result)

    @property
    def artifacts(self) -> list[ArtifactInfo]:
        self._settle()
        return self._store.list_artifacts(self.id)

    def history(self, key: str) -> MetricHistory:
        """Every point of metric ``key``, ordered by step (then by logging order)."""
        self._settle()
        return self._store.get_metric_history(self.id, key)

    def open_artifact(self, path: str) -> IO[bytes]:
        path = check_artifact_path(path, "path")
        self._settle()
        for item in self._store.list_artifacts(self.id):
            if item.path == path:
                return self._store.open_artifact(item.sha256)
        raise InvalidInput(f"run {self.id} has no artifact {path!r}; see run.artifacts", field="path")

    def download_artifacts(self, destination: str | os.PathLike[str], path: str | None = None) -> list[Path]:
        """Copy the run's artifacts (all, or those under ``path``) into ``destination``."""
        prefix = check_artifact_path(path, "path") if path else None
        self._settle()
        root = Path(destination).resolve()
        written = []
        for item in self._store.list_artifacts(self.id):
            if prefix and item.path != prefix and not item.path.startswith(prefix + "/"):
                continue
            target = (root / item.path).resolve()
            if root not in target.parents:  # cannot happen for checked paths; defence in depth
                raise InvalidInput(f"artifact path {item.path!r} escapes {root}", field="path")
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._store.open_artifact(item.sha256) as src, open(target, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
            written.append(target)
        return written

    def to_dict(self) -> dict[str, Any]:
        return self._fetch().to_dict()

    # -- params, tags, notes ------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        valid = checked_params(params)
        self._settle()
        self._store.log_params(self.id, valid)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        valid = checked_tags(tags)
        self._settle()
        self._store.set_tags(self.id, valid)

    def set_note(self, note: str) -> None:
        if not isinstance(note, str):
            raise InvalidInput(f"note must be a string, got {type(note).__name__}", field="note")
        self._settle()
        self._store.set_note(self.id, note)

    # -- metrics ------------------------------------------------------------------------------

    def log_metric(self, key: str, value: Any, step: int | None = None, timestamp: Any = None) -> None:
        """Buffer one point; it is written in the background within ``flush_interval`` seconds.

        ``step`` defaults to one past the last step logged for this key in this process (0 first).
        """
        if key not in self._known_keys:
            check_key(key, "metric key")
            self._known_keys.add(key)
        if type(value) is not float:
            value = coerce_metric_value(value, key)
        if step is None:
            step = self._next_step.get(key, 0)
        elif type(step) is not int or not 0 <= step < _MAX_STEP:
            step = coerce_step(step, key)
        self._next_step[key] = step + 1
        buffer = self._buffer
        buffer.append((key, step, _now() if timestamp is None else coerce_timestamp(timestamp, key), value))
        if len(buffer) >= self._flush_points:
            self._buffer_full()

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, timestamp: Any = None) -> None:
        """Buffer one point per key, all at the same ``step`` and time. Nothing is buffered if any is invalid."""
        if not isinstance(metrics, Mapping):
            raise InvalidInput(f"metrics must be a dict of key -> number, got {type(metrics).__name__}", field="metrics")
        ts = _now() if timestamp is None else coerce_timestamp(timestamp, "metrics")
        if step is not None and (type(step) is not int or not 0 <= step < _MAX_STEP):
            step = coerce_step(step, "metrics")
        points = []
        for key, value in metrics.items():
            if key not in self._known_keys:
                check_key(key, "metric key")
                self._known_keys.add(key)
            if type(value) is not float:
                value = coerce_metric_value(value, key)
            points.append((key, self._next_step.get(key, 0) if step is None else step, ts, value))
        for point in points:
            self._next_step[point[0]] = point[1] + 1
        self._buffer.extend(points)
        if len(self._buffer) >= self._flush_points:
            self._buffer_full()

    def log_batch(
        self,
        metrics: Mapping[str, Sequence[Any]],
        steps: Sequence[int] | None = None,
        timestamps: Sequence[float] | float | None = None,
    ) -> None:
        """Buffer whole series at once: ``{"loss": [...], "acc": [...]}`` with shared ``steps``.

        The fast path for bulk ingestion (lists, arrays or numpy arrays). ``steps`` defaults to
        consecutive steps after the last one logged for each key.
        """
        if not isinstance(metrics, Mapping):
            raise InvalidInput("metrics must be a dict of key -> sequence of numbers", field="metrics")
        prepared: list[tuple[str, Chunk]] = []
        step_array = _int_array(steps, "steps") if steps is not None else None
        for key, values in metrics.items():
            check_key(key, "metric key")
            value_array = _float_array(values, key)
            n = len(value_array)
            if step_array is not None:
                if len(step_array) != n:
                    raise InvalidInput(
                        f"metric {key!r}: {n} values but {len(step_array)} steps; give one step per value",
                        field=f"metric {key!r}",
                    )
                key_steps = step_array
            else:
                first = self._next_step.get(key, 0)
                key_steps = _array("q", range(first, first + n))
            prepared.append((key, Chunk(key_steps, _timestamps(timestamps, n, key), value_array)))
        for key, chunk in prepared:
            if len(chunk):
                self._next_step[key] = max(self._next_step.get(key, 0), chunk.steps[-1] + 1)
            self._known_keys.add(key)
            self._columns.append((key, chunk))
        self._ensure_registered()
        pending = sum(len(c) for _, c in self._columns)
        if pending >= self._hard_limit:
            self.flush_in_background()
        elif pending >= self._flush_points:
            runtime.writer().kick()

    def _buffer_full(self) -> None:
        self._ensure_registered()
        if len(self._buffer) >= self._hard_limit:
            # The writer is behind: write here, which bounds memory. If the store is down, keep buffering
            # (and warn once): losing the points or stopping the training would both be worse.
            self.flush_in_background()
        else:
            runtime.writer().kick()

    def _ensure_registered(self) -> None:
        if not self._registered:
            self._registered = True
            runtime.writer().add(self, live=self._live)

    def _peek(self) -> tuple[dict[str, Chunk], tuple[int, int]]:
        """What is buffered, grouped by key, and how much of each buffer that is.

        Nothing is removed here: ``_consume`` removes it once the store has it. So a failed write, or a
        signal arriving anywhere in between, leaves every point in the buffer for the next attempt.
        """
        n, m = len(self._buffer), len(self._columns)
        grouped: dict[str, Chunk] = {}
        for key, step, ts, value in self._buffer[:n]:
            found = grouped.get(key)
            chunk = found if found is not None else grouped.setdefault(key, Chunk.empty())
            chunk.steps.append(step)
            chunk.timestamps.append(ts)
            chunk.values.append(value)
        for key, chunk in self._columns[:m]:
            grouped.setdefault(key, Chunk.empty()).extend(chunk)
        return grouped, (n, m)

    def _consume(self, marks: tuple[int, int]) -> None:
        # Appends from the logging thread land after these marks: nothing is lost (GIL-atomic operations).
        del self._buffer[: marks[0]]
        del self._columns[: marks[1]]

    def _write_points(self, chunks: dict[str, Chunk], write: Any) -> None:
        """``write(new_keys)`` the points; if the store refuses the shortcut for new keys (they exist after
        all: e.g. a write that committed but reported an error), write again the careful way."""
        try:
            write(self._new_keys(chunks))
        except StoreError as exc:
            if not self._new_keys(chunks) or not isinstance(exc, StoreConflict):
                raise
            write(set())

    def flush(self) -> None:
        """Write buffered metric points now.

        Raises ``StoreError`` if the store fails; nothing is lost, the next flush retries.
        """
        with self._flush_lock:
            chunks, marks = self._peek()
            if not chunks:
                return
            self._write_points(chunks, lambda new: self._store.log_metrics(self.id, chunks, new))
            self._consume(marks)
            self._written_keys.update(chunks)

    def _new_keys(self, chunks: Mapping[str, Chunk]) -> set[str]:
        return {k for k in chunks if k not in self._written_keys} if self._created_here else set()

    def flush_in_background(self) -> bool:
        try:
            self.flush()
        except Exception as exc:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"labtrack: cannot write metrics of run {self.id[:8]} ({exc}); they are kept in memory and "
                    "retried — training goes on",
                    RuntimeWarning,
                    stacklevel=1,
                )
            return False
        return not self._live and not self._buffer and not self._columns

    def maintain_store(self) -> None:
        try:
            self._store.maintain()
        except Exception:  # housekeeping must never disturb the run
            pass

    def store_identity(self) -> int:
        return id(self._store)

    def heartbeat_in_background(self, now: float) -> None:
        try:
            self._store.heartbeat(self.id, now)
            if self._claim is not None:  # a sweep's claim on this configuration: keep it alive
                owner, lease = self._claim
                self._store.renew_claims(owner, lease, now)
        except Exception:  # reported by flush_in_background; a missed heartbeat is harmless
            pass

    # -- artifacts ----------------------------------------------------------------------------

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Store a file, or a directory with everything in it, under ``artifact_path/<its name>``.

        Content is stored once per sha256. A symlink inside a logged directory that points outside it
        is refused (nothing is stored), so an artifact never carries files from elsewhere.
        """
        source = Path(local_path)
        if not source.exists():
            raise InvalidInput(f"local_path {os.fspath(local_path)!r} does not exist", field="local_path")
        base = check_artifact_path(artifact_path) if artifact_path else ""
        name = source.resolve().name if source.name in ("", ".", "..") else source.name
        target = f"{base}/{name}" if base else name
        check_artifact_path(target, "local_path")
        files = _collect_files(source, target) if source.is_dir() else [(source, target)]
        self._store_files(files)

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Store the contents of a directory (not the directory itself) under ``artifact_path``."""
        source = Path(local_dir)
        if not source.is_dir():
            raise InvalidInput(f"local_dir {os.fspath(local_dir)!r} is not a directory", field="local_dir")
        base = check_artifact_path(artifact_path) if artifact_path else ""
        self._store_files(_collect_files(source, base))

    def _store_files(self, files: list[tuple[Path, str]]) -> None:
        self._settle()
        infos = []
        for path, target in files:
            sha, size = self._store.put_artifact_file(str(path))
            infos.append(ArtifactInfo(path=target, sha256=sha, size=size))
        self._store.add_artifacts(self.id, infos)

    def log_text(self, text: str, artifact_file: str) -> None:
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a string, got {type(text).__name__}", field="text")
        self._log_bytes(text.encode("utf-8"), artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as JSON (``.json``) or YAML (``.yaml``/``.yml``, needs PyYAML)."""
        path = check_artifact_path(artifact_file, "artifact_file")
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as exc:
                raise InvalidInput(
                    f"artifact_file {path!r}: YAML needs PyYAML (pip install pyyaml), or use a .json name",
                    field="artifact_file",
                ) from exc
            data = yaml.safe_dump(dict(dictionary), sort_keys=False).encode("utf-8")
        else:
            try:
                data = json.dumps(dictionary, indent=2, ensure_ascii=False, default=str).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"dictionary cannot be written as JSON: {exc}", field="dictionary") from exc
        self._log_bytes(data, path)

    def _log_bytes(self, data: bytes, artifact_file: str) -> None:
        path = check_artifact_path(artifact_file, "artifact_file")
        self._settle()
        sha, size = self._store.put_artifact_bytes(data)
        self._store.add_artifacts(self.id, [ArtifactInfo(path=path, sha256=sha, size=size)])

    # -- ending -------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED, error: Mapping[str, str] | None = None) -> None:
        """Write what is buffered and set the final status (FINISHED, FAILED or KILLED)."""
        status = _terminal_status(status)
        self._refresh_environment()
        try:
            with self._flush_lock:
                chunks, marks = self._peek()
                end_time = _now()
                self._write_points(chunks, lambda new: self._store.end_run(
                    self.id, status, end_time, error=error, metrics=chunks or None, new_keys=new,
                ))
                self._consume(marks)
        finally:
            # Even when the store fails, the run stops being active here: later runs can start, and its
            # heartbeat stops (so it shows as CRASHED, not RUNNING forever). Its points stay buffered:
            # calling end() again once the store is back writes them and the status.
            self._live = False
            self._record = None
            runtime.writer().discard(self)
            self._registered = False
            with runtime.state.lock:
                if self in runtime.state.stack:
                    runtime.state.stack.remove(self)


    def _record_conflicts(self) -> None:
        """At the end of a run started before its environment's conflicts were known, record them now."""
        env = self._environment
        if env is None or "packages" not in env.snapshot or self._conflicts_recorded:
            return
        try:
            from labtrack.env.conflicts import find_conflicts_cached, wait_background

            # Started in the background at start_run; only the first run after an install waits here
            # (a fraction of a second), later ones find the result cached on disk.
            wait_background(5.0)
            found = find_conflicts_cached(compute=False)
            if found is not None:
                self._store.merge_context(self.id, {"conflicts": found})
        except Exception as exc:  # information only: never fails the run
            warnings.warn(f"labtrack: could not record dependency conflicts: {exc}", RuntimeWarning, stacklevel=3)

    def _refresh_environment(self) -> None:
        """At the end of a run, add build facts of frameworks the run imported after it started."""
        self._record_conflicts()
        env = self._environment
        frameworks = env.snapshot.get("frameworks") if env is not None else None
        if env is None or not isinstance(frameworks, dict):
            return
        if not any(
            isinstance(f, dict) and not f.get("imported") and f.get("module") in sys.modules for f in frameworks.values()
        ):
            return
        try:
            from labtrack.env import refresh_frameworks

            refreshed = refresh_frameworks(env)
            if refreshed.fingerprint != env.fingerprint:
                fingerprint = runtime.store_environment(self._store, refreshed)
                self._store.merge_context(self.id, {}, fingerprint)
            self._environment = refreshed
        except Exception as exc:  # the run is ending: a failed refresh must not fail it
            warnings.warn(f"labtrack: could not refresh framework facts: {exc}", RuntimeWarning, stacklevel=3)


def _terminal_status(status: RunStatus | str) -> RunStatus:
    value = status.value if isinstance(status, RunStatus) else str(status).upper()
    if value not in _TERMINAL_CHOICES:
        raise InvalidInput(
            f"status {status!r} cannot end a run; use one of {', '.join(_TERMINAL_CHOICES)}", field="status"
        )
    return _TERMINAL_CHOICES[value]


def checked_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput(f"params must be a dict, got {type(params).__name__}", field="params")
    return {check_key(k, "param key"): coerce_param_value(v, k) for k, v in params.items()}


def checked_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInput(f"tags must be a dict, got {type(tags).__name__}", field="tags")
    return {check_key(k, "tag key"): coerce_tag_value(v, k) for k, v in tags.items()}


def _array(typecode: str, values: Any) -> Any:
    from array import array

    return array(typecode, values)


def _float_array(values: Any, key: str) -> Any:
    field = f"metric {key!r}"
    dtype = getattr(values, "dtype", None)
    if dtype is not None:
        if getattr(values, "ndim", 1) != 1 or dtype.kind not in "fiu":
            raise InvalidInput(f"{field}: give a 1-d array of real numbers (got dtype {dtype})", field=field)
        from array import array

        out = array("d")
        out.frombytes(values.astype("<f8", copy=False).tobytes())
        return out
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise InvalidInput(f"{field}: give a sequence of numbers, got {type(values).__name__}", field=field)
    try:
        out = _array("d", values)
    except (TypeError, OverflowError):
        out = _array("d", [coerce_metric_value(v, key) for v in values])
    else:
        if any(type(v) is bool for v in values):
            raise InvalidInput(f"{field}: bool is not a metric value; log 0/1 as numbers", field=field)
    return out


def _int_array(values: Any, field: str) -> Any:
    dtype = getattr(values, "dtype", None)
    try:
        if dtype is not None:
            if dtype.kind not in "iu":
                raise TypeError(f"dtype {dtype} is not an integer type")
            out = _array("q", b"")
            out.frombytes(values.astype("<i8", copy=False).tobytes())
        else:
            out = _array("q", values)
    except (TypeError, OverflowError) as exc:
        raise InvalidInput(f"{field} must be integers >= 0 ({exc})", field=field) from exc
    if len(out) and min(out) < 0:
        raise InvalidInput(f"{field} must be integers >= 0, got {min(out)}", field=field)
    return out


def _timestamps(timestamps: Any, n: int, key: str) -> Any:
    if timestamps is None:
        return _array("d", [_now()]) * n
    if isinstance(timestamps, (int, float)) or hasattr(timestamps, "timestamp"):
        return _array("d", [coerce_timestamp(timestamps, key)]) * n
    out = _float_array(timestamps, key)
    if len(out) != n:
        raise InvalidInput(f"metric {key!r}: {n} values but {len(out)} timestamps", field="timestamps")
    if not all(math.isfinite(t) for t in out):
        raise InvalidInput(f"metric {key!r}: timestamps must be finite seconds since the epoch", field="timestamps")
    return out


def _collect_files(root: Path, target: str) -> list[tuple[Path, str]]:
    """Every file below ``root`` with its artifact path; refuses symlinks that leave ``root``."""
    real_root = root.resolve()
    files: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real_dir = Path(dirpath).resolve()
        if real_dir in seen:
            dirnames.clear()  # a symlink loop
            continue
        seen.add(real_dir)
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath, name)
            if path.is_symlink():
                real = path.resolve()
                if real != real_root and real_root not in real.parents:
                    raise InvalidInput(
                        f"{path} is a symlink to {real}, outside {root}: artifacts must stay inside the "
                        "logged directory (copy the file in, or log it separately)",
                        field="local_path",
                    )
        for name in sorted(filenames):
            path = Path(dirpath, name)
            relative = path.relative_to(root).as_posix()
            files.append((path, f"{target}/{relative}" if target else relative))
    return files


def _pid_alive(pid: int, started_before: float) -> bool:
    """Whether ``pid`` runs and is the same process (it started no later than the run did)."""
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= started_before + 1.0
    except Exception:  # psutil.NoSuchProcess, AccessDenied, ...: treat as gone only when surely gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def resolve_liveness(store: Store, records: Sequence[RunRecord]) -> None:
    """Show RUNNING runs whose process is gone as CRASHED (and record that in the store)."""
    timeout = runtime.settings().heartbeat_timeout
    now = _now()
    for record in records:
        if record.status is not RunStatus.RUNNING:
            continue
        crashed = effective_status(record, now, timeout) is RunStatus.CRASHED
        if not crashed and record.host == runtime.state.host and record.pid and record.pid != os.getpid():
            crashed = not _pid_alive(record.pid, record.start_time)
        if crashed:
            try:
                store.mark_crashed(record.id, record.heartbeat_time)
            except LabtrackError:
                pass  # shown as CRASHED anyway; a later reader records it
            record.status = RunStatus.CRASHED
            record.end_time = record.heartbeat_time
