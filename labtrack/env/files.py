"""Hashing files for the record, cached by their stat so that a repeat capture re-reads nothing."""

from __future__ import annotations

import hashlib
import os
import threading

__all__ = ["sha256_file"]

_cache: dict[tuple[str, int, int, int, int], str] = {}
_lock = threading.Lock()
_MAX_ENTRIES = 10_000


def sha256_file(path: str, st: os.stat_result | None = None) -> str | None:
    """sha256 hex of a regular file, or None if it cannot be read.

    Cached by (path, device, inode, size, mtime): a file rewritten in place changes its mtime.
    """
    try:
        st = st or os.stat(path)
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with _lock:
            if key in _cache:
                return _cache[key]
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = digest
    return digest
