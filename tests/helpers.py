"""Small helpers shared by tests (import as `from helpers import ...`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def checkpointed_bytes(database: Path) -> bytearray:
    """A quiet SQLite store's file, with its WAL checkpointed into it first: the bytes to damage."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return bytearray(database.read_bytes())
