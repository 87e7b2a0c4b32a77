"""The building's local day: readings grouped by the calendar day in the building's IANA time zone.

A day in New York is not a UTC day, and not always 24 hours: the spring-forward day has 23, the
fall-back day 25. Converting 144 million timestamps one by one to 13 time zones is slow, so
the readings are first summed per building and 15-minute slot of UTC time (a streaming
group-by into a few tens of thousands of groups); each slot then gets its local date from the
building's zone — every zone change happens on a 15-minute boundary of UTC, so a slot never
straddles two local days — and the slots are summed per local day. Exact for counts, sums,
minima and maxima, hence the mean.

Result per building and local date: ``time_zone``, ``day_hours`` (23, 24 or 25: the length of
that local day), ``readings``, ``mean_temperature``, ``min_temperature``, ``max_temperature``,
``first_observed``/``last_observed`` (UTC) and ``covered_hours`` (15-minute slots with readings,
in hours: a local day the store only partly holds shows it). A registry without time zones is
a clear error naming the column.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from iotlib.analysis import dense, duck
from iotlib.analysis.source import Events, between, check_buildings, check_time_zones, events, time_range, warn_if_empty

SLOT_SECONDS = 900

SLOTS_SQL = """
SELECT building_id, to_timestamp(n * 900) AS slot, readings, total, min_temperature, max_temperature,
       first_observed, last_observed
FROM (
    SELECT r.building_id, epoch_us(e.time_observed) // 900000000 AS n,
           count(*) AS readings, sum(e.temperature) AS total, min(e.temperature) AS min_temperature,
           max(e.temperature) AS max_temperature, min(e.time_observed) AS first_observed,
           max(e.time_observed) AS last_observed
    FROM events e JOIN registry r ON e.{device} = r.{device}
    WHERE e.temperature IS NOT NULL
      AND ($start IS NULL OR e.time_observed >= $start) AND ($end IS NULL OR e.time_observed < $end)
      AND ($buildings IS NULL OR list_contains($buildings, r.building_id))
    GROUP BY ALL
)
"""

SQL = f"""
WITH slots AS ({SLOTS_SQL}),
zones AS (SELECT DISTINCT building_id, time_zone FROM registry)
SELECT s.building_id, CAST(timezone(z.time_zone, s.slot) AS DATE) AS local_date, z.time_zone,
       sum(s.readings) AS readings, sum(s.total) / sum(s.readings) AS mean_temperature,
       min(s.min_temperature) AS min_temperature, max(s.max_temperature) AS max_temperature,
       min(s.first_observed) AS first_observed, max(s.last_observed) AS last_observed,
       count(*) * {SLOT_SECONDS} / 3600.0 AS covered_hours
