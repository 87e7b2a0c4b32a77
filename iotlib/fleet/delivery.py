"""Simulated events as a hub consumer would read them: partition, enqueued time, sequence number.

:mod:`iotlib.fleet.simulate` says when each device *sends* (``sent_at``). A consumer
of Event Hubs sees three more things, which stream processing depends on:
the partition an event landed in, when the hub enqueued it, and its sequence
number there. :func:`deliver` adds them to a simulated frame by modelling
the trip instead of making it (no stack needed):

- ``partition_id``: the device id is the partition key, mapped with
  :mod:`iotlib.ingest.partitioning` — where the azure-eventhub client, the emulator
  and :mod:`iotlib.ingest` put the same device.
- ``enqueued_time`` = ``sent_at`` + transit, in whole milliseconds as the
  hub stamps it. Transit is ``latency`` plus an exponential network and
  queueing delay of mean ``jitter``; a ``slow_fraction`` of sends (retried
  after a timeout or throttling) arrive up to ``slow_by`` later still, behind
  events sent after them.
- ``sequence_number``: per partition, from 0, in enqueued order (ties: send
  order), so enqueued time never decreases along a partition.
- ``fault_redelivered``: at-least-once delivery. Each of ``replays`` consumer
  restarts re-reads one partition's events of the ``replay_span`` before it
  (those after its last checkpoint): same partition, sequence number and
  enqueued time as the first copy, which this column marks False.

The result is in the consumer's arrival order, ``(enqueued_time,
sequence_number, partition_id)``, the order :mod:`iotlib.processing` defines
its results on. Not modelled: throughput-unit throttling and partition
outages (bursts do not queue up). For the real thing, send with
:mod:`iotlib.ingest` and read back with :func:`iotlib.hub.read`.

Determinism: an event's transit is a hash of (seed, device id, its
``time_observed`` and ``sent_at``), so it does not depend on row order or on
which other devices are in the frame; replays depend on the seed and the
frame's arrival span.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet.hashing import GOLDEN, M1, key, mix, unit
from iotlib.frames import Frame, as_polars
from iotlib.ingest.partitioning import partition_index

__all__ = ["DELIVERY_COLUMNS", "Delivery", "deliver"]

#: Columns :func:`deliver` adds, in order.
DELIVERY_COLUMNS = ("partition_id", "enqueued_time", "sequence_number", "fault_redelivered")

_UTC_US = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Delivery:
    """How simulated events travel to the hub and back out to a consumer (see the module text).

    Durations take a ``timedelta`` or text such as ``"150ms"``, ``"8s"``.
    """

    partitions: int = 8  # the local emulator's default event hub
    latency: timedelta | str = timedelta(milliseconds=20)
    jitter: timedelta | str = timedelta(milliseconds=100)
    slow_fraction: float = 0.0
    slow_by: timedelta | str = timedelta(seconds=8)
    replays: int = 0
    replay_span: timedelta | str = timedelta(seconds=10)

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "slow_by", "replay_span"):
            value = to_timedelta(getattr(self, name), name=f"Delivery.{name}")
            if value < timedelta(0):
                raise ConfigurationError(f"Delivery.{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)
        if (
            isinstance(self.partitions, bool)
            or not isinstance(self.partitions, int)
            or not 1 <= self.partitions <= 1024
        ):
            raise ConfigurationError(
                f"Delivery.partitions must be a whole number from 1 to 1024, got {self.partitions!r}"
            )
        if not 0.0 <= self.slow_fraction <= 1.0:
            raise ConfigurationError(f"Delivery.slow_fraction must be between 0 and 1, got {self.slow_fraction}")
        if isinstance(self.replays, bool) or not isinstance(self.replays, int) or self.replays < 0:
            raise ConfigurationError(f"Delivery.replays must be a whole number >= 0, got {self.replays!r}")

    @property
    def partition_ids(self) -> list[str]:
        """The hub's partition ids, ``"0"`` to ``str(partitions - 1)``."""
        return [str(i) for i in range(self.partitions)]


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _check(events: pl.DataFrame) -> None:
    if not isinstance(events, pl.DataFrame):
        raise ConfigurationError(f"deliver() takes a polars DataFrame of events, got {type(events).__name__}")
    kinds = {
        "device_id": (pl.String, pl.Categorical, pl.Enum),
        "time_observed": (pl.Datetime,),
        "sent_at": (pl.Datetime,),
    }
    for name, allowed in kinds.items():
        if name not in events.columns:
            raise ValidationError(f"events need a '{name}' column to be delivered; columns: {events.columns}")
        if not isinstance(events.schema[name], allowed):
            raise ValidationError(
                f"events column '{name}' is {events.schema[name]}, expected {' or '.join(a.__name__ for a in allowed)}"
            )
        if events[name].null_count():
            raise ValidationError(f"{events[name].null_count()} event(s) have no {name}: they cannot be delivered")
    already = [c for c in DELIVERY_COLUMNS if c in events.columns]
    if already:
        raise ValidationError(f"events already carry {', '.join(already)}: they have been delivered once")


