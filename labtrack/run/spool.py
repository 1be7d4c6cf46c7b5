"""The spool: one process's crash-safe log of everything it writes to one store, before the store has it.

Every write made during a run lands here before the logging call returns; the background writer
(``labtrack.run.writer``) moves it into the store and trims the spool. The spool's files are mapped into
memory, so a write costs a copy into the page cache — no system call, no fsync — and the page cache
survives the death of the process: after a SIGKILL (or the OOM killer) the next process that opens the
store, or ``labtrack recover``, finds the spool and stores what it holds (``labtrack.run.recovery``). A
power cut may still cost the last seconds, which the operating system had not written to disk yet.

A spool is a directory ``<spool root>/<host>-<pid>-<id>/``:

- ``lock``: held (``flock``) by the owning process while it lives; the kernel releases it when the
  process dies, however it dies, which is how a recoverer tells a dead spool from a live one.
- ``meta.json``: the spool's id (the ``source`` of its ingest marks), the store, host and pid.
- ``points.<n>``: metric points, fixed 32-byte records ``step, timestamp, value, series`` (little-endian
  int64, float64, float64, int64); 2^18 records per file. The series id is written last: a record whose
  series is 0 is not (completely) written yet. Position = record number, across files.
- ``journal.<n>``: everything else, as variable-length records: a 16-byte header ``points position,
  length, kind`` (kind written last: 0 = nothing here yet) and a payload (JSON, or packed arrays for a
  block of points from ``log_batch``). A record's points position is a slot of the points files taken
  when the record was written (and marked as a tombstone): every point logged before the record lies
  below it, so a reader can cut both streams consistently. Position = ``file number << 40 | offset``.
- ``names``: which series id is which (run id, metric key), one JSON line each, never trimmed; mapped
  like the others (zero bytes after the last line), and grown when full.
- ``staged/<sha256>``: artifact content copied at the logging call, moved into the store's blobs by the
  writer (a rename on the same file system).
- ``drained``: how far the writer has stored both streams (trimming files below it).

Files are allocated before they are mapped (``posix_fallocate``), so a full disk fails the allocation —
the spool then falls back to memory for the rest of the process, with a warning — instead of killing the
process with SIGBUS on a write.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import mmap
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from labtrack.core.jsontext import json_text
from labtrack.run.process import HOST

__all__ = [
    "BLOCK_HEAD",
    "HEADER",
    "JOURNAL_SEGMENT",
    "NAMES_SIZE",
    "POINT",
    "SEGMENT_POINTS",
    "SEGMENT_SHIFT",
    "TOMBSTONE",
    "Kind",
    "Spool",
    "encode",
    "journal_position",
    "release_pages",
    "split_position",
]

POINT = struct.Struct("<qddq")  # step, timestamp, value, series id (last: nonzero once the record is whole)
HEADER = struct.Struct("<qII")  # points position, payload length, kind (last: nonzero once the record is whole)
SEGMENT_SHIFT = 18
SEGMENT_POINTS = 1 << SEGMENT_SHIFT  # points per file: 8 MiB
JOURNAL_SEGMENT = 4 << 20  # bytes per journal file (a larger record gets a file of its own size)
NAMES_SIZE = 256 << 10  # bytes of the names file at first (~3,000 names), doubled when full
_OFFSET_BITS = 40
TOMBSTONE = -1  # the series id of a points slot taken to position a journal record
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # NaN and ±inf allowed: Python reads it


class Kind(enum.IntEnum):
    """What a journal record holds."""

    ENV = 1  # {"fingerprint", "snapshot"}: a shared environment snapshot runs refer to
    CREATE = 2  # a new run (labtrack.core.model.NewRun as a dict)
    PARAMS = 3  # {"run", "values"}
    TAGS = 4  # {"run", "values"}
    NOTE = 5  # {"run", "note"}
    CONTEXT = 6  # {"run", "sections", "fingerprint"}
    ARTIFACTS = 7  # {"run", "items": [[path, sha256, size, whether the content is in staged/], ...]}
    RESULT = 8  # {"run", "value"}
    BLOCK = 9  # packed points of one series: <q series, <q n, then n steps, timestamps, values
    END = 10  # {"run", "status", "end_time", "error"}
    PAD = 15  # the rest of this journal file is unused: continue in the next


BLOCK_HEAD = struct.Struct("<qq")


def encode(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


def journal_position(segment: int, offset: int) -> int:
    return segment << _OFFSET_BITS | offset


def split_position(position: int) -> tuple[int, int]:
    return position >> _OFFSET_BITS, position & ((1 << _OFFSET_BITS) - 1)


_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def release_pages(mapped: mmap.mmap, start: int = 0, end: int | None = None) -> None:
    """Take the whole pages of a mapped spool file between byte offsets ``start`` and ``end`` out of this
    process's memory (its RSS). Nothing is lost: the data is in the file's page cache, which the kernel
    writes back in its own time, and touching the pages again reads them back from there."""
    if _DONTNEED is None:
        return
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = (len(mapped) if end is None else end) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        try:
            mapped.madvise(_DONTNEED, first, last - first)
        except (OSError, ValueError):
            pass


def _allocate(path: Path, size: int, *, grow: bool = False) -> mmap.mmap:
    """A new file of ``size`` zero bytes, its blocks reserved, mapped for writing (or, ``grow``, an
    existing file made ``size`` bytes long, its content kept)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (0 if grow else os.O_EXCL), 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (95, 22):  # EOPNOTSUPP / EINVAL: a file system without it (ftruncate below)
                raise
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        if not grow:
            path.unlink(missing_ok=True)
        raise
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


