"""The Store contract (labtrack/store/base.py), run against every backend: SQLite and PostgreSQL.

The suite itself is ``labtrack.testing.store_contract.StoreContract``, shipped with labtrack so that a new
backend is tested by subclassing it, as these classes do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
