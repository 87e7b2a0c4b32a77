"""What a load says when it finds nothing, or passes over what it cannot read: the report's warnings.

A load that returns no rows should say why — an empty container, a range outside what the store
holds (with the span it does hold), a range that matches the events' own times rather than when
the hub enqueued them — and blobs whose names do not fit the path format are named, never skipped
in silence. Each warning goes to the report (``report.warnings``) and to the ``iotlib.coldstore``
logger.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from iotlib.capture import format as cf
from iotlib.coldstore.listing import Candidate, Listing, find_blobs
from iotlib.coldstore.options import LoadOptions
from iotlib.coldstore.report import LoadReport
from iotlib.coldstore.sources import Source

if TYPE_CHECKING:
    from collections.abc import Callable

_LOG = logging.getLogger("iotlib.coldstore")
#: Files read to compare a range with the events' own times when it holds no enqueued events.
SAMPLE_FILES = 8


def warn(report: LoadReport, text: str) -> None:
    report.warnings.append(text)
    _LOG.warning(text)


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def foreign_names(listing: Listing, opts: LoadOptions, report: LoadReport) -> None:
    """Warn about names that do not fit the path format (they are not read)."""
    names = listing.foreign + listing.foreign_folders
    if not names:
        return
    example = names[0]
    fmt = opts.path_format.format + cf.SUFFIX
    warn(
        report,
        f"{len(names):,} {'name' if len(names) == 1 else 'names'} in {report.source} do not fit the "
        f"Capture path format {fmt} and were not read, e.g. {example!r}: give the format their names follow "
        "(path_format= / --path-format), or load a single file by its path",
    )


def nothing_loaded(
    src: Source, opts: LoadOptions, report: LoadReport, listing: Listing, read: Callable[..., pl.DataFrame]
) -> None:
    """When a load returns no events, say what the store holds instead."""
    if report.events or report.skipped:
        return
    ranged = opts.start is not None or opts.end is not None
    full = listing
    if ranged:  # the range's listing saw only its own folders: list the store's files as a whole
        full = find_blobs(src, opts.path_format, namespace=opts.namespace, eventhub=opts.eventhub,
                          partitions=opts.partitions)  # fmt: skip
    files = full.selected + full.pruned
    if not files:
        if not (full.foreign or full.foreign_folders):
            warn(report, f"{report.source} holds no Capture files: nothing has been captured there yet")
        return
    if not ranged:
        if report.empty_blobs and len(report.empty_blobs) == len(report.blobs_read):
            warn(report, f"{report.source}: no events, only header-only Capture files (windows without events)")
        return
    first = min(f.path.window_start for f in files)
    last = max(f.path.window_start for f in files)
    span = f"its {len(files):,} Capture files have windows starting {_when(first)} to {_when(last)}"
    text = (
        f"no events enqueued in [{_range(opts)}) in {report.source}: {span} "
        "(--start/--end, start=/end=, select the time the hub enqueued the events)"
    )
    observed = _observed_span(src, opts, files, read)
    if observed is not None and _overlaps(observed, opts):
        text += (
            f"; the range does match the events' own times (time_observed {_when(observed[0])} to "
            f"{_when(observed[1])} in the files sampled): filter on time_observed after loading instead"
        )
    warn(report, text)


def _range(opts: LoadOptions) -> str:
    return f"{_when(opts.start) if opts.start else '…'}, {_when(opts.end) if opts.end else '…'}"


def _observed_span(
    src: Source, opts: LoadOptions, files: list[Candidate], read: Callable[..., pl.DataFrame]
) -> tuple[datetime, datetime] | None:
    """The events' own times in a few files spread over the store (None without decoded bodies)."""
    if opts.decode != "json":
        return None
    ordered = sorted(files, key=lambda c: c.path.window_start)
    step = max(1, len(ordered) // SAMPLE_FILES)
    sample = ordered[::step][:SAMPLE_FILES] + ordered[-1:]
    sample = list({c.info.name: c for c in sample}.values())
    quick = dataclasses.replace(opts, start=None, end=None, progress=False, errors="skip",
                                columns=("time_observed",))  # fmt: skip
    frame = read(src, quick, Listing(sample, [], []))
    times = frame["time_observed"].drop_nulls()
    if times.is_empty():
        return None
    return times.min(), times.max()  # type: ignore[return-value]


def _overlaps(span: tuple[datetime, datetime], opts: LoadOptions) -> bool:
    lo, hi = span
    return (opts.end is None or lo < opts.end) and (opts.start is None or hi >= opts.start)
