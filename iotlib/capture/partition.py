"""One partition's capture while this writer owns it: windows → files → blocks → commit → checkpoint.

The receive callback (the client calls it per batch) encodes events into the open file's frames
and queues work for the partition's storage task, which does it strictly in order: stage a
block, commit a file's block list (with its metadata), checkpoint the file's last event. So a
checkpoint only ever follows the commit that stored the events before it.

**Which file an event goes to.** Its window is fixed by its enqueued time (a grid, see
:mod:`~iotlib.capture.windows`). A window's first file is named by the window's start. A file
that reaches the size window is cut; the next event starts a continuation in the same window,
named by its own enqueued second — but only once that second is later than the current file's
name, so names stay unique and never later than the events they hold (readers prune on it).
When a window goes on after its file was committed early (idle grace, shutdown, ``once``, a
restart), the file is *extended*: committed again with its old blocks plus new ones, so a
window does not splinter into many small files.

**After a claim** (start, restart, handover) the writer does not know what earlier writers
stored beyond the checkpoint. For the first events it lists the window's blobs and reads their
metadata (first/last sequence number, count): events a committed blob already holds are
skipped (the crash-between-commit-and-checkpoint case: no second copy), and the window's last
file is extended when it ends right before the next event. A blob holding other events is
never overwritten: commits are conditional (``If-None-Match: *`` for a new blob, ``If-Match``
its ETag to extend or replace), and on a conflict the writer re-reads the blob: if it already
holds our events we are done, if it holds a subset of ours we replace it, otherwise the
partition restarts from its checkpoint (and lists again).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from azure.storage.blob import BlobBlock, BlockState, ContentSettings

from iotlib.capture import format as cf
from iotlib.capture.breaker import CircuitBreaker
from iotlib.capture.files import BLOCK_ID_LENGTH, ExistingFile, OpenFile, block_id
from iotlib.capture.options import MAX_BLOCKS, CaptureOptions
from iotlib.capture.records import RecordEncoder
from iotlib.capture.report import CaptureFile, CaptureReport
from iotlib.capture.storage import BlobMissing, Retrier, StorageConflict, StorageFatal, StorageSignal
from iotlib.capture.windows import Window, utc_time
from iotlib.errors import CaptureError
from iotlib.hub.partitions import EMPTY

# How far before its window a file may be named (readers look back MAX_WINDOW): naming and a restart's look agree.
LOOKBACK = int(cf.MAX_WINDOW.total_seconds()) - 1

_LOG = logging.getLogger("iotlib.capture")


class Run(Protocol):
    """What a partition needs of the run it belongs to (:class:`iotlib.capture.run.CaptureRun`)."""

    options: CaptureOptions
    container: Any  # azure.storage.blob.aio.ContainerClient
    report: CaptureReport
    once: bool
    targets: dict[str, int]
    is_stopping: bool

    @property
    def failed(self) -> bool: ...
    def fail(self, exc: BaseException) -> None: ...
    def on_file(self, row: CaptureFile) -> None: ...
    def report_once(self, key: str) -> bool: ...


class _PartitionReset(Exception):  # noqa: N818 - control flow, not an error a user meets
    """The partition must restart from its checkpoint (raised in the receive callback)."""


@dataclass
class _Stage:
    file: OpenFile
    block_id: str
    data: bytes


@dataclass
class _Commit:
    file: OpenFile
    reason: str


@dataclass
class _Checkpoint:
    event: Any
    seq: int


@dataclass
class _Empty:
    window: Window


_STOP = object()


class PartitionCapture:
    """The state of one owned partition: the open file, the storage task and its queue, the breaker."""

    def __init__(self, run: Run, partition_id: str, context: Any) -> None:
        self.run = run
        self.opts = run.options
        self.pid = partition_id
        self.context = context
        self.session = secrets.token_hex(4)
        self.where = f"partition {partition_id}"
        self.stats = run.report.partition(partition_id)
        self.stats.claims += 1
        self.encoder = RecordEncoder()
        self.retrier = Retrier(
            where=self.where,
            backoff=self.opts.retry_backoff,
            hard_error_grace=self.opts.hard_error_grace,
            on_retry=run.report.add_retry,
            report_once=run.report_once,
        )
        self.breaker = CircuitBreaker(
            partition_id,
            warn=self.opts.breaker_warn,
            trip=self.opts.breaker_trip,
            stall=self.opts.breaker_stall,
            record=run.report.add_breaker,
            last_error=lambda: self.retrier.last_error,
        )
        self.counter = 0
        self.sure = False  # True once no earlier writer's file can lie ahead of us
        self.skip_upto = -1  # events up to this sequence number are already in committed blobs
        self.skipped_last: Any = None  # last skipped event, to checkpoint
        self.open: OpenFile | None = None
        self.closed: list[OpenFile] = []  # files of this session in the current window (names taken)
        # the latest window accounted for (events or an empty file); empty windows are counted
        # from the claim on, not before
        self.last_window: Window | None = (
            None if self.opts.skip_empty_archives else Window.of(int(time.time() * 1000), self.opts.time_window)
        )
        self.received_seq: int | None = None
        self.checkpointed_seq: int | None = None
        self.last_event_at = time.monotonic()
        self.caught_up = False
        self.broken: str | None = None
        self.draining = False  # a stop is flushing: received events are left for the next run
        self.stopped = False
        self.in_flight: Any = None  # the storage operation under way
        self.uncheckpointed = 0  # at shutdown: events stored whose checkpoint was not written in time
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.create_task(self._storage_loop(), name=f"capture-{partition_id}")

    # ------------------------------------------------------------------ receive side

    async def on_batch(self, events: list[Any]) -> None:
        """The receive callback's work for one batch (possibly empty: a quiet ``max_wait_time``)."""
        if self.broken:
            raise _PartitionReset(f"{self.where}: {self.broken}")
        if self.draining:
            return  # not stored, so not checkpointed: the next run reads them again
        if not events:
            await self._tick()
            return
        self.caught_up = False
        self.last_event_at = time.monotonic()
        tw = self.opts.time_window
        for event in events:
            seq, ms, record = self.encoder.encode(event)
            self.received_seq = seq
            if seq <= self.skip_upto:
                self.stats.skipped_stored += 1
                self.skipped_last = event
                continue
            window = Window.of(ms, tw)
            f = self.open
            if f is not None:
                if window != f.window:
                    self._close("window")
                    f = None
                elif f.full(self.opts.size_window, MAX_BLOCKS) and ms // 1000 > f.name_second:
                    self._close("size")
                    f = None
            if f is None:
                if self.skipped_last is not None:
                    self._checkpoint_skipped()
                f = await self._open(seq, ms, window)
                if self.draining:
                    return
                if f is None:  # already stored
                    self.stats.skipped_stored += 1
                    self.skipped_last = event
                    continue
            f.add(seq, ms, record, event)
            self.stats.events += 1
            if f.pending_bytes >= self.opts.frame_size:
                self._stage_frame(f)
                if self.breaker.buffered >= self.opts.breaker_trip:  # stall mid-batch: memory stays bounded
                    await self.breaker.wait_if_tripped(self._stalled_for_good)
                    if self.draining:
                        return
        if self.skipped_last is not None and self.open is None:
            self._checkpoint_skipped()
        self.stats.lag = max(0.0, time.time() - ms / 1000)
        self.stats.max_lag = max(self.stats.max_lag, self.stats.lag)
        target = self.run.targets.get(self.pid, EMPTY)
        if self.run.once and target > EMPTY and self.received_seq is not None and self.received_seq >= target:
            if self.open is not None:
                self._close("once")
        await self.breaker.wait_if_tripped(self._stalled_for_good)

    def _stalled_for_good(self) -> bool:
        return self.run.is_stopping or self.run.failed or self.broken is not None or self.draining

    async def _tick(self) -> None:
        """No event for ``max_wait_time``: close a window whose time is over, write empty windows."""
        self.caught_up = True
        now = time.time()
        f = self.open
        quiet = time.monotonic() - self.last_event_at
        if f is not None:
            target = self.run.targets.get(self.pid, EMPTY)
            if self.run.once and (self.received_seq if self.received_seq is not None else EMPTY) >= target:
                self._close("once")
            elif now >= f.window.end + self.opts.grace and quiet >= self.opts.grace:
                self._close("idle")
        if self.skipped_last is not None and self.open is None:
            self._checkpoint_skipped()
        if not self.opts.skip_empty_archives and self.open is None:
            # Windows that ended more than `grace` ago without an event are empty.
            over = Window.of(int((now - self.opts.grace) * 1000), self.opts.time_window)
            self._empty_windows_before(over)
            if self.last_window is not None and over.start > self.last_window.start:
                self.last_window = Window(over.start - over.length, over.length)

    def _empty_windows_before(self, window: Window) -> None:
        """Header-only files (``skip_empty_archives=False``) for windows after the last one seen, before ``window``."""
        if self.last_window is None:
            return
        w = self.last_window.next()
        while w.start < window.start:
            self.queue.put_nowait(_Empty(w))
            self.breaker.add()
            w = w.next()

    def _checkpoint_skipped(self) -> None:
        event, self.skipped_last = self.skipped_last, None
        seq = int(event.sequence_number)
        self.queue.put_nowait(_Checkpoint(event, seq))

    async def _open(self, seq: int, ms: int, window: Window) -> OpenFile | None:
        """The file the event ``seq`` starts, or None when a committed blob already holds it."""
        if self.last_window is None or window.start > self.last_window.start:
            if not self.opts.skip_empty_archives:
                self._empty_windows_before(window)
            self.last_window = window
        self.closed = [c for c in self.closed if c.window == window]
        if not self.sure:
            return await self._open_after_claim(seq, ms, window)
        last = self.closed[-1] if self.closed else None
        if last is not None and last.window == window:
            if last.last_seq == seq - 1 and self._can_extend(last, ms):
                return self._new_file(last.name, window, extends=last)
            name = await self._free_name(window, ms, {c.name for c in self.closed}, continuation=True)
            return self._new_file(name, window)
        return self._new_file(self._name(window.start), window)

    def _can_extend(self, f: OpenFile | ExistingFile, ms: int) -> bool:
        """A file may take more events unless it was cut for size (or holds too many blocks)."""
        if isinstance(f, OpenFile):
            if len(f.committed_ids()) + len(f.block_ids) >= MAX_BLOCKS - 2:
                return False
            return not f.cut_for_size or ms // 1000 == f.name_second
        if len(f.committed_ids or []) >= MAX_BLOCKS - 2:
            return False
        return f.size < self.opts.size_window

    async def _open_after_claim(self, seq: int, ms: int, window: Window) -> OpenFile | None:
        existing = await self._existing(window)
        holding = [x for x in existing if x.contains(seq)]
        if holding:
            stored = max(holding, key=_last_seq)
            self.skip_upto = stored.last_seq if stored.last_seq is not None else seq
            _LOG.info(
                "%s: events %d-%d are already stored in %s (written before a restart or by another writer); "
                "skipping them", self.where, seq, self.skip_upto, stored.name,
            )  # fmt: skip
            return None
        if not any(x.first_seq is not None and x.first_seq > seq for x in existing):
            self.sure = True
        before = [x for x in existing if x.known and x.last_seq is not None and x.last_seq < seq]
        prev = max(before, key=_last_seq, default=None)
        if prev is not None and prev.last_seq == seq - 1:
            blocks = await self._committed_blocks(prev)
            if blocks is not None and all(len(b) == BLOCK_ID_LENGTH for b in blocks):
                prev.committed_ids = blocks
                if self._can_extend(prev, ms) and await self._hash_existing(prev):
                    return self._new_file(prev.name, window, extends=prev)
        name = await self._free_name(window, ms, {x.name for x in existing}, continuation=bool(before))
        return self._new_file(name, window)

    async def _existing(self, window: Window) -> list[ExistingFile]:
        """Capture blobs of this partition that hold ``window``'s events, with their metadata: those named
        in it and, when its first second's name is taken, those named up to 899 s before it whose first
        event lies in it (:meth:`_free_name` names a file there when the window's own names are taken)."""
        found = await self.retrier.call("list the window's blobs", self._listed, window.start, window.end)
        if any(x.name == self._name(window.start) for x in found):
            earlier = await self.retrier.call("list the names before the window", self._listed,
                                              window.start - LOOKBACK, window.start)  # fmt: skip
            lo, hi = window.start * 1000, window.end * 1000
            found += [x for x in earlier if x.first_ms is not None and lo <= x.first_ms < hi]
        for x in found:
            if not x.known and x.size > 0:
                await self._read_sequence_numbers(x)
        return found

    async def _listed(self, first_second: int, end_second: int) -> list[ExistingFile]:
        """This partition's capture blobs named from ``first_second`` up to (not including) ``end_second``."""
        fmt = self.opts.path_format
        first, last = self._name(first_second), self._name(end_second - 1)
        prefix = first[: next((i for i, (a, b) in enumerate(zip(first, last)) if a != b), len(first))]
        out = []
        async for blob in self.run.container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            path = fmt.try_parse(blob.name)
            if path is None or path.partition_id != self.pid or path.eventhub != self.opts.eventhub_name:
                continue
            if path.namespace != self.opts.namespace:
                continue
            if first_second <= int(path.window_start.timestamp()) < end_second:
                md5 = blob.content_settings.content_md5 if blob.content_settings else None
                out.append(ExistingFile.from_properties(blob.name, blob.etag, blob.size, blob.metadata, md5))
        return out

    async def _read_sequence_numbers(self, x: ExistingFile) -> None:
        """Fill in what a blob without our metadata holds (written by Azure or another tool) by reading it."""
        try:
            data = await self.retrier.call("read a blob without metadata", self._download, x.name)
        except BlobMissing:
            return
        seqs = [r["SequenceNumber"] for r in cf.iter_records(data)]
        if seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))):
            x.first_seq, x.last_seq, x.count = seqs[0], seqs[-1], len(seqs)
        elif not seqs:
            x.count = 0

    async def _download(self, name: str) -> bytes:
        stream = await self.run.container.get_blob_client(name).download_blob()
        return await stream.readall()

    async def _hash_existing(self, x: ExistingFile) -> bool:
        """Hash a committed blob's bytes (streamed) so a file extending it commits the MD5 of the whole.

        False when it cannot be extended safely: it changed or vanished meanwhile, or its bytes do
        not match the Content-MD5 stored with it (then a new file is started beside it).
        """
        from azure.core import MatchConditions

        async def read() -> Any:
            h = hashlib.md5()
            stream = await self.run.container.get_blob_client(x.name).download_blob(
                etag=x.etag, match_condition=MatchConditions.IfNotModified
            )
            async for chunk in stream.chunks():
                h.update(chunk)
            return h

        try:
            h = await self.retrier.call("read a blob to extend", read)
        except (BlobMissing, StorageConflict):
            return False
        if x.content_md5 is not None and h.digest() != x.content_md5:
            _LOG.warning(
                "%s: %s does not match its Content-MD5 (its bytes changed after commit); not extending it",
                self.where, x.name,
            )  # fmt: skip
            return False
        x.md5 = h
        return True

    async def _committed_blocks(self, x: ExistingFile) -> list[str] | None:
        async def get() -> list[str]:
            committed, _ = await self.run.container.get_blob_client(x.name).get_block_list("committed")
            return [b.id for b in committed]

        try:
            return await self.retrier.call("read a blob's block list", get)
        except BlobMissing:
            return None

    def _name(self, second: int) -> str:
        return self.opts.path_format.name(self.opts.namespace, self.opts.eventhub_name, self.pid, utc_time(second))

    async def _free_name(self, window: Window, ms: int, taken: set[str], *, continuation: bool) -> str:
        """The name of a new file: the window start, or for a continuation its first event's second.

        If taken, the nearest free second before it and not before the window's start; failing
        that, up to 899 s earlier (readers keep files named up to 900 s before a range).
        """
        event_second = ms // 1000
        preferred = event_second if continuation else window.start
        candidates = [preferred] + [s for s in range(event_second, window.start - 1, -1) if s != preferred]
        for s in candidates:
            name = self._name(s)
            if name not in taken:
                return name
        for s in range(window.start - 1, event_second - LOOKBACK - 1, -1):
            name = self._name(s)
            if name in taken:
                continue
            try:
                await self.retrier.call("check a name", self.run.container.get_blob_client(name).get_blob_properties)
            except BlobMissing:
                return name
        raise CaptureError(f"{self.where}: no free blob name for a file starting at {utc_time(ms / 1000)}")

    def _new_file(self, name: str, window: Window, *, extends: OpenFile | ExistingFile | None = None) -> OpenFile:
        path = self.opts.path_format.parse(name)
        marker = cf.sync_marker_for(name)
        header = cf.capture_header(codec=self.opts.codec, sync_marker=marker)
        f = OpenFile(
            name=name,
            url=self.run.container.get_blob_client(name).url,
            window=window,
            name_second=int(path.window_start.timestamp()),
            sync_marker=marker,
            header_size=len(header),
            extends=extends,
        )
        if extends is None:
            f.size = len(header)
            self._stage(f, header)
        else:
            f.md5 = extends.md5.copy() if extends.md5 is not None else None
            f.size = extends.size
            f.count = extends.count or 0
            f.first_seq, f.first_ms = extends.first_seq, extends.first_ms
        self.open = f
        return f

    def _stage(self, f: OpenFile, data: bytes) -> None:
        bid = block_id(self.session, self.counter)
        self.counter += 1
        if f.md5 is not None:
            f.md5.update(data)
        f.block_ids.append(bid)
        self.queue.put_nowait(_Stage(f, bid, data))
        self.breaker.add()

    def _stage_frame(self, f: OpenFile) -> None:
        taken = f.take_frame()
        if taken is None:
            return
        data, count = taken
        block = cf.encode_block(data, count, codec=self.opts.codec, sync_marker=f.sync_marker)
        f.size += len(block)
        self._stage(f, block)

    def _close(self, reason: str) -> None:
        f, self.open = self.open, None
        if f is None:
            return
        f.cut_for_size = reason == "size"
        self._stage_frame(f)
        f.content_md5 = f.md5.digest() if f.md5 is not None else None
        self.queue.put_nowait(_Commit(f, reason))
        self.closed.append(f)

    # ------------------------------------------------------------------ storage side

    async def _storage_loop(self) -> None:
        while True:
            op = self.in_flight = await self.queue.get()
            if op is _STOP:
                self.in_flight = None
                return
            try:
                if isinstance(op, _Stage):
                    blob = self.run.container.get_blob_client(op.file.name)
                    await self.retrier.call(
                        "stage a block", blob.stage_block, op.block_id, op.data, length=len(op.data)
                    )
                    self.breaker.stored()
                elif isinstance(op, _Commit):
                    await self._commit(op.file, op.reason)
                elif isinstance(op, _Checkpoint):
                    await self._checkpoint(op.event, op.seq)
                elif isinstance(op, _Empty):
                    await self._write_empty(op.window)
                    self.breaker.stored()
            except (StorageSignal, CaptureError) as exc:
                if isinstance(exc, StorageFatal):
                    self.run.fail(exc)
                    return
                self._reset(str(exc))
                return

    async def _commit(self, f: OpenFile, reason: str) -> None:
        blob = self.run.container.get_blob_client(f.name)
        blocks = [BlobBlock(b, BlockState.COMMITTED) for b in f.committed_ids()]
        blocks += [BlobBlock(b, BlockState.LATEST) for b in f.block_ids]
        if isinstance(f.extends, OpenFile) and not f.extends.committed:
            raise StorageConflict(f"{f.name}: the file it extends was not committed by this writer")
        row = self._row(f, reason)
        content = (
            {} if f.content_md5 is None else {"content_settings": ContentSettings(content_md5=bytearray(f.content_md5))}
        )
        conditions: dict[str, Any] = {"if_none_match": "*"} if f.extends is None else {"etag": self._etag(f.extends)}
        if "etag" in conditions:
            from azure.core import MatchConditions

            conditions["match_condition"] = MatchConditions.IfNotModified
        for _attempt in range(3):
            try:
                result = await self.retrier.call(
                    "commit a file", blob.commit_block_list, blocks, metadata=row.metadata(), **content, **conditions
                )
            except StorageConflict:
                decision = await self._resolve_conflict(f)
                if decision == "stored":
                    f.committed, f.etag = False, None
                    await self._after_commit(f, None)
                    return
                conditions = {"etag": decision}
                from azure.core import MatchConditions

                conditions["match_condition"] = MatchConditions.IfNotModified
                continue
            etag = result.get("etag")
            f.committed, f.etag = True, etag if isinstance(etag, str) else None
            await self._after_commit(f, row)
            return
        raise StorageConflict(f"{f.name}: the blob keeps changing under this writer")

    def _etag(self, x: OpenFile | ExistingFile) -> str:
        etag = x.etag
        if not etag:
            raise StorageConflict("the file to extend has no ETag")
        return etag

    async def _resolve_conflict(self, f: OpenFile) -> str:
        """Someone else wrote ``f``'s blob. 'stored' if it holds our events; its ETag if ours replace it."""
        blob = self.run.container.get_blob_client(f.name)
        try:
            props = await self.retrier.call("read a conflicting blob", blob.get_blob_properties)
        except BlobMissing:
            raise StorageConflict(f"{f.name}: it changed and vanished while committing") from None
        other = ExistingFile.from_properties(f.name, props.etag, props.size, props.metadata)
        ours = (f.first_seq, f.last_seq)
        if other.known and other.first_seq is not None and ours[0] is not None and ours[1] is not None:
            if other.first_seq <= ours[0] and _last_seq(other) >= ours[1]:
                _LOG.info(
                    "%s: %s already holds events %d-%d (another writer); not writing it again",
                    self.where,
                    f.name,
                    *ours,
                )
                return "stored"
            if ours[0] <= other.first_seq and other.last_seq is not None and other.last_seq <= ours[1]:
                _LOG.info("%s: %s holds a subset of our events (another writer); replacing it", self.where, f.name)
                return str(props.etag)
        raise StorageConflict(
            f"{f.name} was written by another writer with events {other.first_seq}-{other.last_seq}, "
            f"not a superset or subset of ours ({ours[0]}-{ours[1]})"
        )

    def _row(self, f: OpenFile, reason: str) -> CaptureFile:
        return CaptureFile(
            file_url=f.url,
            name=f.name,
            partition_id=self.pid,
            size_in_bytes=f.size,
            event_count=f.count,
            first_sequence_number=f.first_seq,
            last_sequence_number=f.last_seq,
            first_enqueue_time=f.first_enqueue_time(),
            last_enqueue_time=f.last_enqueue_time(),
            window_start=f.window.start_time,
            reason=reason,
            extended=f.extends is not None,
            writer=self.session,
        )

    async def _after_commit(self, f: OpenFile, row: CaptureFile | None) -> None:
        """Report the file, then checkpoint its last event: right after the commit, before anything else."""
        f.stored = True
        if row is not None:
            self.run.report.add_file(row)
            self.run.on_file(row)
        if f.last_event is not None and f.last_seq is not None:
            await self._checkpoint(f.last_event, f.last_seq)

    async def _checkpoint(self, event: Any, seq: int) -> None:
        await self.retrier.call("checkpoint", self.context.update_checkpoint, event)
        self.checkpointed_seq = seq
        self.stats.checkpoint = seq

    async def _write_empty(self, window: Window) -> None:
        name = self._name(window.start)
        data = cf.empty_capture_file(codec=self.opts.codec, sync_marker=cf.sync_marker_for(name))
        blob = self.run.container.get_blob_client(name)
        row = CaptureFile(
            file_url=blob.url, name=name, partition_id=self.pid, size_in_bytes=len(data), event_count=0,
            first_sequence_number=None, last_sequence_number=None, first_enqueue_time=None,
            last_enqueue_time=None, window_start=window.start_time, reason="empty", writer=self.session,
        )  # fmt: skip
        content = ContentSettings(content_md5=bytearray(hashlib.md5(data).digest()))
        try:
            await self.retrier.call(
                "write an empty window", blob.upload_blob, data, metadata=row.metadata(), overwrite=False,
                content_settings=content,
            )  # fmt: skip
        except StorageConflict:
            return  # a file for that window exists: it is not empty, or another writer wrote it
        self.run.report.add_file(row)
        self.run.on_file(row)

    # ------------------------------------------------------------------ ending

    def _reset(self, reason: str) -> None:
        """Give up this session's unstored work; the next callback makes the client restart from the checkpoint."""
        _LOG.warning("%s: %s; restarting the partition from its checkpoint", self.where, reason)
        self.broken = reason
        self.stats.resets += 1
        self._drop_queue()

    def _drop_queue(self) -> int:
        dropped = 0
        while not self.queue.empty():
            op = self.queue.get_nowait()
            if isinstance(op, _Commit):
                dropped += op.file.new_events
        if self.open is not None:
            dropped += self.open.new_events
            self.open = None
        self.stats.discarded += dropped
        self.breaker.forget()
        return dropped

    def _unstored(self) -> tuple[int, int]:
        """Events received into files that storage has not committed (queued, under way, or still open), and
        events of a file stored whose checkpoint was not written (the commit answered, the checkpoint did not).

        Only once the storage task has ended or been cancelled: it empties the queue.
        """
        ops = [self.queue.get_nowait() for _ in range(self.queue.qsize())] + [self.in_flight]
        files = [op.file for op in ops if isinstance(op, _Commit)]
        pending = sum(f.new_events for f in files if not f.stored)
        stored = sum(f.new_events for f in files if f.stored)
        return pending + (self.open.new_events if self.open is not None else 0), stored

    async def shutdown(self, *, flush: bool, timeout: float) -> int:
        """Flush (commit the open file, then checkpoint) and stop the storage task, within ``timeout``; or
        drop everything at once. Returns the events received but not stored: none of them is checkpointed,
        so the next run captures them again. A second call (the client closing a drained partition) is a no-op.
        """
        if self.stopped:
            return 0
        self.stopped = self.draining = True
        self.breaker.wake()
        self.stats.releases += 1
        if not flush or self.broken or self.run.failed:
            dropped = self._drop_queue()
            self.task.cancel()
            return dropped
        self._close("shutdown")
        self.queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            self.task.cancel()
        except asyncio.CancelledError:
            self.task.cancel()
            raise
        unstored, self.uncheckpointed = self._unstored()
        why = self.retrier.last_error or "storage did not answer"
        if unstored:
            _LOG.warning(
                "%s: %d events received were not stored (%s; gave up after %.0f s); nothing past what is stored "
                "is checkpointed, so the next run captures them again", self.where, unstored, why, timeout,
            )  # fmt: skip
            self.stats.discarded += unstored
        if self.uncheckpointed:
            _LOG.warning(
                "%s: %d events are stored but their checkpoint was not written (%s; gave up after %.0f s); the "
                "next run with the same time window finds them stored and skips them", self.where,
                self.uncheckpointed, why, timeout,
            )  # fmt: skip
        return unstored

    @property
    def idle(self) -> bool:
        """Nothing open, nothing queued, and the client had nothing more to give at the last look."""
        return self.caught_up and self.open is None and self.queue.empty() and self.breaker.buffered == 0

    def done_for_once(self, target: int) -> bool:
        """Everything up to ``target`` is stored and checkpointed, or this partition has nothing to give up to it."""
        if self.checkpointed_seq is not None and self.checkpointed_seq >= target:
            return True
        if not self.idle or self.skipped_last is not None:
            return False
        if self.received_seq is not None and self.received_seq >= target:
            return True
        # Started beyond the target (a starting position past it): quiet, nothing pending.
        return time.monotonic() - self.last_event_at >= 3 * self.opts.max_wait_time + 2


def _last_seq(x: ExistingFile) -> int:
    """The last sequence number a file holds, -1 when unknown (never ``or``: a file may end at event 0)."""
    return x.last_seq if x.last_seq is not None else -1