class Spool:
    """The append side of one process's spool for one store (see the module docstring).

    Thread safe: points take their slot from an atomic counter, journal records are appended under a
    lock. After ``os.fork`` the child must not write into its parent's files: ``renew_after_fork`` gives
    it a spool of its own, with the same series ids.
    """

    def __init__(self, root: Path, store_key: str, store_url: str) -> None:
        self.root = root
        self.store_key = store_key
        self.store_url = store_url
        self.lock = threading.RLock()  # journal appends, new files, series definitions
        self.series: dict[int, tuple[str, str]] = {}  # series id -> (run id, key); kept across forks
        self._series_ids = itertools.count(1)
        self.in_memory = False
        self.stale = False  # inherited through fork: renewed on first use
        self.max_bytes = 1 << 62  # points files beyond this size are not kept (see ``place``)
        self.dropped = 0  # points slots given up because the spool was full
        self.kick_at = 1 << 62  # the points position at which to wake the writer (see ``wake``)
        self.kick_every = 1 << 62
        self.on_wake: Callable[[], None] = lambda: None
        self.on_renew: Callable[[Spool], None] = lambda spool: None
        self._open_files()

    def _open_files(self) -> None:
        self.source = os.urandom(16).hex()
        self.pid = os.getpid()
        self.host = HOST
        self.counter = itertools.count()  # the next points slot
        self.maps: dict[int, mmap.mmap] = {}  # points file number -> its mapping
        self.journals: dict[int, mmap.mmap] = {}  # journal file number -> its mapping
        self.discarded: set[int] = set()  # points files given up while the spool was full (see ``place``)
        self._scratch: mmap.mmap | None = None
        self.environments: set[str] = set()  # fingerprints of snapshots journaled (see log.journal_environment)
        self._journal: mmap.mmap | None = None
        self._journal_segment = -1
        self._journal_offset = 0
        self._journal_size = 0
        self._lock_fd: int | None = None
        self._names: mmap.mmap | None = None
        self._names_offset = 0
        try:
            self.path = self._create_directory()
        except OSError as exc:
            self._fall_back_to_memory(exc)
            return
        self._write_names(self.series.items())

    def _create_directory(self) -> Path:
        """The spool's directory, made under a hidden name and renamed into place once it is locked, so a
        recoverer never mistakes a spool being made for a dead one."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{self.host}-{self.pid}-{self.source[:8]}"
        making = self.root / f".{name}.new"
        making.mkdir()
        (making / "staged").mkdir()
        self._lock_fd = os.open(making / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        import fcntl

        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        meta = {"source": self.source, "store": self.store_key, "store_url": self.store_url, "host": self.host,
                "pid": self.pid, "created": time.time()}
        (making / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        with open(making / "drained", "wb") as f:
            f.write(struct.pack("<qq", 0, 0))
        path = self.root / name
        os.rename(making, path)
        return path

    def _fall_back_to_memory(self, exc: OSError) -> None:
        """No spool on disk (a read-only or full file system): keep going in memory, which outages of the
        store survive but a killed process does not."""
        self.in_memory = True
        import tempfile

        self.path = Path(tempfile.mkdtemp(prefix="labtrack-spool-"))  # staged artifacts only
        (self.path / "staged").mkdir(exist_ok=True)
        warnings.warn(
            f"labtrack: cannot keep a spool under {self.root} ({exc}); writes are kept in memory until the "
            "store has them, so a killed process loses what it had not written yet",
            RuntimeWarning, stacklevel=4,
        )

    def forked(self) -> None:
        """In a forked child, at the fork (no I/O here): forget the parent's files; the first use renews."""
        self.lock = threading.RLock()
        self.maps = {}
        self.journals = {}
        self._journal = None
        if self._lock_fd is not None:  # the child's copy of the parent's lock: the lock is the parent's alone
            os.close(self._lock_fd)  # (closing a copy does not release it; keeping it would keep it held)
        self._lock_fd = None
        if self._names is not None:  # the child's mapping of the parent's file
            self._names.close()
        self._names, self._names_offset = None, 0
        self.stale = True

    def _renew(self) -> None:
        """A forked child's first write: files of its own (the parent's stay the parent's), same series ids."""
        self.stale = False
        self._open_files()
        self.on_renew(self)

    def wake(self, slot: int) -> None:
        """Points are piling up (``slot`` reached ``kick_at``): wake the writer, once per ``kick_every``."""
        self.kick_at = slot + self.kick_every
        self.on_wake()

    # -- points ---------------------------------------------------------------------------------

    def place(self, slot: int) -> tuple[int, mmap.mmap]:
        """The slow path of a point's write: the mapping that holds ``slot``, its file created first. In a
        forked child the spool is renewed first and the point gets a slot of the child's own."""
        with self.lock:
            if self.stale:
                self._renew()
                slot = next(self.counter)
            number = slot >> SEGMENT_SHIFT
            found = self.maps.get(number)
            if found is None:
                found = self._discard(number) if self._full() else self._new_points_file(number)
                self.maps[number] = found
                previous = self.maps.get(number - 1)
                if previous is not None and previous is not self._scratch and not self.in_memory:
                    release_pages(previous)  # written: its pages need not stay in this process's memory
            return slot, found

    def _full(self) -> bool:
        kept = sum(1 for mapped in self.maps.values() if mapped is not self._scratch)
        return kept * SEGMENT_POINTS * POINT.size >= self.max_bytes

    def _discard(self, number: int) -> mmap.mmap:
        """The spool holds ``max_bytes`` of points the store has not taken (a long outage at a high rate):
        the points of this file are given up — written to a scratch buffer that nothing reads — so that
        neither the disk nor memory fills. What was logged before stays; warned once per full spell. Points
        are kept again from the first file begun after the store has taken what waited."""
        if self._scratch is None:
            self._scratch = mmap.mmap(-1, SEGMENT_POINTS * POINT.size)
        if not self.discarded or max(self.discarded) != number - 1:
            warnings.warn(
                f"labtrack: the spool {self.path} holds {self.max_bytes >> 20} MB of points the store "
                f"{self.store_url} has not taken yet (LABTRACK_SPOOL_MAX_MB): new points are dropped until it "
                "takes them; everything logged before is kept", RuntimeWarning, stacklevel=4,
            )
        self.discarded.add(number)
        self.dropped += SEGMENT_POINTS
        if not self.in_memory:
            (self.path / f"points.{number:08d}.dropped").touch()  # so that a recoverer skips it too
        return self._scratch

    def _new_points_file(self, number: int) -> mmap.mmap:
        size = SEGMENT_POINTS * POINT.size
        if not self.in_memory:
            try:
                return _allocate(self.path / f"points.{number:08d}", size)
            except OSError as exc:
                self._fall_back_to_memory(exc)
        return mmap.mmap(-1, size)

    def take_slot(self) -> int:
        """A points slot marked as a tombstone: every point logged before lies below it."""
        slot = next(self.counter)
        mm = self.maps.get(slot >> SEGMENT_SHIFT)
        if mm is None:
            slot, mm = self.place(slot)
        POINT.pack_into(mm, (slot & (SEGMENT_POINTS - 1)) * POINT.size, 0, 0.0, 0.0, TOMBSTONE)
        return slot

    def release_points_below(self, position: int) -> None:
        """Forget (unmap, delete) the points files wholly below ``position``: the store has them."""
        with self.lock:
            for number in [n for n in self.maps if (n + 1) << SEGMENT_SHIFT <= position]:
                mapped = self.maps.pop(number)
                if mapped is not self._scratch:
                    mapped.close()
                if not self.in_memory:
                    (self.path / f"points.{number:08d}").unlink(missing_ok=True)
                    (self.path / f"points.{number:08d}.dropped").unlink(missing_ok=True)

    # -- series ---------------------------------------------------------------------------------

    def define_series(self, run_id: str, key: str) -> int:
        with self.lock:
            if self.stale:
                self._renew()
            series = next(self._series_ids)
            self.series[series] = (run_id, key)
            self._write_names([(series, (run_id, key))])
            return series

    def _write_names(self, items: Iterable[tuple[int, tuple[str, str]]]) -> None:
        lines = "".join(f'{{"s":{s},"r":{json_text(r)},"k":{json_text(k)}}}\n' for s, (r, k) in items).encode()
        if not lines or self.in_memory:
            return
        end = self._names_offset + len(lines)
        if self._names is None or end > len(self._names):
            size = max(NAMES_SIZE, 2 * len(self._names) if self._names is not None else 0, 2 * end)
            try:
                grown = _allocate(self.path / "names", size, grow=True)
            except OSError as exc:
                self._fall_back_to_memory(exc)
                return
            if self._names is not None:
                self._names.close()
            self._names = grown
        self._names[self._names_offset : end] = lines
        self._names_offset = end

    # -- journal --------------------------------------------------------------------------------

    def append(self, kind: Kind, payload: bytes) -> int:
        """Append a journal record; returns its position."""
        with self.lock:
            if self.stale:
                self._renew()
            need = (HEADER.size + len(payload) + 7) & ~7
            if self._journal is None or self._journal_offset + need > self._journal_size:
                self._next_journal_file(need)
            mm, offset = self._journal, self._journal_offset
            assert mm is not None
            mm[offset + HEADER.size : offset + HEADER.size + len(payload)] = payload
            HEADER.pack_into(mm, offset, self.take_slot(), len(payload), kind)
            self._journal_offset = offset + need
            return journal_position(self._journal_segment, offset)

    def _next_journal_file(self, need: int) -> None:
        if self._journal is not None and self._journal_offset + HEADER.size <= self._journal_size:
            HEADER.pack_into(self._journal, self._journal_offset, 0, 0, Kind.PAD)
        if self._journal is not None and not self.in_memory:
            release_pages(self._journal)
        number = self._journal_segment + 1
        size = max(JOURNAL_SEGMENT, need)
        mapped: mmap.mmap | None = None
        if not self.in_memory:
            try:
                mapped = _allocate(self.path / f"journal.{number:08d}", size)
            except OSError as exc:
                self._fall_back_to_memory(exc)
        if mapped is None:
            mapped = mmap.mmap(-1, size)
        self.journals[number] = mapped
        self._journal, self._journal_segment, self._journal_offset, self._journal_size = mapped, number, 0, size

    @property
    def journal_end(self) -> int:
        with self.lock:
            if self.stale:
                return 0
            return journal_position(max(self._journal_segment, 0), self._journal_offset)

    def release_journal_below(self, position: int) -> None:
        segment = split_position(position)[0]
        with self.lock:
            for number in [n for n in self.journals if n < segment]:
                self.journals.pop(number).close()
                (self.path / f"journal.{number:08d}").unlink(missing_ok=True)

    # -- staged artifacts -----------------------------------------------------------------------

    def stage_file(self, source: str | os.PathLike[str]) -> tuple[str, int]:
        """Copy a file's content into the spool now (the user may change it later); returns (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp = _mkstemp(self.path / "staged", "in-")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
            sha = digest.hexdigest()
            os.replace(tmp, self.path / "staged" / sha)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, size

    def stage_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path / "staged" / sha
        if not target.exists():
            fd, tmp = _mkstemp(self.path / "staged", "in-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return sha, len(data)

    def staged(self, sha256: str) -> Path:
        return self.path / "staged" / sha256

    # -- drained --------------------------------------------------------------------------------

    def set_drained(self, journal: int, points: int) -> None:
        """Record how far the store has both streams, and trim what lies wholly below."""
        if not self.in_memory:
            fd = os.open(self.path / "drained", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.pwrite(fd, struct.pack("<qq", journal, points), 0)
            finally:
                os.close(fd)
        self.release_journal_below(journal)
        self.release_points_below(points)

    def close(self, *, remove: bool) -> None:
        """Unmap everything; ``remove`` the directory (everything is in the store) or leave it to recovery."""
        with self.lock:
            for mapped in {id(m): m for m in [*self.maps.values(), *self.journals.values()]}.values():
                mapped.close()
            self.maps.clear()
            self.journals.clear()
            self._journal = None
            if remove or self.in_memory:
                import shutil

                shutil.rmtree(self.path, ignore_errors=True)
            if self._names is not None:
                self._names.close()
                self._names = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _mkstemp(directory: Path, prefix: str) -> tuple[int, str]:
    import tempfile  # with shutil and random: only when an artifact is logged, not at ``import labtrack``

    return tempfile.mkstemp(dir=directory, prefix=prefix)
