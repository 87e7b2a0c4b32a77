"""Spikes: single readings far off their device's recent behaviour, by a rolling z-score, and the devices behind them.

For each device, readings in event-time order (ties by sequence number; a reading
sent twice is taken once) and the change from one reading to the next. The mean and sample
standard deviation of the device's previous ``window`` changes say how it usually moves; a
reading is a **spike** when the change into it and the change out of it are both at least
``threshold`` standard deviations from that mean, in opposite directions — it jumps and comes
back. A step that stays (a heat event switching off, a sensor freezing) jumps only once and is
not a spike. Readings up to ``2 × window`` minutes before ``start`` give the first ones their
context; the last reading of the range, with no next one, is never a spike.

A whole day of Fabrikam does not fit one sort: over a day's cache the devices are taken in
``buckets`` (by ``device_key`` modulo) of about 20 million readings, one sort at a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from iotlib.analysis import duck
from iotlib.analysis.source import Events, between, events, time_range, warn_if_empty
from iotlib.errors import ConfigurationError

COLUMNS = ("partition_id", "sequence_number", "time_observed", "temperature")

SQL = """
WITH readings AS (
    SELECT {device}, partition_id, sequence_number, time_observed, temperature,
           row_number() OVER (PARTITION BY {device}, time_observed ORDER BY sequence_number) AS copy
    FROM events
    WHERE time_observed >= $context AND time_observed < $end AND temperature IS NOT NULL
), changes AS (
    SELECT *, temperature - lag(temperature) OVER device_order AS change,
              lead(temperature) OVER device_order - temperature AS next_change
    FROM readings WHERE copy = 1
    WINDOW device_order AS (PARTITION BY {device} ORDER BY time_observed, sequence_number)
), scored AS (
    SELECT *, avg(change) OVER previous AS mean, stddev_samp(change) OVER previous AS std,
              count(change) OVER previous AS n
    FROM changes
    WINDOW previous AS (PARTITION BY {device} ORDER BY time_observed, sequence_number
                        ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING)
)
SELECT {device}, partition_id, sequence_number, time_observed, temperature, change, mean, std,
       (change - mean) / std AS zscore
FROM scored
WHERE n = {window} AND std > 0 AND time_observed >= $start
  AND abs((change - mean) / std) >= $threshold AND abs((next_change - mean) / std) >= $threshold
  AND sign(change - mean) <> sign(next_change - mean)
