"""``Run``: a handle on one run, to log to it and read what it recorded.

Logging goes to the run's ``RunLog`` (``labtrack.run.log``): validated at the call, in this process's
spool before the call returns, moved into the store by the background writer. Reading returns the
store's view; on a run this process logs to, what the spool still holds is written first, so a read sees
every earlier write of this process.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from labtrack.core.errors import InvalidInput
from labtrack.core.model import ArtifactInfo, MetricHistory, MetricSummary, RunRecord, RunStatus
from labtrack.core.validation import (
    check_artifact_path,
    check_key,
    check_nesting,
    check_note,
    checked_params,
    checked_tags,
    coerce_param_value,
    coerce_tag_value,
)
from labtrack.run import process
from labtrack.run.liveness import resolve_liveness
from labtrack.run.log import RunLog
from labtrack.run.writer import Drainer, writer
from labtrack.settings import Settings, default_settings

if TYPE_CHECKING:
    from labtrack.core.environment import Environment
    from labtrack.store.base import Store

__all__ = ["GIT_DIFF_ARTIFACT", "NOISY_TAG", "Live", "RecordSource", "Run", "collect_files", "shared_part"]

NOISY_TAG = "labtrack.noisy"  # metrics (globs) that vary between identical runs: see Run.mark_noisy
GIT_DIFF_ARTIFACT = "labtrack/git.diff"  # the uncommitted diff against HEAD, when the tree was dirty
_TERMINAL_CHOICES = {s.value: s for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)}


class RecordSource(Protocol):
    """Where a run found by a search gets its record: the whole search result, loaded in one batch."""

    def record(self, run_id: str) -> RunRecord | None: ...


@dataclass
class Live:
    """What a run started by this process needs until it ends."""

    drainer: Drainer
    pid: int
    environment: Environment | None = None  # the snapshot captured at start (refreshed at the end)
    conflicts_recorded: bool = True  # False: dependency conflicts were not known yet at the start
    start_time: float | None = None  # the run's recorded start (wall clock) ...
    started: float = 0.0  # ... and the monotonic clock then: the end is the start plus the time it took
    imported: list[str] | None = None  # the distributions recorded as imported at the start


class Run:
    """A handle on one run: log to it, and read what it recorded.

    Reading (``params``, ``metrics``, ``status`` ...) returns the store's current view; on a run this
    process is logging to, its earlier writes reach the store first, so reads see them.
    """

    def __init__(self, store: Store, run_id: str, record: RunRecord | None = None, *,
                 source: RecordSource | None = None, log: RunLog | None = None, live: Live | None = None,
                 settings: Settings | None = None) -> None:
        self._store = store
        self.id = run_id
        self._record = record
        self._source = source
        self._log = log
        self._live = live
        self._ended: RunStatus | None = None  # how this handle ended the run (it then refuses more logging)
        self._settings = settings

    @property
    def store(self) -> Store:
        return self._store

    @property
    def settings(self) -> Settings:
        return self._settings or default_settings()

    def __repr__(self) -> str:
        return f"<Run {self.id[:8]} experiment={self.experiment!r} status={self.status.value}>"

    def _repr_html_(self) -> str:
        """The run as an HTML table in Jupyter (``labtrack.core.html``: every value escaped)."""
        from labtrack.core.html import run_html

        return run_html(self.record)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._ended is not None:
            return  # ended inside the block: that end stands (an exception after it propagates as it is)
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt) or (
            issubclass(exc_type, SystemExit) and process.state.terminating is not None
        ):
            self.end(RunStatus.KILLED, error={"type": exc_type.__name__, "message": "interrupted"})
        elif issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (0, None):
            self.end(RunStatus.FINISHED)
        else:
            self.end(RunStatus.FAILED, error=process.error_of(exc))

    def owned_here(self) -> bool:
        """Whether this process started the run and has not ended it (a forked child does not own it)."""
        return self._live is not None and self._live.pid == os.getpid()

    # -- reading ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the store has everything this process logged to the run (and to any other run of
        the same store). Raises ``StoreError`` if the store still fails after ``timeout`` seconds (default
        ``LABTRACK_FLUSH_TIMEOUT``); nothing is lost: it stays in the spool and is written later."""
        if self._log is not None:
            self._drainer().flush(self.settings.flush_timeout if timeout is None else timeout)

    def _drainer(self) -> Drainer:
        """The drainer of this process's spool: a forked child has its own, never the parent's (which holds
        the parent's unwritten cut and positions)."""
        live = self._live
        if live is not None and live.pid == os.getpid():
            return live.drainer
        return writer().drainer(self._store, self.settings)

    def _fetch(self) -> RunRecord:
        if self._record is None and self._source is not None:
            self._record = self._source.record(self.id)  # the whole search result at once, not run by run
            self._source = None
        if self._record is not None and self._record.status.is_terminal and self._live is None:
            return self._record
        self.flush()
        record = self._store.get_run(self.id)
        resolve_liveness(self._store, [record], self.settings.heartbeat_timeout)
        self._record = record
        return record

    @property
    def record(self) -> RunRecord:
        return self._fetch()

    @property
    def experiment(self) -> str:
        if self._record is None and self._source is not None:
            self._fetch()
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
        """A tracked function's recorded return value (None for other runs), exactly as returned; a pickled
        one raises InvalidInput (see ``load_result``)."""
        return self.load_result()

    def load_result(self, *, trust_pickle: bool = False) -> Any:
        """The recorded return value, rebuilt from data (``labtrack.core.results``) without running any
        code. A result stored with pickle is loaded only with ``trust_pickle=True`` — anyone who can write
        runs to this store can write one, and loading a pickle runs whatever code its writer chose."""
        from labtrack.core.results import decode_result

        return decode_result(self._fetch().result, self.open_artifact, trust_pickle=trust_pickle)

    @property
    def environment(self) -> Environment | None:
        """What the run ran on: the shared snapshot (by fingerprint) with this run's own parts
        (command, git state, seeds, hostname) merged in. None if capture was turned off."""
        from labtrack.core.environment import Environment

        record = self._fetch()  # flushes first
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

    @property
    def artifacts(self) -> list[ArtifactInfo]:
        self.flush()
        return self._store.list_artifacts(self.id)

    def history(self, key: str) -> MetricHistory:
        """Every point of metric ``key``, ordered by step (then by logging order)."""
        self.flush()
        return self._store.get_metric_history(self.id, key)

    def open_artifact(self, path: str) -> IO[bytes]:
        path = check_artifact_path(path, "path")
        for item in self.artifacts:
            if item.path == path:
                return self._store.open_artifact(item.sha256)
        raise InvalidInput(f"run {self.id} has no artifact {path!r}; see run.artifacts", field="path")

    def list_artifacts(self, path: str | None = None) -> list[ArtifactInfo]:
        """The run's artifacts: all, or the one at ``path`` and those under it."""
        prefix = check_artifact_path(path, "path") if path else None
        return [item for item in self.artifacts
                if not prefix or item.path == prefix or item.path.startswith(prefix + "/")]

    def download_artifacts(self, destination: str | os.PathLike[str], path: str | None = None) -> list[Path]:
        """Copy the run's artifacts (all, or those under ``path``) into ``destination``."""
        root = Path(destination).resolve()
        chosen = self.list_artifacts(path)
        _check_downloadable(root, [item.path for item in chosen])  # before anything is written
        written = []
        for item in chosen:
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

    # -- logging ------------------------------------------------------------------------------

    def _writes(self) -> RunLog:
        """The run's write side; for a run this process did not start, made on first use. Refused once this
        handle ended the run: what is logged after the ``with`` block would land in a finished run."""
        if self._ended is not None:
            raise InvalidInput(
                f"run {self.id[:8]} has ended ({self._ended.value}); start a new run to log more (tags and "
                "notes can still be set)", field="run",
            )
        return self._annotations()

    def _annotations(self) -> RunLog:
        """The write side for tags and notes, which a run takes after its end too."""
        log = self._log
        if log is None:
            known = self._record.params if self._record is not None else None
            log = self._log = RunLog(self._drainer().spool, self.id, params=known)
        return log

    def log_param(self, key: str, value: Any) -> None:
        self._writes().log_param(check_key(key, "param key"), coerce_param_value(value, key))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are immutable: the same value again is fine, another value raises ``ParamConflict``."""
        self._writes().log_params(checked_params(params))

    def set_tag(self, key: str, value: Any) -> None:
        self._annotations().set_tag(check_key(key, "tag key"), coerce_tag_value(value, key))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._annotations().set_tags(checked_tags(tags))

    def set_note(self, note: str) -> None:
        self._annotations().set_note(check_note(note))

    def delete_tag(self, key: str) -> None:
        """Remove a tag (nothing happens if the run has none by that key)."""
        key = check_key(key, "tag key")
        self.flush()  # a tag set by this process is in the store before it is removed
        self._store.delete_tag(self.id, key)
        self._record = None

    def mark_noisy(self, *metrics: str) -> None:
        """Declare metrics (names or globs such as ``"*_seconds"``) that vary between identical runs —
        timings, throughput: ``reproduce`` reports them as ignored instead of letting them decide its verdict.
        Kept in the tag ``labtrack.noisy``."""
        patterns = [check_key(m, "metric pattern") for m in metrics]
        known = [p.strip() for p in str(self.tags.get(NOISY_TAG, "")).split(",") if p.strip()]
        self.set_tag(NOISY_TAG, ",".join(dict.fromkeys([*known, *patterns])))

    def merge_context(self, sections: Mapping[str, Any]) -> None:
        """Replace these sections of the run's recorded environment (e.g. ``{"seeds": ...}``)."""
        self._writes().merge_context(sections)

    def set_result(self, result: Any) -> None:
        """Record a JSON-able value as the run's result (what ``labtrack.track`` returns on a skip)."""
        try:
            json.dumps(result, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"result must be JSON-serialisable (dicts, lists, numbers, strings): {exc}", field="result"
            ) from exc
        self._writes().set_result(result)

    def log_metric(self, key: str, value: Any, step: int | None = None, timestamp: Any = None) -> None:
        """Log one point; it is in the store within ``flush_interval`` seconds (or at ``flush``/``end``).

        ``step`` defaults to one past the last step logged for this key in this process (0 first).
        """
        log = self._log
        if log is None or self._ended is not None:
            log = self._writes()
        log.log_metric(key, value, step, timestamp)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, timestamp: Any = None) -> None:
        """One point per key, all at the same ``step`` and time. Nothing is logged if any is invalid."""
        log = self._log
        if log is None or self._ended is not None:
            log = self._writes()
        log.log_metrics(metrics, step, timestamp)

    def log_batch(self, metrics: Mapping[str, Sequence[Any]], steps: Sequence[int] | None = None,
                  timestamps: Sequence[float] | float | None = None) -> None:
        """Whole series at once: ``{"loss": [...], "acc": [...]}`` with shared ``steps``.

        The fast path for bulk ingestion (lists, arrays or numpy arrays). ``steps`` defaults to
        consecutive steps after the last one logged for each key.
        """
        self._writes().log_batch(metrics, steps, timestamps)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Store a file, or a directory with everything in it, under ``artifact_path/<its name>``.

        The content is copied at the call (later changes to the file do not reach the run) and stored once
        per sha256. A symlink inside a logged directory that points outside it is refused (nothing is
        stored), so an artifact never carries files from elsewhere.
        """
        source = Path(local_path)
        if not source.exists():
            raise InvalidInput(f"local_path {os.fspath(local_path)!r} does not exist", field="local_path")
        base = check_artifact_path(artifact_path) if artifact_path else ""
        name = source.resolve().name if source.name in ("", ".", "..") else source.name
        target = f"{base}/{name}" if base else name
        check_artifact_path(target, "local_path")
        if not source.is_dir() and not source.is_file():  # a FIFO would block the read forever
            raise InvalidInput(f"local_path {os.fspath(local_path)!r} is not a regular file (a pipe, socket or "
                               "device): log a file or a directory", field="local_path")
        self._writes().add_files(collect_files(source, target) if source.is_dir() else [(source, target)])

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Store the contents of a directory (not the directory itself) under ``artifact_path``."""
        source = Path(local_dir)
        if not source.is_dir():
            raise InvalidInput(f"local_dir {os.fspath(local_dir)!r} is not a directory", field="local_dir")
        base = check_artifact_path(artifact_path) if artifact_path else ""
        self._writes().add_files(collect_files(source, base))

    def log_text(self, text: str, artifact_file: str) -> None:
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a string, got {type(text).__name__}", field="text")
        self.log_bytes(text.encode("utf-8"), artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as JSON (``.json``) or YAML (``.yaml``/``.yml``, needs PyYAML)."""
        path = check_artifact_path(artifact_file, "artifact_file")
        check_nesting(dictionary, "dictionary")
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
        self.log_bytes(data, path)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """Store ``data`` as the artifact ``artifact_file``."""
        self._writes().add_bytes(data, check_artifact_path(artifact_file, "artifact_file"))

    # -- ending -------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED, error: Mapping[str, str] | None = None) -> None:
        """Set the final status (FINISHED, FAILED or KILLED); the run stops being active.

        When this returns, the run's writes and its end are crash-safe in the spool (a killed process loses
        none of them), and the background writer, woken, puts them in the store within moments — in one
        transaction for a short run. Reads from this process see them at once; ``flush()`` waits until the
        store has them, as does the end of the process (up to ``LABTRACK_FLUSH_TIMEOUT``)."""
        status = _terminal_status(status)
        if self._ended is None and self._live is None:  # a handle on a run of the store: as it stands there
            current = self.status
            if current in _TERMINAL_CHOICES.values():
                self._ended = current
        if self._ended is not None:
            if self._ended is status:
                return  # ending it the same way again changes nothing
            raise InvalidInput(
                f"run {self.id[:8]} already ended {self._ended.value}; it is not re-labelled {status.value} "
                "(tag it instead, e.g. set_tag('verdict', ...))", field="status",
            )
        live = self._live
        log = self._writes()
        if live is not None:
            self._refresh_environment(live, log)
            process.ending(self, status, error)  # e.g. the final console log, stored before the end
        if live is not None and live.start_time is not None:  # a wall clock stepped during the run does not
            end_time = live.start_time + (time.monotonic() - live.started)  # change its duration
        else:
            end_time = time.time()
        log.end(status, end_time, error)
        self._ended = status
        if live is not None:
            live.drainer.live.pop(self.id, None)
            self._live = None
        process.remove(self)
        self._record = None
        log.spool.on_wake()

    def _refresh_environment(self, live: Live, log: RunLog) -> None:
        """At the end: dependency conflicts found in the background since the start, the distributions the
        run imported, and build facts of frameworks it imported after it started. Information only: never
        fails the run."""
        env = live.environment
        if env is None:
            return
        try:
            if not live.conflicts_recorded and "packages" in env.snapshot:
                from labtrack.env.conflicts import find_conflicts_cached, wait_background

                # Started in the background at start_run; only the first run after an install waits here
                # (a fraction of a second), later ones find the result cached on disk.
                wait_background(5.0)
                found = find_conflicts_cached(compute=False)
                if found is not None:
                    log.merge_context({"conflicts": found})
            from labtrack.env.packages import imported_of

            # What the run actually loaded (`check` and `diff` rank package changes by it): written again only
            # if the run imported more than the program had loaded when it started.
            imported = imported_of(env.snapshot)
            if imported is not None and imported != live.imported:
                log.merge_context({"imported": imported})
            frameworks = env.snapshot.get("frameworks")
            if isinstance(frameworks, dict) and any(
                isinstance(f, dict) and not f.get("imported") and f.get("module") in sys.modules
                for f in frameworks.values()
            ):
                from labtrack.env import refresh_frameworks
                from labtrack.run.log import journal_environment

                refreshed = refresh_frameworks(env)
                if refreshed.fingerprint != env.fingerprint:
                    journal_environment(log.spool, refreshed.fingerprint, shared_part(refreshed))
                    log.merge_context({}, refreshed.fingerprint)
                live.environment = refreshed
        except Exception as exc:  # the run is ending: a failed refresh must not fail it
            warnings.warn(f"labtrack: could not refresh the recorded environment: {exc}", RuntimeWarning, stacklevel=3)


def shared_part(env: Environment) -> dict[str, Any]:
    """The part of a snapshot that many runs share (stored once per fingerprint); the rest is per run."""
    per_run = env.per_run()
    shared = {k: v for k, v in env.snapshot.items() if k not in per_run or k == "system"}
    system = shared.get("system")
    if isinstance(system, dict) and isinstance(per_run.get("system"), dict):
        shared["system"] = {k: v for k, v in system.items() if k not in per_run["system"]}
    return shared


def _terminal_status(status: RunStatus | str) -> RunStatus:
    value = status.value if isinstance(status, RunStatus) else str(status).upper()
    if value not in _TERMINAL_CHOICES:
        raise InvalidInput(
            f"status {status!r} cannot end a run; use one of {', '.join(_TERMINAL_CHOICES)}", field="status"
        )
    return _TERMINAL_CHOICES[value]


def _check_downloadable(root: Path, paths: Sequence[str]) -> None:
    """InvalidInput if these artifact paths cannot all be written under ``root``: one name both a file and
    a directory, or a path longer than the file system takes."""
    files = set(paths)
    for artifact in paths:
        parts = artifact.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise InvalidInput(
                    f"the run's artifact {'/'.join(parts[:i])!r} is both a file and a directory (it holds "
                    f"{artifact!r}): download them one at a time with path=", field="path",
                )
    existing = root if root.exists() else root.parent
    try:
        name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for artifact in paths:
        full = os.fsencode(root / artifact)
        if len(full) >= path_max or any(len(os.fsencode(part)) > name_max for part in artifact.split("/")):
            raise InvalidInput(
                f"artifact {artifact[:60]!r}... is too long to write under {root} ({len(full)} bytes; the file "
                f"system takes {path_max - 1} for a path, {name_max} for a name): download it with path= into a "
                "shorter destination, or read it with open_artifact", field="path",
            )


def collect_files(root: Path, target: str) -> list[tuple[Path, str]]:
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
            if not path.is_file():
                continue  # a FIFO, socket or device: not content (reading a FIFO would wait forever)
            relative = path.relative_to(root).as_posix()
            files.append((path, f"{target}/{relative}" if target else relative))
    return files
