"""Capture files for events whose hub view is already known: what ``iotlib capture`` would write, without a hub.

A day of Fabrikam is about 144 million events; sending them through a hub to build a cold store
takes hours. :class:`BulkCapture` writes the Capture files straight from events that carry their
hub view — partition, sequence number, offset, enqueued time — as
:class:`iotlib.fleet.delivery.DeliveryStream` models it for a simulation, or as
:func:`iotlib.hub.read` reads it back from a real hub:

- the same windows: per partition, on the grid of enqueued time (``time_window`` seconds), one
  file per window named by its start; a file reaching ``size_window`` is cut and continued in a
  file named by its next event's enqueued second, as the writer does;
- the same bytes: records as :mod:`iotlib.capture.records` encodes them (by
  :mod:`iotlib.capture.fastencode`), cut into Avro blocks of ``frame_size`` bytes the way the
  writer cuts its frames, the sync marker from the blob name; with codec ``null`` a file is
  byte for byte the one ``iotlib capture`` commits for the same events (a test holds it so).
  With ``deflate`` the blocks are compressed by ISA-L (any deflate reader reads them) rather
  than zlib, so those bytes differ while the records are the same;
- the same metadata on blobs (the ``CaptureFileCreated`` fields), and a :class:`CaptureFile`
  row per file in :attr:`BulkCapture.files`.

Windows without events get no file (the writer's default, ``skip_empty_archives``). Events come
in batches (any order across partitions, sequence order within each); a window is written once
a later window of its partition starts, once ``complete_before`` passes its end, or at
:meth:`BulkCapture.close`. Memory: the batch at hand plus one open window per partition.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from isal import isal_zlib

from iotlib._workspace import Workspace
from iotlib.capture import format as cf
from iotlib.capture.fastencode import RecordBatch
from iotlib.capture.options import DEFAULT_SIZE_WINDOW, MAX_BLOCKS, CaptureOptions
from iotlib.capture.report import CaptureFile
from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet.fastjson import text_buffers

#: Columns :meth:`BulkCapture.write` reads.
COLUMNS = ("partition_id", "sequence_number", "offset", "enqueued_time", "device_id", "body")


@dataclass
class _Open:
    """A partition's window still taking events: its records so far, in sequence order, in ``buffer``."""

    window: int  # start, seconds since the epoch
    buffer: np.ndarray  # uint8, from the writer's pool; records fill buffer[:used]
    used: int = 0
    sizes: list[np.ndarray] = field(default_factory=list)
    seq: list[np.ndarray] = field(default_factory=list)
    ms: list[np.ndarray] = field(default_factory=list)
    last_seq: int = -1


