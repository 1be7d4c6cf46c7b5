"""The schema: what the code creates equals what the Alembic migrations build, on SQLite and PostgreSQL;
an outdated store is refused with the command that fixes it, and that command works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from helpers import checkpointed_bytes
from sqlalchemy import create_engine, inspect, text

import labtrack
import labtrack as lt
from labtrack.cli import main
from labtrack.store import open_store, resolve_location
from labtrack.store.migrate import upgrade_schema
from labtrack.store.schema import SCHEMA_REVISION, metadata

MIGRATIONS = Path(labtrack.__file__).parent / "store" / "migrations"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases (SQLAlchemy URLs) on one backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    first = request.getfixturevalue("postgres_url")
    server = request.getfixturevalue("postgres_server")
    name = f"lt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield first, f"{server.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def schema_of(url: str) -> dict[str, Any]:
    """Everything that defines the schema, as comparable plain values."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                out[table] = {
                    "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                    "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                    "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
                                   (f.get("options") or {}).get("ondelete"))
                                  for f in inspector.get_foreign_keys(table)),
                    "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                      for i in inspector.get_indexes(table)),
                    "uniques": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                }
            if conn.dialect.name == "postgresql":  # the planner's statistics of column pairs (revision 0004)
                out["statistics"] = sorted(conn.execute(text(
                    "SELECT stxname, stxkind::text, (SELECT array_agg(attname ORDER BY attname) FROM pg_attribute"
                    " WHERE attrelid = stxrelid AND attnum = ANY(stxkeys))::text FROM pg_statistic_ext")).all())
                out["storage"] = sorted(conn.execute(text(  # chunks stored uncompressed (revision 0008)
                    "SELECT attname, attstorage::text FROM pg_attribute WHERE attrelid = 'metric_chunks'::regclass"
                    " AND attnum > 0 AND NOT attisdropped")).all())
            return out
    finally:
        engine.dispose()


def differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_schema_the_code_declares(two_databases: tuple[str, str]) -> None:
    created_url, migrated_url = two_databases
    open_store(created_url).close()  # the code's path: create_all on a new store
    before, after = upgrade_schema(migrated_url)
    assert (before, after) == (None, SCHEMA_REVISION)
    assert differences(migrated_url) == []
    assert differences(created_url) == []
    assert schema_of(created_url) == schema_of(migrated_url)


def test_schema_revision_is_the_alembic_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [SCHEMA_REVISION]


def test_a_new_store_is_created_at_the_latest_revision(store_url: str) -> None:
    open_store(store_url).close()
    url, _, _ = resolve_location(store_url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(SCHEMA_REVISION,)]
    finally:
        engine.dispose()


