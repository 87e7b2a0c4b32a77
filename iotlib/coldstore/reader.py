"""Capture files → one polars DataFrame: listed, pruned, decoded in parallel, filtered, deduplicated.

Pipeline: a pruned listing (:mod:`.listing`); downloads on an I/O thread pool; each file split
into runs of Avro blocks; each run inflated (deflate), decoded by the compiled Capture decoder
(:mod:`.fastdecode`, or fastavro for other schemas, :mod:`.generic`) and its JSON bodies parsed
(:mod:`.bodies`) on a CPU thread pool. The compiled code releases the GIL, so threads use all
cores without processes (and without forking polars). Then the time filter and the dedupe.
"""

from __future__ import annotations

import time
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
    df = pl.concat(frames, how="vertical") if frames else empty_frame(opts)
    report.events_decoded = df.height
    if opts.start is not None or opts.end is not None:
        cond = pl.lit(True)
        if opts.start is not None:
            cond = cond & (pl.col("enqueued_time") >= opts.start)
        if opts.end is not None:
            cond = cond & (pl.col("enqueued_time") < opts.end)
        df = df.filter(cond)
        report.events_outside_range = report.events_decoded - df.height
    if opts.dedupe and df.height:
        before = df.height
        if df.select(pl.struct(DEDUPE_KEY).is_duplicated().any()).item():
            df = df.unique(subset=list(DEDUPE_KEY), keep="first", maintain_order=True)
        report.duplicates_removed = before - df.height
    if opts.decode == "json":
        report.decode_errors = df.height - df["decode_error"].null_count()
    report.events = df.height
    if opts.columns is not None:
        df = df.select(opts.columns)
    report.seconds["filter+dedupe"] = time.perf_counter() - t0
    if not df.height and explain_empty:
        notices.nothing_loaded(src, opts, report, listing, lambda *a: load_frame(*a, explain_empty=False)[0])
    return df, report


def empty_frame(opts: LoadOptions) -> pl.DataFrame:
    df = columns_module.empty_raw()
    if opts.decode == "json":
        df = pl.concat([df, pl.DataFrame(schema=bodies.DECODED_SCHEMA)], how="horizontal")
    return df


def _read_and_decode(src: Source, blobs: list[Candidate], opts: LoadOptions, report: LoadReport) -> list[pl.DataFrame]:
    bars = _Bars(opts.progress, len(blobs))
    results: dict[tuple[int, int], Future[pl.DataFrame]] = {}
    failures: dict[int, str] = {}
    io_workers = 8 if type(src).__name__ == "BlobContainer" else 2
    try:
        with (
            ThreadPoolExecutor(io_workers, thread_name_prefix="coldstore-io") as io,
            ThreadPoolExecutor(opts.workers, thread_name_prefix="coldstore-decode") as cpu,
        ):
            downloads = [io.submit(src.read, c.info.name) for c in blobs]
            for i, (cand, fut) in enumerate(zip(blobs, downloads)):
                name = cand.info.name
                try:
                    data = fut.result()
                except ColdStoreError as exc:
                    failures[i] = str(exc)
                    continue
                bars.downloaded(len(data))
                report.blobs_read.append(name)
                report.bytes_read += len(data)
                try:
                    for j, task in enumerate(_tasks(data, cand.path, opts, report, name)):
                        results[(i, j)] = cpu.submit(task)
                except CorruptFile as exc:
                    failures[i] = str(exc)
            frames: list[pl.DataFrame] = []
            for i, cand in enumerate(blobs):
                own = [k for k in results if k[0] == i]
                parts = []
                for k in sorted(own):
                    try:
                        parts.append(results[k].result())
                    except CorruptFile as exc:
                        failures.setdefault(i, str(exc))
                if i in failures:
                    reason = failures[i]
                    if opts.errors == "raise":
                        for pending in results.values():
                            pending.cancel()
                        raise ColdStoreError(f"blob {cand.info.name!r} in {src.description}: {reason}")
                    report.skipped.append(SkippedBlob(cand.info.name, reason))
                    continue
                frames.extend(parts)
                bars.decoded(sum(p.height for p in parts))
    finally:
        bars.close()  # an error then starts a line of its own
    return frames


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