ORDER BY {device}, time_observed, partition_id, sequence_number
"""


def spikes(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    window: int = 20,
    threshold: float = 4.0,
    buckets: int | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """The spikes in ``[start, end)``: device_id, partition_id, sequence_number, time_observed,
    temperature, change (from the previous reading), mean and std (of the previous ``window``
    changes), zscore — sorted by device and time.

    ``buckets`` (default: about 20 million readings each over a day's cache, else 1) bounds memory
    to one bucket's readings.
    """
    ev, lo, hi, context = _prepare(source, registry, start, end, window, threshold)
    count = (buckets or ev.buckets(context, hi)) if ev.keyed else 1
    parts = []
    chosen = range(count)
    if progress:
        from tqdm.auto import tqdm

        chosen = tqdm(chosen, desc="spikes", unit="bucket")
    for b in chosen:
        frame = ev.frame.filter(between("time_observed", context, hi), pl.col("temperature").is_not_null())
        if count > 1:
            frame = frame.filter(pl.col("device_key") % count == b)
        readings = frame.select(ev.device, *COLUMNS).collect(engine="streaming")
        parts.append(_score(readings, ev.device, window, threshold, lo))
    result = _named(ev, pl.concat(parts) if parts else pl.DataFrame())
    return warn_if_empty(result, ev, lo, hi)


def spikes_sql(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    window: int = 20,
    threshold: float = 4.0,
) -> pl.DataFrame:
    """:func:`spikes` in DuckDB SQL (:data:`SQL`, window functions; one query, no buckets)."""
    ev, lo, hi, context = _prepare(source, registry, start, end, window, threshold)
    found = duck.query(ev, SQL.replace("{window}", str(window)), context=context, start=lo, end=hi, threshold=threshold)
    return warn_if_empty(_named(ev, found), ev, lo, hi)


def spike_devices(found: pl.DataFrame, registry: pl.DataFrame) -> pl.DataFrame:
    """The devices that caused the spikes: spikes, first and last spike, building and room; most first."""
    per_device = found.group_by("device_id").agg(
        pl.len().cast(pl.Int64).alias("spikes"),
        pl.col("time_observed").min().alias("first_spike"),
        pl.col("time_observed").max().alias("last_spike"),
        pl.col("zscore").abs().max().alias("max_abs_zscore"),
    )
    places = registry.select("device_id", "building_id", *(c for c in ("room",) if c in registry.columns))
    return per_device.join(places, on="device_id", how="left").sort(
        ["spikes", "max_abs_zscore", "device_id"], descending=[True, True, False]
    )


def _prepare(
    source: Any, registry: pl.DataFrame | None, start: Any, end: Any, window: int, threshold: float
) -> tuple[Events, datetime, datetime, datetime]:
    if not isinstance(window, int) or isinstance(window, bool) or window < 2:
        raise ConfigurationError(f"window={window!r}: a whole number of previous readings, at least 2")
    if not threshold > 0:
        raise ConfigurationError(f"threshold={threshold!r} must be positive")
    if start is None or end is None:
        raise ConfigurationError("spikes needs start and end")
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    assert lo is not None and hi is not None
    return ev, lo, hi, lo - timedelta(minutes=2 * window)


def _score(readings: pl.DataFrame, device: str, window: int, threshold: float, start: datetime) -> pl.DataFrame:
    # A device sends into one partition, so (device, time, sequence number) orders its readings fully.
    ordered = readings.sort(device, "time_observed", "sequence_number")
    same_device = pl.col(device) == pl.col(device).shift(1)
    ordered = ordered.filter(
        ~(same_device & (pl.col("time_observed") == pl.col("time_observed").shift(1))).fill_null(True)
    )
    # Flat column operations on the sorted frame: a change is null at a device's first reading, so
    # every rolling window or next change reaching across two devices comes out null.
    change = pl.when(same_device).then(pl.col("temperature") - pl.col("temperature").shift(1))
    scored = ordered.with_columns(change.alias("change")).with_columns(
        pl.col("change").shift(-1).alias("__next"),
        pl.col("change").shift(1).rolling_mean(window).alias("mean"),
        pl.col("change").shift(1).rolling_std(window).alias("std"),
    )
    z_in = (pl.col("change") - pl.col("mean")) / pl.col("std")
    z_out = (pl.col("__next") - pl.col("mean")) / pl.col("std")
    return (
        scored.filter(
            pl.col("std") > 0,
            pl.col("time_observed") >= start,
            z_in.abs() >= threshold,
            z_out.abs() >= threshold,
            z_in.sign() != z_out.sign(),
        )
        .with_columns(z_in.alias("zscore"))
        .drop("__next")
    )


def _named(ev: Events, found: pl.DataFrame) -> pl.DataFrame:
    columns = ["device_id", *COLUMNS, "change", "mean", "std", "zscore"]
    if found.height == 0 or ev.device not in found.columns:
        return pl.DataFrame(
            schema={
                "device_id": pl.String,
                "partition_id": pl.String,
                "sequence_number": pl.Int64,
                "time_observed": pl.Datetime("us", "UTC"),
                "temperature": pl.Float64,
                "change": pl.Float64,
                "mean": pl.Float64,
                "std": pl.Float64,
                "zscore": pl.Float64,
            }  # fmt: skip
        )
    found = ev.named(found)
    return found.select(columns).sort("device_id", "time_observed", "partition_id", "sequence_number")
