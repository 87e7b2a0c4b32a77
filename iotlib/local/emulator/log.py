"""A durable, append-only partition log made of segment files.

Each partition is a folder of segments named ``<first sequence>-<first offset>.seg``.
A segment is a run of records::

    u32 length      bytes after this field
    u32 crc32       of every byte after this field
    u64 sequence    i64 enqueued time (ms)
    u32 ma_pos      u32 ma_end     i32 entries_pos   u32 entries_count
    u16 flags       u16 key_len    key (UTF-8)       event (AMQP message as received)

The ``ma_*`` fields locate the event's message-annotations section (see
:mod:`iotlib.local.emulator.message`), so delivery splices the service annotations
in without decoding the event. An event's offset is its byte position in the
partition (segment base offset + position in the file), as on Azure.

Durability: :meth:`PartitionLog.commit` writes the buffered records with one
``write`` per partition before the sender is told ``accepted`` (they survive
``kill -9``); with ``fsync`` the sender also waits for :meth:`PartitionLog.sync`
(``fdatasync``) and new segment names are synced into their folder (they
survive power loss). On open, the last segment is scanned and a torn
tail (short or corrupt record) is cut off, so no half record is ever served.
Retention deletes whole sealed segments, oldest first.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from zlib import crc32

from iotlib.errors import EmulatorError
from iotlib.local.emulator.message import Layout

_LOG = logging.getLogger("iotlib.local.emulator.log")

PREFIX = struct.Struct(">II")
TAIL = struct.Struct(">QqIIiIHH")
HEADER = struct.Struct(">IIQqIIiIHH")
HEADER_SIZE = HEADER.size
INDEX_EVERY = 64  # one sparse-index entry per this many records
FLAG_USER_DELIVERY_ANNOTATIONS = 0x1


def _pread_fallback(fd: int, n: int, pos: int) -> bytes:
    """``os.pread`` for systems without it (Windows); the log is used from one thread."""
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, n)


pread = getattr(os, "pread", _pread_fallback)


class LogCorruptError(EmulatorError):
    """A sealed segment holds bytes that are not whole records."""


@dataclass(eq=False)
class Segment:
    """One segment file; its sparse index is built when first needed."""

    path: Path
    base_seq: int
    base_offset: int
    size: int = 0
    count: int = 0
    first_time: int | None = None
    last_time: int | None = None
    fd: int | None = None
    deleted: bool = False
    indexed: bool = False
    idx_seq: array = field(default_factory=lambda: array("q"))
    idx_pos: array = field(default_factory=lambda: array("q"))
    idx_time: array = field(default_factory=lambda: array("q"))

    @staticmethod
    def name(base_seq: int, base_offset: int) -> str:
        return f"{base_seq:020d}-{base_offset:020d}.seg"

    def open_fd(self) -> int:
        if self.fd is None:
            flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
            self.fd = os.open(self.path, flags)
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Record(NamedTuple):
    """One stored event as read back: ``key`` and ``body`` are views of the read buffer."""

    seq: int
    offset: int
    enqueued_ms: int
    key: memoryview
    body: memoryview
    layout: Layout


@dataclass
class Cursor:
    """Where a reader stands: the next record to read."""

    segment: Segment
    pos: int
    seq: int


class PartitionLog:
    """The event log of one partition."""

    def __init__(self, directory: Path, *, segment_bytes: int = 16 * 1024 * 1024, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.segments: list[Segment] = []
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        self.next_seq = 0
        self.last_offset = -1
        self.last_time = 0
        self._open()

    # --- state -------------------------------------------------------------------

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def begin_seq(self) -> int:
        return self.segments[0].base_seq

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def is_empty(self) -> bool:
        return self.next_seq == self.begin_seq

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    # --- opening and recovery ------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found = []
        for path in self.directory.glob("*.seg"):
            try:
                seq_text, off_text = path.stem.split("-")
                found.append(Segment(path, int(seq_text), int(off_text), size=path.stat().st_size))
            except ValueError:
                _LOG.warning("ignoring %s: not a segment name iotlib writes", path)
        found.sort(key=lambda s: s.base_seq)
        # A crash right after rolling may leave an empty last segment: drop it.
        while len(found) > 1 and found[-1].size == 0:
            found.pop().path.unlink()
        if not found:
            seg = Segment(self.directory / Segment.name(0, 0), 0, 0)
            seg.path.touch()
            seg.indexed = True
            found = [seg]
            if self.fsync:
                self._sync_directory()
        self.segments = found
        for i, seg in enumerate(found[:-1]):
            seg.first_time = self._first_time(seg)
            seg.count = found[i + 1].base_seq - seg.base_seq
        self._recover_active()

    def _first_time(self, seg: Segment) -> int | None:
        fd = seg.open_fd()
        head = pread(fd, HEADER_SIZE, 0)
        if len(head) < HEADER_SIZE:
            return None
        return HEADER.unpack(head)[3]

    def _recover_active(self) -> None:
        seg = self.active
        valid, last = self._scan(seg, verify=True)
        if valid < seg.size:
            _LOG.warning("%s: cutting a torn tail of %d bytes after the last whole record", seg.path, seg.size - valid)
            os.truncate(seg.path, valid)
            seg.size = valid
        if last is not None:
            seq, pos, t = last
            self.next_seq = seq + 1
            self.last_offset = seg.base_offset + pos
            self.last_time = t
        else:
            self.next_seq = seg.base_seq
            if len(self.segments) > 1:  # empty active after a roll: last record is in the previous one
                prev = self.segments[-2]
                self._ensure_index(prev)
                self.last_offset = prev.base_offset + self._last_pos(prev)
                self.last_time = prev.last_time or 0

    def _scan(self, seg: Segment, *, verify: bool) -> tuple[int, tuple[int, int, int] | None]:
        """Index ``seg`` from its bytes; return the end of its whole records and its last (seq, pos, time)."""
        fd = seg.open_fd()
        seg.idx_seq, seg.idx_pos, seg.idx_time = array("q"), array("q"), array("q")
        pos = 0
        count = 0
        last = None
        chunk_start = 0
        data = b""
        expected_seq = seg.base_seq
        while True:
            off = pos - chunk_start
            if off + HEADER_SIZE > len(data):
                chunk_start = pos
                data = pread(fd, max(1 << 20, HEADER_SIZE), pos)
                off = 0
                if len(data) < HEADER_SIZE:
                    break
            length, crc, seq, t = HEADER.unpack_from(data, off)[:4]
            end = off + 4 + length
            if end > len(data):
                chunk_start = pos
                data = pread(fd, 4 + length, pos)
                off, end = 0, 4 + length
                if len(data) < end:
                    break  # short record: torn tail
            if length < HEADER_SIZE - 4 or seq != expected_seq:
                break
            if verify and crc32(memoryview(data)[off + 8 : end]) != crc:
                break
            if count % INDEX_EVERY == 0:
                seg.idx_seq.append(seq)
                seg.idx_pos.append(pos)
                seg.idx_time.append(t)
            if seg.first_time is None:
                seg.first_time = t
            seg.last_time = t
            last = (seq, pos, t)
            count += 1
            expected_seq += 1
            pos += 4 + length
        seg.count = count
        seg.indexed = True
        return pos, last

    def _ensure_index(self, seg: Segment) -> None:
        if not seg.indexed:
            end, _ = self._scan(seg, verify=False)
            if end != seg.size:
                raise LogCorruptError(f"{seg.path} has {seg.size - end} bytes that are not whole records")

    def _last_pos(self, seg: Segment) -> int:
        """Position of the last record of an indexed segment."""
        pos = seg.idx_pos[-1]
        fd = seg.open_fd()
        last = pos
        while pos < seg.size:
            length = PREFIX.unpack(pread(fd, 8, pos))[0]
            last = pos
            pos += 4 + length
        return last

    # --- appending -----------------------------------------------------------------

    def append(self, events: list[tuple[bytes | memoryview, Layout, bytes]], now_ms: int) -> tuple[int, int]:
        """Buffer ``events`` (body, layout, partition key) for the next :meth:`commit`.

        Returns the first and last sequence numbers given to them.
        """
        t = now_ms if now_ms > self.last_time else self.last_time
        seq = first = self.next_seq
        seg = self.active
        pending = self._pending
        tail_pack = TAIL.pack
        prefix_pack = PREFIX.pack
        for body, (ma_pos, ma_end, ent_pos, ent_count, flags), key in events:
            key_len = len(key)
            size = HEADER_SIZE + key_len + len(body)
            where = seg.size + self._pending_bytes
            if where + size > self.segment_bytes and where > 0:
                self._roll()
                seg = self.active
                where = 0
            tail = tail_pack(seq, t, ma_pos, ma_end, ent_pos, ent_count, flags, key_len)
            pending.append(prefix_pack(size - 4, crc32(body, crc32(key, crc32(tail)))))
            pending.append(tail)
            if key_len:
                pending.append(key)
            pending.append(body)
            if seg.count % INDEX_EVERY == 0:
                seg.idx_seq.append(seq)
                seg.idx_pos.append(where)
                seg.idx_time.append(t)
            seg.count += 1
            if seg.first_time is None:
                seg.first_time = t
            seg.last_time = t
            self._pending_bytes += size
            self.last_offset = seg.base_offset + where
            seq += 1
        self.next_seq = seq
        self.last_time = t
        return first, seq - 1

    def commit(self) -> None:
        """Write every buffered record to the active segment (one write)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        fd = self.active.open_fd()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self.active.size += len(data)

    def sync(self) -> None:
        """Wait until the active segment's data is on disk (called off the event loop)."""
        fd = self.active.fd
        if fd is not None:
            os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)

    def _roll(self) -> None:
        self.commit()
        old = self.active
        if self.fsync and old.fd is not None:
            os.fsync(old.fd)
        new = Segment(
            self.directory / Segment.name(self.next_seq_pending(), old.base_offset + old.size),
            self.next_seq_pending(),
            old.base_offset + old.size,
        )
        new.path.touch()
        new.indexed = True
        self.segments.append(new)
        if self.fsync:
            self._sync_directory()

    def _sync_directory(self) -> None:
        """Make a new segment's name durable too (power loss may otherwise forget the file)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # Windows cannot open a folder; its file system journals names itself
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def next_seq_pending(self) -> int:
        seg = self.active
        return seg.base_seq + seg.count

    # --- locating ------------------------------------------------------------------

    def end_cursor(self) -> Cursor:
        seg = self.active
        return Cursor(seg, seg.size, self.next_seq)

    def begin_cursor(self) -> Cursor:
        seg = self.segments[0]
        return Cursor(seg, 0, seg.base_seq)

    def _segment_for(self, key_list: list[int], value: int) -> int:
        i = bisect.bisect_right(key_list, value) - 1
        return max(i, 0)

    def locate_seq(self, seq: int) -> Cursor:
        """Cursor at the first record with sequence >= ``seq`` (clamped to the log)."""
        if seq <= self.begin_seq:
            return self.begin_cursor()
        if seq >= self.next_seq:
            return self.end_cursor()
        seg = self.segments[self._segment_for([s.base_seq for s in self.segments], seq)]
        self._ensure_index(seg)
        i = bisect.bisect_right(seg.idx_seq, seq) - 1
        return self._walk(seg, seg.idx_pos[i], seg.idx_seq[i], lambda s, p, t: s >= seq)

    def locate_offset(self, offset: int, inclusive: bool) -> Cursor:
        """Cursor at the first record whose offset is > (or >=) ``offset``."""
        if offset < 0 or offset < self.segments[0].base_offset:
            return self.begin_cursor()
        if offset > self.last_offset:
            return self.end_cursor()
        seg = self.segments[self._segment_for([s.base_offset for s in self.segments], offset)]
        self._ensure_index(seg)
        rel = offset - seg.base_offset
        i = max(bisect.bisect_right(seg.idx_pos, rel) - 1, 0)
        if inclusive:
            return self._walk(seg, seg.idx_pos[i], seg.idx_seq[i], lambda s, p, t: p >= rel)
        return self._walk(seg, seg.idx_pos[i], seg.idx_seq[i], lambda s, p, t: p > rel)

    def locate_time(self, ms: int, inclusive: bool) -> Cursor:
        """Cursor at the first record enqueued after (or at) ``ms``."""
        firsts = [s.first_time if s.first_time is not None else 1 << 62 for s in self.segments]
        # The last segment whose first record is before ``ms``: every record at or after ``ms`` is
        # in it or later. None is (``ms`` at or before the first record): walk from the start all
        # the same, since an exclusive start must still skip records enqueued exactly at ``ms``.
        i = max(bisect.bisect_left(firsts, ms) - 1, 0)
        seg = self.segments[i]
        self._ensure_index(seg)
        pos, seq = 0, seg.base_seq
        if seg.idx_time:
            j = max(bisect.bisect_left(seg.idx_time, ms) - 1, 0)
            pos, seq = seg.idx_pos[j], seg.idx_seq[j]
        if inclusive:
            return self._walk(seg, pos, seq, lambda s, p, t: t >= ms)
        return self._walk(seg, pos, seq, lambda s, p, t: t > ms)

    def _walk(self, seg: Segment, pos: int, seq: int, found: Callable[[int, int, int], bool]) -> Cursor:
        """From (pos, seq) in ``seg``, step record by record until ``found(seq, pos, time)``."""
        fd = seg.open_fd()
        while True:
            if pos >= seg.size:
                k = self.segments.index(seg)
                if k + 1 >= len(self.segments):
                    return Cursor(seg, pos, seq)
                seg = self.segments[k + 1]
                fd, pos, seq = seg.open_fd(), 0, seg.base_seq
                continue
            head = pread(fd, HEADER_SIZE, pos)
            length, _, rseq, t = HEADER.unpack(head)[:4]
            if found(rseq, pos, t):
                return Cursor(seg, pos, rseq)
            pos += 4 + length
            seq = rseq + 1

    # --- reading -------------------------------------------------------------------

    def read(self, cursor: Cursor, max_records: int, max_bytes: int = 1 << 20) -> list[Record]:
        """Up to ``max_records`` records from ``cursor`` on (advancing it)."""
        seg = cursor.segment
        if seg.deleted:  # retention removed it under the reader: go to the oldest kept
            moved = self.locate_seq(cursor.seq)
            cursor.segment, cursor.pos, cursor.seq = moved.segment, moved.pos, moved.seq
            seg = cursor.segment
        if cursor.pos >= seg.size:
            if seg is self.active:
                return []
            k = self.segments.index(seg)
            seg = self.segments[k + 1]
            cursor.segment, cursor.pos, cursor.seq = seg, 0, seg.base_seq
            if seg.size == 0:
                return []
        available = seg.size - cursor.pos
        data = pread(seg.open_fd(), min(available, max_bytes), cursor.pos)
        if len(data) >= 4:
            need = 4 + PREFIX.unpack_from(data, 0)[0]
            if need > len(data):  # a record larger than max_bytes: read it whole
                data = pread(seg.open_fd(), need, cursor.pos)
        view = memoryview(data)
        out: list[Record] = []
        off = 0
        n = len(data)
        base = seg.base_offset + cursor.pos
        unpack = HEADER.unpack_from
        while off + HEADER_SIZE <= n and len(out) < max_records:
            length, _, seq, t, ma_pos, ma_end, ent_pos, ent_count, flags, key_len = unpack(data, off)
            end = off + 4 + length
            if end > n:
                break
            kstart = off + HEADER_SIZE
            bstart = kstart + key_len
            out.append(
                Record(
                    seq,
                    base + off,
                    t,
                    view[kstart:bstart],
                    view[bstart:end],
                    Layout(ma_pos, ma_end, ent_pos, ent_count, flags),
                )
            )
            off = end
        cursor.pos += off
        if out:
            cursor.seq = out[-1].seq + 1
        return out

    def has_data(self, cursor: Cursor) -> bool:
        return cursor.seq < self.next_seq

    # --- retention -----------------------------------------------------------------

    def enforce_retention(self, *, now_ms: int, max_age_ms: int | None, max_bytes: int | None) -> int:
        """Delete sealed segments past the age or size limit; return how many."""
        deleted = 0
        while len(self.segments) > 1:
            oldest, following = self.segments[0], self.segments[1]
            too_old = (
                max_age_ms is not None
                and following.first_time is not None
                and following.first_time < now_ms - max_age_ms
            )
            too_big = max_bytes is not None and self.size_bytes > max_bytes
            if not (too_old or too_big):
                break
            self.segments.pop(0)
            oldest.deleted = True
            oldest.close()
            try:
                oldest.path.unlink()
            except FileNotFoundError:
                pass
            deleted += 1
        return deleted

    def close(self) -> None:
        self.commit()
        for seg in self.segments:
            seg.close()
