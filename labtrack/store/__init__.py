"""Persistence behind one ``Store`` interface. ``open_store`` turns a store URL into a backend.

A store URL is a directory (``.labtrack``: SQLite file + artifact blobs inside it), ``sqlite:///file.db``,
``postgresql+psycopg://user@host/db``, or a tracking server's ``http(s)://host:port``. Which backend opens
which URL is one table, ``BACKENDS``: a new backend is one row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labtrack.core.errors import InvalidInput, StoreError
from labtrack.store.base import BlobStore, Store
from labtrack.store.blobs import LocalBlobStore

__all__ = [
    "BACKENDS",
    "Backend",
    "BlobStore",
    "Store",
    "default_artifacts",
    "open_blobs",
    "open_store",
    "resolve_location",
    "scheme_of",
    "upgrade_store",
]


@dataclass(frozen=True)
class Backend:
    """Opens the store URLs of one scheme (the part before ``+``, e.g. ``postgresql`` of
    ``postgresql+psycopg``; ``""`` for a plain directory)."""

    scheme: str
    open: Callable[[str, str | None, float], Store]  # (url, artifacts location, SQLite busy timeout)
    example: str


def open_blobs(location: str) -> BlobStore:
    """The blob store at ``location``: a local directory (``file://`` or a path), or S3-compatible object
    storage (``s3://bucket/prefix``)."""
    if location.startswith("s3://"):
        from labtrack.store.s3 import S3BlobStore

        return S3BlobStore(location)
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    elif "://" in location:
        raise InvalidInput(
            f"artifacts {location!r}: give a directory or s3://bucket/prefix", field="artifacts")
    return LocalBlobStore(location)


def _open_sql(location: str, artifacts: str | None, busy_timeout: float) -> Store:
    from labtrack.store.sql import SqlStore

    url, artifact_root, home = resolve_location(location, artifacts)
    return SqlStore(url, open_blobs(artifact_root), busy_timeout=busy_timeout, home=home)


def _open_remote(location: str, artifacts: str | None, busy_timeout: float) -> Store:
    from labtrack.store.remote import RemoteStore

    if artifacts:
        import warnings

        warnings.warn(f"labtrack: artifacts {artifacts!r} (LABTRACK_ARTIFACTS) is not used with the tracking server "
                      f"{location}: the server keeps the artifacts", RuntimeWarning, stacklevel=4)
    return RemoteStore(location)


BACKENDS: tuple[Backend, ...] = (
    Backend("", _open_sql, ".labtrack"),
    Backend("sqlite", _open_sql, "sqlite:///runs.db"),
    Backend("postgresql", _open_sql, "postgresql+psycopg://user@host/db"),
    Backend("http", _open_remote, "http://host:5000"),
    Backend("https", _open_remote, "https://host"),
)


def scheme_of(location: str) -> str:
    return location.split("://", 1)[0].split("+", 1)[0].lower() if "://" in location else ""


def open_store(location: str, *, artifacts: str | None = None, busy_timeout: float = 60.0) -> Store:
    """Open (creating if needed) the store at ``location``."""
    scheme = scheme_of(location)
    for backend in BACKENDS:
        if backend.scheme == scheme:
            return backend.open(location, artifacts, busy_timeout)
    raise InvalidInput(
        f"store {location!r}: unknown scheme {scheme!r}; use "
        + ", ".join(b.example for b in BACKENDS if b.scheme) + " or a directory",
        field="store",
    )


def resolve_location(location: str, artifacts: str | None = None) -> tuple[str, str, Path | None]:
    """(SQLAlchemy database URL, artifact location, the store's own local directory or None) for a SQL
    store URL; creates local directories."""
    scheme = scheme_of(location)
    if scheme == "sqlite":
        raw_path = location.split(":///", 1)[1] if ":///" in location else ""
        if not raw_path or raw_path.startswith(":memory:"):
            raise InvalidInput(
                f"store {location!r}: give a database file, e.g. sqlite:///runs.db (an in-memory database "
                "cannot be shared by the background writer and other processes)",
                field="store",
            )
        db_path = Path(raw_path).expanduser().resolve()
        _make_dir(db_path.parent)
        return f"sqlite:///{db_path}", artifacts or str(db_path.parent / "artifacts"), db_path.parent
    if scheme == "postgresql":
        return location, artifacts or str(default_artifacts(location)), None
    if scheme:
        raise InvalidInput(f"store {location!r} is not a SQL store URL", field="store")
    directory = Path(location).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(
            f"store {location!r} is a file, not a directory; for a database file use sqlite:///{location}",
            field="store",
        )
    _make_dir(directory)
    return f"sqlite:///{directory / 'labtrack.db'}", artifacts or str(directory / "artifacts"), directory


def default_artifacts(location: str) -> Path:
    """Where a database server store's artifacts go unless LABTRACK_ARTIFACTS says: one directory per store
    in this user's data directory — the same from every working directory of this machine."""
    import hashlib

    from labtrack.store.engine import display_url

    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    key = hashlib.sha256(display_url(location).encode("utf-8")).hexdigest()[:16]
    return Path(data, "labtrack", "artifacts", key)


def upgrade_store(location: str) -> tuple[str | None, str, int]:
    """Migrate the store's schema to the latest revision, then write the frames of ended runs that have
    none yet; returns (revision before, revision after, frames written)."""
    from labtrack.store.migrate import upgrade_schema
    from labtrack.store.sql import SqlStore

    url, artifact_root, home = resolve_location(location)
    before, after = upgrade_schema(url)
    store = SqlStore(url, open_blobs(artifact_root), home=home)
    try:
        return before, after, store.fill_frames()
    finally:
        store.close()


def _make_dir(path: Path) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store directory {path}: {exc}") from exc
