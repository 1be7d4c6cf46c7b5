"""Persistence behind one ``Store`` interface. ``open_store`` turns a store URL into a backend.

A store URL is a directory (``.labtrack``: SQLite file + artifact blobs inside it), ``sqlite:///file.db``,
``postgresql+psycopg://user@host/db`` or, for a tracking server, ``http(s)://host``.
"""

from __future__ import annotations

import os
from pathlib import Path

from labtrack.core.errors import InvalidInput, StoreError
from labtrack.store.base import NewRun, Store

__all__ = ["NewRun", "Store", "open_store", "resolve_location", "upgrade_store"]


def resolve_location(location: str, artifacts: str | None = None) -> tuple[str, str]:
    """(SQLAlchemy database URL, artifact root directory) for a store URL; creates local directories."""
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme in ("http", "https"):
        raise StoreError(
            f"store {location!r}: the tracking-server client is not part of this labtrack version yet; "
            "use a directory, sqlite:/// or postgresql+psycopg:// store URL"
        )
    if scheme.startswith("sqlite"):
        raw_path = location.split(":///", 1)[1] if ":///" in location else ""
        if not raw_path or raw_path.startswith(":memory:"):
            raise InvalidInput(
                f"store {location!r}: give a database file, e.g. sqlite:///runs.db (an in-memory database "
                "cannot be shared by the background writer and other processes)",
                field="store",
            )
        db_path = Path(raw_path).expanduser().resolve()
        _make_dir(db_path.parent)
        return f"sqlite:///{db_path}", artifacts or str(db_path.parent / "artifacts")
    if scheme.startswith("postgresql"):
        return location, artifacts or str(Path(".labtrack", "artifacts").resolve())
    if scheme:
        raise InvalidInput(
            f"store {location!r}: unknown scheme {scheme!r}; use a directory, sqlite:///file.db, "
            "postgresql+psycopg://... or http(s)://host",
            field="store",
        )
    directory = Path(location).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(
            f"store {location!r} is a file, not a directory; for a database file use sqlite:///{location}",
            field="store",
        )
    _make_dir(directory)
    return f"sqlite:///{directory / 'labtrack.db'}", artifacts or str(directory / "artifacts")


def open_store(location: str, *, artifacts: str | None = None, busy_timeout: float = 60.0) -> Store:
    """Open (creating if needed) the store at ``location``."""
    from labtrack.store.sql import SqlStore

    url, artifact_root = resolve_location(location, artifacts)
    return SqlStore(url, artifact_root, busy_timeout=busy_timeout)


def upgrade_store(location: str) -> tuple[str | None, str, int]:
    """Migrate the store's schema to the latest revision, then write the frames of ended runs that have
    none yet; returns (revision before, revision after, frames written)."""
    from labtrack.store.migrate import upgrade_schema
    from labtrack.store.sql import SqlStore

    url, artifact_root = resolve_location(location)
    before, after = upgrade_schema(url)
    store = SqlStore(url, artifact_root)
    try:
        return before, after, store.fill_frames()
    finally:
        store.close()


def _make_dir(path: Path) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store directory {path}: {exc}") from exc
