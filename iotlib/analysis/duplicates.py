"""Readings sent twice: the same device and observation time in two events.

A device that retries a send after a lost acknowledgement puts the same reading in the hub twice,
under two sequence numbers: the cold store's dedupe (partition, sequence number) keeps both. The
copies are the events after the first with the same ``time_observed`` for the same device (by
arrival: enqueued time, then partition and sequence number). Like the spikes, a long stretch is
sorted one bucket of devices at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from iotlib.analysis import duck
from iotlib.analysis.source import Events, between, events, time_range, warn_if_empty
from iotlib.errors import ConfigurationError

COLUMNS = ("partition_id", "sequence_number", "time_observed", "enqueued_time", "temperature")

SQL = """
SELECT {device}, partition_id, sequence_number, time_observed, enqueued_time, temperature
FROM (
    SELECT *, row_number() OVER (PARTITION BY {device}, time_observed
                                 ORDER BY enqueued_time, sequence_number) AS copy
    FROM events
    WHERE time_observed >= $start AND time_observed < $end
) WHERE copy > 1
ORDER BY {device}, time_observed, enqueued_time, partition_id, sequence_number
"""


def duplicates(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
    buckets: int | None = None,
) -> pl.DataFrame:
    """The second (and later) copies observed in ``[start, end)``: device_id and the copy's hub key and times."""
    ev, lo, hi = _prepare(source, registry, start, end)
    count = (buckets or ev.buckets(lo, hi)) if ev.keyed else 1
    parts = []
    for b in range(count):
        frame = ev.frame.filter(between("time_observed", lo, hi))
        if count > 1:
            frame = frame.filter(pl.col("device_key") % count == b)
        readings = frame.select(ev.device, *COLUMNS).collect(engine="streaming")
        # A device sends into one partition: sequence numbers break the ties of enqueued time.
        ordered = readings.sort(ev.device, "time_observed", "enqueued_time", "sequence_number")
        same = (pl.col(ev.device) == pl.col(ev.device).shift(1)) & (
            pl.col("time_observed") == pl.col("time_observed").shift(1)
        )
        parts.append(ordered.filter(same))
    return warn_if_empty(_named(ev, pl.concat(parts)), ev, lo, hi)


def duplicates_sql(
    source: Any, registry: pl.DataFrame | None = None, *, start: datetime | str, end: datetime | str
) -> pl.DataFrame:
    """:func:`duplicates` in DuckDB SQL (:data:`SQL`)."""
    ev, lo, hi = _prepare(source, registry, start, end)
    return warn_if_empty(_named(ev, duck.query(ev, SQL, start=lo, end=hi)), ev, lo, hi)


def _prepare(source: Any, registry: pl.DataFrame | None, start: Any, end: Any) -> tuple[Events, datetime, datetime]:
    if start is None or end is None:
        raise ConfigurationError("duplicates needs start and end")
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    assert lo is not None and hi is not None
    return ev, lo, hi


def _named(ev: Events, found: pl.DataFrame) -> pl.DataFrame:
    found = ev.named(found)
    return found.select("device_id", *COLUMNS).sort("device_id", "time_observed", "enqueued_time", "sequence_number")
