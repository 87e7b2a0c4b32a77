"""``load``: Capture files → one polars DataFrame, pruned by time, decoded in parallel, deduplicated.

Pipeline: a pruned listing (:mod:`.listing`); downloads on an I/O thread pool; each file split
into runs of Avro blocks; each run inflated (deflate), decoded by the compiled Capture decoder
(:mod:`.fastdecode`, or fastavro for other schemas, :mod:`.generic`) and its JSON bodies parsed
(:mod:`.bodies`) on a CPU thread pool. The compiled code releases the GIL, so threads use all
cores without processes (and without forking polars). Then the time filter and the dedupe.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from iotlib.capture import format as cf
from iotlib.coldstore import bodies, fastdecode, generic
from iotlib.coldstore import columns as columns_module
from iotlib.coldstore.container import ContainerFile, CorruptFile, open_container
from iotlib.coldstore.listing import Candidate, Listing, find_blobs
from iotlib.coldstore.sources import Source, open_source
from iotlib.errors import ColdStoreError, ConfigurationError

DEDUPE_KEY = ("namespace", "eventhub", "partition_id", "sequence_number")
CHUNK_RECORDS = 131_072  # most records per decoding task
MIN_CHUNK_RECORDS = 8_192  # fewest worth a task of their own

Decode = Literal["json", "none"]
Errors = Literal["raise", "skip"]
Decoder = Literal["auto", "fast", "generic"]


@dataclass(frozen=True)
class SkippedBlob:
    name: str
    reason: str


@dataclass
class LoadReport:
    """What a load did: what the listing saw and pruned, what was read, skipped, removed."""

    source: str
    start: datetime | None
    end: datetime | None
    prefixes_walked: list[str] = field(default_factory=list)
    prefixes_listed: list[str] = field(default_factory=list)
    blobs_listed: int = 0
    blobs_pruned: list[str] = field(default_factory=list)
    blobs_read: list[str] = field(default_factory=list)
    bytes_read: int = 0
    empty_blobs: list[str] = field(default_factory=list)
    generic_blobs: list[str] = field(default_factory=list)
    skipped: list[SkippedBlob] = field(default_factory=list)
    events_decoded: int = 0
    events_outside_range: int = 0
    duplicates_removed: int = 0
    decode_errors: int = 0
    events: int = 0
    cache: str = "not used"
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.events:,} events from {len(self.blobs_read)} blobs "
            f"({self.bytes_read / 1e6:,.1f} MB; {len(self.empty_blobs)} header-only)",
            f"listing: {len(self.prefixes_walked)} folder walks + {len(self.prefixes_listed)} prefix listings, "
            f"{self.blobs_listed} blobs listed, {len(self.blobs_pruned)} pruned by name",
            f"decoded {self.events_decoded:,}; outside range {self.events_outside_range:,}; "
            f"duplicates removed {self.duplicates_removed:,}; bodies not decoded {self.decode_errors:,}",
        ]
        if self.skipped:
            lines.append(
                f"skipped {len(self.skipped)} blobs: " + "; ".join(f"{s.name}: {s.reason}" for s in self.skipped)
            )
        if self.cache != "not used":
            lines.append(f"cache: {self.cache}")
        return "\n".join(lines)


def _utc(t: datetime | str | None, what: str) -> datetime | None:
    if t is None:
        return None
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"{what}={t!r} is not an ISO 8601 time") from None
    if not isinstance(t, datetime):
        raise ConfigurationError(f"{what} must be a datetime or ISO 8601 text, not {type(t).__name__}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass
class _Options:
    start: datetime | None
    end: datetime | None
    namespace: str | None
    eventhub: str | None
    partitions: Sequence[str | int] | None
    decode: Decode
    dedupe: bool
    errors: Errors
    decoder: Decoder
    path_format: cf.PathFormat
    workers: int
    progress: bool
    columns: tuple[str, ...] | None = None

    @property
    def want(self) -> frozenset[str] | None:
        # The time filter and the dedupe need these whatever the caller asked for.
        return frozenset(self.columns) | {"sequence_number", "enqueued_time"} if self.columns is not None else None


def options(
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    namespace: str | None = None,
    eventhub: str | None = None,
    partitions: Sequence[str | int] | None = None,
    decode: Decode | None = "json",
    dedupe: bool = True,
    errors: Errors = "raise",
    decoder: Decoder = "auto",
    path_format: str | cf.PathFormat = cf.DEFAULT_PATH_FORMAT,
    workers: int | None = None,
    progress: bool = False,
    columns: Sequence[str] | None = None,
) -> _Options:
    s, e = _utc(start, "start"), _utc(end, "end")
    if s is not None and e is not None and e <= s:
        raise ConfigurationError(f"end {e.isoformat()} is not after start {s.isoformat()}")
    decode = decode or "none"
    if decode not in ("json", "none"):
        raise ConfigurationError(f"decode={decode!r}: use 'json' (thermostat bodies) or None (bodies as bytes)")
    if errors not in ("raise", "skip"):
        raise ConfigurationError(f"errors={errors!r}: use 'raise' or 'skip'")
    if decoder not in ("auto", "fast", "generic"):
        raise ConfigurationError(f"decoder={decoder!r}: use 'auto', 'fast' or 'generic'")
    if isinstance(partitions, (str, int)):
        partitions = [partitions]
    fmt = path_format if isinstance(path_format, cf.PathFormat) else cf.PathFormat(path_format)
    cols = None
    if columns is not None:
        allowed = list(columns_module.RAW_SCHEMA) + (list(bodies.DECODED_SCHEMA) if decode == "json" else [])
        unknown = [c for c in columns if c not in allowed]
        if unknown:
            raise ConfigurationError(f"columns {unknown} do not exist; choose from {', '.join(allowed)}")
        cols = tuple(columns)
    return _Options(
        s, e, namespace, eventhub, partitions, decode, dedupe, errors, decoder, fmt,
        workers or max(2, os.cpu_count() or 2), progress, cols,
    )  # fmt: skip


def load(
    source: Any,
    *,
    container: str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    namespace: str | None = None,
    eventhub: str | None = None,
    partitions: Sequence[str | int] | None = None,
    decode: Decode | None = "json",
    dedupe: bool = True,
    errors: Errors = "raise",
    backend: Literal["polars", "pandas"] = "polars",
    cache: str | os.PathLike[str] | None = None,
    path_format: str | cf.PathFormat = cf.DEFAULT_PATH_FORMAT,
    decoder: Decoder = "auto",
    workers: int | None = None,
    progress: bool = False,
    columns: Sequence[str] | None = None,
) -> Any:
    """Load captured events enqueued in ``[start, end)`` into a polars DataFrame.

    ``source``: a local directory in the Capture layout, a storage connection string with
    ``container=``, or a ``ContainerClient``. ``start``/``end`` (UTC datetimes or ISO text)
    filter on enqueued time and prune the listing; ``namespace``/``eventhub``/``partitions``
    narrow it further. Columns are those of :mod:`iotlib.coldstore.columns`, plus with
    ``decode="json"`` the thermostat body columns of :mod:`iotlib.coldstore.bodies`
    (``device_id``, ``time_observed``, ``temperature``, ``decode_error``). ``dedupe`` keeps one
    row per (namespace, eventhub, partition_id, sequence_number): the first in name order.

    ``errors="raise"`` stops at a truncated or corrupted file with a :class:`ColdStoreError`
    naming the blob; ``"skip"`` leaves it out and lists it in the report. The report
    (:class:`LoadReport`) is the frame's ``report`` attribute (lost by later polars
    operations; ``df.attrs["report"]`` for pandas). ``backend="pandas"`` returns
    ``df.to_pandas()``. ``cache`` is a Parquet cache directory (:mod:`iotlib.coldstore.cache`):
    used when it is up to date with the listed blobs, rebuilt otherwise.
    ``columns`` returns only those columns (in that order), and skips building the others
    where it can: leaving out ``properties``/``system_properties`` makes decoding much
    cheaper, and a cache read only touches the requested Parquet columns.
    ``decoder`` forces the ``"fast"`` or ``"generic"`` path (tests, benchmarks).
    """
    opts = options(
        start=start, end=end, namespace=namespace, eventhub=eventhub, partitions=partitions, decode=decode,
        dedupe=dedupe, errors=errors, decoder=decoder, path_format=path_format, workers=workers, progress=progress,
        columns=columns,
    )  # fmt: skip
    src = open_source(source, container)
    if cache is not None:
        from iotlib.coldstore.cache import load_through_cache

        df, report = load_through_cache(src, opts, cache)
    else:
        df, report = load_frame(src, opts)
    if backend == "pandas":
        pdf = df.to_pandas()
        pdf.attrs["report"] = report
        return pdf
    if backend != "polars":
        raise ConfigurationError(f"backend={backend!r}: use 'polars' or 'pandas'")
    df.report = report  # type: ignore[attr-defined]
    return df


def scan(
    source: Any,
    *,
    container: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    partitions: Sequence[str | int] | None = None,
    **load_options: Any,
) -> pl.LazyFrame:
    """The captured events as a polars LazyFrame; options as :func:`load`.

    With ``cache`` (a local folder) the Parquet cache is first brought up to date — decoding Avro
    only when the listed blobs changed — and then scanned lazily, so later filters and column
    choices read only the Parquet they need: the way to query a long stretch repeatedly. Without
    a cache, the events are loaded and handed over as a LazyFrame.
    """
    if cache is None:
        frame = load(source, container=container, start=start, end=end, partitions=partitions, **load_options)
        return frame.lazy()
    from iotlib.coldstore.cache import load_through_cache, scan_cache

    try:
        opts = options(start=start, end=end, partitions=partitions, **load_options)
    except TypeError as exc:
        raise ConfigurationError(f"scan takes load's options: {exc}") from None
    # Bring the cache up to date without materialising it (no columns asked for).
    load_through_cache(open_source(source, container), dataclasses.replace(opts, columns=()), cache)
    return scan_cache(cache, opts)


def list_blobs(src: Source, opts: _Options, report: LoadReport) -> Listing:
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
    if opts.progress:
        from tqdm.auto import tqdm

        with tqdm(total=report.blobs_listed, desc="listed", unit="blob") as bar:
            bar.update(report.blobs_listed)
    return listing


def load_frame(src: Source, opts: _Options, listing: Listing | None = None) -> tuple[pl.DataFrame, LoadReport]:
    """List, read, decode, filter and dedupe; the frame and its report."""
    report = LoadReport(src.description, opts.start, opts.end)
    if listing is None:
        listing = list_blobs(src, opts, report)
    t0 = time.perf_counter()
    frames = _read_and_decode(src, listing.selected, opts, report)
    report.seconds["read+decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = pl.concat(frames, how="vertical") if frames else _empty(opts)
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
    return df, report


def _empty(opts: _Options) -> pl.DataFrame:
    df = columns_module.empty_raw()
    if opts.decode == "json":
        df = pl.concat([df, pl.DataFrame(schema=bodies.DECODED_SCHEMA)], how="horizontal")
    return df


def _read_and_decode(src: Source, blobs: list[Candidate], opts: _Options, report: LoadReport) -> list[pl.DataFrame]:
    bars = _Bars(opts.progress, len(blobs))
    results: dict[tuple[int, int], Future[pl.DataFrame]] = {}
    failures: dict[int, str] = {}
    io_workers = 8 if type(src).__name__ == "BlobContainer" else 2
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
    bars.close()
    return frames


def _tasks(data: bytes, path: cf.BlobPath, opts: _Options, report: LoadReport, name: str) -> list[Any]:
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


def _fast_task(f: ContainerFile, lo: int, hi: int, path: cf.BlobPath, opts: _Options) -> Any:
    def run() -> pl.DataFrame:
        raw = fastdecode.decode(f.inflate(lo, hi))
        frame = columns_module.raw_frame(raw, path, opts.want)
        if opts.decode == "json":
            frame = pl.concat([frame, bodies.decode_bodies(raw.buf, raw.body)], how="horizontal")
        return frame

    return run


def _finish(frame: pl.DataFrame, opts: _Options) -> pl.DataFrame:
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


__all__ = ["DEDUPE_KEY", "LoadReport", "SkippedBlob", "load", "load_frame", "options"]