FROM slots s JOIN zones z USING (building_id)
GROUP BY ALL
ORDER BY s.building_id, local_date
"""


def local_day_stats(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    buildings: int | list[int] | None = None,
) -> pl.DataFrame:
    """Daily readings and min/mean/max temperature per building, by the building's local day (see the module text)."""
    ev, lo, hi, wanted = _prepare(source, registry, start, end, buildings)
    if ev.keyed:  # readings without a temperature are left out as the slots are summed
        slots = building_slots(ev, dense.in_range(ev, "time_observed", lo, hi), lo, hi, wanted, SLOT_SECONDS)
        return warn_if_empty(_by_local_day(slots, ev), ev, lo, hi)
    frame = ev.frame.filter(between("time_observed", lo, hi), pl.col("temperature").is_not_null())
    frame = ev.with_devices("building_id", frame=frame.select(ev.device, "time_observed", "temperature"))
    if wanted is not None:
        frame = frame.filter(pl.col("building_id").is_in(wanted))
    slot_us = SLOT_SECONDS * 1_000_000
    slots = (
        frame.group_by(
            "building_id",
            ((pl.col("time_observed").dt.epoch("us") // slot_us) * slot_us)
            .cast(pl.Datetime("us", "UTC"))
            .alias("slot"),
        )
        .agg(
            pl.len().cast(pl.Int64).alias("readings"),
            pl.col("temperature").sum().alias("total"),
            pl.col("temperature").min().alias("min_temperature"),
            pl.col("temperature").max().alias("max_temperature"),
            pl.col("time_observed").min().alias("first_observed"),
            pl.col("time_observed").max().alias("last_observed"),
        )
        .collect(engine="streaming")
    )
    return warn_if_empty(_by_local_day(slots, ev), ev, lo, hi)


def local_day_stats_sql(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    buildings: int | list[int] | None = None,
) -> pl.DataFrame:
    """:func:`local_day_stats` in DuckDB SQL (:data:`SQL`: the same slots, local dates by ``timezone()``)."""
    ev, lo, hi, wanted = _prepare(source, registry, start, end, buildings)
    result = duck.query(ev, SQL, start=lo, end=hi, buildings=wanted)
    result = result.with_columns(
        pl.col("building_id").cast(pl.Int32),
        pl.col("readings").cast(pl.Int64),
        pl.col("covered_hours").cast(pl.Float64),
    )
    result = result.with_columns(day_hours=_day_hours(result))
    return warn_if_empty(result.select(_COLUMNS), ev, lo, hi)


_COLUMNS = [
    "building_id", "local_date", "time_zone", "day_hours", "readings", "mean_temperature", "min_temperature",
    "max_temperature", "first_observed", "last_observed", "covered_hours",
]  # fmt: skip


def building_slots(
    ev: Events,
    frame: pl.LazyFrame,
    start: datetime | None,
    end: datetime | None,
    buildings: list[int] | None,
    seconds: int,
) -> pl.DataFrame:
    """Readings per building and ``seconds`` slot of ``frame`` over a day's cache, by dense keys
    (:mod:`~iotlib.analysis.dense`): building_id, slot, readings, total, min/max temperature,
    first/last observed (readings without a temperature are left out; so are rows whose
    ``time_observed`` is outside ``[start, end)``). Without ``start``/``end`` the slots span what
    the store holds."""
    within = (start, end)
    if start is None or end is None:
        first, last = ev.span()
        if first is None or last is None:
            return pl.DataFrame()
        start = start or first
        end = end or last + timedelta(microseconds=1)
    origin = datetime.fromtimestamp(int(start.timestamp()) // seconds * seconds, tz=start.tzinfo)
    count = -(-int((end - origin).total_seconds()) // seconds)
    ids = ev.registry["building_id"]
    if buildings is not None:
        frame = frame.filter(pl.col("device_key").is_in(ev.registry.filter(ids.is_in(buildings))["device_key"]))
    names = ids.unique().sort()
    groups = np.searchsorted(names.to_numpy(), ids.to_numpy())  # each device's building, numbered 0 …
    found = dense.aggregate(frame, groups=groups, start=origin, step_seconds=seconds, slots=count, within=within)
    return found.filter(pl.col("readings") > 0).select(
        names.gather(found.filter(pl.col("readings") > 0)["group"]).alias("building_id"),
        (pl.lit(origin) + pl.duration(seconds=pl.col("slot") * seconds)).cast(pl.Datetime("us", "UTC")).alias("slot"),
        "readings", "total", "min_temperature", "max_temperature", "first_observed", "last_observed",
    )  # fmt: skip


def local_day_hours(day: date, zone: str) -> float:
    """How long ``day`` lasts in ``zone``, in hours (23 on a spring-forward day, 25 on a fall-back day)."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    following = start + timedelta(days=1)
    return (following.astimezone(ZoneInfo("UTC")) - start.astimezone(ZoneInfo("UTC"))).total_seconds() / 3600


def _prepare(
    source: Any, registry: pl.DataFrame | None, start: Any, end: Any, buildings: Any
) -> tuple[Events, datetime | None, datetime | None, list[int] | None]:
    ev = events(source, registry)
    check_time_zones(ev)
    lo, hi = time_range(start, end)
    return ev, lo, hi, check_buildings(ev, buildings)


def _by_local_day(slots: pl.DataFrame, ev: Events) -> pl.DataFrame:
    zones = ev.registry.select("building_id", "time_zone").unique("building_id")
    slots = slots.join(zones, on="building_id", how="left")
    parts = []
    for (zone,), part in slots.group_by("time_zone"):
        local = pl.col("slot").dt.convert_time_zone(str(zone)).dt.date().alias("local_date")
        parts.append(part.with_columns(local))
    if not parts:
        return pl.DataFrame(schema={c: pl.Null for c in _COLUMNS})
    days = (
        pl.concat(parts)
        .group_by("building_id", "local_date", "time_zone")
        .agg(
            pl.col("readings").sum(),
            (pl.col("total").sum() / pl.col("readings").sum()).alias("mean_temperature"),
            pl.col("min_temperature").min(),
            pl.col("max_temperature").max(),
            pl.col("first_observed").min(),
            pl.col("last_observed").max(),
            (pl.len() * SLOT_SECONDS / 3600.0).alias("covered_hours"),
        )
        .sort("building_id", "local_date")
    )
    return days.with_columns(day_hours=_day_hours(days)).select(_COLUMNS)


def _day_hours(days: pl.DataFrame) -> pl.Series:
    lengths = {(d, z): local_day_hours(d, z) for d, z in days.select("local_date", "time_zone").unique().iter_rows()}
    return pl.Series(
        "day_hours", [lengths[(d, z)] for d, z in days.select("local_date", "time_zone").iter_rows()], dtype=pl.Float64
    )