def _device_codes(devices: pl.Series) -> tuple[np.ndarray, list[str]]:
    """Each event's index into the list of distinct device ids (Enum codes as they are)."""
    if isinstance(devices.dtype, pl.Enum):
        return devices.to_physical().to_numpy().astype(np.int64), devices.dtype.categories.to_list()
    text = devices.cast(pl.String)
    ids = text.unique().sort()
    return text.cast(pl.Enum(ids)).to_physical().to_numpy().astype(np.int64), ids.to_list()


def deliver(events: Frame, delivery: Delivery = Delivery(), *, seed: int = 0) -> pl.DataFrame:
    """``events`` plus :data:`DELIVERY_COLUMNS`, in arrival order (see the module text).

    ``events`` (polars or pandas) needs ``device_id``, ``time_observed`` and ``sent_at`` (as
    :func:`iotlib.fleet.simulate.generate` makes them); other columns are kept.
    """
    events = as_polars(events, name="events")
    _check(events)
    codes, ids = _device_codes(events["device_id"])
    device_key = np.array([key(f"iotlib.delivery/{seed}/{d}") for d in ids], dtype=np.uint64)
    device_partition = np.array([partition_index(d, delivery.partitions) for d in ids], dtype=np.int32)

    observed = events["time_observed"].dt.epoch("us").to_numpy().view(np.uint64)
    sent = events["sent_at"].dt.epoch("us").to_numpy()
    with np.errstate(over="ignore"):  # hashing wraps around on purpose
        h = mix(device_key[codes] ^ (observed * GOLDEN))
        h = mix(h ^ (sent.view(np.uint64) * M1))
        transit = _us(delivery.latency) + np.floor(-np.log1p(-unit(h)) * _us(delivery.jitter))
        if delivery.slow_fraction:
            slow = mix(h ^ key("slow"))
            hit = unit(slow) < delivery.slow_fraction
            transit += np.where(hit, np.floor(unit(mix(slow ^ GOLDEN)) * _us(delivery.slow_by)), 0.0)
    enqueued = (sent + transit.astype(np.int64)) // 1000 * 1000  # the hub stamps whole milliseconds

    frame = events.with_columns(
        pl.Series("__p", device_partition[codes]),
        pl.Series("enqueued_time", enqueued).cast(_UTC_US),
    ).with_row_index("__row")
    # Sequence numbers: per partition in enqueued order; ties in send order, then input order.
    frame = frame.sort("__p", "enqueued_time", "sent_at", "__row").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("__p").alias("sequence_number")
    )
    frame = frame.with_columns(
        pl.col("__p").cast(pl.String).alias("partition_id"),
        pl.lit(False).alias("fault_redelivered"),
    )
    frame = pl.concat([frame, _replays(frame, delivery, seed)], how="vertical")
    ordered = frame.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True)
    return ordered.select(*events.columns, *DELIVERY_COLUMNS)


def _replays(frame: pl.DataFrame, delivery: Delivery, seed: int) -> pl.DataFrame:
    """Second copies of what each simulated consumer restart reads again."""
    if not delivery.replays or frame.height == 0:
        return frame.clear()
    lo = frame["enqueued_time"].min()
    hi = frame["enqueued_time"].max()
    span = _us(hi - lo)  # type: ignore[operator]
    with np.errstate(over="ignore"):
        h = mix(np.arange(delivery.replays, dtype=np.uint64) * GOLDEN ^ key(f"iotlib.delivery/{seed}/replay"))
    partitions = (h >> np.uint64(40)) % np.uint64(delivery.partitions)
    moments = np.floor(unit(h) * (span + 1)).astype(np.int64)
    copies = []
    for p, at in zip(partitions.tolist(), moments.tolist()):
        restart = lo + timedelta(microseconds=at)  # type: ignore[operator]
        copies.append(
            frame.filter(
                (pl.col("__p") == p)
                & (pl.col("enqueued_time") > restart - delivery.replay_span)
                & (pl.col("enqueued_time") <= restart)
            )
        )
    return pl.concat(copies, how="vertical").with_columns(pl.lit(True).alias("fault_redelivered"))
