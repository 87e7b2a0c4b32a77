"""Capture files → one polars DataFrame: listed, pruned, decoded in parallel, filtered, deduplicated.

Pipeline: a pruned listing (:mod:`.listing`); downloads on an I/O thread pool; each file split
into runs of Avro blocks; each run inflated (deflate), decoded by the compiled Capture decoder
(:mod:`.fastdecode`, or fastavro for other schemas, :mod:`.generic`) and its JSON bodies parsed
(:mod:`.bodies`) on a CPU thread pool. The compiled code releases the GIL, so threads use all
cores without processes (and without forking polars). Then the time filter and the dedupe.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import polars as pl

from iotlib.capture import format as cf
from iotlib.coldstore import bodies, fastdecode, generic, notices
from iotlib.coldstore import columns as columns_module
from iotlib.coldstore.container import ContainerFile, CorruptFile, open_container
from iotlib.coldstore.listing import Candidate, Listing, find_blobs
from iotlib.coldstore.options import LoadOptions
from iotlib.coldstore.report import LoadReport, SkippedBlob
from iotlib.coldstore.sources import Source
from iotlib.errors import ColdStoreError

DEDUPE_KEY = ("namespace", "eventhub", "partition_id", "sequence_number")
CHUNK_RECORDS = 131_072  # most records per decoding task
MIN_CHUNK_RECORDS = 8_192  # fewest worth a task of their own


def list_blobs(src: Source, opts: LoadOptions, report: LoadReport) -> Listing:
    t0 = time.perf_counter()
    listing = find_blobs(
        src, opts.path_format, start=opts.start, end=opts.end,
        namespace=opts.namespace, eventhub=opts.eventhub, partitions=opts.partitions,
    )  # fmt: skip
    report.prefixes_walked = list(src.stats.walked)
    report.prefixes_listed = list(src.stats.listed)
    report.blobs_listed = len(listing.selected) + len(listing.pruned) + len(listing.foreign)
    report.blobs_pruned = [c.info.name for c in listing.pruned]
    report.seconds["list"] = time.perf_counter() - t0
    notices.foreign_names(listing, opts, report)
    if opts.progress:
        from tqdm.auto import tqdm

        with tqdm(total=report.blobs_listed, desc="listed", unit="blob") as bar:
            bar.update(report.blobs_listed)
    return listing


def load_frame(
    src: Source, opts: LoadOptions, listing: Listing | None = None, *, explain_empty: bool = True
) -> tuple[pl.DataFrame, LoadReport]:
    """List, read, decode, filter and dedupe; the frame and its report (which says why, when it is empty)."""
    report = LoadReport(src.description, opts.start, opts.end)
    if listing is None:
        listing = list_blobs(src, opts, report)
    t0 = time.perf_counter()
    frames = _read_and_decode(src, listing.selected, opts, report)
    report.seconds["read+decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if opts.dedupe:
        report.duplicates_removed = _drop_repeats(frames)
    df = pl.concat(frames, how="vertical", rechunk=False) if frames else _trim(empty_frame(opts), opts)
    del frames
    report.events_outside_range = report.events_decoded - df.height - report.duplicates_removed
    if opts.decode == "json":
        report.decode_errors = df.height - df["decode_error"].null_count()
    report.events = df.height
    if opts.columns is not None:
        df = df.select(opts.columns)
    report.seconds["filter+dedupe"] = time.perf_counter() - t0
    if not df.height and explain_empty:
        notices.nothing_loaded(src, opts, report, listing, lambda *a: load_frame(*a, explain_empty=False)[0])
    return df, report


def _drop_repeats(parts: list[pl.DataFrame]) -> int:
    """Keep the first copy of each event (by :data:`DEDUPE_KEY`, in order), part by part in place,
    so the load never holds two copies of its result; the number of rows dropped."""
    if not parts:
        return 0
    keys = pl.concat([p.select(DEDUPE_KEY) for p in parts], rechunk=False)
    first = keys.select(pl.struct(DEDUPE_KEY).is_first_distinct()).to_series()
    if first.all():
        return 0
    at = 0
    for i, part in enumerate(parts):
        keep = first.slice(at, part.height)
        at += part.height
        if not keep.all():
            parts[i] = part.filter(keep)
    return int(first.len() - first.sum())


def _trim(frame: pl.DataFrame, opts: LoadOptions) -> pl.DataFrame:
    """A decoded part cut to the range and to the columns the load still needs (done per part, in
    the decoding threads, so a long load never holds rows or columns it is about to drop)."""
    if opts.start is not None or opts.end is not None:
        cond = pl.lit(True)
        if opts.start is not None:
            cond = cond & (pl.col("enqueued_time") >= opts.start)
        if opts.end is not None:
            cond = cond & (pl.col("enqueued_time") < opts.end)
        frame = frame.filter(cond)
    if opts.columns is not None:
        extra = ("decode_error",) if opts.decode == "json" else ()
        keep = (*(DEDUPE_KEY if opts.dedupe else ()), *extra, *opts.columns)
        frame = frame.select(list(dict.fromkeys(keep)))
    return frame


def empty_frame(opts: LoadOptions) -> pl.DataFrame:
    df = columns_module.empty_raw()
    if opts.decode == "json":
        df = pl.concat([df, pl.DataFrame(schema=bodies.DECODED_SCHEMA)], how="horizontal")
    return df


def _read_and_decode(src: Source, blobs: list[Candidate], opts: LoadOptions, report: LoadReport) -> list[pl.DataFrame]:
    """The blobs' decoded parts, trimmed (:func:`_trim`), in name order.

    A bounded pipeline: a few blobs downloading and a few decoding ahead of the one being
    gathered, so memory holds the result and a small window of work, not the whole listing's bytes.
    """
    bars = _Bars(opts.progress, len(blobs))
    io_workers = 8 if type(src).__name__ == "BlobContainer" else 2
    downloads: deque[tuple[Candidate, Future[bytes]]] = deque()
    decoding: deque[tuple[Candidate, list[Future[tuple[pl.DataFrame, int]]], str | None]] = deque()
    frames: list[pl.DataFrame] = []
    todo = iter(blobs)
    try:
        with (
            ThreadPoolExecutor(io_workers, thread_name_prefix="coldstore-io") as io,
            ThreadPoolExecutor(opts.workers, thread_name_prefix="coldstore-decode") as cpu,
        ):
            verified = src.stats.verified
            try:
                while True:
                    for cand in itertools.islice(todo, 2 * io_workers - len(downloads)):
                        downloads.append((cand, io.submit(src.read, cand.info.name, verify=opts.verify_md5)))
                    if downloads:
                        cand, fut = downloads.popleft()
                        decoding.append(_submit(cand, fut, cpu, opts, report, bars))
                    if not decoding:
                        break
                    if len(decoding) > 2 * opts.workers or not downloads:
                        frames.extend(_gather(decoding.popleft(), src, opts, report, bars))
            except BaseException:
                for _, pending, _ in decoding:
                    for task in pending:
                        task.cancel()
                for _, download in downloads:
                    download.cancel()
                raise
            report.blobs_verified = src.stats.verified - verified
    finally:
        bars.close()  # an error then starts a line of its own
    return frames


def _submit(
    cand: Candidate, download: Future[bytes], cpu: ThreadPoolExecutor, opts: LoadOptions, report: LoadReport,
    bars: _Bars,
) -> tuple[Candidate, list[Future[tuple[pl.DataFrame, int]]], str | None]:  # fmt: skip
    """Start decoding a downloaded blob: (blob, its decoding tasks, why it cannot be read)."""
    name = cand.info.name
    try:
        data = download.result()
    except ColdStoreError as exc:
        return cand, [], str(exc)
    bars.downloaded(len(data))
    report.blobs_read.append(name)
    report.bytes_read += len(data)
    try:
        tasks = _tasks(data, cand.path, opts, report, name)
    except CorruptFile as exc:
        return cand, [], str(exc)
    return cand, [cpu.submit(_trimmed, task, opts) for task in tasks], None


def _trimmed(task: Any, opts: LoadOptions) -> tuple[pl.DataFrame, int]:
    frame = task()
    return _trim(frame, opts), frame.height


def _gather(
    started: tuple[Candidate, list[Future[tuple[pl.DataFrame, int]]], str | None], src: Source, opts: LoadOptions,
    report: LoadReport, bars: _Bars,
) -> list[pl.DataFrame]:  # fmt: skip
    """A blob's decoded parts, or none (skipped, or raising with ``errors="raise"``) when it is unreadable."""
    cand, tasks, failure = started
    parts, decoded = [], 0
    for task in tasks:
        try:
            part, n = task.result()
        except CorruptFile as exc:
            failure = failure or str(exc)
            continue
        parts.append(part)
        decoded += n
    if failure is not None:
        if opts.errors == "raise":
            raise ColdStoreError(f"blob {cand.info.name!r} in {src.description}: {failure}")
        report.skipped.append(SkippedBlob(cand.info.name, failure))
        return []
    report.events_decoded += decoded
    bars.decoded(decoded)
    return parts


