"""Building temperature over a time window: "what was the average temperature in building 25 over the past hour?"

By event time (``time_observed``), over ``[start, end)`` — or the ``last`` stretch before a chosen
``now`` (:func:`past`) — per building, or per building and room. Readings whose body did not
decode are left out. Unknown buildings or rooms are a clear error; a window with no readings
gives an empty frame and an :class:`~iotlib.analysis.source.EmptyRangeWarning`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from iotlib.analysis import duck
from iotlib.analysis.source import (
    Events,
    between,
    check_buildings,
    check_rooms,
    events,
    time_range,
    utc,
    warn_if_empty,
)
from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError

BY = {"building": ("building_id",), "room": ("building_id", "room")}

SQL = """
SELECT {keys}, count(*) AS readings, count(DISTINCT e.{device}) AS devices,
       avg(e.temperature) AS mean_temperature, min(e.temperature) AS min_temperature,
       max(e.temperature) AS max_temperature,
       min(e.time_observed) AS first_observed, max(e.time_observed) AS last_observed
FROM events e JOIN registry r ON e.{device} = r.{device}
WHERE e.time_observed >= $start AND e.time_observed < $end AND e.temperature IS NOT NULL
  AND ($buildings IS NULL OR list_contains($buildings, r.building_id))
  AND ($rooms IS NULL OR list_contains($rooms, r.room))
GROUP BY {keys}
ORDER BY {keys}
"""


def past(now: datetime | str, last: timedelta | str = "1h") -> tuple[datetime, datetime]:
    """``(now - last, now)``: the window "the past hour" means at a chosen ``now``."""
    end = utc(now, "now")
    return end - to_timedelta(last), end


def building_temperature(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    by: str = "building",
    buildings: int | list[int] | None = None,
    rooms: str | list[str] | None = None,
) -> pl.DataFrame:
    """Per building (``by="building"``) or building and room (``by="room"``): readings, devices,
    mean/min/max temperature and the first and last observation in ``[start, end)``.

    ``buildings`` narrows to some buildings; ``rooms`` to some rooms of one building.
    """
    ev, lo, hi, keys, wanted, room_list = _prepare(source, registry, start, end, by, buildings, rooms)
    frame = ev.frame.filter(between("time_observed", lo, hi), pl.col("temperature").is_not_null())
    frame = ev.with_devices(*keys, frame=frame.select(ev.device, "time_observed", "temperature"))
    if wanted is not None:
        frame = frame.filter(pl.col("building_id").is_in(wanted))
    if room_list is not None:
        frame = frame.filter(pl.col("room").is_in(room_list))
    result = (
        frame.group_by(*keys)
        .agg(
            pl.len().cast(pl.Int64).alias("readings"),
            pl.col(ev.device).n_unique().cast(pl.Int64).alias("devices"),
            pl.col("temperature").mean().alias("mean_temperature"),
            pl.col("temperature").min().alias("min_temperature"),
            pl.col("temperature").max().alias("max_temperature"),
            pl.col("time_observed").min().alias("first_observed"),
            pl.col("time_observed").max().alias("last_observed"),
        )
        .sort(*keys)
        .collect(engine="streaming")
    )
    return warn_if_empty(result, ev, lo, hi)


def building_temperature_sql(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    by: str = "building",
    buildings: int | list[int] | None = None,
    rooms: str | list[str] | None = None,
) -> pl.DataFrame:
    """:func:`building_temperature` in DuckDB SQL (:data:`SQL`)."""
    ev, lo, hi, keys, wanted, room_list = _prepare(source, registry, start, end, by, buildings, rooms)
    sql = SQL.replace("{keys}", ", ".join(f"r.{k}" for k in keys))
    result = duck.query(ev, sql, start=lo, end=hi, buildings=wanted, rooms=room_list)
    result = result.with_columns(pl.col("readings", "devices").cast(pl.Int64), pl.col("building_id").cast(pl.Int32))
    return warn_if_empty(result, ev, lo, hi)


def _prepare(
    source: Any,
    registry: pl.DataFrame | None,
    start: datetime | str,
    end: datetime | str,
    by: str,
    buildings: Any,
    rooms: Any,
) -> tuple[Events, datetime, datetime, tuple[str, ...], list[int] | None, list[str] | None]:
    if by not in BY:
        raise ConfigurationError(f"by={by!r}: use 'building' or 'room'")
    if start is None or end is None:
        raise ConfigurationError("a window needs start and end (or use past(now, last))")
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    wanted = check_buildings(ev, buildings)
    room_list = None
    if rooms is not None:
        if wanted is None or len(wanted) != 1:
            raise ConfigurationError("rooms= needs exactly one building (buildings=<id>)")
        room_list = check_rooms(ev, wanted[0], rooms)
    assert lo is not None and hi is not None
    return ev, lo, hi, BY[by], wanted, room_list
