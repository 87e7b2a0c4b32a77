"""Completeness: expected against received readings per device and hour, and devices that went silent.

A thermostat reads once a ``period`` (60 s), so a whole hour should hold 60 readings of it.
:func:`device_hours` sums each device's readings per UTC hour of ``time_observed`` (one
pass: readings, min and max temperature — :mod:`~iotlib.analysis.stuck` reuses it; over a day's
cache by dense keys, :mod:`~iotlib.analysis.dense`, else a streaming group-by); :func:`completeness` sets them against what the period leads to expect, for every device
of the registry and every hour of the range, so a device that sent nothing shows as 0 %.
Readings sent late (buffered while offline) count for the hour they were observed in; a
duplicate send counts twice.

An absence of events is itself a signal: :func:`silent_devices` lists devices with whole hours
in which *nothing arrived* (by ``enqueued_time``) — offline, powered off, or lost — even if
buffered readings for those hours came in later.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from iotlib.analysis import dense, duck
from iotlib.analysis.source import UTC_US, Events, between, events, hour_of, hours, time_range, warn_if_empty
from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError

# Hours by integer arithmetic on epoch microseconds: time_bucket() on a TIMESTAMPTZ goes through
# the session's calendar and costs several times more over 144M rows.
DEVICE_HOURS_SQL = """
SELECT {device}, to_timestamp(h * 3600) AS hour, readings, min_temperature, max_temperature
FROM (
    SELECT {device}, epoch_us(time_observed) // 3600000000 AS h, count(*) AS readings,
           min(temperature) AS min_temperature, max(temperature) AS max_temperature
    FROM events
    WHERE time_observed >= $start AND time_observed < $end
    GROUP BY ALL
)
"""

ARRIVALS_SQL = """
SELECT {device}, to_timestamp(h * 3600) AS hour, arrived
FROM (
    SELECT {device}, epoch_us(enqueued_time) // 3600000000 AS h, count(*) AS arrived
    FROM events
    WHERE enqueued_time >= $start AND enqueued_time < $end
    GROUP BY ALL
)
"""


def device_hours(
    source: Any, registry: pl.DataFrame | None = None, *, start: datetime | str, end: datetime | str
) -> pl.DataFrame:
    """Per device (``device_id``, and ``device_key`` over a day's cache) and UTC hour of ``time_observed``:
    readings, min and max temperature."""
    ev, lo, hi = _prepare(source, registry, start, end)
    if ev.keyed:  # device × hour numbered densely: arrays, batch by batch
        first = hours(lo, hi)
        found = dense.aggregate(
            dense.in_range(ev, "time_observed", lo, hi),
            groups=np.arange(ev.registry.height),
            start=first[0],
            step_seconds=3600,
            slots=first.len(),
            within=(lo, hi),
        ).select(
            pl.col("group").cast(pl.UInt32).alias("device_key"),
            (pl.lit(first[0]) + pl.duration(hours=pl.col("slot"))).alias("hour"),
            pl.col("rows").alias("readings"),
            "min_temperature",
            "max_temperature",
        )
    else:
        found = (
            ev.frame.filter(between("time_observed", lo, hi))
            .group_by(ev.device, hour_of("time_observed").alias("hour"))
            .agg(
                pl.len().cast(pl.Int64).alias("readings"),
                pl.col("temperature").min().alias("min_temperature"),
                pl.col("temperature").max().alias("max_temperature"),
            )
            .collect(engine="streaming")
        )
    return warn_if_empty(_named(ev, found), ev, lo, hi)


def device_hours_sql(
    source: Any, registry: pl.DataFrame | None = None, *, start: datetime | str, end: datetime | str
) -> pl.DataFrame:
    """:func:`device_hours` in DuckDB SQL (:data:`DEVICE_HOURS_SQL`)."""
    ev, lo, hi = _prepare(source, registry, start, end)
    found = duck.query(ev, DEVICE_HOURS_SQL, start=lo, end=hi).with_columns(pl.col("readings").cast(pl.Int64))
    return warn_if_empty(_named(ev, found), ev, lo, hi)


def completeness(
    hours_found: pl.DataFrame,
    registry: pl.DataFrame,
    *,
    start: datetime | str,
    end: datetime | str,
    period: timedelta | str = "60s",
) -> pl.DataFrame:
    """Every registry device × every UTC hour of ``[start, end)``: building_id, expected, received, ratio.

    ``hours_found`` is :func:`device_hours` (or its SQL twin) over the same range. ``expected`` is
    the part of the hour inside the range divided by ``period``.
    """
    lo, hi = time_range(start, end)
    if lo is None or hi is None:
        raise ConfigurationError("completeness needs start and end")
    every = to_timedelta(period).total_seconds()
    if every <= 0:
        raise ConfigurationError(f"period={period!r} must be positive")
    grid = (
        hours(lo, hi)
        .to_frame()
        .with_columns(
            (
                (
                    pl.min_horizontal(pl.col("hour") + timedelta(hours=1), pl.lit(hi, UTC_US))
                    - pl.max_horizontal("hour", pl.lit(lo, UTC_US))
                ).dt.total_microseconds()
                / 1e6
                / every
            ).alias("expected")
        )
    )
    devices = registry.select("device_id", "building_id")
    return (
        devices.join(grid, how="cross")
        .join(hours_found.select("device_id", "hour", "readings"), on=["device_id", "hour"], how="left")
        .with_columns(pl.col("readings").fill_null(0).alias("received"))
        .with_columns((pl.col("received") / pl.col("expected")).alias("ratio"))
        .select("device_id", "building_id", "hour", "expected", "received", "ratio")
        .sort("device_id", "hour")
    )


def arrivals(
    source: Any, registry: pl.DataFrame | None = None, *, start: datetime | str, end: datetime | str
) -> pl.DataFrame:
    """Per device and UTC hour of ``enqueued_time``: events that arrived (``arrived``)."""
    ev, lo, hi = _prepare(source, registry, start, end)
    if ev.keyed:
        first = hours(lo, hi)
        found = dense.aggregate(
            dense.in_range(ev, "enqueued_time", lo, hi), groups=np.arange(ev.registry.height), start=first[0],
            step_seconds=3600, slots=first.len(), time="enqueued_time", within=(lo, hi),
        ).select(
            pl.col("group").cast(pl.UInt32).alias("device_key"),
            (pl.lit(first[0]) + pl.duration(hours=pl.col("slot"))).alias("hour"),
            pl.col("rows").alias("arrived"),
        )  # fmt: skip
    else:
        found = (
            ev.frame.filter(between("enqueued_time", lo, hi))
            .group_by(ev.device, hour_of("enqueued_time").alias("hour"))
            .agg(pl.len().cast(pl.Int64).alias("arrived"))
            .collect(engine="streaming")
        )
    return warn_if_empty(_named(ev, found), ev, lo, hi)


def arrivals_sql(
    source: Any, registry: pl.DataFrame | None = None, *, start: datetime | str, end: datetime | str
) -> pl.DataFrame:
    """:func:`arrivals` in DuckDB SQL (:data:`ARRIVALS_SQL`)."""
    ev, lo, hi = _prepare(source, registry, start, end)
    found = duck.query(ev, ARRIVALS_SQL, start=lo, end=hi).with_columns(pl.col("arrived").cast(pl.Int64))
    return warn_if_empty(_named(ev, found), ev, lo, hi)


def silent_devices(
    arrived: pl.DataFrame, registry: pl.DataFrame, *, start: datetime | str, end: datetime | str
) -> pl.DataFrame:
    """Devices with whole hours of ``[start, end)`` in which nothing of theirs arrived:
    device_id, building_id, silent_hours, first_silent, last_silent; most silent first.

    ``arrived`` is :func:`arrivals` over the same range. Only whole hours inside the range count.
    """
    lo, hi = time_range(start, end)
    if lo is None or hi is None:
        raise ConfigurationError("silent_devices needs start and end")
    whole = hours(lo, hi).to_frame().filter(pl.col("hour") >= lo, pl.col("hour") + timedelta(hours=1) <= hi)
    grid = registry.select("device_id", "building_id").join(whole, how="cross")
    return (
        grid.join(arrived.select("device_id", "hour"), on=["device_id", "hour"], how="anti")
        .group_by("device_id", "building_id")
        .agg(
            pl.len().cast(pl.Int64).alias("silent_hours"),
            pl.col("hour").min().alias("first_silent"),
            pl.col("hour").max().alias("last_silent"),
        )
        .sort(["silent_hours", "device_id"], descending=[True, False])
    )


def _prepare(source: Any, registry: pl.DataFrame | None, start: Any, end: Any) -> tuple[Events, datetime, datetime]:
    if start is None or end is None:
        raise ConfigurationError("device-hour questions need start and end")
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    assert lo is not None and hi is not None
    return ev, lo, hi


def _named(ev: Events, found: pl.DataFrame) -> pl.DataFrame:
    """``device_id`` for each row (and ``device_key`` over a day's cache), sorted by device and hour."""
    found = ev.named(found)
    found = found.with_columns(pl.col("hour").cast(UTC_US))
    first = ["device_id", *(["device_key"] if ev.keyed else [])]
    return found.select(*first, *(c for c in found.columns if c not in first)).sort("device_id", "hour")
