"""The Parquet cache / export: decoded events as zstd Parquet, hive-partitioned by date.

:func:`to_parquet` writes ``<dest>/date=YYYY-MM-DD[/<other>=…]/part-0.parquet`` (UTC date of
``enqueued_time``; add e.g. ``partition_by=("date", "building")`` after joining the
device-to-building reference data) and a manifest ``_coldstore.json``: the load options and
every source blob (name, size, ETag or mtime) the data came from. ``load(..., cache=dest)``
lists the blobs again (the cheap, pruned listing), and when every one of them is in the
manifest unchanged and the manifest's range covers the request, reads the Parquet instead of
decoding Avro; otherwise it decodes and rewrites the cache. (A blob deleted from the store is
not noticed: the cache keeps its events.)

Reading the cache elsewhere — the partition column ``date`` comes from the folder names:

- polars: ``pl.scan_parquet("dest/**/*.parquet", hive_partitioning=True)``
- DuckDB: ``SELECT … FROM read_parquet('dest/**/*.parquet', hive_partitioning = true)``
- Spark: ``spark.read.parquet("abfss://<container>@<account>.dfs.core.windows.net/<dest>")``
  (or ``wasbs://``): partition discovery turns ``date=…`` into a column; filters on it prune
  folders.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

import polars as pl
import pyarrow.parquet as pq

from iotlib.coldstore import notices
from iotlib.coldstore.listing import Candidate, Listing
from iotlib.coldstore.options import LoadOptions, LoadParameters, load_options
from iotlib.coldstore.reader import empty_frame, list_blobs, load_frame
from iotlib.coldstore.report import LoadReport
from iotlib.coldstore.sources import Source, open_source
from iotlib.errors import ColdStoreError, ConfigurationError

MANIFEST = "_coldstore.json"
VERSION = 1


def to_parquet(
    frame_or_source: Any,
    dest: str | os.PathLike[str] | Any,
    *,
    partition_by: Sequence[str] = ("date",),
    prefix: str = "",
    report: LoadReport | None = None,
    **parameters: Unpack[LoadParameters],
) -> list[str]:
    """Write events as zstd Parquet under ``dest``, hive-partitioned; returns the files written.

    ``frame_or_source`` is a frame from :func:`iotlib.coldstore.load` (polars or pandas; pass its
    ``report`` to record where it came from in the manifest) or anything ``load`` accepts (then
    ``parameters`` — ``start``, ``end``, ``container`` … — are ``load``'s). ``dest`` is a local
    directory, or a ``ContainerClient`` (files go under ``prefix``). ``date`` (UTC date of
    ``enqueued_time``) is derived when partitioning by it.
    """
    if isinstance(frame_or_source, pl.DataFrame) or _is_pandas(frame_or_source):
        df = frame_or_source if isinstance(frame_or_source, pl.DataFrame) else pl.from_pandas(frame_or_source)
    else:
        opts = load_options(**parameters)
        src = open_source(frame_or_source, opts.container)
        df, report = load_through_cache(src, opts, opts.cache) if opts.cache is not None else load_frame(src, opts)
    return _write(df, dest, partition_by=partition_by, prefix=prefix, manifest=_manifest(report, None, None))


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "to_numpy")


def _write(
    df: pl.DataFrame, dest: Any, *, partition_by: Sequence[str], prefix: str, manifest: dict[str, Any]
) -> list[str]:
    parts = list(partition_by)
    if "date" in parts and "date" not in df.columns:
        df = df.with_columns(date=pl.col("enqueued_time").dt.date())
    missing = [c for c in parts if c not in df.columns]
    if missing:
        raise ConfigurationError(f"cannot partition by {missing}: not columns of the frame ({', '.join(df.columns)})")
    groups = df.partition_by(parts, as_dict=True, maintain_order=True) if parts else {(): df}
    root = None if hasattr(dest, "upload_blob") else Path(os.fspath(dest))  # None: a ContainerClient
    if root is not None:
        _remove_previous(root)
        root.mkdir(parents=True, exist_ok=True)
    written = []
    for key, part in groups.items():
        folder = "/".join(f"{c}={v}" for c, v in zip(parts, key))
        name = "/".join(x for x in (prefix.strip("/"), folder, "part-0.parquet") if x)
        buf = io.BytesIO()
        part.drop(parts).write_parquet(buf, compression="zstd", statistics=True)
        if root is None:
            dest.upload_blob(name, buf.getvalue(), overwrite=True)
        else:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue())
        written.append(name)
    manifest = {**manifest, "files": written, "rows": df.height, "partition_by": parts}
    text = json.dumps(manifest, indent=1, default=str)
    if root is None:
        dest.upload_blob("/".join(x for x in (prefix.strip("/"), MANIFEST) if x), text.encode(), overwrite=True)
    else:
        (root / MANIFEST).write_text(text)
    return written


def _remove_previous(root: Path) -> None:
    """Delete what an earlier cache write left (only the files its manifest names)."""
    old = root / MANIFEST
    if not old.exists():
        return
    try:
        files = json.loads(old.read_text()).get("files", [])
    except ValueError:
        raise ColdStoreError(f"cache manifest {old} is not JSON: remove the cache folder") from None
    for name in files:
        p = root / name
        p.unlink(missing_ok=True)
        for parent in p.parents:
            if parent == root or any(parent.iterdir()):
                break
            shutil.rmtree(parent, ignore_errors=True)
    old.unlink()


def _options_key(opts: LoadOptions) -> dict[str, Any]:
    return {
        "decode": opts.decode,
        "dedupe": opts.dedupe,
        "namespace": opts.namespace,
        "eventhub": opts.eventhub,
        "partitions": sorted(str(p) for p in opts.partitions) if opts.partitions is not None else None,
        "path_format": opts.path_format.format,
    }


def _manifest(report: LoadReport | None, opts: LoadOptions | None, listing: Listing | None) -> dict[str, Any]:
    out: dict[str, Any] = {"version": VERSION, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if report is not None:
        out["source"] = report.source
        out["start"] = report.start.isoformat() if report.start else None
        out["end"] = report.end.isoformat() if report.end else None
    if opts is not None:
        out["options"] = _options_key(opts)
    if listing is not None:
        out["blobs"] = {c.info.name: [c.info.size, c.info.version] for c in listing.selected}
    return out


def _covers(manifest: dict[str, Any], opts: LoadOptions) -> bool:
    lo, hi = manifest.get("start"), manifest.get("end")
    if lo is not None and (opts.start is None or opts.start.isoformat() < lo):
        return False
    if hi is not None and (opts.end is None or opts.end.isoformat() > hi):
        return False
    return True


def freshness(manifest: dict[str, Any] | None, opts: LoadOptions, listing: Listing) -> str | None:
    """None when the cache answers this load; else why not."""
    if manifest is None:
        return "no cache yet"
    if manifest.get("version") != VERSION or manifest.get("options") != _options_key(opts):
        return "built with other options"
    if not _covers(manifest, opts):
        return "built for a narrower time range"
    known = manifest.get("blobs", {})
    changed = [c.info.name for c in listing.selected if known.get(c.info.name) != [c.info.size, c.info.version]]
    if changed:
        return f"{len(changed)} new or changed blobs (first: {changed[0]})"
    return None


def load_through_cache(
    src: Source, opts: LoadOptions, cache: str | os.PathLike[str]
) -> tuple[pl.DataFrame, LoadReport]:
    """Serve a load from the Parquet cache at ``cache``, bringing it up to date first (:func:`refresh_cache`)."""
    report = refresh_cache(src, opts, cache)
    t0 = time.perf_counter()
    df = read_cache(cache, opts)
    report.seconds["cache"] = time.perf_counter() - t0
    if report.cache.startswith("hit"):
        report.events = df.height
    return df, report


def refresh_cache(src: Source, opts: LoadOptions, cache: str | os.PathLike[str]) -> LoadReport:
    """Bring the Parquet cache at ``cache`` up to date with the listed blobs; the report says how.

    A rebuild goes one (namespace, event hub, partition) at a time — an event's copies all live in
    its partition, so the dedupe is exact — and appends each to its dates' Parquet files: memory
    holds one partition's stretch, never the whole range.
    """
    root = Path(os.fspath(cache))
    report = LoadReport(src.description, opts.start, opts.end)
    listing = list_blobs(src, opts, report)
    manifest = None
    if (root / MANIFEST).exists():
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except ValueError:
            manifest = None
    why = freshness(manifest, opts, listing)
    if why is None:
        assert manifest is not None  # a fresh cache has one
        report.cache = f"hit: read {len(manifest.get('files', []))} Parquet files"
        return report
    full = dataclasses.replace(opts, columns=None)  # the cache keeps every column
    by_partition: dict[tuple[str, str, str], list[Candidate]] = {}
    for cand in listing.selected:
        by_partition.setdefault((cand.path.namespace, cand.path.eventhub, cand.path.partition_id), []).append(cand)
    _remove_previous(root)
    root.mkdir(parents=True, exist_ok=True)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for blobs in by_partition.values():
            df, part = load_frame(src, full, Listing(blobs, [], []), explain_empty=False)
            _add(report, part)
            dated = df.with_columns(date=pl.col("enqueued_time").dt.date())
            del df
            days = dated["date"].unique(maintain_order=True)
            for day in days:
                rows = dated if len(days) == 1 else dated.filter(pl.col("date") == day)
                table = rows.drop("date").to_arrow()
                folder = f"date={day}"
                if folder not in writers:
                    (root / folder).mkdir(exist_ok=True)
                    writers[folder] = pq.ParquetWriter(
                        root / folder / "part-0.parquet", table.schema, compression="zstd"
                    )
                writers[folder].write_table(table)
                del table, rows
            del dated
    finally:
        for writer in writers.values():
            writer.close()
    files = [f"{folder}/part-0.parquet" for folder in sorted(writers)]
    manifest = {**_manifest(report, opts, listing), "files": files, "rows": report.events, "partition_by": ["date"]}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    report.cache = f"rebuilt: {why}"
    if not report.events:
        notices.nothing_loaded(src, opts, report, listing, lambda *a: load_frame(*a, explain_empty=False)[0])
    return report


def _add(total: LoadReport, part: LoadReport) -> None:
    """Add one partition's load to the whole rebuild's report."""
    total.blobs_read += part.blobs_read
    total.bytes_read += part.bytes_read
    total.empty_blobs += part.empty_blobs
    total.generic_blobs += part.generic_blobs
    total.skipped += part.skipped
    total.events_decoded += part.events_decoded
    total.events_outside_range += part.events_outside_range
    total.duplicates_removed += part.duplicates_removed
    total.decode_errors += part.decode_errors
    total.events += part.events
    for step, seconds in part.seconds.items():
        total.seconds[step] = total.seconds.get(step, 0.0) + seconds


def scan_cache(root: str | os.PathLike[str], opts: LoadOptions | None = None) -> pl.LazyFrame:
    """The cached events as a LazyFrame (optionally filtered like ``opts``), columns as ``load`` returns them."""
    root = Path(os.fspath(root))
    files = json.loads((root / MANIFEST).read_text()).get("files", [])
    if not files:
        return (empty_frame(opts) if opts else pl.DataFrame()).lazy()
    lf = pl.scan_parquet([str(root / f) for f in files], hive_partitioning=True)
    if opts is not None:
        if opts.start is not None:
            lf = lf.filter(pl.col("date") >= opts.start.date(), pl.col("enqueued_time") >= opts.start)
        if opts.end is not None:
            lf = lf.filter(pl.col("date") <= opts.end.date(), pl.col("enqueued_time") < opts.end)
        if opts.partitions is not None:
            lf = lf.filter(pl.col("partition_id").is_in([str(p) for p in opts.partitions]))
    names = [c for c in lf.collect_schema().names() if c != "date"]
    if opts is not None and opts.columns is not None:
        names = list(opts.columns)
    return lf.select(names)


def read_cache(root: str | os.PathLike[str], opts: LoadOptions | None = None) -> pl.DataFrame:
    """The cached events (optionally filtered like ``opts``), columns as ``load`` returns them."""
    return scan_cache(root, opts).collect()