class _BufferPool:
    """Window buffers handed back and forth between the writer and its workers, reused.

    Fresh memory costs more than the encoding done in it (page faults, zeroing); a day's windows
    all have about the same size, so a handful of buffers serves them all.
    """

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> np.ndarray:
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if len(b) >= size]
            if fits:
                return self._free.pop(min(fits, key=lambda i: len(self._free[i])))
        return np.empty(max(size, 1 << 20), dtype=np.uint8)

    def give(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.append(buf)


class _Parts(list[bytes]):
    """The pieces of one file being assembled: header, then blocks."""

    def __init__(self, name: str, marker: bytes) -> None:
        super().__init__()
        self.name = name
        self.marker = marker


class BulkCapture:
    """Writes Capture files for batches of events with their hub view (see the module text).

    ``dest``: a local folder, or a ``ContainerClient``. Options as the capture writer's
    (:class:`~iotlib.capture.options.CaptureOptions`): ``namespace``, ``eventhub_name``,
    ``time_window``, ``size_window``, ``frame_size``, ``codec``, ``path_format``. ``workers``
    threads assemble and store finished windows while the caller prepares the next batch.
    """

    def __init__(
        self,
        dest: str | os.PathLike[str] | Any,
        *,
        namespace: str = "fabrikam",
        eventhub_name: str = "telemetry",
        time_window: int | str = 300,
        size_window: int | str = DEFAULT_SIZE_WINDOW,
        frame_size: int | str = 64 * 1024,
        codec: Literal["null", "deflate"] = "null",
        path_format: str | cf.PathFormat = cf.DEFAULT_PATH_FORMAT,
        workers: int = 2,
    ) -> None:
        self.options = CaptureOptions.create(
            eventhub_name=eventhub_name, default_namespace=namespace, time_window=time_window,
            size_window=size_window, frame_size=frame_size, codec=codec, path_format=path_format,
        )  # fmt: skip
        self._blob = hasattr(dest, "upload_blob")
        self._container: Any = dest if self._blob else None
        self._folder = None if self._blob else Path(os.fspath(dest))
        self._open: dict[str, _Open] = {}
        self._buffers = _BufferPool()
        self._starts = Workspace()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="bulk-capture")
        self._pending: list[Future[list[CaptureFile]]] = []
        self.files: list[CaptureFile] = []
        self.events = 0

    # ------------------------------------------------------------------ public

    def write(self, events: pl.DataFrame, *, complete_before: datetime | None = None) -> None:
        """Add events (columns :data:`COLUMNS`, any order); write every window that is now complete."""
        missing = [c for c in COLUMNS if c not in events.columns]
        if missing:
            raise ValidationError(f"BulkCapture.write needs column(s) {missing}; got {events.columns}")
        if events.height:
            try:
                partition = events["partition_id"].cast(pl.Int64)
            except pl.exceptions.InvalidOperationError:
                raise ValidationError("BulkCapture.write: partition ids are Event Hubs' '0', '1', …") from None
            frame = events.select(
                partition.alias("partition"),
                pl.col("sequence_number").cast(pl.Int64),
                pl.col("offset").cast(pl.Int64),
                pl.col("enqueued_time").dt.epoch("ms").alias("ms"),
                pl.col("device_id").cast(pl.String),
                pl.col("body").cast(pl.Binary),
            ).sort("partition", "sequence_number", maintain_order=True)
            if frame.select(pl.any_horizontal(pl.all().is_null()).any()).item():
                raise ValidationError(
                    "BulkCapture.write: events with a null partition, sequence number, offset, time, key or body"
                )
            distinct = frame["device_id"].unique().sort()
            codes = frame["device_id"].cast(pl.Enum(distinct)).to_physical().to_numpy()
            self.write_arrays(
                partition=frame["partition"].to_numpy(),
                sequence_number=frame["sequence_number"].to_numpy(),
                offset=frame["offset"].to_numpy(),
                enqueued_ms=frame["ms"].to_numpy(),
                key_index=codes,
                keys=text_buffers(distinct),
                bodies=text_buffers(frame["body"]),
            )
        if complete_before is not None:
            self.complete_before(complete_before)

    def write_arrays(
        self,
        *,
        partition: np.ndarray,
        sequence_number: np.ndarray,
        offset: np.ndarray,
        enqueued_ms: np.ndarray,
        key_index: np.ndarray,
        keys: tuple[np.ndarray, np.ndarray],
        bodies: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Add events as arrays, sorted by partition (0, 1, …) then sequence number (see
        :func:`~iotlib.capture.fastencode.encode_records` for ``keys``, ``key_index`` and ``bodies``)."""
        p, seq = np.asarray(partition, dtype=np.int64), np.asarray(sequence_number, dtype=np.int64)
        if len(p) > 1 and not np.all((p[1:] > p[:-1]) | ((p[1:] == p[:-1]) & (seq[1:] > seq[:-1]))):
            raise ValidationError(
                "BulkCapture.write_arrays: events must be sorted by partition then sequence number, each once"
            )
        if len(p) == 0:
            return
        ms = np.asarray(enqueued_ms, dtype=np.int64)
        records = RecordBatch(
            seq, offset, ms, key_index, keys, bodies, starts=self._starts.get("starts", (len(p) + 1,), np.int64)
        )
        self.events += len(p)
        window = (ms // 1000) // self.options.time_window * self.options.time_window
        cut = np.flatnonzero((p[1:] != p[:-1]) | (window[1:] != window[:-1])) + 1
        bounds = np.concatenate([[0], cut, [len(p)]])
        sizes = records.sizes
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            pid, w = str(p[a]), int(window[a])
            current = self._open.get(pid)
            if current is not None and seq[a] <= current.last_seq:
                raise ValidationError(
                    f"partition {pid}: sequence number {seq[a]} after {current.last_seq}; give each partition's "
                    "events in sequence order, each once"
                )
            if current is not None and w < current.window:
                raise ValidationError(f"partition {pid}: an event enqueued before the window it already writes")
            if current is not None and w != current.window:
                self._finish(pid)
                current = None
            need = records.nbytes(a, b)
            if current is None:
                current = self._open[pid] = _Open(w, self._buffers.take(2 * need))
            elif current.used + need > len(current.buffer):
                grown = self._buffers.take(2 * (current.used + need))
                grown[: current.used] = current.buffer[: current.used]
                self._buffers.give(current.buffer)
                current.buffer = grown
            current.used = records.write(current.buffer, current.used, a, b)
            current.sizes.append(sizes[a:b])
            current.seq.append(seq[a:b])
            current.ms.append(ms[a:b])
            current.last_seq = int(seq[b - 1])
        self._collect(block=False)

    def complete_before(self, moment: datetime) -> None:
        """Write every open window that ends at or before ``moment`` (no later event can fall in it)."""
        edge = int(_utc(moment).timestamp())
        for pid in [p for p, w in self._open.items() if w.window + self.options.time_window <= edge]:
            self._finish(pid)
        self._collect(block=False)

    def close(self) -> list[CaptureFile]:
        """Write the windows still open; every file written, in order of partition and name."""
        for pid in list(self._open):
            self._finish(pid)
        self._collect(block=True)
        self._pool.shutdown()
        self.files.sort(key=lambda f: (int(f.partition_id) if f.partition_id.isdigit() else 0, f.partition_id, f.name))
        return self.files

    def __enter__(self) -> BulkCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._pool.shutdown(cancel_futures=True)

    def files_frame(self) -> pl.DataFrame:
        """One row per file: name, partition, window, events, bytes, first/last sequence number and enqueue time."""
        rows = [
            {
                "name": f.name,
                "partition_id": f.partition_id,
                "window_start": f.window_start,
                "events": f.event_count,
                "bytes": f.size_in_bytes,
                "first_sequence_number": f.first_sequence_number,
                "last_sequence_number": f.last_sequence_number,
                "first_enqueue_time": f.first_enqueue_time,
                "last_enqueue_time": f.last_enqueue_time,
                "reason": f.reason,
            }  # fmt: skip
            for f in self.files
        ]
        return pl.DataFrame(rows, schema_overrides={"window_start": pl.Datetime("us", "UTC")})

    # ------------------------------------------------------------------ windows → files

    def _finish(self, pid: str) -> None:
        w = self._open.pop(pid)
        self._pending.append(self._pool.submit(self._store_window, pid, w))

    def _collect(self, *, block: bool) -> None:
        keep = []
        for fut in self._pending:
            if block or fut.done():
                self.files.extend(fut.result())
            else:
                keep.append(fut)
        self._pending = keep
        # Back-pressure: never more than a few windows per worker waiting in memory.
        while len(self._pending) > 4 * max(1, self._pool._max_workers):
            self.files.extend(self._pending.pop(0).result())

    def _store_window(self, pid: str, w: _Open) -> list[CaptureFile]:
        """Cut a finished window into files and blocks exactly as the writer does, and store them.

        Blocks end at the first record that brings the frame to ``frame_size``. Before taking
        each event the writer closes its file when the file (its blocks so far plus the frame
        being filled) has reached ``size_window`` — or holds nearly the most blocks a blob may —
        and the event's second is later than the file's name; the next file is named by that
        second.
        """
        try:
            return self._cut_and_store(pid, w)
        finally:
            self._buffers.give(w.buffer)

    def _cut_and_store(self, pid: str, w: _Open) -> list[CaptureFile]:
        opts = self.options
        data = w.buffer
        sizes = np.concatenate(w.sizes)
        seq = np.concatenate(w.seq)
        ms = np.concatenate(w.ms)
        seconds = ms // 1000
        cum = np.concatenate([[0], np.cumsum(sizes)])  # cum[j] = bytes of the records before j
        out: list[CaptureFile] = []
        first, i, n = 0, 0, len(sizes)
        name_second = w.window
        parts, size, blocks = self._new_file(pid, name_second)
        while i < n:
            e = min(int(np.searchsorted(cum, cum[i] + opts.frame_size, side="left")), n)
            # The first event j in [i, e) before which the file counts as full, if any.
            j = int(np.searchsorted(cum[i:e], opts.size_window - size + cum[i], side="left")) + i
            if blocks >= MAX_BLOCKS - 1:
                j = i
            elif blocks + 1 >= MAX_BLOCKS - 1:
                j = min(j, i + 1)
            j = max(j, int(np.searchsorted(seconds[i:e], name_second, side="right")) + i)
            if j < e:  # the file is cut before event j
                if j > i:
                    parts.append(self._block(data[cum[i] : cum[j]].tobytes(), j - i, parts.marker))
                out.append(self._store_file(pid, w.window, parts, seq[first:j], ms[first:j], "size"))
                first = i = j
                name_second = int(seconds[j])
                parts, size, blocks = self._new_file(pid, name_second)
                continue
            block = self._block(data[cum[i] : cum[e]].tobytes(), e - i, parts.marker)
            parts.append(block)
            size += len(block)
            blocks += 1
            i = e
        out.append(self._store_file(pid, w.window, parts, seq[first:], ms[first:], "window"))
        return out

    def _new_file(self, pid: str, second: int) -> tuple[_Parts, int, int]:
        o = self.options
        name = o.path_format.name(o.namespace, o.eventhub_name, pid, _ms_time(second * 1000))
        parts = _Parts(name, cf.sync_marker_for(name))
        parts.append(cf.capture_header(codec=o.codec, sync_marker=parts.marker))
        return parts, len(parts[0]), 1

    def _store_file(
        self, pid: str, window: int, parts: _Parts, seq: np.ndarray, ms: np.ndarray, reason: str
    ) -> CaptureFile:
        blob = b"".join(parts)
        row = CaptureFile(
            file_url=self._url(parts.name), name=parts.name, partition_id=pid, size_in_bytes=len(blob),
            event_count=len(seq), first_sequence_number=int(seq[0]), last_sequence_number=int(seq[-1]),
            first_enqueue_time=_ms_time(int(ms[0])), last_enqueue_time=_ms_time(int(ms[-1])),
            window_start=_ms_time(window * 1000), reason=reason, writer="bulk",
        )  # fmt: skip
        self._put(parts.name, blob, row)
        return row

    def _block(self, raw: bytes, count: int, marker: bytes) -> bytes:
        if self.options.codec == "deflate":
            raw = isal_zlib.compress(raw, 2, -15)  # raw deflate (RFC 1951), as the Avro spec says
        return cf._zigzag(count) + cf._zigzag(len(raw)) + raw + marker

    def _url(self, name: str) -> str:
        if self._folder is None:
            return str(self._container.get_blob_client(name).url)
        return (self._folder / name).resolve().as_uri()

    def _put(self, name: str, blob: bytes, row: CaptureFile) -> None:
        if self._folder is None:
            self._container.upload_blob(name, blob, metadata=row.metadata(), overwrite=True)
            return
        path = self._folder.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)


def _ms_time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ConfigurationError("complete_before must be timezone-aware (UTC)")
    return t.astimezone(UTC)