def _tasks(data: bytes, path: cf.BlobPath, opts: LoadOptions, report: LoadReport, name: str) -> list[Any]:
    f = open_container(data)
    if f.records == 0:
        report.empty_blobs.append(name)
        return []
    use_fast = f.props_branches is not None and opts.decoder != "generic"
    if opts.decoder == "fast" and not use_fast:
        raise CorruptFile("the fast decoder does not know this schema (decoder='fast' was forced)")
    if not use_fast:
        report.generic_blobs.append(name)
        return [lambda: _finish(generic.decode_file(data, path), opts)]
    # Big files are cut into runs of blocks so that every core has work even for a single file.
    target = max(MIN_CHUNK_RECORDS, min(CHUNK_RECORDS, -(-f.records // (2 * opts.workers))))
    tasks, lo, acc = [], 0, 0
    for b, n in enumerate(f.counts.tolist()):
        acc += n
        if acc >= target or b == len(f.counts) - 1:
            tasks.append(_fast_task(f, lo, b + 1, path, opts))
            lo, acc = b + 1, 0
    return tasks


def _fast_task(f: ContainerFile, lo: int, hi: int, path: cf.BlobPath, opts: LoadOptions) -> Any:
    def run() -> pl.DataFrame:
        raw = fastdecode.decode(f.inflate(lo, hi))
        frame = columns_module.raw_frame(raw, path, opts.want)
        if opts.decode == "json":
            frame = pl.concat([frame, bodies.decode_bodies(raw.buf, raw.body)], how="horizontal")
        return frame

    return run


def _finish(frame: pl.DataFrame, opts: LoadOptions) -> pl.DataFrame:
    if opts.decode == "json":
        frame = pl.concat([frame, bodies.decode_body_column(frame["body"])], how="horizontal")
    return frame


class _Bars:
    """tqdm bars for downloaded blobs and decoded events (only when asked: notebooks stay clean)."""

    def __init__(self, enabled: bool, blobs: int) -> None:
        self.enabled = enabled
        if enabled:
            from tqdm.auto import tqdm

            self.dl = tqdm(total=blobs, desc="downloaded", unit="blob")
            self.dec = tqdm(desc="decoded", unit=" events", unit_scale=True)

    def downloaded(self, nbytes: int) -> None:
        if self.enabled:
            self.dl.update(1)

    def decoded(self, n: int) -> None:
        if self.enabled:
            self.dec.update(n)

    def close(self) -> None:
        if self.enabled:
            self.dl.close()
            self.dec.close()