def _outdated(store_url: str) -> str:
    """A store whose schema predates every revision: only an empty alembic_version table."""
    url, _, _ = resolve_location(store_url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    finally:
        engine.dispose()
    return url


def test_an_outdated_store_names_labtrack_db_upgrade_and_opens_after_it(store_url: str) -> None:
    _outdated(store_url)
    with pytest.raises(lt.SchemaOutdated) as caught:
        open_store(store_url)
    assert "labtrack db upgrade" in str(caught.value)
    lt.set_store(store_url)
    with pytest.raises(lt.SchemaOutdated):
        lt.start_run("too-early")

    result = CliRunner().invoke(main, ["db", "upgrade", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert SCHEMA_REVISION in result.stdout

    store = open_store(store_url)
    store.close()
    with lt.start_run("after-upgrade") as run:
        run.log_metric("m", 1.0)
    assert lt.get_run(run.id).metrics == {"m": 1.0}
    assert differences(resolve_location(store_url)[0]) == []


def test_a_store_at_0003_is_upgraded_with_planner_statistics_and_its_unchecked_chunks_still_read(
        store_url: str) -> None:
    url, _, _ = resolve_location(store_url)
    lt.set_store(store_url)
    with lt.start_run("on-0003", params={"lr": 0.01}, tags={"team": "cv"}) as old:
        for step in range(3):
            old.log_metric("acc", step / 10, step=step)
    lt.flush()
    lt.set_store(None)
    engine = create_engine(url)
    with engine.begin() as conn:  # as 0003 left it: no statistics objects, chunks without checksums
        if conn.dialect.name == "postgresql":
            for name in ("st_params_key_num", "st_params_key_text", "st_tags_key_value", "st_metrics_key_last_value"):
                conn.execute(text(f"DROP STATISTICS {name}"))
        conn.execute(text("ALTER TABLE metric_chunks DROP COLUMN crc"))
        conn.execute(text("ALTER TABLE runs DROP COLUMN deleted_time"))  # (0006)
        conn.execute(text("ALTER TABLE experiments DROP COLUMN deleted_time"))
        conn.execute(text("DROP TABLE tokens"))  # (0007)
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    with pytest.raises(lt.SchemaOutdated) as caught:
        open_store(store_url)
    assert "labtrack db upgrade" in str(caught.value)

    result = CliRunner().invoke(main, ["db", "upgrade", "--store", store_url])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(SCHEMA_REVISION,)]
        if conn.dialect.name == "postgresql":
            names = {row[0] for row in conn.execute(text("SELECT stxname FROM pg_statistic_ext"))}
            assert names == {"st_params_key_num", "st_params_key_text", "st_tags_key_value",
                             "st_metrics_key_last_value"}
            storage = dict(conn.execute(text("SELECT attname, attstorage::text FROM pg_attribute WHERE attrelid = "
                                             "'metric_chunks'::regclass AND attname LIKE '%_data'")).all())
            assert storage == {"step_data": "e", "time_data": "e", "value_data": "e"}
        assert conn.execute(text("SELECT crc FROM metric_chunks")).all() == [(None,)]  # nothing vouched for
    engine.dispose()
    assert differences(url) == []
    lt.set_store(store_url)
    assert lt.get_run(old.id).history("acc").values == [0.0, 0.1, 0.2]  # read unchecked, as before
    with lt.start_run("on-0005", params={"lr": 0.01}) as run:
        run.log_metric("acc", 0.95)
    assert [r.id for r in lt.search_runs(filter="params.lr = 0.01 and metrics.acc > 0.9")] == [run.id]
    from labtrack.verbs import tracking

    report = tracking.check_store()
    assert (report.chunks, report.unchecked, report.ok) == (2, 1, True)


def test_the_cli_reports_an_outdated_store_without_a_traceback(tmp_path: Path) -> None:
    location = str(tmp_path / "old")
    _outdated(location)
    result = CliRunner().invoke(main, ["runs", "--store", location])
    assert result.exit_code == 1
    assert "labtrack db upgrade" in " ".join(result.stderr.split())  # the terminal may wrap the line
    assert "Traceback" not in result.output


def test_a_store_from_a_newer_labtrack_is_refused_and_db_upgrade_fails_cleanly(tmp_path: Path) -> None:
    location = str(tmp_path / "future")
    open_store(location).close()
    url, _, _ = resolve_location(location)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(lt.SchemaOutdated) as caught:
        open_store(location)
    assert "9999" in str(caught.value)
    result = CliRunner().invoke(main, ["db", "upgrade", "--store", location])
    assert result.exit_code == 1, result.output
    assert "Error:" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("damage", ["header", "page"])
def test_a_damaged_sqlite_file_says_what_to_do(tmp_path: Path, damage: str) -> None:
    location = str(tmp_path / "store")
    lt.set_store(location)
    for i in range(300):
        with lt.start_run("damaged", params={"i": i, "text": "x" * 500}):
            pass
    from labtrack.verbs import tracking

    tracking.reset()
    database = tmp_path / "store" / "labtrack.db"
    data = checkpointed_bytes(database)
    if damage == "header":
        data[:100] = b"\x00" * 100
    else:
        half = len(data) // 4096 // 2 * 4096  # every page of the back half: the runs' rows and indexes
        data[half:] = b"\xff" * (len(data) - half)
    database.write_bytes(bytes(data))
    lt.set_store(location)
    with pytest.raises(lt.StoreError) as caught:
        lt.search_runs("damaged", filter="params.i >= 0")
        for run in lt.search_runs("damaged"):
            _ = run.params
    message = str(caught.value)
    assert "damaged" in message and ".recover" in message and str(database) in message
    tracking.reset()
    result = CliRunner().invoke(main, ["db", "check", "--store", location])  # says the same, or more
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ".recover" in " ".join(result.output.split()) and str(database) in "".join(result.output.split())
