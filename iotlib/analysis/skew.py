"""Clock skew per device: ``time_observed`` (the device's clock) against ``enqueued_time`` (the hub's).

An event reaches the hub some milliseconds after it is observed, so ``enqueued - observed`` is a
small positive delay — for a device whose clock is right. A clock behind by *S* adds *S* to every
delay; a clock ahead subtracts it, down to negative delays. The smallest delay a device shows is
therefore its skew plus the fastest trip, whatever buffering (offline bursts) did to the others:
``skew_seconds = min(enqueued - observed)``, and a device is ``skewed`` when it is beyond
``tolerance`` either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from iotlib.analysis import dense, duck
from iotlib.analysis.source import Events, between, events, time_range, warn_if_empty
from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError

SQL = """
SELECT {device}, count(*) AS readings,
       min(epoch_us(enqueued_time) - epoch_us(time_observed)) / 1e6 AS skew_seconds,
       max(epoch_us(enqueued_time) - epoch_us(time_observed)) / 1e6 AS max_delay_seconds
FROM events
WHERE enqueued_time >= $start AND enqueued_time < $end AND time_observed IS NOT NULL
GROUP BY {device}
"""


def clock_skew(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    tolerance: timedelta | str = "30s",
) -> pl.DataFrame:
    """Per device: readings, skew_seconds, max_delay_seconds, skewed; the most skewed first."""
    ev, lo, hi, limit = _prepare(source, registry, start, end, tolerance)
    delay = (pl.col("enqueued_time").dt.epoch("us") - pl.col("time_observed").dt.epoch("us")) / 1e6
    frame = ev.frame.filter(between("enqueued_time", lo, hi), pl.col("time_observed").is_not_null())
    if ev.keyed:  # one slot spanning the range, by dense device keys
        seconds = -(-int((hi - lo).total_seconds()) // 1)
        found = dense.aggregate(
            frame, groups=np.arange(ev.registry.height), start=lo, step_seconds=seconds + 1, slots=1,
            time="enqueued_time", value=delay,
        ).select(
            pl.col("group").cast(pl.UInt32).alias("device_key"),
            pl.col("rows").alias("readings"),
            pl.col("min_temperature").alias("skew_seconds"),
            pl.col("max_temperature").alias("max_delay_seconds"),
        )  # fmt: skip
    else:
        found = (
            frame.group_by(ev.device)
            .agg(
                pl.len().cast(pl.Int64).alias("readings"),
                delay.min().alias("skew_seconds"),
                delay.max().alias("max_delay_seconds"),
            )
            .collect(engine="streaming")
        )
    return warn_if_empty(_named(ev, found, limit), ev, lo, hi)


def clock_skew_sql(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    tolerance: timedelta | str = "30s",
) -> pl.DataFrame:
    """:func:`clock_skew` in DuckDB SQL (:data:`SQL`)."""
    ev, lo, hi, limit = _prepare(source, registry, start, end, tolerance)
    found = duck.query(ev, SQL, start=lo, end=hi).with_columns(pl.col("readings").cast(pl.Int64))
    return warn_if_empty(_named(ev, found, limit), ev, lo, hi)


def _prepare(
    source: Any, registry: pl.DataFrame | None, start: Any, end: Any, tolerance: Any
) -> tuple[Events, datetime, datetime, float]:
    if start is None or end is None:
        raise ConfigurationError("clock_skew needs start and end")
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    limit = to_timedelta(tolerance).total_seconds()
    if limit <= 0:
        raise ConfigurationError(f"tolerance={tolerance!r} must be positive")
    assert lo is not None and hi is not None
    return ev, lo, hi, limit


def _named(ev: Events, found: pl.DataFrame, limit: float) -> pl.DataFrame:
    found = ev.named(found)
    return (
        found.with_columns((pl.col("skew_seconds").abs() > limit).alias("skewed"))
        .select("device_id", "readings", "skew_seconds", "max_delay_seconds", "skewed")
        .sort(pl.col("skew_seconds").abs(), "device_id", descending=[True, False])
    )
