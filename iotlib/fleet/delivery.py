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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from iotlib.durations import to_timedelta, to_us
from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet.hashing import GOLDEN, M1, key, mix, unit
from iotlib.frames import Frame, as_polars
from iotlib.ingest.partitioning import partition_index

__all__ = ["DELIVERY_COLUMNS", "Delivery", "DeliveryStream", "deliver"]

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


def _us(delta: timedelta | str) -> int:
    return to_us(delta)  # a Delivery holds timedeltas after __post_init__: exact, and typed


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


def _device_tables(ids: list[str], delivery: Delivery, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct device id: its transit hash key and its partition index."""
    device_key = np.array([key(f"iotlib.delivery/{seed}/{d}") for d in ids], dtype=np.uint64)
    device_partition = np.array([partition_index(d, delivery.partitions) for d in ids], dtype=np.int32)
    return device_key, device_partition


def _enqueued(events: pl.DataFrame, codes: np.ndarray, device_key: np.ndarray, delivery: Delivery) -> np.ndarray:
    """Each event's enqueued time (µs since the epoch, whole ms): ``sent_at`` + its hashed transit."""
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
    return (sent + transit.astype(np.int64)) // 1000 * 1000  # the hub stamps whole milliseconds


def deliver(events: Frame, delivery: Delivery = Delivery(), *, seed: int = 0) -> pl.DataFrame:
    """``events`` plus :data:`DELIVERY_COLUMNS`, in arrival order (see the module text).

    ``events`` (polars or pandas) needs ``device_id``, ``time_observed`` and ``sent_at`` (as
    :func:`iotlib.fleet.simulate.generate` makes them); other columns are kept.
    """
    events = as_polars(events, name="events")
    _check(events)
    codes, ids = _device_codes(events["device_id"])
    device_key, device_partition = _device_tables(ids, delivery, seed)
    frame = events.with_columns(
        pl.Series("__p", device_partition[codes]),
        pl.Series("enqueued_time", _enqueued(events, codes, device_key, delivery)).cast(_UTC_US),
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


class DeliveryStream:
    """:func:`deliver` chunk by chunk, for a simulation too big to hold: the same rows, the same values.

    Feed chunks in ``sent_at`` order (as :class:`iotlib.fleet.simulate.Simulation` yields them)
    to :meth:`push`; each call returns the events whose hub view is final — those enqueued
    before the last ``sent_at`` seen, in whole milliseconds, since no later send can be enqueued
    earlier — and holds the rest back for the next chunk. :meth:`finish` returns what is left.
    Concatenated, the results equal ``deliver(all chunks)`` (replays are not streamed: use
    :func:`deliver` for ``Delivery(replays=...)``). Memory stays at about one chunk.
    ``order="partition"`` returns each part sorted by partition and sequence number instead of
    in arrival order (what a per-partition writer wants; it saves a sort).
    """

    def __init__(
        self, device_ids: Sequence[str], delivery: Delivery = Delivery(), *, seed: int = 0, order: str = "arrival"
    ) -> None:
        if order not in ("arrival", "partition"):
            raise ConfigurationError(f"order={order!r}: use 'arrival' or 'partition'")
        self.order = order
        if delivery.replays:
            raise ConfigurationError(
                f"Delivery.replays={delivery.replays}: replays are not streamed; use deliver() on a whole frame"
            )
        self.delivery = delivery
        self.ids = list(device_ids)
        self.device_dtype = pl.Enum(self.ids)
        self._device_key, self._device_partition = _device_tables(self.ids, delivery, seed)
        self._next_seq = np.zeros(delivery.partitions, dtype=np.int64)
        self._rows = 0  # rows taken so far: the input order that breaks ties
        self._held: pl.DataFrame | None = None
        self._last_sent: int | None = None  # µs since the epoch
        self._in_send_order = True  # every chunk so far sorted by sent_at (row order breaks ties as sent_at would)
        self._columns: list[str] | None = None

    def push(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """The events of this chunk and earlier ones whose enqueued time is now final, in arrival order."""
        return self._take(chunk, final=False)

    def finish(self) -> pl.DataFrame:
        """Everything still held back (the stream is over)."""
        return self._take(None, final=True)

    def _take(self, chunk: pl.DataFrame | None, *, final: bool) -> pl.DataFrame:
        parts = [] if self._held is None else [self._held]
        if chunk is not None:
            parts.append(self._prepare(chunk))
        if not parts:
            return self._empty()
        frame = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
        enqueued = frame["enqueued_time"].dt.epoch("us").to_numpy()
        if final or self._last_sent is None:
            ready, self._held = frame, (None if final else frame.clear())
        else:
            cutoff = self._last_sent // 1000 * 1000  # later sends are enqueued at or after this ms
            due = enqueued < cutoff
            ready, self._held = frame.filter(pl.Series(due)), frame.filter(pl.Series(~due))
            enqueued = enqueued[due]
        # Sequence numbers continue per partition; ties in send order, then input order, as deliver() does.
        partition = ready["__p"].to_numpy()
        if self._in_send_order:  # input order is send order: one packed integer sort does it
            key = (partition.astype(np.int64) << 53) | (enqueued - (enqueued.min() if len(enqueued) else 0))
            ready = ready[np.argsort(key, kind="stable")]
        else:
            ready = ready.sort("__p", "enqueued_time", "sent_at", "__row")
        partition = ready["__p"].to_numpy()
        counts = np.bincount(partition, minlength=self.delivery.partitions)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        sequence = np.arange(len(partition), dtype=np.int64) - first + np.repeat(self._next_seq, counts)
        self._next_seq += counts
        ready = ready.with_columns(
            pl.Series("sequence_number", sequence, dtype=pl.Int64),
            pl.col("__p").cast(pl.String).alias("partition_id"),
            pl.lit(False).alias("fault_redelivered"),
        )
        if self.order == "arrival":
            ready = ready.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True)
        return ready.select(*(self._columns or []), *DELIVERY_COLUMNS)

    def _prepare(self, chunk: pl.DataFrame) -> pl.DataFrame:
        _check(chunk)
        if self._columns is None:
            self._columns = chunk.columns
        elif chunk.columns != self._columns:
            raise ValidationError(f"chunk columns {chunk.columns} differ from the first chunk's {self._columns}")
        if chunk.height == 0:
            return self._prepared(chunk, np.empty(0, np.int64))
        sent = chunk["sent_at"].dt.epoch("us")
        first, last = sent.min(), sent.max()
        assert isinstance(first, int) and isinstance(last, int)  # µs of a non-empty column, checked for nulls
        if self._last_sent is not None and first < self._last_sent:
            raise ValidationError(
                "chunks must come in sent_at order: this one starts "
                f"{(self._last_sent - first) / 1e6:.6f} s before the previous one ended"
            )
        self._last_sent = last
        if self._in_send_order and not chunk["sent_at"].is_sorted():
            self._in_send_order = False
        device = chunk["device_id"]
        if device.dtype != self.device_dtype:
            try:
                device = device.cast(pl.String).cast(self.device_dtype)
            except pl.exceptions.InvalidOperationError:
                unknown = device.cast(pl.String).filter(~device.cast(pl.String).is_in(self.ids)).head(3).to_list()
                raise ValidationError(f"device(s) not among the stream's device ids: {unknown}") from None
        codes = device.to_physical().to_numpy().astype(np.int64)
        return self._prepared(chunk, codes)

    def _prepared(self, chunk: pl.DataFrame, codes: np.ndarray) -> pl.DataFrame:
        n = chunk.height
        enqueued = _enqueued(chunk, codes, self._device_key, self.delivery) if n else np.empty(0, np.int64)
        out = chunk.with_columns(
            pl.Series("__p", self._device_partition[codes]).cast(pl.Int32),
            pl.Series("enqueued_time", enqueued).cast(_UTC_US),
            pl.Series("__row", np.arange(self._rows, self._rows + n, dtype=np.int64)),
        )
        self._rows += n
        return out

    def _empty(self) -> pl.DataFrame:
        schema = {c: pl.Null for c in self._columns or []}
        return pl.DataFrame(schema=schema).with_columns(
            pl.lit(None, pl.String).alias("partition_id"),
            pl.lit(None, _UTC_US).alias("enqueued_time"),
            pl.lit(None, pl.Int64).alias("sequence_number"),
            pl.lit(None, pl.Boolean).alias("fault_redelivered"),
        )


def _replays(frame: pl.DataFrame, delivery: Delivery, seed: int) -> pl.DataFrame:
    """Second copies of what each simulated consumer restart reads again."""
    if not delivery.replays or frame.height == 0:
        return frame.clear()
    lo = frame["enqueued_time"].min()
    hi = frame["enqueued_time"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)  # a non-empty Datetime column
    span = _us(hi - lo)
    with np.errstate(over="ignore"):
        h = mix(np.arange(delivery.replays, dtype=np.uint64) * GOLDEN ^ key(f"iotlib.delivery/{seed}/replay"))
    partitions = (h >> np.uint64(40)) % np.uint64(delivery.partitions)
    moments = np.floor(unit(h) * (span + 1)).astype(np.int64)
    copies = []
    for p, at in zip(partitions.tolist(), moments.tolist()):
        restart = lo + timedelta(microseconds=at)
        copies.append(
            frame.filter(
                (pl.col("__p") == p)
                & (pl.col("enqueued_time") > restart - to_timedelta(delivery.replay_span))
                & (pl.col("enqueued_time") <= restart)
            )
        )
    return pl.concat(copies, how="vertical").with_columns(pl.lit(True).alias("fault_redelivered"))
