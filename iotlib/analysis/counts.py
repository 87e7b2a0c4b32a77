"""The original journey's Hive query over the cold store: how many events each device sent.

Counted by enqueued time (how the cold store is laid out), optionally within ``[start, end)``.
Over a day's cache the device keys are dense, so the count is an array indexed by them
(:mod:`~iotlib.analysis.dense`); otherwise a streaming group-by.
Over a day's cache the count is by ``device_key``: an event whose body did not decode still
counts for the device that sent it (its partition key says who); over plain events it is by the
``device_id`` read from the body, and such events count under a null id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from iotlib.analysis import dense, duck
from iotlib.analysis.source import between, events, time_range, warn_if_empty

SQL = """
SELECT {device}, count(*) AS events
FROM events
WHERE ($start IS NULL OR enqueued_time >= $start) AND ($end IS NULL OR enqueued_time < $end)
GROUP BY {device}
"""


def events_per_device(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pl.DataFrame:
    """``device_id``, ``events``: one row per device that sent anything, sorted by device id."""
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    frame = ev.frame.filter(between("enqueued_time", lo, hi))
    if ev.keyed:  # device keys are dense: an array of counts, batch by batch
        per_key = dense.count(frame, ev.registry.height)
        held = np.flatnonzero(per_key)
        counts = pl.DataFrame({"device_key": held.astype(np.uint32), "events": per_key[held]})
    else:
        counts = frame.group_by(ev.device).agg(pl.len().cast(pl.Int64).alias("events")).collect(engine="streaming")
    return warn_if_empty(_named(ev, counts), ev, lo, hi)


def events_per_device_sql(
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pl.DataFrame:
    """:func:`events_per_device` in DuckDB SQL (:data:`SQL`)."""
    ev = events(source, registry)
    lo, hi = time_range(start, end)
    counts = duck.query(ev, SQL, start=lo, end=hi)
    return warn_if_empty(_named(ev, counts), ev, lo, hi)


def _named(ev: Any, counts: pl.DataFrame) -> pl.DataFrame:
    counts = ev.named(counts)
    return counts.select("device_id", pl.col("events").cast(pl.Int64)).sort("device_id", nulls_last=True)
