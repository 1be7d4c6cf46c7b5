"""Artifact content: the ``BlobStore`` interface, and its local-directory implementation.

Blobs are content-addressed: a blob's name is its content's sha256, so identical files logged by many
runs are stored once and no user-chosen path ever becomes a blob name. ``labtrack.store.open_blobs`` turns
a location into a blob store: a directory (here), or an S3-compatible bucket (``labtrack.store.s3``).

On a local directory, a blob lives at ``<root>/sha256/<2 hex>/<64 hex>``: its name is its content's sha256, so identical files
logged by many runs are stored once, and no user-chosen path ever becomes a file name here — an
artifact path cannot escape the store. Writes go to a temporary file in the same directory and are
renamed into place, so a reader never sees half a blob and concurrent writers of the same content
are harmless.
"""

from __future__ import annotations

import abc
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from labtrack.core.errors import ArtifactNotFound, InvalidInput, StoreError

__all__ = ["STALE_SECONDS", "BlobInfo", "BlobStore", "LocalBlobStore", "check_sha256", "content_digest", "discard",
           "is_sha256"]

_BUFFER = 1 << 20
_HEX = frozenset("0123456789abcdef")


def is_sha256(name: object) -> bool:
    return isinstance(name, str) and len(name) == 64 and _HEX.issuperset(name)


def check_sha256(sha256: str) -> str:
    if not is_sha256(sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest", field="sha256")
    return sha256


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int
    modified: float  # when it was stored, or last stored again (seconds since the epoch)


class BlobStore(abc.ABC):
    """Content-addressed storage of artifact bytes.

    Contract: ``put_*`` return (sha256, size) and are idempotent (storing the same content again is
    harmless and cheap, and refreshes the blob's ``modified`` time, which ``labtrack gc`` reads); a blob, once
    stored, never changes; ``open`` of an unknown blob raises ``StoreError``; a failed put leaves nothing
    behind (no partial blob, no temporary file).
    """

    url: str

    @abc.abstractmethod
    def put_file(self, path: str | os.PathLike[str], *, move: bool = False) -> tuple[str, int]:
        """Store a local file's content. With ``move=True`` the caller gives the file up: the store may take
        it over (a rename) instead of copying it."""

    @abc.abstractmethod
    def put_bytes(self, data: bytes) -> tuple[str, int]: ...

    @abc.abstractmethod
    def open(self, sha256: str) -> BinaryIO: ...

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool: ...

    def check(self) -> None:  # noqa: B027 - optional
        """Raise StoreError unless the content store answers (``labtrack doctor``)."""

    @abc.abstractmethod
    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob (for ``labtrack gc``)."""

    @abc.abstractmethod
    def delete_blob(self, sha256: str, *, unchanged_since: float) -> bool:
        """Remove a blob unless it was stored (again) at or after ``unchanged_since``; returns whether it was
        removed."""


def content_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(sha256, size) of a file's content, read a block at a time."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while block := source.read(_BUFFER):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def discard(path: str | os.PathLike[str] | None) -> None:
    """Remove a file if it is there (a temporary copy, a staged file given up); never raises."""
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


STALE_SECONDS = 3600  # a temporary blob this old is left over by a write that failed or a process that died


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._remove_stale()

    def _remove_stale(self) -> None:
        """Temporary blobs left by writes that died (a full disk keeps itself full with them); recent ones
        may be another process's write in progress and stay."""
        try:
            entries = list(os.scandir(self.root / "tmp"))
        except OSError:
            return
        cutoff = time.time() - STALE_SECONDS
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass

    def _blob_path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / check_sha256(sha256)

    def _tmp_dir(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _commit(self, tmp_path: str, sha256: str) -> None:
        final = self._blob_path(sha256)
        if final.exists():
            os.unlink(tmp_path)
            _touch(final)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp_path, 0o444)  # blobs are immutable; nothing should edit them in place
        os.replace(tmp_path, final)
        _touch(final)  # a staged file moved into place keeps its own time: the blob's is when it was stored

    def put_file(self, path: str | os.PathLike[str], *, move: bool = False) -> tuple[str, int]:
        if move:
            taken = self._take(path)
            if taken is not None:
                return taken
        digest = hashlib.sha256()
        size = 0
        tmp_path = None
        try:
            fd, tmp_path = _mkstemp(self._tmp_dir(), "blob-")
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while block := src.read(_BUFFER):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
            self._commit(tmp_path, digest.hexdigest())
        except OSError as exc:
            discard(tmp_path)  # a full disk must not stay full of our half-written copy
            raise StoreError(f"cannot store artifact {os.fspath(path)!r} under {self.root}: {exc}") from exc
        return digest.hexdigest(), size

    def _take(self, path: str | os.PathLike[str]) -> tuple[str, int] | None:
        """Rename ``path`` into place when it is on this store's file system (its content is hashed first);
        None when it is not (the caller copies)."""
        try:
            if os.stat(path).st_dev != os.stat(self._tmp_dir()).st_dev:
                return None
            sha, size = content_digest(path)
            self._commit(os.fspath(path), sha)
        except OSError as exc:
            raise StoreError(f"cannot store artifact {os.fspath(path)!r} under {self.root}: {exc}") from exc
        return sha, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if _touch(self._blob_path(sha)):  # stored before: now it is stored again
            return sha, len(data)
        tmp_path = None
        try:
            fd, tmp_path = _mkstemp(self._tmp_dir(), "blob-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            self._commit(tmp_path, sha)
        except OSError as exc:
            discard(tmp_path)
            raise StoreError(f"cannot store artifact under {self.root}: {exc}") from exc
        return sha, len(data)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self._blob_path(sha256), "rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact blob {sha256} is missing from {self.root}") from exc

    def exists(self, sha256: str) -> bool:
        return self._blob_path(sha256).exists()

    def list_blobs(self) -> Iterator[BlobInfo]:
        try:
            shards = sorted(os.scandir(self.root / "sha256"), key=lambda entry: entry.name)
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                entries = sorted(os.scandir(shard.path), key=lambda entry: entry.name)
            except NotADirectoryError:
                continue
            for entry in entries:
                if not is_sha256(entry.name):
                    continue
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed meanwhile
                    continue
                yield BlobInfo(entry.name, stat.st_size, stat.st_mtime)

    def delete_blob(self, sha256: str, *, unchanged_since: float) -> bool:
        path = self._blob_path(sha256)
        try:
            if path.stat().st_mtime >= unchanged_since:
                return False
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot remove artifact blob {sha256} from {self.root}: {exc}") from exc
        return True


def _touch(path: Path) -> bool:
    """Refresh a stored blob's time (its content was stored again); False if there is no such blob. A blob
    another user owns keeps its time (we may not change it): it is then only as safe from ``labtrack gc`` as
    its first storing made it."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:
        return path.exists()
    return True


def _mkstemp(directory: str | Path, prefix: str) -> tuple[int, str]:
    import tempfile  # with shutil and random: only when something is written, not at ``import labtrack``

    return tempfile.mkstemp(dir=directory, prefix=prefix)
