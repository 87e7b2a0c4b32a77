"""Device, partition and fleet watermarks (rules in :mod:`iotlib.processing.policy`).

:func:`fleet_watermarks` evaluates the fleet watermark for every tick of a
whole frame at once: per-partition maxima per tick, running maxima down the
ticks (``np.maximum.accumulate``), then the minimum over active partitions —
a few array operations on a ticks × partitions matrix. :class:`FleetClock`
does the same one tick at a time for the incremental engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from iotlib.processing import columns as C
from iotlib.processing.policy import EventTimePolicy

NONE = np.iinfo(np.int64).min  # "no value" in int64 arrays of microseconds

TICK = "__tick"
MAX_E = "__max_e"
MAX_A = "__max_a"


@dataclass
class TickWatermarks:
    """Fleet watermark per evaluated tick, and partition watermarks before each tick."""

    ticks: np.ndarray  # evaluated tick numbers, ascending
    watermark: np.ndarray  # fleet watermark per tick (µs)
    frontier: np.ndarray  # watermark - late_arrival
    partitions: list[str]
    partition_watermark: np.ndarray  # ticks × partitions, NONE where unknown

    def frame(self, tick_us: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "tick_start": self.ticks * tick_us,
                "watermark": self.watermark,
                "frontier": self.frontier,
            }
        ).with_columns(pl.all().cast(C.UTC_US))


def fleet_watermarks(ticks: np.ndarray, per_partition_tick: pl.DataFrame, policy: EventTimePolicy) -> TickWatermarks:
    """Watermarks for each tick in ``ticks`` (every tick in which a valid event arrived).

    ``per_partition_tick``: columns ``__p``, ``__tick``, ``__max_e`` (newest
    watermark-eligible event time) and ``__max_a`` (their newest arrival).
    """
    parts = sorted(per_partition_tick[C.P].unique().to_list())
    n_t, n_p = len(ticks), len(parts)
    newest = np.full((n_t, n_p), NONE, dtype=np.int64)
    latest = np.full((n_t, n_p), NONE, dtype=np.int64)
    if n_p and n_t:
        ti = np.searchsorted(ticks, per_partition_tick[TICK].to_numpy())
        pi = np.searchsorted(np.array(parts, dtype=object), per_partition_tick[C.P].to_numpy())
        newest[ti, pi] = per_partition_tick[MAX_E].fill_null(NONE).to_numpy()
        latest[ti, pi] = per_partition_tick[MAX_A].fill_null(NONE).to_numpy()
    # State before tick k = running maximum over ticks < k.
    newest = _shift_down(np.maximum.accumulate(newest, axis=0))
    latest = _shift_down(np.maximum.accumulate(latest, axis=0))
    start = ticks.astype(np.int64) * policy.tick_us
    floor = start - policy.idle_timeout_us
    active = (newest != NONE) & (latest >= floor[:, None])
    wp = np.where(newest != NONE, newest - policy.out_of_order_us, NONE)
    lowest = np.where(active, wp, np.iinfo(np.int64).max).min(axis=1) if n_p else np.full(n_t, NONE)
    candidate = np.where(active.any(axis=1) if n_p else False, np.maximum(lowest, floor), floor)
    watermark = np.maximum.accumulate(candidate) if n_t else candidate
    return TickWatermarks(ticks, watermark, watermark - policy.late_arrival_us, parts, wp)


def _shift_down(m: np.ndarray) -> np.ndarray:
    out = np.empty_like(m)
    if len(m):
        out[0] = NONE
        out[1:] = m[:-1]
    return out


class FleetClock:
    """The fleet watermark, one tick at a time, from per-partition state."""

    def __init__(self, policy: EventTimePolicy) -> None:
        self.policy = policy
        self.tick: int | None = None  # last evaluated tick
        self.watermark: int | None = None
        self.newest: dict[str, int] = {}  # partition -> newest eligible event time
        self.latest: dict[str, int] = {}  # partition -> arrival of that partition's latest eligible event

    @property
    def frontier(self) -> int | None:
        return None if self.watermark is None else self.watermark - self.policy.late_arrival_us

    def observe(self, partition: str, event_time: int, arrival: int) -> None:
        """Record a watermark-eligible event (takes effect at the next tick)."""
        if event_time > self.newest.get(partition, NONE):
            self.newest[partition] = event_time
        if arrival > self.latest.get(partition, NONE):
            self.latest[partition] = arrival

    def evaluate(self, tick: int) -> int:
        """Advance to ``tick`` and return the fleet watermark there."""
        p = self.policy
        floor = tick * p.tick_us - p.idle_timeout_us
        active = [t for part, t in self.newest.items() if self.latest[part] >= floor]
        candidate = max(min(active) - p.out_of_order_us, floor) if active else floor
        self.watermark = candidate if self.watermark is None else max(self.watermark, candidate)
        self.tick = tick
        return self.watermark


def device_history(events: pl.DataFrame, devices: list[str], *, policy: EventTimePolicy | None = None) -> pl.DataFrame:
    """Each listed device's watermark after each of its events, in arrival order.

    Columns: ``device_id``, ``arrival``, ``time_observed``, ``clock_ahead`` (the
    event is more than ``policy.clock_ahead`` ahead of its arrival),
    ``newest_event_time`` (running maximum over the device's events, clock-ahead
    ones included — what its watermark would be without the protection) and
    ``watermark`` (over the events the policy lets count, minus ``out_of_order``).
    """
    policy = policy or EventTimePolicy()
    arrival = C.arrival_column(events.schema)
    df = (
        events.filter(pl.col(C.DEVICE).cast(pl.String).is_in(devices))
        .select(pl.col(C.DEVICE).cast(pl.String), pl.col(arrival).alias("arrival"), C.TIME_OBSERVED)
        .sort("arrival", maintain_order=True)
    )
    ahead = (pl.col(C.TIME_OBSERVED) - pl.col("arrival")) > pl.duration(microseconds=policy.clock_ahead_us)
    counted = pl.when(~ahead).then(pl.col(C.TIME_OBSERVED))
    return df.with_columns(
        ahead.alias("clock_ahead"),
        pl.col(C.TIME_OBSERVED).cum_max().over(C.DEVICE).alias("newest_event_time"),
        (
            counted.cum_max().over(C.DEVICE).forward_fill().over(C.DEVICE)
            - pl.duration(microseconds=policy.out_of_order_us)
        ).alias("watermark"),
    )
