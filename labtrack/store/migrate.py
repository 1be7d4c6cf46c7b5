"""The SQL store's schema revision: creating a new store at the latest one, and upgrading an older store
with the Alembic migrations in ``migrations/``.

A store records its revision in Alembic's own ``alembic_version`` table, so ``alembic`` and
``labtrack db upgrade`` agree on it. New stores are created at the head revision directly (no
migrations to replay); concurrent creators are serialised by the SQLite write lock or, on PostgreSQL,
an advisory lock.
"""

from __future__ import annotations

import os

from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from labtrack.core.errors import StoreError
from labtrack.store import schema as db
from labtrack.store.engine import display_url, make_engine
from labtrack.store.schema import SCHEMA_REVISION

__all__ = ["alembic_version", "create_schema", "read_revision", "upgrade_schema"]

_SCHEMA_LOCK = 72718281  # PostgreSQL advisory lock key held while a schema is created or upgraded

_version_meta = MetaData()
alembic_version = Table("alembic_version", _version_meta, Column("version_num", String(32), primary_key=True))


def read_revision(conn: Connection) -> tuple[bool, str | None]:
    """(whether the schema exists, its revision)."""
    if not inspect(conn).has_table("alembic_version"):
        return False, None
    return True, conn.execute(select(alembic_version.c.version_num)).scalar()


def create_schema(conn: Connection) -> str:
    """Create every table at the latest revision in ``conn``'s write transaction, unless another process
    did first; returns the store's revision."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
    if inspect(conn).has_table("alembic_version"):  # another process won the race
        return str(conn.execute(select(alembic_version.c.version_num)).scalar())
    db.metadata.create_all(conn)
    if conn.dialect.name == "postgresql":
        for statement in (*db.POSTGRES_STATISTICS, *db.POSTGRES_STORAGE):
            conn.exec_driver_sql(statement)
    _version_meta.create_all(conn)
    conn.execute(alembic_version.insert().values(version_num=SCHEMA_REVISION))
    return SCHEMA_REVISION


def upgrade_schema(url: str) -> tuple[str | None, str]:
    """Run the Alembic migrations on the database at ``url`` up to the head revision; returns the
    revisions before and after."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    try:
        engine = make_engine(url, 60.0)
        with engine.connect() as conn:
            conn.execution_options(labtrack_write=True)
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                before = read_revision(conn)[1]
                config = Config()
                config.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "migrations"))
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                after = conn.execute(select(alembic_version.c.version_num)).scalar()
        engine.dispose()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade store {display_url(url)}: {getattr(exc, 'orig', exc)}") from exc
    except CommandError as exc:  # e.g. a revision this labtrack does not know: the store is newer
        raise StoreError(
            f"cannot upgrade store {display_url(url)}: {exc}; it was made by a newer labtrack — upgrade labtrack"
        ) from exc
    return before, str(after)
