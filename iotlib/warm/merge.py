"""Every partition's partial windows merged into the building windows, and when each became final.

Each partition of the hub is windowed on its own (:mod:`iotlib.warm.partition`) and closes a
*partial* window per building — the sum of its temperatures (added in arrival order), its reading
count and its latest observation — once its own watermark has passed the window's end. A building
window is **final** once every partition's watermark has passed it: then no partition can add to it.

- :func:`merge` adds the partials up (sums in partition order, so the result is the same bits
  wherever it is computed) and gives the building window: average, latest observation, readings;
- :func:`closed_at` is when that happened: for each partition, the arrival tick of its first
  watermark evaluation past the end; the window's ``closed_at`` is the latest of those (null when a
  partition never passed it, i.e. the window was emitted by the end of the stream).

The warm store and the batch job (:mod:`iotlib.warm.equivalence`) both call these two functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from iotlib.processing import columns as C
from iotlib.processing.aggregates import Agg
from iotlib.processing.batch import WINDOW_END, WINDOW_START
from iotlib.processing.building import BUILDING, BUILDING_COLUMNS, TEMPERATURE

#: What each partition keeps per building and window.
PARTIAL_AGGS = (
    Agg("temperature_sum", "sum", TEMPERATURE),
    Agg("last_observed_time", "max", C.TIME_OBSERVED),
    Agg("events", "count", C.TIME_OBSERVED),
)
PARTIAL_COLUMNS = [C.PARTITION, BUILDING, WINDOW_START, WINDOW_END, "temperature_sum", "last_observed_time", "events"]
_KEYS = [WINDOW_END, BUILDING, WINDOW_START]


def partition_order(partition_id: pl.Expr) -> list[pl.Expr]:
    """Sort keys that put Event Hubs partition ids in their numeric order ("2" before "10")."""
    return [partition_id.cast(pl.Int64, strict=False), partition_id]


def merge(partials: pl.DataFrame) -> pl.DataFrame:
    """Building windows (``BUILDING_COLUMNS``, in window-end order) from partial windows (``PARTIAL_COLUMNS``)."""
    if partials.height == 0:
        return pl.DataFrame(schema={c: t for c, t in _schema(partials).items()})
    ordered = partials.sort([*_KEYS, *partition_order(pl.col(C.PARTITION))], maintain_order=True)
    merged = (
        ordered.with_columns(pl.col("temperature_sum").cum_sum().over(_KEYS).alias("__sum"))
        .group_by(_KEYS, maintain_order=True)
        .agg(
            pl.col("__sum").last(),
            pl.col("last_observed_time").max(),
            pl.col("events").sum().cast(pl.Int64),
        )
    )
    return merged.select(
        pl.col(BUILDING).cast(pl.Int32),
        WINDOW_START,
        WINDOW_END,
        (pl.col("__sum") / pl.col("events")).alias("avg_temperature"),
        "last_observed_time",
        "events",
    )


def _schema(partials: pl.DataFrame) -> dict[str, pl.DataType]:
    utc = C.UTC_US
    return {BUILDING: pl.Int32(), WINDOW_START: utc, WINDOW_END: utc, "avg_temperature": pl.Float64(),
            "last_observed_time": utc, "events": pl.Int64()}  # fmt: skip


def closed_at(ends: pl.Series, watermarks: pl.DataFrame, partitions: Sequence[str]) -> pl.Series:
    """For each window end, when every partition's frontier had passed it (null if one never did).

    ``watermarks``: every partition's evaluations (``partition_id``, ``tick_start``, ``frontier``;
    times as datetimes) — at least those whose frontier is past the earliest end asked about.
    """
    end_us = ends.cast(C.UTC_US).dt.epoch("us").to_numpy()
    latest = np.full(len(end_us), np.iinfo(np.int64).min, dtype=np.int64)
    known = np.ones(len(end_us), dtype=bool)
    marks = watermarks.select(
        pl.col(C.PARTITION).cast(pl.String),
        pl.col("tick_start").cast(C.UTC_US).dt.epoch("us").alias("t"),
        pl.col("frontier").cast(C.UTC_US).dt.epoch("us").alias("f"),
    ).sort(C.PARTITION, "t")
    by_partition = {str(k[0]): f for k, f in marks.partition_by(C.PARTITION, as_dict=True).items()}
    for pid in partitions:
        own = by_partition.get(str(pid))
        if own is None or own.height == 0:
            known[:] = False
            break
        f = np.maximum.accumulate(own["f"].to_numpy())  # a watermark never goes back
        t = own["t"].to_numpy()
        j = np.searchsorted(f, end_us, side="right")  # first evaluation whose frontier passed the end
        passed = j < len(f)
        known &= passed
        latest = np.where(passed, np.maximum(latest, t[np.minimum(j, len(t) - 1)]), latest)
    out = pl.Series("closed_at", latest, dtype=pl.Int64).cast(C.UTC_US)
    return pl.select(pl.when(pl.lit(pl.Series(known))).then(pl.lit(out)).otherwise(None)).to_series().alias("closed_at")


def final_windows(partials: pl.DataFrame, watermarks: pl.DataFrame, partitions: Sequence[str]) -> pl.DataFrame:
    """Merged windows with their ``closed_at`` (:data:`BUILDING_COLUMNS` + ``closed_at``)."""
    windows = merge(partials)
    return windows.with_columns(closed_at(windows[WINDOW_END], watermarks, partitions))


__all__ = ["BUILDING_COLUMNS", "PARTIAL_AGGS", "PARTIAL_COLUMNS", "closed_at", "final_windows", "merge"]
