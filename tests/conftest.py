"""Shared fixtures: isolated labtrack state per test, and real stores (SQLite files, PostgreSQL).

PostgreSQL: set LABTRACK_TEST_POSTGRES_URL to use a running server (a database per test is created
on it); otherwise a throw-away cluster is started from Debian's binaries (initdb/pg_ctl, as the
`postgres` user when running as root). When neither is possible the PostgreSQL tests skip, unless
LABTRACK_REQUIRE_POSTGRES=1 (set by CI), where they fail instead: CI must run them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_helpers import browser, site, tab  # noqa: F401 - the web UI's fixtures

REPO = Path(__file__).resolve().parent.parent


def _reset_labtrack() -> None:
    """End what a test left active, close every client (draining its spool) and forget settings."""
    from labtrack.run import process
    from labtrack.verbs import tracking

    for run in list(process.state.stack):
        try:
            run.end("KILLED")
        except Exception:
            pass
    process.state.stack.clear()
    process.state.terminating = None
    process.state.uncaught = None
    tracking.reset()


@pytest.fixture(autouse=True)
def isolated_labtrack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test starts in its own empty directory with no labtrack settings from the outside."""
    for name in list(os.environ):
        if name.startswith("LABTRACK_") and not name.startswith("LABTRACK_TEST") and name != "LABTRACK_REQUIRE_POSTGRES":
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # Spools of stores that have no directory of their own (PostgreSQL) go here, not to ~/.cache.
    monkeypatch.setenv("LABTRACK_SPOOL_DIR", str(tmp_path / "spools"))
    # A database store's default artifact directory is in the user's data directory: here, the test's.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # System metrics sample on a clock: on a loaded machine a run lasting over a second would get system/ series
    # that tests asserting a run's exact metrics do not expect. Their own tests (test_system_metrics.py) switch
    # them on; subprocesses inherit this through python_env.
    monkeypatch.setenv("LABTRACK_SYSTEM_METRICS", "off")
    _reset_labtrack()
    yield work
    _reset_labtrack()


# -- PostgreSQL ------------------------------------------------------------------------------------


def _pg_bindir() -> str | None:
    try:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A throw-away PostgreSQL cluster on loopback. ``durable=False`` (the shared test server) turns fsync
    off for speed; outage tests use a cluster of their own with it on, and stop and start it."""

    def __init__(self, bindir: str, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="labtrack-pg-")
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.durable = durable
        self.data = os.path.join(self.dir, "data")

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args: str) -> None:
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, *args)

    def start(self) -> str:
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self.start_server()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start_server(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._pg_ctl("-l", os.path.join(self.dir, "log"), "-w", "-o", options, "start")

    def stop_server(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        # -l again: else the restarted server writes to pg_ctl's output, which it keeps open for ever
        self._pg_ctl("-l", os.path.join(self.dir, "log"), "-m", mode, "-w", "restart")

    def stop(self) -> None:
        try:
            self._pg_ctl("-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _require_postgres() -> str:
    """The PostgreSQL binaries' directory; skips (or fails in CI) when they or psycopg are missing."""
    required = os.environ.get("LABTRACK_REQUIRE_POSTGRES") == "1"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("psycopg is not installed but LABTRACK_REQUIRE_POSTGRES=1")
        pytest.skip("psycopg is not installed (pip install 'labtrack[postgres]')")
    bindir = _pg_bindir()
    if bindir is None:
        if required:
            pytest.fail("PostgreSQL server binaries not found but LABTRACK_REQUIRE_POSTGRES=1 (apt-get install postgresql)")
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    return bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    url = os.environ.get("LABTRACK_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    required = os.environ.get("LABTRACK_REQUIRE_POSTGRES") == "1"
    cluster = Cluster(_require_postgres())
    try:
        url = cluster.start()
    except (OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        detail = getattr(exc, "stderr", b"") or b""
        message = f"could not start PostgreSQL: {exc} {detail.decode(errors='replace')}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database on the test server; dropped afterwards. Its artifacts go to the test's own
    directory, as a team sets LABTRACK_ARTIFACTS (tests of the default delete it)."""
    from sqlalchemy import create_engine, text

    monkeypatch.setenv("LABTRACK_ARTIFACTS", str(tmp_path / "artifacts"))

    name = f"lt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from labtrack.verbs import tracking

        tracking.reset()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def durable_postgres() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test's own, fsync on, that the test may stop, start and restart."""
    cluster = Cluster(_require_postgres(), durable=True)
    try:
        cluster.start()
    except (OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        pytest.fail(f"could not start PostgreSQL: {exc}")
    try:
        yield cluster
    finally:
        from labtrack.verbs import tracking

        tracking.reset()  # its clients drain into the cluster before it goes
        cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty store URL on each backend: a SQLite store directory, or a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    monkeypatch.setenv("LABTRACK_ARTIFACTS", str(tmp_path / "artifacts"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def python_env() -> dict[str, str]:
    """Environment for subprocesses that import labtrack from this checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LABTRACK_") or k.startswith("LABTRACK_TEST")
           or k in ("LABTRACK_SPOOL_DIR", "LABTRACK_SYSTEM_METRICS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env



@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback (moto's threaded server): its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the loopback S3, with the environment a client uses to reach it: its
    ``s3://`` location (with a prefix)."""
    import boto3

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("LABTRACK_S3_ENDPOINT_URL", s3_endpoint)):
        monkeypatch.setenv(name, value)
    bucket = f"labtrack-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/team/artifacts"
