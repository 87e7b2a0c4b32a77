"""Building × hour: the mean temperature of every building in every UTC hour — the day at a glance.

:func:`building_hours` is the long form (one row per building and hour, from one streaming
group-by); :func:`iotlib.analysis.plots.heatmap` draws it. :func:`hot_building_hours` flags the
hours a building ran well above the others: its hourly mean more than ``rise`` degrees above the
median of all buildings' means in that hour — what a heat event looks like from the cold store
(a building's own level drifts over a day as its thermostats' random walks do; the fleet's
median moves with them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from iotlib.analysis import dense, duck
from iotlib.analysis.localday import building_slots
from iotlib.analysis.source import Events, between, check_buildings, events, hour_of, time_range, warn_if_empty

SQL = """
SELECT building_id, to_timestamp(h * 3600) AS hour, readings, mean_temperature
FROM (
    SELECT r.building_id, epoch_us(e.time_observed) // 3600000000 AS h, count(*) AS readings,
           avg(e.temperature) AS mean_temperature
    FROM events e JOIN registry r ON e.{device} = r.{device}
    WHERE e.temperature IS NOT NULL
      AND ($start IS NULL OR e.time_observed >= $start) AND ($end IS NULL OR e.time_observed < $end)
      AND ($buildings IS NULL OR list_contains($buildings, r.building_id))
    GROUP BY ALL
)
ORDER BY building_id, hour
"""


def building_hours(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    buildings: int | list[int] | None = None,
) -> pl.DataFrame:
    """building_id, hour (UTC), readings, mean_temperature; sorted by building and hour."""
    ev, lo, hi, wanted = _prepare(source, registry, start, end, buildings)
    if ev.keyed:  # by dense keys, as the local days are
        slots = building_slots(ev, dense.in_range(ev, "time_observed", lo, hi), lo, hi, wanted, 3600)
        result = slots.select(
            "building_id",
            pl.col("slot").alias("hour"),
            "readings",
            (pl.col("total") / pl.col("readings")).alias("mean_temperature"),
        ).sort("building_id", "hour")
        return warn_if_empty(result, ev, lo, hi)
    frame = ev.frame.filter(between("time_observed", lo, hi), pl.col("temperature").is_not_null())
    frame = ev.with_devices("building_id", frame=frame.select(ev.device, "time_observed", "temperature"))
    if wanted is not None:
        frame = frame.filter(pl.col("building_id").is_in(wanted))
    result = (
        frame.group_by("building_id", hour_of("time_observed").alias("hour"))
        .agg(pl.len().cast(pl.Int64).alias("readings"), pl.col("temperature").mean().alias("mean_temperature"))
        .sort("building_id", "hour")
        .collect(engine="streaming")
    )
    return warn_if_empty(result, ev, lo, hi)


def building_hours_sql(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    buildings: int | list[int] | None = None,
) -> pl.DataFrame:
    """:func:`building_hours` in DuckDB SQL (:data:`SQL`)."""
    ev, lo, hi, wanted = _prepare(source, registry, start, end, buildings)
    result = duck.query(ev, SQL, start=lo, end=hi, buildings=wanted).with_columns(
        pl.col("building_id").cast(pl.Int32), pl.col("readings").cast(pl.Int64)
    )
    return warn_if_empty(result, ev, lo, hi)


def hot_building_hours(hourly: pl.DataFrame, *, rise: float = 6.0, min_share: float = 0.5) -> pl.DataFrame:
    """The building-hours of :func:`building_hours` whose mean is more than ``rise`` °C above that hour's median building.

    Hours in which a building has fewer than ``min_share`` of its usual readings (the edges of the
    store, where only a few devices with clocks ahead or behind show up) are not judged.
    """
    usual_count = pl.col("readings").median().over("building_id")
    return (
        hourly.filter(pl.col("readings") >= min_share * usual_count)
        .with_columns(pl.col("mean_temperature").median().over("hour").alias("usual"))
        .filter(pl.col("mean_temperature") - pl.col("usual") > rise)
        .sort("building_id", "hour")
    )


def _prepare(
    source: Any, registry: pl.DataFrame | None, start: Any, end: Any, buildings: Any
) -> tuple[Events, datetime | None, datetime | None, list[int] | None]:
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    return ev, lo, hi, check_buildings(ev, buildings)
