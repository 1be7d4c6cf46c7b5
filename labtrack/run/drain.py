"""Reading a spool (``labtrack.run.spool``) into writes for the store: a consistent *cut* of both streams
turned into one ``RunWrite`` per run.

A cut ends at a journal position J and a points position P such that everything below them goes
together: the journal records below J all lie below P in the points stream, and every point below P was
logged before the first record at or after J. So a run's creation is always in the same cut as (or an
earlier one than) its points, and its end in the same cut as (or a later one than) its last points. The
same reading serves the writer of a live spool and the recovery of a dead one.
"""

from __future__ import annotations

import bisect
import itertools
import json
import mmap
import os
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtrack.core.model import ArtifactInfo, IngestMark, NewRun, RunEnd, RunStatus, RunWrite
from labtrack.core.series import Chunk
from labtrack.run.spool import (
    BLOCK_HEAD,
    HEADER,
    POINT,
    SEGMENT_POINTS,
    SEGMENT_SHIFT,
    TOMBSTONE,
    Kind,
    Spool,
    journal_position,
    release_pages,
    split_position,
)

__all__ = ["Cut", "SpoolReader", "Staged", "read_cut", "remove_staged"]

_SWAP = array("q", [1]).tobytes()[0] != 1  # a big-endian host reads the little-endian files swapped


@dataclass
class Staged:
    sha256: str
    path: Path


@dataclass
class Cut:
    """Everything below (journal, points) in a spool, as writes: environments to put first, staged artifact
    content to move into the store's blobs, then one write per run."""

    journal: int
    points: int
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    staged: list[Staged] = field(default_factory=list)
    writes: dict[str, RunWrite] = field(default_factory=dict)
    series: dict[tuple[str, str], int] = field(default_factory=dict)  # (run id, key) -> series, with points here
    created: set[str] = field(default_factory=set)  # runs this cut creates

    @property
    def empty(self) -> bool:
        return not (self.environments or self.staged or self.writes)


@dataclass
class _Record:
    position: int
    kind: int
    points: int
    payload: bytes


