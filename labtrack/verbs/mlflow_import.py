"""``labtrack import mlflow SOURCE``: every experiment, run, param, metric history, tag and artifact of an
MLflow tracking store, into a labtrack store — and again later, adding only what is new.

SOURCE is read through MLflow's own client (``MlflowClient(tracking_uri=SOURCE)``, the ``mlflow`` extra:
``mlflow-skinny``), so the three kinds of MLflow store read the same way: an ``mlruns`` directory (MLflow's
file store), a database URL (``sqlite:///mlflow.db``, ``postgresql://…``) or a tracking server
(``http(s)://…``). MLflow is imported here only, when an import runs: ``import labtrack`` never loads it.

What maps to what (docs/mlflow.md has the table): an MLflow run becomes the labtrack run with the **same
id** (MLflow run ids are 32 hex characters, as labtrack's are), which is how a second import recognises
it — from whichever URL of the same store. Its experiment keeps its name; its status, start and end times,
name (``mlflow.runName``), params (MLflow keeps them as strings: so does the import), tags (``mlflow.user``,
``mlflow.source.name``, ``mlflow.source.git.commit`` ... as they are), whole metric histories and artifacts
(at their paths) are copied. The import adds the tags ``mlflow.run_id``, ``mlflow.experiment_id`` and
``labtrack.imported_from`` (the source, password hidden), and a nested run's ``mlflow.parentRunId`` is
also its ``labtrack.parent``. MLflow's deleted experiments and runs are left out unless
``include_deleted``; then they arrive deleted in labtrack too (restorable, as any deleted run).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from labtrack.core.errors import ExperimentNotFound, InvalidInput, LabtrackError, StoreError
from labtrack.core.model import RunRecord, RunStatus
from labtrack.core.redact import redact_text
from labtrack.core.series import Chunk
from labtrack.core.validation import check_artifact_path, check_key
from labtrack.verbs.importing import ForeignRun, Outcome, RunImport, import_run, stored_artifacts, stored_run
from labtrack.verbs.runs import RunClient

__all__ = ["INSTALL_HINT", "MlflowImport", "display_source", "import_mlflow", "mlflow_run_id", "source_uri"]

INSTALL_HINT = "pip install 'labtrack[mlflow]'"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_STATUS = {"FINISHED": RunStatus.FINISHED, "FAILED": RunStatus.FAILED, "KILLED": RunStatus.KILLED,
           "RUNNING": RunStatus.RUNNING, "SCHEDULED": RunStatus.RUNNING}
_PAGE = 1000  # runs (and experiments) per MLflow search request


@dataclass
class MlflowImport:
    """What an import did (with ``dry_run``: would do): experiments seen, runs new / updated / unchanged,
    metric points and artifact files written, and problems (each naming the run and the field)."""

    source: str
    experiments: int = 0
    runs_new: int = 0
    runs_updated: int = 0
    runs_unchanged: int = 0
    points: int = 0
    artifacts: int = 0
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)

    def add(self, run: RunImport) -> None:
        if run.outcome is Outcome.NEW:
            self.runs_new += 1
        elif run.outcome is Outcome.UPDATED:
            self.runs_updated += 1
        else:
            self.runs_unchanged += 1
        self.points += run.points
        self.artifacts += run.artifacts
        self.problems += [f"run {run.run_id[:8]}: {p}" for p in run.problems]

    @property
    def runs(self) -> int:
        return self.runs_new + self.runs_updated + self.runs_unchanged


def mlflow_run_id(run_id: str) -> str:
    """The labtrack id of an MLflow run: the same id when it is 32 lowercase hex (MLflow's uuid4 hex), else
    a digest of it, so the same MLflow run always lands on the same labtrack run."""
    lowered = run_id.lower()
    return lowered if _HEX32.fullmatch(lowered) else sha256(f"mlflow:{run_id}".encode()).hexdigest()[:32]


def source_uri(source: str) -> str:
    """The tracking URI MLflow's client gets for SOURCE: a directory becomes a ``file:`` URI (it must exist:
    MLflow would quietly make an empty store), a SQLite file must exist (MLflow would quietly create it), and
    ``postgresql://`` uses psycopg 3 when psycopg2 is not installed (labtrack's own PostgreSQL driver)."""
    scheme = source.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) else ""
    if scheme in ("http", "https"):
        return source.rstrip("/")
    if scheme.startswith("sqlite"):
        path = source.split(":///", 1)[1] if ":///" in source else ""
        if path and path != ":memory:" and not Path(path).is_file():
            raise InvalidInput(f"source {display_source(source)!r}: no such SQLite file (give the path of MLflow's "
                               "database, e.g. sqlite:///mlflow.db)", field="source")
        return source
    if scheme.startswith(("postgresql", "postgres", "mysql", "mssql")):
        if scheme in ("postgresql", "postgres"):
            try:
                import psycopg2  # noqa: F401  (MLflow's default driver for postgresql://)
            except ImportError:
                return "postgresql+psycopg://" + source.split("://", 1)[1]
        return source
    if scheme == "file" or source.startswith("file:"):
        path = urlsplit(source).path
    elif scheme:
        raise InvalidInput(f"source {display_source(source)!r}: give an mlruns directory, a database URL (sqlite:///mlflow.db, "
                           "postgresql://…) or an MLflow server URL (http://…)", field="source")
    else:
        path = source
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise InvalidInput(f"source {display_source(source)!r} is not a directory, a database URL or a server URL (an mlruns "
                           "directory, sqlite:///mlflow.db, postgresql://…, http://…)", field="source")
    return directory.resolve().as_uri()


