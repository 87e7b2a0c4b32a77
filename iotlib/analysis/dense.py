"""Group-bys over a dense integer key, batch by batch: what a day's ``device_key`` makes possible.

A hash group-by spends most of its time hashing and probing. When the groups are numbered
``0 … n-1`` — a device's row in the registry, times a slot of time — the aggregate is an array
indexed by that number: one compiled pass per batch (numba, GIL released) adds each row into its
slot. polars' streaming engine still does the reading (``collect_batches``: the scan, the
projection, the time filter on row-group statistics), so the events are never held; only the
arrays are (a few per group: 2.4 million device-hours take ~100 MB).

:func:`aggregate` returns, per non-empty group, ``rows`` (all events), ``readings`` (those with
a temperature), ``total``/``min_temperature``/``max_temperature`` over the readings and
``first_observed``/``last_observed`` (µs) over the readings. The questions turn group numbers
back into devices, buildings and hours.
"""

from __future__ import annotations

import glob
from datetime import UTC, datetime, timedelta

import numba as nb
import numpy as np
import polars as pl

from iotlib.analysis.source import Events, between

_NO_TIME = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def aggregate(
    frame: pl.LazyFrame,
    *,
    groups: np.ndarray,
    start: datetime,
    step_seconds: int,
    slots: int,
    time: str = "time_observed",
    value: pl.Expr | None = None,
    within: tuple[datetime | None, datetime | None] = (None, None),
) -> pl.DataFrame:
    """Aggregate ``frame`` (with ``device_key`` and ``time``) by ``groups[device_key] * slots + slot``.

    ``groups`` maps each device key to its group (the identity for devices, the building index
    for buildings); the slot is the ``step_seconds`` step of ``time`` from ``start``; rows outside
    the ``slots`` steps, or without a ``time``, are left out. ``value`` (default: the
    temperature) is what ``readings``, ``total`` and the minimum and maximum are of (the columns
    keep the temperature's names). ``within``: rows whose ``time`` is outside ``[start, end)`` are
    left out too (see :func:`in_range`). Returns ``group``, ``slot`` and the module's columns for
    the groups that hold rows.
    """
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    # One row of 8 per group (rows, readings, total, low, high, first, last, -), slot-major: a batch
    # covers a few minutes, so its updates stay within one slot's rows and one cache line each.
    acc = np.zeros((n_groups * slots, 8), np.float64)
    acc[:, 3], acc[:, 4], acc[:, 5], acc[:, 6] = np.inf, -np.inf, np.inf, -np.inf
    origin = int(start.timestamp()) * 1_000_000
    step = int(step_seconds) * 1_000_000
    group_of = np.ascontiguousarray(groups, dtype=np.int64)
    lo, hi = (_NO_TIME if t is None else _us(t) for t in within)
    hi = np.iinfo(np.int64).max if within[1] is None else hi
    picked = frame.select(
        pl.col("device_key").cast(pl.UInt32),
        pl.col(time).dt.epoch("us").fill_null(_NO_TIME).alias("__t"),
        (pl.col("temperature") if value is None else value).cast(pl.Float64).fill_null(np.nan).alias("__v"),
    )
    for batch in picked.collect_batches(engine="streaming"):
        _add(batch["device_key"].to_numpy(), batch["__t"].to_numpy(), batch["__v"].to_numpy(),
             group_of, n_groups, origin, step, slots, lo, hi, acc)  # fmt: skip
    held = np.flatnonzero(acc[:, 0])
    part = acc[held]
    readings = part[:, 1].astype(np.int64)
    some = readings > 0
    return (
        pl.DataFrame(
            {
                "group": held % n_groups,
                "slot": held // n_groups,
                "rows": part[:, 0].astype(np.int64),
                "readings": readings,
                "total": part[:, 2],
                "min_temperature": np.where(some, part[:, 3], np.nan),
                "max_temperature": np.where(some, part[:, 4], np.nan),
                "first_observed": np.where(some, part[:, 5], 0).astype(np.int64),
                "last_observed": np.where(some, part[:, 6], 0).astype(np.int64),
            }
        )
        .with_columns(
            pl.col("min_temperature", "max_temperature").fill_nan(None),
            pl.when(pl.col("readings") > 0)
            .then(pl.col("first_observed", "last_observed"))
            .cast(pl.Datetime("us", "UTC")),
        )
        .sort("group", "slot")
    )


def in_range(ev: Events, column: str, start: datetime | None, end: datetime | None) -> pl.LazyFrame:
    """``ev``'s events, filtered to ``start <= column < end`` when that lets polars skip row groups.

    A filter is a pass over every row it reads; over a whole day of the cache it would drop
    next to nothing, so when no row group of the Parquet files lies outside the range (their
    statistics say so) the events come back unfiltered: pass ``within=(start, end)`` to
    :func:`aggregate`, which applies the bounds row by row for free.
    """
    if start is None and end is None:
        return ev.frame
    whole = ev.frame.filter(between(column, start, end))
    if ev.parquet is None:
        return whole
    import pyarrow.parquet as pq

    for path in glob.glob(ev.parquet, recursive=True):
        meta = pq.read_metadata(path)
        names = [meta.schema.column(j).name for j in range(meta.num_columns)]
        if column not in names:
            return whole
        at = names.index(column)
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(at).statistics
            if stats is None or not stats.has_min_max:
                return whole
            try:
                if (end is not None and stats.min >= end) or (start is not None and stats.max < start):
                    return whole  # this row group can be skipped: worth the filter
            except TypeError:  # statistics that are not aware datetimes
                return whole
    return ev.frame


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def count(frame: pl.LazyFrame, keys: int, *, key: str = "device_key") -> np.ndarray:
    """How many rows of ``frame`` hold each value ``0 … keys-1`` of the integer column ``key``."""
    counts = np.zeros(keys, np.int64)
    for batch in frame.select(pl.col(key).cast(pl.Int64)).collect_batches(engine="streaming"):
        counts += np.bincount(batch[key].to_numpy(), minlength=keys)[:keys]
    return counts


@nb.njit(cache=True, nogil=True)
def _add(device, t, value, group_of, n_groups, origin, step, slots, lo, hi, acc):
    for i in range(len(device)):
        if t[i] == _NO_TIME or t[i] < lo or t[i] >= hi:
            continue
        offset = t[i] - origin
        if offset < 0:
            continue
        s = offset // step
        if s >= slots:
            continue
        k = s * n_groups + group_of[device[i]]
        acc[k, 0] += 1.0
        x = value[i]
        if x != x:  # no temperature (a body that did not decode)
            continue
        when = float(t[i])  # µs since the epoch: exact in a double until the year 2255
        acc[k, 1] += 1.0
        acc[k, 2] += x
        if x < acc[k, 3]:
            acc[k, 3] = x
        if x > acc[k, 4]:
            acc[k, 4] = x
        if when < acc[k, 5]:
            acc[k, 5] = when
        if when > acc[k, 6]:
            acc[k, 6] = when