class SpoolReader:
    """Reads a spool: a live one through its own mappings, a dead one (recovery) from its files."""

    def __init__(self, path: Path, live: Spool | None = None) -> None:
        self._path = path
        self.live = live
        self._opened: dict[str, mmap.mmap] = {}

    @property
    def path(self) -> Path:
        return self.live.path if self.live is not None else self._path  # a live spool may be renewed (fork)

    def close(self) -> None:
        for mapped in self._opened.values():
            mapped.close()
        self._opened.clear()

    def _file(self, name: str) -> mmap.mmap | None:
        found = self._opened.get(name)
        if found is None:
            try:
                with open(self.path / name, "rb") as f:
                    found = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (FileNotFoundError, ValueError):  # ValueError: an empty file cannot be mapped
                return None
            self._opened[name] = found
        return found

    def _journal(self, number: int) -> Any:
        if self.live is not None:
            return self.live.journals.get(number)
        return self._file(f"journal.{number:08d}")

    def _points(self, number: int) -> Any:
        if self.live is not None:
            return self.live.maps.get(number)
        return self._file(f"points.{number:08d}")

    def _dropped(self, number: int) -> bool:
        """Whether the points of this file were given up (the spool was full): nothing there to read."""
        if self.live is not None:
            return number in self.live.discarded
        return (self.path / f"points.{number:08d}.dropped").exists()

    def forget_below(self, journal: int, points: int) -> None:
        """Drop mappings of files wholly below the positions (a dead spool's reader)."""
        for name in list(self._opened):
            kind, _, number = name.partition(".")
            n = int(number)
            if (kind == "journal" and n < split_position(journal)[0]) or (
                kind == "points" and (n + 1) << SEGMENT_SHIFT <= points
            ):
                self._opened.pop(name).close()

    def names(self) -> Mapping[int, tuple[str, str]]:
        """Series id -> (run id, key). A live spool's own table (looked up, never iterated: the logging
        threads add to it meanwhile)."""
        if self.live is not None:
            return self.live.series
        found: dict[int, tuple[str, str]] = {}
        try:
            text = (self.path / "names").read_text(encoding="utf-8")
        except FileNotFoundError:
            return found
        for line in text.split("\0", 1)[0].splitlines():  # the mapped file's unused end is zero bytes
            try:
                item = json.loads(line)
                found[int(item["s"])] = (str(item["r"]), str(item["k"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the process's death
        return found

    def drained(self) -> tuple[int, int]:
        try:
            data = (self.path / "drained").read_bytes()
        except FileNotFoundError:
            return 0, 0
        if len(data) < 16:
            return 0, 0
        journal, points = int.from_bytes(data[:8], "little", signed=True), int.from_bytes(data[8:16], "little", signed=True)
        return journal, points

    # -- the two streams ------------------------------------------------------------------------

    def records(self, start: int, budget: int) -> tuple[list[_Record], int | None, int]:
        """Journal records from ``start``, whole ones only, until the end or ``budget`` payload bytes; the
        points position of the first record left out for the budget (None at the end); and where reading
        stopped (the next record's position)."""
        segment, offset = split_position(start)
        spent = 0
        found: list[_Record] = []
        while True:
            mapped = self._journal(segment)
            if mapped is None:
                return found, None, journal_position(segment, offset)
            if offset + HEADER.size > len(mapped):
                if self._journal(segment + 1) is None:
                    return found, None, journal_position(segment, offset)
                segment, offset = segment + 1, 0
                continue
            points, length, kind = HEADER.unpack_from(mapped, offset)
            if kind == 0:
                return found, None, journal_position(segment, offset)
            if kind == Kind.PAD:
                if self._journal(segment + 1) is None:
                    return found, None, journal_position(segment, offset)
                segment, offset = segment + 1, 0
                continue
            if found and spent + length > budget:
                return found, points, journal_position(segment, offset)
            body = offset + HEADER.size
            found.append(_Record(journal_position(segment, offset), kind, points, bytes(mapped[body : body + length])))
            spent += length
            offset += (HEADER.size + length + 7) & ~7

    def points(self, start: int, stop: int) -> tuple[int, array, array, array, array]:
        """The points from ``start`` up to ``stop`` or the first slot not written yet: (end, series, steps,
        timestamps, values). Read in growing blocks, so that a few new points cost a few records' reading."""
        series, steps, stamps, values = array("q"), array("q"), array("d"), array("d")
        position = start
        block = 1024
        while position < stop:
            if self._dropped(position >> SEGMENT_SHIFT):
                position = ((position >> SEGMENT_SHIFT) + 1) << SEGMENT_SHIFT
                continue
            mapped = self._points(position >> SEGMENT_SHIFT)
            if mapped is None:
                break
            first = position & (SEGMENT_POINTS - 1)
            last = min(SEGMENT_POINTS, first + (stop - position), first + block)
            block = min(block * 4, SEGMENT_POINTS)
            raw = memoryview(mapped)[first * POINT.size : last * POINT.size]
            ints = array("q")
            ints.frombytes(raw)
            raw.release()
            if _SWAP:  # pragma: no cover - big-endian hosts only
                ints.byteswap()
            ids = ints[3::4]
            try:
                whole = ids.index(0)  # a slot taken but not written yet: stop before it
            except ValueError:
                whole = len(ids)
            floats = array("d")
            floats.frombytes(ints[: whole * 4].tobytes())
            series.extend(ids[:whole])
            steps.extend(ints[0 : whole * 4 : 4])
            stamps.extend(floats[1::4])
            values.extend(floats[2::4])
            if self.live is None or not self.live.in_memory:  # read: out of this process's memory again
                release_pages(mapped, first * POINT.size, (first + whole) * POINT.size)
            position += whole
            if whole < last - first:
                break
        return position, series, steps, stamps, values


def read_cut(reader: SpoolReader, source: str, journal: int, points: int, *, point_budget: int = SEGMENT_POINTS,
             byte_budget: int = 8 << 20, names: Mapping[int, tuple[str, str]] | None = None,
             marks: Mapping[str, IngestMark] | None = None) -> Cut:
    """The next cut after (``journal``, ``points``). ``marks`` (recovery): per run, what the store already
    holds from this spool, left out."""
    names = reader.names() if names is None else names
    end, series, steps, stamps, values = reader.points(points, points + point_budget)
    found, following, stopped = reader.records(journal, byte_budget)
    if following is not None:
        end = min(end, following)  # points logged after a record left out wait with it
    records = [r for r in found if r.points < end]
    journal_end = found[len(records)].position if len(records) < len(found) else stopped
    cut = Cut(journal=journal_end, points=end)
    n = end - points
    _apply_records(cut, records, reader.path / "staged", marks or {})
    _apply_points(cut, points, series[:n], steps[:n], stamps[:n], values[:n], records, names, marks or {})
    for run_id, write in cut.writes.items():
        if write.metrics:
            write.mark = IngestMark(source, cut.journal, cut.points)
        if run_id in cut.created:
            write.new_keys = frozenset(write.metrics)
    return cut


def _write(cut: Cut, run_id: str) -> RunWrite:
    found = cut.writes.get(run_id)
    if found is None:
        found = cut.writes[run_id] = RunWrite(run_id)
    return found


def _apply_records(cut: Cut, records: list[_Record], staged_dir: Path, marks: Mapping[str, IngestMark]) -> None:
    for record in records:
        if record.kind == Kind.BLOCK:
            continue  # with the points (_apply_points)
        data = json.loads(record.payload)
        if record.kind == Kind.ENV:
            cut.environments[data["fingerprint"]] = data["snapshot"]
            continue
        run_id = data["run"] if record.kind != Kind.CREATE else data["id"]
        mark = marks.get(run_id)
        if mark is not None and record.position < mark.journal:
            continue  # the store has it (recovery)
        write = _write(cut, run_id)
        if record.kind == Kind.CREATE:
            data["artifacts"] = [ArtifactInfo(*a) for a in data.get("artifacts", ())]
            write.create = NewRun(**data)
            cut.created.add(run_id)
        elif record.kind == Kind.PARAMS:
            write.params.update(data["values"])
        elif record.kind == Kind.TAGS:
            write.tags.update(data["values"])
        elif record.kind == Kind.NOTE:
            write.note = data["note"]
        elif record.kind == Kind.CONTEXT:
            write.context.update(data["sections"])
            if data.get("fingerprint"):
                write.env_fingerprint = data["fingerprint"]
        elif record.kind == Kind.ARTIFACTS:
            for path, sha, size, staged in data["items"]:
                write.artifacts.append(ArtifactInfo(path, sha, size))
                if staged:
                    cut.staged.append(Staged(sha, staged_dir / sha))
        elif record.kind == Kind.RESULT:
            write.has_result, write.result = True, data["value"]
        elif record.kind == Kind.END:
            write.end = RunEnd(RunStatus(data["status"]), data["end_time"], data.get("error"))


def _apply_points(cut: Cut, start: int, series: array, steps: array, stamps: array, values: array,
                  records: list[_Record], names: Mapping[int, tuple[str, str]],
                  marks: Mapping[str, IngestMark]) -> None:
    blocks: dict[int, list[tuple[int, Chunk]]] = {}
    for record in records:
        if record.kind != Kind.BLOCK:
            continue
        sid, n = BLOCK_HEAD.unpack_from(record.payload)
        run_id = names.get(sid, ("", ""))[0]
        mark = marks.get(run_id)
        if mark is not None and record.position < mark.journal:
            continue
        body = memoryview(record.payload)[BLOCK_HEAD.size :]
        chunk = Chunk(_ints(body[: 8 * n]), _floats(body[8 * n : 16 * n]), _floats(body[16 * n : 24 * n]))
        blocks.setdefault(sid, []).append((record.points, chunk))
    for sid, (positions, chunk) in _group(start, series, steps, stamps, values).items():
        found = names.get(sid)
        if found is None:
            continue  # not a series of this spool's names (cannot happen short of a damaged file)
        run_id, key = found
        mark = marks.get(run_id)
        if mark is not None and positions[0] < mark.points:
            keep = bisect.bisect_left(positions, mark.points)
            positions = positions[keep:]
            chunk = Chunk(chunk.steps[keep:], chunk.timestamps[keep:], chunk.values[keep:])
        pieces = blocks.pop(sid, None)
        if pieces:
            chunk = _merge(positions, chunk, pieces)
        if len(chunk):
            _write(cut, run_id).metrics[key] = chunk
            cut.series[run_id, key] = sid
    for sid, pieces in blocks.items():  # blocks of series with no single points in this cut
        run_id, key = names.get(sid, ("", ""))
        if not run_id:
            continue
        chunk = _merge([], Chunk.empty(), pieces)
        if len(chunk):
            _write(cut, run_id).metrics[key] = chunk
            cut.series[run_id, key] = sid


def _group(start: int, series: array, steps: array, stamps: array, values: array
           ) -> dict[int, tuple[Sequence[int], Chunk]]:
    """Points by series, in logging order, with their positions (tombstones left out): a range, or an
    array (never a list: a million positions as Python ints would cost ~36 MB)."""
    n = len(series)
    if not n:
        return {}
    distinct = set(series)
    distinct.discard(TOMBSTONE)
    if len(distinct) == 1 and TOMBSTONE not in series:
        (only,) = distinct
        return {only: (range(start, start + n), Chunk(steps, stamps, values))}
    groups: dict[int, array] = {}  # series -> indexes into the arrays
    if len(distinct) <= 8:
        for sid in distinct:
            groups[sid] = array("q", itertools.compress(range(n), map(sid.__eq__, series)))
    else:
        order = sorted(range(n), key=series.__getitem__)  # stable: logging order within a series
        for sid, members in itertools.groupby(order, key=series.__getitem__):
            if sid != TOMBSTONE:
                groups[sid] = array("q", members)
    out: dict[int, tuple[Sequence[int], Chunk]] = {}
    for sid, index in groups.items():
        if len(index) == 1:  # common when many short runs end in one cut: no iterators for one point
            i = index[0]
            out[sid] = (range(start + i, start + i + 1),
                        Chunk(array("q", (steps[i],)), array("d", (stamps[i],)), array("d", (values[i],))))
            continue
        chunk = Chunk(array("q", map(steps.__getitem__, index)), array("d", map(stamps.__getitem__, index)),
                      array("d", map(values.__getitem__, index)))
        out[sid] = (array("q", map(start.__add__, index)) if start else index, chunk)
    return out


def _merge(positions: Sequence[int], singles: Chunk, blocks: list[tuple[int, Chunk]]) -> Chunk:
    """One series' single points (at ``positions``) and blocks (each at a position), in logging order."""
    merged = Chunk.empty()
    taken = 0
    for position, block in sorted(blocks, key=lambda b: b[0]):
        upto = bisect.bisect_left(positions, position)
        if upto > taken:
            merged.extend(Chunk(singles.steps[taken:upto], singles.timestamps[taken:upto], singles.values[taken:upto]))
            taken = upto
        merged.extend(block)
    if taken < len(singles):
        merged.extend(Chunk(singles.steps[taken:], singles.timestamps[taken:], singles.values[taken:]))
    return merged


def _ints(data: memoryview) -> array:
    out = array("q")
    out.frombytes(data)
    if _SWAP:  # pragma: no cover - big-endian hosts only
        out.byteswap()
    return out


def _floats(data: memoryview) -> array:
    out = array("d")
    out.frombytes(data)
    if _SWAP:  # pragma: no cover - big-endian hosts only
        out.byteswap()
    return out


def remove_staged(staged: list[Staged]) -> None:
    for item in staged:
        try:
            os.unlink(item.path)
        except OSError:
            pass
