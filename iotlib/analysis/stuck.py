"""Stuck sensors: a device whose readings stop moving.

A healthy thermostat's random walk moves by whole degrees most minutes; a frozen sensor repeats
one value. From :func:`~iotlib.analysis.completeness.device_hours`: an hour is *stuck* when it
holds at least ``min_readings`` readings and its minimum equals its maximum. A device is stuck
from its first stuck hour; the result lists how many of its hours were stuck and the value.
"""

from __future__ import annotations

import polars as pl

SCHEMA = pl.Schema(
    {
        "device_id": pl.String(),
        "stuck_since": pl.Datetime("us", "UTC"),
        "stuck_hours": pl.Int64(),
        "value": pl.Float64(),
    }
)


def stuck_sensors(hours_found: pl.DataFrame, registry: pl.DataFrame, *, min_readings: int = 10) -> pl.DataFrame:
    """device_id, building_id, room, stuck_since, stuck_hours, value; earliest first."""
    stuck = hours_found.filter(
        pl.col("readings") >= min_readings, pl.col("min_temperature") == pl.col("max_temperature")
    )
    per_device = stuck.group_by("device_id").agg(
        pl.col("hour").min().alias("stuck_since"),
        pl.len().cast(pl.Int64).alias("stuck_hours"),
        pl.col("min_temperature").sort_by("hour").last().alias("value"),
    )
    places = registry.select("device_id", "building_id", *(c for c in ("room",) if c in registry.columns))
    return per_device.cast(SCHEMA).join(places, on="device_id", how="left").sort("stuck_since", "device_id")
