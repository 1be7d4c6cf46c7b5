"""Content-addressed blob storage on a local directory.

A blob lives at ``<root>/sha256/<2 hex>/<64 hex>``: its name is its content's sha256, so identical files
logged by many runs are stored once, and no user-chosen path ever becomes a file name here — an
artifact path cannot escape the store. Writes go to a temporary file in the same directory and are
renamed into place, so a reader never sees half a blob and concurrent writers of the same content
are harmless.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from labtrack.core.errors import InvalidInput, StoreError

__all__ = ["LocalBlobStore"]

_BUFFER = 1 << 20


class LocalBlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput(f"{sha256!r} is not a sha256 hex digest", field="sha256")
        return self.root / "sha256" / sha256[:2] / sha256

    def _tmp_dir(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _commit(self, tmp_path: str, sha256: str) -> None:
        final = self._blob_path(sha256)
        if final.exists():
            os.unlink(tmp_path)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp_path, 0o444)  # blobs are immutable; nothing should edit them in place
        os.replace(tmp_path, final)

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        try:
            fd, tmp_path = tempfile.mkstemp(dir=self._tmp_dir(), prefix="blob-")
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while block := src.read(_BUFFER):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
            self._commit(tmp_path, digest.hexdigest())
        except OSError as exc:
            raise StoreError(f"cannot store artifact {os.fspath(path)!r} under {self.root}: {exc}") from exc
        return digest.hexdigest(), size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if self._blob_path(sha).exists():
            return sha, len(data)
        try:
            fd, tmp_path = tempfile.mkstemp(dir=self._tmp_dir(), prefix="blob-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            self._commit(tmp_path, sha)
        except OSError as exc:
            raise StoreError(f"cannot store artifact under {self.root}: {exc}") from exc
        return sha, len(data)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self._blob_path(sha256), "rb")
        except FileNotFoundError as exc:
            raise StoreError(f"artifact blob {sha256} is missing from {self.root}") from exc

    def exists(self, sha256: str) -> bool:
        return self._blob_path(sha256).exists()
