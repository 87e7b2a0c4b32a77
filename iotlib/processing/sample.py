"""TEMPORARY input for processing experiments until ``iotlib.simulate`` lands.

A seeded, vectorised stand-in with the simulator's output contract: a device
registry (``device_id`` GUID, ``building_id``, ``floor``, ``room``,
``time_zone``) and readings (``device_id`` as Enum, ``time_observed``,
``temperature`` Float32, ``sent_at``, optionally ``enqueued_time``,
``partition_id``, ``sequence_number``) following the ``NoErrorsExpected``
scenario: each device starts at a whole 0-24 °C, random-walks by -2..+2 per
reading, reads every ``period`` ± 10 % and starts staggered over one period.

:func:`with_faults` adds what the processing chapter is about: slow transit
(out of order), devices that were offline and send late, resent readings,
hub redeliveries and devices whose clock runs ahead or behind. The notebooks
and tests switch to ``iotlib.simulate`` at merge; this module then goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from iotlib.processing.durations import Duration, to_us

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY0 = datetime(2025, 1, 6, tzinfo=timezone.utc)  # a Monday
_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Europe/London")


def guids(n: int, seed: int) -> list[str]:
    """``n`` distinct, reproducible GUID strings."""
    rng = np.random.default_rng([seed, 0x6775])
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).astype(np.uint64)
    hexes = [f"{int(hi):016x}{int(lo):016x}" for hi, lo in raw]
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}" for h in hexes]


def registry(devices: int = 1_000, *, per_building: int = 100, seed: int = 0) -> pl.DataFrame:
    """The device → building reference data: ``per_building`` devices per building."""
    ids = guids(devices, seed)
    idx = np.arange(devices)
    building = idx // per_building
    rng = np.random.default_rng([seed, 1])
    return pl.DataFrame(
        {
            "device_id": ids,
            "building_id": building.astype(np.int32),
            "floor": (1 + (idx % per_building) // 10).astype(np.int16),
            "room": [f"{1 + (i % per_building) // 10}{i % 10:02d}" for i in idx],
            "time_zone": [_ZONES[b] for b in rng.integers(0, len(_ZONES), building.max() + 1)[building]],
        }
    )


def readings(
    reg: pl.DataFrame,
    *,
    minutes: float = 10,
    period: Duration = "60s",
    start: datetime = _DAY0,
    seed: int = 0,
    transit: Duration = "150ms",
    partitions: int | None = 4,
    chunk: int = 60,
) -> pl.DataFrame:
    """Readings of every device in ``reg`` for ``minutes``; ordered by reading index, not time.

    With ``partitions``, adds the hub's view: ``enqueued_time`` (sent + a random
    transit up to ``2 × transit``), ``partition_id`` (by device) and per-partition
    ``sequence_number`` in enqueued order. ``partitions=None`` leaves them out (cheaper).
    """
    n_dev = reg.height
    per = to_us(period, name="period", allow_zero=False)
    count = max(1, int(minutes * 60_000_000 // per))
    rng = np.random.default_rng([seed, 2])
    t0 = (start - _EPOCH) // timedelta(microseconds=1)
    t_next = t0 + rng.uniform(0, per, n_dev)
    temp = rng.integers(0, 25, n_dev).astype(np.int16)
    enum = pl.Enum(reg["device_id"])
    ids = reg["device_id"].cast(enum)
    frames = []
    for j0 in range(0, count, chunk):
        n = min(chunk, count - j0)
        gaps = rng.uniform(0.9 * per, 1.1 * per, (n, n_dev))
        times = t_next[None, :] + np.cumsum(gaps, axis=0) - gaps[0][None, :]
        t_next = times[-1] + rng.uniform(0.9 * per, 1.1 * per, n_dev)
        walk = temp[None, :] + np.cumsum(rng.integers(-2, 3, (n, n_dev), dtype=np.int16), axis=0, dtype=np.int16)
        temp = walk[-1]
        frames.append(
            pl.DataFrame(
                {
                    "__dev": np.tile(np.arange(n_dev, dtype=np.uint32), n),
                    "time_observed": times.ravel().astype(np.int64),
                    "temperature": walk.ravel().astype(np.float32),
                }
            )
        )
    df = pl.concat(frames)
    send_delay = rng.uniform(0, 50_000, df.height).astype(np.int64)  # firmware: read, then send
    df = df.with_columns(
        ids.gather(df["__dev"]).alias("device_id"),
        pl.col("time_observed").cast(pl.Datetime("us", "UTC")),
        (pl.col("time_observed") + pl.Series(send_delay)).cast(pl.Datetime("us", "UTC")).alias("sent_at"),
    ).select("device_id", "time_observed", "temperature", "sent_at", "__dev")
    if partitions:
        tr = to_us(transit, name="transit")
        df = df.with_columns(
            (pl.col("sent_at") + pl.duration(microseconds=pl.Series(rng.integers(0, 2 * tr + 1, df.height)))).alias(
                "enqueued_time"
            ),
            (pl.col("__dev") % partitions).cast(pl.String).alias("partition_id"),
        )
        df = with_sequence_numbers(df)
    return df.drop("__dev")


def with_sequence_numbers(df: pl.DataFrame) -> pl.DataFrame:
    """Per-partition ``sequence_number`` in ``enqueued_time`` order (replaces any existing one)."""
    df = df.drop("sequence_number", strict=False).with_row_index("__row")
    ordered = df.sort(["partition_id", "enqueued_time", "__row"]).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("partition_id").alias("sequence_number")
    )
    return ordered.sort("__row").drop("__row")


@dataclass(frozen=True)
class Faults:
    """What :func:`with_faults` injects (fractions of readings, or counts of devices)."""

    slow: float = 0.05  # arrive up to `slow_by` late: out of order, usually within tolerance
    slow_by: Duration = "8s"
    offline_devices: int = 1  # each sends a burst of readings `offline_for` late
    offline_for: Duration = "2m"
    resent: float = 0.01  # the device sends the same reading again a little later
    redelivered: float = 0.005  # the hub delivers the same event twice (same partition and sequence)
    ahead_devices: int = 1  # device clock runs ahead of the hub by `ahead_by`
    ahead_by: Duration = "10m"
    behind_devices: int = 0  # device clock runs behind by `behind_by`: its events look late
    behind_by: Duration = "30s"


def with_faults(events: pl.DataFrame, faults: Faults = Faults(), *, seed: int = 0) -> pl.DataFrame:
    """``events`` (with hub columns) plus faults; returned in arrival order.

    Device picks are deterministic per seed: clock-ahead devices first, then
    clock-behind, then offline ones, all distinct.
    """
    rng = np.random.default_rng([seed, 3])
    devices = events["device_id"].unique(maintain_order=True).to_list()
    pick = rng.permutation(len(devices))
    n_a, n_b, n_o = faults.ahead_devices, faults.behind_devices, faults.offline_devices
    ahead = [devices[i] for i in pick[:n_a]]
    behind = [devices[i] for i in pick[n_a : n_a + n_b]]
    offline = [devices[i] for i in pick[n_a + n_b : n_a + n_b + n_o]]
    n = events.height
    us = pl.duration(microseconds=1)
    slow = pl.Series(np.where(rng.random(n) < faults.slow, rng.uniform(0, to_us(faults.slow_by), n), 0).astype(np.int64))
    df = events.with_columns(
        (pl.col("enqueued_time") + slow * us).alias("enqueued_time"),
    )
    # Offline devices: their readings in the middle third are sent `offline_for` late.
    t_min, t_max = df["time_observed"].min(), df["time_observed"].max()
    third = (t_max - t_min) / 3
    lag = to_us(faults.offline_for)
    gone = pl.col("device_id").cast(pl.String).is_in(offline) & pl.col("time_observed").is_between(t_min + third, t_min + 2 * third)
    df = df.with_columns(
        pl.when(gone).then(pl.col("sent_at") + lag * us).otherwise(pl.col("sent_at")).alias("sent_at"),
        pl.when(gone).then(pl.col("enqueued_time") + lag * us).otherwise(pl.col("enqueued_time")).alias("enqueued_time"),
    )
    # Skewed clocks: the device stamps its readings with its own wrong time.
    skew = (
        pl.when(pl.col("device_id").cast(pl.String).is_in(ahead)).then(to_us(faults.ahead_by))
        .when(pl.col("device_id").cast(pl.String).is_in(behind)).then(-to_us(faults.behind_by))
        .otherwise(0)
    )
    df = df.with_columns((pl.col("time_observed") + skew * us).alias("time_observed"))
    # Resent readings: same reading, sent again 1-3 s later (new hub event).
    resend = df.filter(pl.Series(rng.random(n) < faults.resent))
    later = pl.Series(rng.uniform(1e6, 3e6, resend.height).astype(np.int64))
    resend = resend.with_columns((pl.col("sent_at") + later * us), (pl.col("enqueued_time") + later * us))
    df = with_sequence_numbers(pl.concat([df, resend]))
    # Redelivered: the very same hub event again.
    again = df.filter(pl.Series(rng.random(df.height) < faults.redelivered))
    df = pl.concat([df, again])
    return df.sort(["enqueued_time", "sequence_number", "partition_id"], maintain_order=True)


def sample(
    devices: int = 200,
    *,
    minutes: float = 10,
    faults: Faults | None = Faults(),
    seed: int = 0,
    partitions: int = 4,
    per_building: int = 20,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(registry, events)``: a small fleet with faults, events in arrival order."""
    reg = registry(devices, per_building=per_building, seed=seed)
    ev = readings(reg, minutes=minutes, seed=seed, partitions=partitions)
    if faults is not None:
        ev = with_faults(ev, faults, seed=seed)
    else:
        ev = ev.sort(["enqueued_time", "sequence_number", "partition_id"], maintain_order=True)
    return reg, ev
