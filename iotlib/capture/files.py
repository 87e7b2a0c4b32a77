"""Capture files as blob blocks: the file being written, and files already in the container.

A file being written is a block blob under construction: the Avro header is its first block,
each Avro data block ("frame", about ``frame_size`` bytes of records) a further block, and the
block list is committed when the window closes. Frames are cut by size alone, never by how
events happened to arrive, so the same events always give the same bytes (with the sync
marker derived from the blob name).

Each file carries the MD5 of its bytes, hashed as its blocks are staged (in order), and the commit
stores it as the blob's ``Content-MD5``: Avro's null codec has no checksum, so this is what lets a
reader tell a blob's bytes from the ones committed. A file that extends a committed one continues
that one's hash (a copy of its state), or, for a blob of an earlier run, re-reads it once.

Block ids are ``<session><counter>``: 8 hex digits naming the writer session (one per
partition claim) and an 8-digit counter, so every id has the same length (Azure requires it)
and two writers racing on one blob never mix their uncommitted blocks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotlib.capture.windows import Window

BLOCK_ID_LENGTH = 16


def block_id(session: str, counter: int) -> str:
    return f"{session}{counter:08d}"


def _ms_time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass
class ExistingFile:
    """A Capture blob already in the container, as its listing (properties + metadata) shows it."""

    name: str
    etag: str
    size: int
    first_seq: int | None
    last_seq: int | None
    count: int | None
    first_ms: int | None = None
    last_ms: int | None = None
    committed_ids: list[str] | None = None  # filled in when the writer extends it
    content_md5: bytes | None = None  # the Content-MD5 stored with it, if any
    md5: Any = None  # the hash state of its bytes, filled in when the writer extends it

    @classmethod
    def from_properties(
        cls, name: str, etag: str, size: int, metadata: dict[str, str] | None, content_md5: bytes | None = None
    ) -> ExistingFile:
        meta = {k.lower(): v for k, v in (metadata or {}).items()}

        def number(key: str) -> int | None:
            try:
                value = int(meta[key])
            except (KeyError, ValueError):
                return None
            return value

        def millis(key: str) -> int | None:
            text = meta.get(key, "")
            if not text:
                return None
            try:
                t = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return int(t.timestamp() * 1000)

        first, last, count = number("firstsequencenumber"), number("lastsequencenumber"), number("eventcount")
        if first is not None and first < 0:
            first = last = None
        return cls(
            name, etag, size, first, last, count, millis("firstenqueuetime"), millis("lastenqueuetime"),
            content_md5=bytes(content_md5) if content_md5 else None,
        )  # fmt: skip

    @property
    def known(self) -> bool:
        """True when its metadata says which events it holds, consistently (a contiguous run)."""
        if self.count == 0:
            return True
        return (
            self.first_seq is not None
            and self.last_seq is not None
            and self.count is not None
            and self.count == self.last_seq - self.first_seq + 1
        )

    def contains(self, seq: int) -> bool:
        first, last = self.first_seq, self.last_seq  # a file may hold event 0 alone: 0 is no missing number
        return self.known and first is not None and last is not None and first <= seq <= last


@dataclass
class OpenFile:
    """The file a partition is writing: its blocks so far and what its events span."""

    name: str
    url: str
    window: Window
    name_second: int  # the time in its name, seconds since the epoch
    sync_marker: bytes
    header_size: int
    extends: ExistingFile | OpenFile | None = None  # a committed file this one re-commits with more blocks
    block_ids: list[str] = field(default_factory=list)  # blocks of this session, in order
    size: int = 0  # bytes of the blob once committed (existing + header + closed frames)
    count: int = 0  # events in it, including those of the file it extends
    first_seq: int | None = None
    last_seq: int | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    last_event: Any = None  # the EventData to checkpoint once committed
    cut_for_size: bool = False
    md5: Any = field(default_factory=hashlib.md5)  # of the bytes staged so far, in order (None: unknown)
    content_md5: bytes | None = None  # the digest once the file is closed, committed as Content-MD5
    # after commit
    committed: bool = False
    stored: bool = False  # its events are in storage (committed by this writer, or found there)
    etag: str | None = None
    # the frame being filled
    _parts: list[bytes] = field(default_factory=list)
    _part_bytes: int = 0

    @property
    def pending_bytes(self) -> int:
        return self._part_bytes

    @property
    def new_events(self) -> int:
        """Events this file adds to the one it extends (all of them for a new file)."""
        before = (self.extends.count or 0) if self.extends is not None else 0
        return self.count - before

    def committed_ids(self) -> list[str]:
        """Block ids of the file this one extends (already committed), in order."""
        if self.extends is None:
            return []
        if isinstance(self.extends, OpenFile):
            return self.extends.committed_ids() + self.extends.block_ids
        return list(self.extends.committed_ids or [])

    def block_count(self) -> int:
        return len(self.committed_ids()) + len(self.block_ids) + (1 if self._parts else 0)

    def full(self, size_window: int, max_blocks: int) -> bool:
        return self.size + self._part_bytes >= size_window or self.block_count() >= max_blocks - 1

    def add(self, seq: int, ms: int, record: bytes, event: Any) -> None:
        if self.first_seq is None:
            self.first_seq, self.first_ms = seq, ms
        self.last_seq, self.last_ms, self.last_event = seq, ms, event
        self.count += 1
        self._parts.append(record)
        self._part_bytes += len(record)

    def take_frame(self) -> tuple[bytes, int] | None:
        """The records of the frame being filled (joined) and their count; None when it is empty."""
        if not self._parts:
            return None
        data, count = b"".join(self._parts), len(self._parts)
        self._parts, self._part_bytes = [], 0
        return data, count

    def first_enqueue_time(self) -> datetime | None:
        return _ms_time(self.first_ms)

    def last_enqueue_time(self) -> datetime | None:
        return _ms_time(self.last_ms)