_DATABASES = ("postgres", "mysql", "mssql", "sqlite", "oracle")
_SECRET_QUERY = re.compile(r"pass|secret|token|key|auth|credential|signature", re.IGNORECASE)


def display_source(source: str) -> str:
    """SOURCE with its secrets hidden, safe to print and to record in the ``labtrack.imported_from`` tag: the
    password of ``user:password@``, a lone user name but a database's (``https://<token>@host`` is how tokens
    often travel), and query parameters such as ``?password=`` or ``sslkey=``."""
    if "://" not in source:  # a directory
        return source
    parts = urlsplit(source)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:***@{host}"
        elif not parts.scheme.lower().startswith(_DATABASES):  # a database's user is a login name, not a secret
            netloc = f"***@{host}"
    head, mark, query = source.replace("//" + parts.netloc, "//" + netloc, 1).partition("?")
    query, hash_, fragment = query.partition("#")
    query = "&".join(f"{key}=***" if _SECRET_QUERY.search(key) and sep else f"{key}{sep}{value}"
                     for key, sep, value in (piece.partition("=") for piece in query.split("&")))
    return head + mark + query + hash_ + fragment  # (as given: urlunsplit would write sqlite:/// as sqlite:/)


def _scrubbed(text: str, source: str, uri: str) -> str:
    """An error's or a problem's text with SOURCE's secrets hidden: MLflow's messages quote the URL they were
    given (``API request to http://user:password@host/... failed``)."""
    for raw in sorted({source, uri}, key=len, reverse=True):
        text = text.replace(raw, display_source(raw))
    return redact_text(text)


@contextlib.contextmanager
def _quiet_mlflow(uri: str) -> Iterator[None]:
    """MLflow's settings for the import's duration, then as they were: no download progress bar per run
    (the import shows its own), and MLflow 3's file store allowed — reading one is this import's point."""
    wanted = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    if uri.startswith("file:"):
        wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update({k: v for k, v in wanted.items() if before[k] is None})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)


