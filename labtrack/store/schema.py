"""The relational schema shared by SQLite and PostgreSQL (SQLAlchemy Core).

Alembic migrations in ``labtrack/store/migrations`` must produce exactly these tables; a test compares
them. ``SCHEMA_REVISION`` is the Alembic head this code reads and writes.

Metric points are stored in chunks: one row per (run, key, chunk) holding packed arrays of steps,
timestamps and values (see ``labtrack.core.series``), plus one summary row per (run, key) with the
last, min, max and count that search and sort use. NaN is stored as NULL in the summary's float
columns (SQLite cannot store NaN); the packed arrays keep it exactly.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "PLANNER_STATISTICS",
    "POSTGRES_STATISTICS",
    "POSTGRES_STORAGE",
    "SCHEMA_REVISION",
    "WORKING_REVISIONS",
    "artifacts",
    "claims",
    "env_facts",
    "environments",
    "experiments",
    "ingest_marks",
    "metadata",
    "metric_chunks",
    "metrics",
    "params",
    "runs",
    "tags",
    "tokens",
]

SCHEMA_REVISION = "0008"
# Revisions this code reads and writes. 0005 added the chunks' checksums, which every write sets, 0006 the
# deletion times that every search reads, 0007 the tracking server's tokens: an older store needs
# ``labtrack db upgrade``. 0008 only stops PostgreSQL compressing chunks (a 0007 store works as it is, slower).
WORKING_REVISIONS = frozenset({"0007", SCHEMA_REVISION})

# Statistics of column pairs for PostgreSQL's planner: a filter such as ``params.lr = 0.01`` is one
# condition on (key, num) together, and without them the planner multiplies the two columns'
# selectivities, expects ten times too few matching runs, and joins every match before sorting instead of
# walking the sort column's index and stopping at max_results (~200 ms against ~8 ms at 100k runs).
# SQLite needs none. Created with the schema and by revision 0004, then ANALYZEd.
PLANNER_STATISTICS = {
    "st_params_key_num": "(mcv, dependencies) ON key, num FROM params",
    "st_params_key_text": "(mcv, dependencies) ON key, text FROM params",
    "st_tags_key_value": "(mcv, dependencies) ON key, value FROM tags",
    "st_metrics_key_last_value": "(dependencies) ON key, last_value FROM metrics",
}
POSTGRES_STATISTICS = (
    *(f"CREATE STATISTICS IF NOT EXISTS {name} {spec}" for name, spec in PLANNER_STATISTICS.items()),
    "ANALYZE params, tags, metrics",
)

# PostgreSQL compresses every large value it stores (TOAST, pglz) unless told not to. A chunk's packed
# steps, times and values barely compress and are never searched inside: compressing them cost more CPU than
# anything else in ingestion (8 clients through the tracking server: 756k → 1.2M points/s without it).
# Created with the schema and by revision 0008 (new rows only: stored chunks stay as they are).
POSTGRES_STORAGE = tuple(
    f"ALTER TABLE metric_chunks ALTER COLUMN {column} SET STORAGE EXTERNAL"
    for column in ("step_data", "time_data", "value_data")
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, unique=True),
    Column("created_time", Float, nullable=False),
    # Set by ``labtrack delete --experiment`` (the store's clock), with the same time on the runs it deleted;
    # NULL while the experiment is live. ``labtrack gc`` removes it for good.
    Column("deleted_time", Float),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(250)),
    Column("status", String(16), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float),
    Column("heartbeat_time", Float),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("run_key", String(64)),
    Column("env_fingerprint", String(64)),  # the shared environment snapshot (environments table)
    Column("context", Text),  # JSON: the per-run part of the environment (process, git, seeds)
    Column("error", Text),  # JSON: {"type": ..., "message": ...}
    Column("note", Text),
    Column("result", Text),  # JSON: a tracked function's return value
    # The run's frame once it has ended (labtrack.core.frame): params, tags and last metric values in the
    # compact form that loading many runs as columns reads. NULL while RUNNING, or before an upgrade.
    Column("frame_keys", Text),
    Column("frame_values", Text),
    Column("frame_numbers", LargeBinary),
    # Set when the run is deleted (soft: searches, listings and "already run?" skip it; restore clears it;
    # ``labtrack gc`` removes it for good). NULL for a live run.
    Column("deleted_time", Float),
    Index(None, "run_key", "status"),
)
# Listing an experiment newest first (search's default order, ties by id) walks this index alone.
Index("ix_runs_experiment_id_start_time_id", runs.c.experiment_id, runs.c.start_time.desc(), runs.c.id)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),  # JSON as logged (1.0 stays 1.0)
    Column("num", Float),  # numeric value for comparisons, NULL for non-numbers
    Column("text", Text, nullable=False),  # string form for = and LIKE: a string as is, else its JSON
    # One index serves both numeric and text conditions (text ones scan the key's entries in the index
    # only); a second index would add a page write per param to every run's creation.
    Index(None, "key", "num", "text"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index(None, "key", "value"),
)

metrics = Table(
    "metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("last_value", Float),
    Column("last_step", BigInteger, nullable=False),
    Column("last_timestamp", Float, nullable=False),
    Column("min_value", Float),
    Column("max_value", Float),
    Column("chunks", Integer, nullable=False),  # number of chunk rows; the next chunk's seq
    Column("tail_count", Integer, nullable=False),  # points in the last chunk (small ones are extended)
    Index(None, "key", "last_value"),
)

metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("step_min", BigInteger, nullable=False),
    Column("step_max", BigInteger, nullable=False),
    Column("step_data", LargeBinary, nullable=False),  # packed int64
    Column("time_data", LargeBinary, nullable=False),  # packed float64
    Column("value_data", LargeBinary, nullable=False),  # packed float64
    # crc32 of the three arrays (labtrack.core.series.checksum), checked on every read; NULL in chunks
    # written before revision 0005, which are read unchecked.
    Column("crc", BigInteger),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Index(None, "sha256"),
)

env_facts = Table(
    "env_facts",
    metadata,
    Column("fingerprint", String(64), ForeignKey("environments.fingerprint", ondelete="CASCADE"), nullable=False),
    Column("name", String(300), nullable=False),  # e.g. gpu.name, packages.torch, python
    Column("text", Text, nullable=False),
    Column("num", Float),  # numeric facts (gpu.count, memory_gb)
    Column("vkey", String(200)),  # order-preserving key of a version (packaging.version), for >= '2.1'
    Index(None, "name", "fingerprint"),
)

claims = Table(
    "claims",
    metadata,
    Column("run_key", String(64), primary_key=True),  # one claim per configuration, however many workers
    Column("owner", String(200), nullable=False),  # sweep-id/host/pid of the worker holding it
    Column("state", String(16), nullable=False),  # running | done | failed
    Column("run_id", String(32)),
    Column("lease_until", Float, nullable=False),  # renewed by the owner's heartbeat; expired = free
    Column("created_time", Float, nullable=False),
)

# How far into each writer's spool (labtrack.run.spool) a run's points are stored, written in the same
# transaction as the points: a write retried after an unknown outcome, or a dead process's spool recovered
# later, skips what is already here (labtrack.core.model.IngestMark).
ingest_marks = Table(
    "ingest_marks",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("source", String(64), primary_key=True),  # the spool's id
    Column("journal", BigInteger, nullable=False),  # position just past the last journal record stored
    Column("points", BigInteger, nullable=False),  # position just past the last point stored
)

environments = Table(
    "environments",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("snapshot", Text, nullable=False),  # JSON
    Column("created_time", Float, nullable=False),
)

# The tracking server's API tokens (labtrack.core.tokens): the sha256 of each token, never the token.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(16), primary_key=True),  # the public part of the token, shown by `labtrack token list`
    Column("name", String(250), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # reader | writer | admin
    Column("experiments", Text),  # JSON list of experiment names the token is limited to; NULL: all
    Column("created_time", Float, nullable=False),
    Column("expires_time", Float),
    Column("revoked_time", Float),
)
