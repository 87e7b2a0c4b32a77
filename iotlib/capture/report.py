"""What a capture run did: files written (as Azure's ``CaptureFileCreated`` events), counts, breaker, retries.

A :class:`CaptureFile` carries exactly the fields of Azure's ``Microsoft.EventHub.CaptureFileCreated``
event (``fileUrl``, ``partitionId``, ``sizeInBytes``, ``eventCount``, ``firstSequenceNumber``,
``lastSequenceNumber``, ``firstEnqueueTime``, ``lastEnqueueTime``) plus what the writer knows
beside them (the blob name, the window, why the file was closed). The same fields go into each
blob's metadata, so a later run — or any tool — can tell what a file holds without reading it.

A row is written per commit: a file that is *extended* (its window went on after an early commit)
appears again with ``extended=True`` and its new totals; the last row of a name describes the blob.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

CLOSE_REASONS = ("window", "size", "idle", "shutdown", "once", "empty")


@dataclass(frozen=True)
class CaptureFile:
    """One committed Capture file, shaped like Azure's ``CaptureFileCreated`` event data."""

    file_url: str
    name: str
    partition_id: str
    size_in_bytes: int
    event_count: int
    first_sequence_number: int | None
    last_sequence_number: int | None
    first_enqueue_time: datetime | None
    last_enqueue_time: datetime | None
    window_start: datetime
    reason: str  # why it was closed: one of CLOSE_REASONS
    extended: bool = False  # re-committed with more blocks (the window went on after a flush)
    writer: str = ""  # the writer session that committed it
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_event_data(self) -> dict[str, Any]:
        """The ``data`` of Azure's ``CaptureFileCreated`` event for this file (camelCase, ISO 8601 times)."""
        return {
            "fileUrl": self.file_url,
            "partitionId": self.partition_id,
            "sizeInBytes": self.size_in_bytes,
            "eventCount": self.event_count,
            "firstSequenceNumber": -1 if self.first_sequence_number is None else self.first_sequence_number,
            "lastSequenceNumber": -1 if self.last_sequence_number is None else self.last_sequence_number,
            "firstEnqueueTime": _iso(self.first_enqueue_time),
            "lastEnqueueTime": _iso(self.last_enqueue_time),
        }

    def metadata(self) -> dict[str, str]:
        """Blob metadata: the event's fields (but the URL) plus window and writer."""
        data = self.to_event_data()
        data.pop("fileUrl")
        data["windowStart"] = _iso(self.window_start)
        data["writer"] = self.writer
        return {k: str(v) for k, v in data.items()}


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BreakerEvent:
    """A change of a partition's circuit breaker: ``warning``, ``tripped``, ``resumed``, ``cleared``."""

    time: datetime
    partition_id: str
    state: str
    buffered_frames: int
    detail: str = ""


@dataclass
class PartitionStats:
    """Per-partition counts of one run (over every time this writer owned the partition)."""

    partition_id: str
    events: int = 0  # received and written into files
    skipped_stored: int = 0  # received again after a restart but already in a committed blob
    files: int = 0
    bytes: int = 0
    checkpoint: int | None = None  # last checkpointed sequence number
    claims: int = 0
    releases: int = 0
    resets: int = 0  # restarted from the checkpoint after a conflict it could not resolve
    discarded: int = 0  # received but dropped on a handover/reset/timeout (captured again later)
    lag: float = 0.0  # seconds from the latest event's enqueued time to its arrival here
    max_lag: float = 0.0  # the largest such lag seen (a backlog being caught up shows here too)