def _open(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise InvalidInput(f"importing from MLflow needs MLflow's client: {INSTALL_HINT}", field="source") from exc
    return MlflowClient(tracking_uri=uri)


def _pages(call: Callable[..., Any], **kwargs: Any) -> Iterator[list[Any]]:
    """The pages of an MLflow search, one request each."""
    token = None
    while True:
        page = call(max_results=_PAGE, page_token=token, **kwargs)
        yield list(page)
        token = getattr(page, "token", None)
        if not token:
            return


def _paged(call: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    for page in _pages(call, **kwargs):
        yield from page


def import_mlflow(client: RunClient, source: str, *, experiments: Sequence[str] | None = None,
                  include_deleted: bool = False, dry_run: bool = False,
                  on_run: Callable[[int, int, MlflowImport], None] | None = None) -> MlflowImport:
    """Import SOURCE (an mlruns directory, an MLflow database URL or an MLflow server URL) into ``client``'s
    store: every experiment (or those named in ``experiments``), run, param, metric history, tag and
    artifact; importing again adds only what is new. ``on_run(done, total, summary)`` after each run (total:
    the runs of the experiments listed so far)."""
    uri = source_uri(source)
    display = display_source(source)
    summary = MlflowImport(display, dry_run=dry_run)
    try:
        with _quiet_mlflow(uri):
            mlflow = _open(uri)
            return _import(client, mlflow, display, summary, experiments, include_deleted, dry_run, on_run)
    except LabtrackError:
        raise
    except Exception as exc:  # MLflow's errors (MlflowException, a refused connection ...) at the boundary
        if type(exc).__name__ == "MlflowException" or isinstance(exc, (OSError, ConnectionError)):
            raise StoreError(f"reading the MLflow store {display} failed: {_scrubbed(str(exc), source, uri)}") from exc
        raise


def _import(client: RunClient, mlflow: Any, display: str, summary: MlflowImport, wanted: Sequence[str] | None,
            include_deleted: bool, dry_run: bool,
            on_run: Callable[[int, int, MlflowImport], None] | None) -> MlflowImport:
    from mlflow.entities import ViewType

    view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
    found = list(_paged(mlflow.search_experiments, view_type=view))
    if wanted:
        by_name = {e.name: e for e in found}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            import difflib

            close = difflib.get_close_matches(missing[0], list(by_name), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
            raise ExperimentNotFound(f"no experiment named {missing[0]!r} in the MLflow store {display}{hint}")
        found = [by_name[n] for n in dict.fromkeys(wanted)]
    done = listed = 0
    with tempfile.TemporaryDirectory(prefix="labtrack-mlflow-") as scratch:
        for experiment in found:
            summary.experiments += 1
            try:  # (MLflow allows experiment names labtrack does not: newlines, 256 characters)
                check_key(experiment.name, "experiment")
            except InvalidInput as exc:
                summary.problems.append(f"experiment {experiment.name!r} left out with its runs: {exc}")
                continue
            # A page of runs at a time (not every run of the store in memory at once).
            pages = _pages(mlflow.search_runs, experiment_ids=[experiment.experiment_id], run_view_type=view)
            for page in pages:
                listed += len(page)
                for run in page:
                    result = _import_one(client, mlflow, display, experiment, run, Path(scratch), dry_run)
                    shutil.rmtree(Path(scratch) / result.run_id, ignore_errors=True)  # stored: not needed now
                    summary.add(result)
                    done += 1
                    if on_run is not None:
                        on_run(done, listed, summary)
    return summary


def _import_one(client: RunClient, mlflow: Any, display: str, experiment: Any, run: Any, scratch: Path,
                dry_run: bool) -> RunImport:
    info, data = run.info, run.data
    run_id = mlflow_run_id(info.run_id)
    deleted = info.lifecycle_stage == "deleted" or experiment.lifecycle_stage == "deleted"
    tags = dict(data.tags)
    if info.user_id and "mlflow.user" not in tags:
        tags["mlflow.user"] = info.user_id
    tags.update({"mlflow.run_id": info.run_id, "mlflow.experiment_id": str(info.experiment_id),
                 "labtrack.imported_from": display})
    if "mlflow.parentRunId" in tags:
        tags["labtrack.parent"] = mlflow_run_id(tags["mlflow.parentRunId"])
    stored = stored_run(client, run_id)
    refused = _taken(stored, info, experiment, display)
    if refused:  # (before the histories are read)
        return RunImport(run_id, Outcome.UNCHANGED, problems=[refused])
    start = info.start_time if info.start_time is not None else (info.end_time or experiment.creation_time or 0)
    foreign = ForeignRun(
        id=run_id, experiment=experiment.name, start_time=start / 1000, name=info.run_name or tags.get("mlflow.runName"),
        status=_STATUS.get(info.status, RunStatus.FAILED),
        end_time=info.end_time / 1000 if info.end_time is not None else None,
        params=dict(data.params), tags=tags, metrics={key: _history(mlflow, info.run_id, key) for key in data.metrics},
    )
    problems: list[str] = []
    foreign.files = _artifacts(client, mlflow, info.run_id, run_id, stored is not None, scratch / run_id,
                               dry_run, problems, _local_root(info.artifact_uri))
    result = import_run(client, foreign, dry_run=dry_run, stored=stored, known=True)
    result.problems[:0] = problems
    if deleted and not dry_run and (stored is None or stored.deleted_time is None):
        client.store.delete_runs([run_id])
    return result


def _taken(stored: RunRecord | None, info: Any, experiment: Any, display: str) -> str | None:
    """Why the stored run with this MLflow run's id is not that run (None when it is, or when there is none):
    not imported from MLflow, or from another experiment. Run ids are no secret, so a store made to reuse one
    must not add its tags, points and files to a run of another experiment; an experiment renamed at the same
    source (same MLflow experiment id) is still the run's."""
    if stored is None:
        return None
    if stored.tags.get("mlflow.run_id") != info.run_id:
        return (f"a labtrack run with the id of MLflow run {info.run_id} exists and was not imported from MLflow: "
                "left alone")
    renamed = (stored.tags.get("labtrack.imported_from") == display
               and stored.tags.get("mlflow.experiment_id") == str(info.experiment_id))
    if stored.experiment != experiment.name and not renamed:
        return (f"MLflow run {info.run_id} of experiment {experiment.name!r} has the id of a run imported before into "
                f"experiment {stored.experiment!r} from {stored.tags.get('labtrack.imported_from', 'elsewhere')}: "
                "left alone (a copy of that store, or a forged one)")
    return None


def _history(mlflow: Any, run_id: str, key: str) -> Chunk:
    """The whole series (MLflow's client pages through a server's history itself), timestamps in seconds."""
    chunk = Chunk.empty()
    for point in mlflow.get_metric_history(run_id, key):
        chunk.steps.append(point.step)
        chunk.timestamps.append(point.timestamp / 1000)
        chunk.values.append(point.value)
    return chunk


def _artifacts(client: RunClient, mlflow: Any, mlflow_id: str, run_id: str, known: bool, scratch: Path,
               dry_run: bool, problems: list[str], local: Path | None = None) -> list[tuple[Path, str]]:
    """The run's artifact files fetched into ``scratch``, as (local file, artifact path): all of them in one
    download for a new run; for a run imported before, only those whose path is new or whose size changed
    (a listing first, so a second import downloads nothing that is unchanged). A listed path that is not a
    clean relative path, or (``local``: the run's artifact directory on this machine) a symbolic link, is
    left out before any download, as a problem."""
    try:
        listing = []
        for path, size in _listing(mlflow, mlflow_id, None, local, problems):
            try:  # checked before anything is downloaded: a path must not lead out of the download directory
                listing.append((check_artifact_path(path), size))
            except InvalidInput as exc:
                problems.append(f"artifact {path!r} left out: {exc}")
        have = stored_artifacts(client, run_id) if known else {}
        wanted = [p for p, size in listing if p not in have or size is None or have[p].size != size]
        if not wanted:
            return []
        if dry_run:  # counted, not downloaded
            return [(scratch / path, path) for path in wanted]
        scratch.mkdir(parents=True, exist_ok=True)
        if not have and len(listing) == len(wanted) and not problems:  # a new run: everything, in one download
            root = Path(mlflow.download_artifacts(mlflow_id, "", os.fspath(scratch)))
            return [(root / p, p) for p in wanted if (root / p).is_file()]
        return [(Path(mlflow.download_artifacts(mlflow_id, p, os.fspath(scratch))), p) for p in wanted]
    except Exception as exc:  # an unreachable artifact store costs the artifacts, not the run
        if isinstance(exc, LabtrackError):
            raise
        problems.append(f"artifacts not imported ({type(exc).__name__}: {redact_text(str(exc))}); import again to retry")
        return []


def _local_root(artifact_uri: str | None) -> Path | None:
    """A run's artifact directory when it is on this machine (a ``file:`` URI or a path), else None."""
    if not artifact_uri:
        return None
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file":
        return Path(url2pathname(parts.path))
    return Path(artifact_uri) if not parts.scheme or len(parts.scheme) == 1 else None  # (C:\... on Windows)


def _linked(local: Path, path: str) -> bool:
    """Whether ``path`` in the local artifact directory is a symbolic link or leads out of it: MLflow copies
    files in and writes no links, so one is how a handed-over mlruns directory would make the import copy the
    importer's own files (``artifacts/key -> ~/.ssh/id_rsa``) — or walk a loop for ever."""
    entry = local / path
    return entry.is_symlink() or not os.path.realpath(entry).startswith(os.path.realpath(local) + os.sep)


def _listing(mlflow: Any, run_id: str, path: str | None, local: Path | None = None,
             problems: list[str] | None = None) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for item in mlflow.list_artifacts(run_id, path):
        if local is not None and _linked(local, item.path):
            if problems is not None:
                problems.append(f"artifact {item.path!r} left out: a symbolic link (MLflow writes none; it could "
                                "lead to files outside the MLflow store)")
            continue
        if item.is_dir:
            out += _listing(mlflow, run_id, item.path, local, problems)
        else:
            out.append((item.path, item.file_size))
    return out
