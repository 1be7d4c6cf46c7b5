"""The Store contract (labtrack/store/base.py), run against every backend: SQLite, PostgreSQL, and the remote
store (a tracking server over HTTP) in front of each.

The suite itself is ``labtrack.testing.store_contract.StoreContract``, shipped with labtrack so that a new
backend is tested by subclassing it, as these classes do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import serve_in_thread

from labtrack.testing.store_contract import StoreContract


class TestSqliteDirectory(StoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return str(tmp_path / "store")


class TestSqliteFile(StoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.mark.postgres
class TestPostgres(StoreContract):
    @pytest.fixture
    def store_url(self, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setenv("LABTRACK_ARTIFACTS", str(tmp_path / "artifacts"))
        return postgres_url


class TestSqliteWithS3Artifacts(StoreContract):
    """A SQLite store whose artifact content lives in a bucket (a real S3 API on loopback)."""

    @pytest.fixture
    def artifacts(self, s3_bucket: str) -> str:
        return s3_bucket

    @pytest.fixture
    def store_url(self, tmp_path: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setenv("LABTRACK_ARTIFACTS", s3_bucket)  # the API-level tests read the setting
        return str(tmp_path / "store")


class TestRemoteOnSqlite(StoreContract):
    """The remote store (http://): a real server on loopback in front of a SQLite store."""

    @pytest.fixture
    def store_url(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
        with serve_in_thread(str(tmp_path / "served")) as served:
            monkeypatch.setenv("LABTRACK_TOKEN", served.token)
            yield served.url


@pytest.mark.postgres
class TestRemoteOnPostgres(StoreContract):
    """The remote store in front of PostgreSQL."""

    @pytest.fixture
    def store_url(self, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
        with serve_in_thread(postgres_url, artifacts=str(tmp_path / "artifacts")) as served:
            monkeypatch.delenv("LABTRACK_ARTIFACTS", raising=False)
            monkeypatch.setenv("LABTRACK_TOKEN", served.token)
            yield served.url