@dataclass
class CaptureReport:
    """Everything one writer did in one :meth:`~iotlib.capture.CaptureWriter.run`."""

    eventhub: str
    consumer_group: str
    container: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    stopped: datetime | None = None
    first_received: datetime | None = None  # when the first event arrived (start-up excluded)
    files: list[CaptureFile] = field(default_factory=list)
    partitions: dict[str, PartitionStats] = field(default_factory=dict)
    breaker: list[BreakerEvent] = field(default_factory=list)
    retries: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stop_reason: str = ""
    #: Per partition, events received that a stop could not store within ``shutdown_timeout`` (not
    #: checkpointed: the next run captures them again).
    unstored: dict[str, int] = field(default_factory=dict)
    #: Per partition, events a stop stored whose checkpoint it could not write within ``shutdown_timeout``
    #: (storage answered the commit, not the checkpoint): the next run with the same time window finds
    #: them stored and skips them.
    uncheckpointed: dict[str, int] = field(default_factory=dict)
    #: Checkpoints found at start naming events no blob holds (see :mod:`iotlib.capture.audit`).
    checkpoints_ahead: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _t0: float = field(default_factory=time.monotonic, repr=False, compare=False)

    # --- recording (the writer's event loop) -------------------------------------

    def partition(self, pid: str) -> PartitionStats:
        with self._lock:
            if pid not in self.partitions:
                self.partitions[pid] = PartitionStats(pid)
            return self.partitions[pid]

    def add_file(self, f: CaptureFile) -> None:
        with self._lock:
            self.files.append(f)
            stats = self.partitions.setdefault(f.partition_id, PartitionStats(f.partition_id))
            stats.files += 1
            stats.bytes += f.size_in_bytes

    def add_breaker(self, event: BreakerEvent) -> None:
        with self._lock:
            self.breaker.append(event)

    def add_retry(self, what: str) -> None:
        with self._lock:
            self.retries[what] = self.retries.get(what, 0) + 1

    def add_error(self, message: str) -> None:
        with self._lock:
            if message not in self.errors:
                self.errors.append(message)

    # --- reading ------------------------------------------------------------------

    @property
    def events(self) -> int:
        """Events written into files by this run."""
        return sum(p.events for p in self.partitions.values())

    @property
    def seconds(self) -> float:
        end = self.stopped.timestamp() if self.stopped else time.time()
        return max(0.0, end - self.started.timestamp())

    def events_per_second(self) -> float:
        """Events stored per second, from the first event received to the last file committed."""
        with self._lock:
            if not self.files or self.first_received is None:
                return 0.0
            last = max(f.created for f in self.files)
        span = (last - self.first_received).total_seconds()
        return self.events / span if span > 0 else 0.0

    def files_frame(self) -> pl.DataFrame:
        """One row per file written, with the ``CaptureFileCreated`` fields in snake_case."""
        with self._lock:
            rows = [asdict(f) for f in self.files]
        schema = {
            "file_url": pl.String(), "name": pl.String(), "partition_id": pl.String(), "size_in_bytes": pl.Int64(),
            "event_count": pl.Int64(), "first_sequence_number": pl.Int64(), "last_sequence_number": pl.Int64(),
            "first_enqueue_time": pl.Datetime("us", "UTC"), "last_enqueue_time": pl.Datetime("us", "UTC"),
            "window_start": pl.Datetime("us", "UTC"), "reason": pl.String(), "extended": pl.Boolean(),
            "writer": pl.String(), "created": pl.Datetime("us", "UTC"),
        }  # fmt: skip
        return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)

    def partitions_frame(self) -> pl.DataFrame:
        with self._lock:
            rows = [asdict(p) for p in sorted(self.partitions.values(), key=lambda p: _pid_key(p.partition_id))]
        return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"partition_id": pl.String})

    def breaker_frame(self) -> pl.DataFrame:
        with self._lock:
            rows = [asdict(b) for b in self.breaker]
        schema = {"time": pl.Datetime("us", "UTC"), "partition_id": pl.String(), "state": pl.String(),
                  "buffered_frames": pl.Int64(), "detail": pl.String()}  # fmt: skip
        return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)

    def summary(self) -> str:
        """A few lines: events, files, bytes, rate; per partition; breaker and retries if any."""
        secs = self.seconds
        nbytes = sum(f.size_in_bytes for f in self.files)
        lines = [
            f"capture of {self.eventhub!r} ({self.consumer_group}) into container {self.container!r}: "
            f"{self.events:,} events in {len(self.files)} files ({nbytes / 1e6:,.2f} MB) in {secs:,.1f} s"
            + (
                f" ({self.events_per_second():,.0f} events/s from the first event to the last commit)"
                if self.events_per_second()
                else ""
            )
            + (f"; stopped: {self.stop_reason}" if self.stop_reason else "")
        ]
        for p in sorted(self.partitions.values(), key=lambda p: _pid_key(p.partition_id)):
            extra = "".join(
                f", {label} {value:,}"
                for label, value in (
                    ("already stored", p.skipped_stored),
                    ("resets", p.resets),
                    ("discarded", p.discarded),
                )
                if value
            )
            ckpt = "-" if p.checkpoint is None else f"{p.checkpoint:,}"
            lines.append(
                f"  partition {p.partition_id}: {p.events:,} events, {p.files} files, checkpoint {ckpt}{extra}"
            )
        if self.breaker:
            counts: dict[str, int] = {}
            for b in self.breaker:
                counts[b.state] = counts.get(b.state, 0) + 1
            lines.append("  breaker: " + ", ".join(f"{k} {v}x" for k, v in counts.items()))
        if self.retries:
            lines.append("  storage retries: " + ", ".join(f"{k} {v}" for k, v in sorted(self.retries.items())))
        if self.unstored:
            lines.append(
                f"  not stored: {sum(self.unstored.values()):,} events received when it stopped ({_per(self.unstored)})"
                "; not checkpointed either, so the next run captures them again"
            )
        if self.uncheckpointed:
            lines.append(
                f"  stored, checkpoint not written: {sum(self.uncheckpointed.values()):,} events "
                f"({_per(self.uncheckpointed)}); the next run with the same time window finds them stored and "
                "skips them"
            )
        for a in self.checkpoints_ahead:
            lines.append(f"  warning: {a} (not captured again; see --reset-checkpoints)")
        for e in self.errors:
            lines.append(f"  error: {e}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _pid_key(pid: str) -> tuple[int, str]:
    return (int(pid), pid) if pid.isdigit() else (1 << 30, pid)


def _per(counts: dict[str, int]) -> str:
    return ", ".join(f"partition {p}: {n:,}" for p, n in sorted(counts.items(), key=lambda kv: _pid_key(kv[0])))
