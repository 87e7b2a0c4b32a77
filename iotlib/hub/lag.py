"""Lag arithmetic: how far each consumer group is behind its hub, from two looks (no I/O here).

One look at a hub (each partition's begin and last-enqueued sequence numbers and time) and at
each consumer group's records in its checkpoint container (checkpointed sequence number and when
it was written; who owns the partition) gives one row per hub, consumer group and partition:

- ``unprocessed``: events after the checkpoint that the hub still holds (all retained events when
  the group has no checkpoint); events that retention removed before the group read them are
  ``lost_to_retention`` instead, never counted twice;
- ``lag_seconds``: how long the oldest unprocessed event has been waiting at the look, from its
  enqueued time (0 when nothing waits; null when that event could not be read);
- ``enqueued_per_second`` / ``processed_per_second``: throughput in and out over the interval
  since the previous look (the hub's last sequence number, the group's checkpoint); null on the
  first look.

A :class:`LagRule` turns a series of looks into alerts: it fires when a group's unprocessed
events stay above a threshold for a while, once per episode, and says when the episode ends. It
reads time only from the looks (``sampled_at``), so it is tested by handing it looks, not by waiting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from iotlib.durations import Duration, to_seconds
from iotlib.errors import ConfigurationError
from iotlib.hub.partitions import PartitionPosition

SCHEMA: dict[str, Any] = {
    "sampled_at": pl.Datetime("us", "UTC"),
    "eventhub": pl.String,
    "consumer_group": pl.String,
    "partition_id": pl.String,
    "last_enqueued_sequence_number": pl.Int64,
    "last_enqueued_time": pl.Datetime("us", "UTC"),
    "checkpoint_sequence_number": pl.Int64,
    "checkpoint_time": pl.Datetime("us", "UTC"),
    "unprocessed": pl.Int64,
    "lag_seconds": pl.Float64,
    "lost_to_retention": pl.Int64,
    "enqueued_per_second": pl.Float64,
    "processed_per_second": pl.Float64,
    "owner": pl.String,
    "ownership_time": pl.Datetime("us", "UTC"),
}
KEY = ["eventhub", "consumer_group", "partition_id"]


@dataclass(frozen=True)
class Checkpoint:
    """A group's checkpoint in one partition: the last event it processed, and when it said so."""

    sequence_number: int
    time: datetime | None = None


@dataclass(frozen=True)
class Owner:
    """Who holds a partition for a group (``owner_id`` empty once released), since when."""

    owner_id: str | None
    time: datetime | None = None


@dataclass(frozen=True)
class GroupRecords:
    """What a consumer group left in its checkpoint container for one hub, by partition id."""

    consumer_group: str
    container: str
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=dict)
    owners: Mapping[str, Owner] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.checkpoints and not self.owners


def first_unprocessed(position: PartitionPosition, checkpoint: int | None) -> tuple[int, int, int]:
    """``(first unprocessed sequence number, unprocessed, lost to retention)`` for one partition.

    The checkpoint is the last event processed, so processing resumes after it; what retention
    removed before that point cannot be processed any more and is counted apart.
    """
    if position.is_empty:
        return position.begin_sequence_number, 0, 0
    first = position.begin_sequence_number if checkpoint is None else checkpoint + 1
    lost = max(0, position.begin_sequence_number - first)
    first = max(first, position.begin_sequence_number)
    return first, max(0, position.last_enqueued_sequence_number - first + 1), lost


def waiting(positions: Mapping[str, PartitionPosition], groups: Sequence[GroupRecords]) -> dict[str, set[int]]:
    """The events whose enqueued time gives ``lag_seconds`` and must be read: per partition, each
    group's first unprocessed one (unless it is the last enqueued, whose time the hub reports)."""
    wanted: dict[str, set[int]] = {}
    for records in groups:
        for pid, position in positions.items():
            checkpoint = records.checkpoints.get(pid)
            first, count, _ = first_unprocessed(position, checkpoint.sequence_number if checkpoint else None)
            if count and first != position.last_enqueued_sequence_number:
                wanted.setdefault(pid, set()).add(first)
    return wanted


def known_times(positions: Mapping[str, PartitionPosition]) -> dict[tuple[str, int], datetime]:
    """The enqueued times the hub reports itself: each partition's last event's."""
    return {
        (pid, p.last_enqueued_sequence_number): p.last_enqueued_time_utc
        for pid, p in positions.items()
        if not p.is_empty and p.last_enqueued_time_utc is not None
    }


def lag_frame(
    eventhub: str,
    positions: Mapping[str, PartitionPosition],
    groups: Sequence[GroupRecords],
    *,
    sampled_at: datetime,
    enqueued_times: Mapping[tuple[str, int], datetime] | None = None,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per consumer group and partition (see the module docstring for the columns).

    ``enqueued_times`` maps (partition, sequence number) to the enqueued time of the events
    :func:`waiting` names; ``previous`` is the frame of the look before, for throughput.
    """
    times = enqueued_times or {}
    rows = []
    for records in groups:
        for pid, position in positions.items():
            checkpoint = records.checkpoints.get(pid)
            seq = checkpoint.sequence_number if checkpoint else None
            first, count, lost = first_unprocessed(position, seq)
            oldest = times.get((pid, first)) if count else None
            lag_seconds = 0.0 if not count else None
            if oldest is not None:
                lag_seconds = max(0.0, (sampled_at - oldest).total_seconds())
            owner = records.owners.get(pid)
            rows.append(
                (
                    sampled_at,
                    eventhub,
                    records.consumer_group,
                    pid,
                    position.last_enqueued_sequence_number,
                    None if position.is_empty else position.last_enqueued_time_utc,
                    seq,
                    checkpoint.time if checkpoint else None,
                    count,
                    lag_seconds,
                    lost,
                    None,
                    None,
                    (owner.owner_id or None) if owner else None,
                    owner.time if owner else None,
                )
            )
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    if previous is not None and previous.height:
        frame = with_throughput(frame, previous)
    return frame.sort("eventhub", "consumer_group", pl.col("partition_id").cast(pl.Int64, strict=False))


def with_throughput(frame: pl.DataFrame, previous: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with events enqueued and checkpointed per second since ``previous`` (same keys)."""
    before = previous.select(
        *KEY,
        pl.col("sampled_at").alias("_at"),
        pl.col("last_enqueued_sequence_number").alias("_last"),
        pl.col("checkpoint_sequence_number").alias("_checkpoint"),
    )
    seconds = (pl.col("sampled_at") - pl.col("_at")).dt.total_microseconds() / 1e6
    rate = pl.when(seconds > 0)
    return (
        frame.join(before, on=KEY, how="left")
        .with_columns(
            enqueued_per_second=rate.then((pl.col("last_enqueued_sequence_number") - pl.col("_last")) / seconds),
            processed_per_second=rate.then((pl.col("checkpoint_sequence_number") - pl.col("_checkpoint")) / seconds),
        )
        .with_columns(pl.col("enqueued_per_second", "processed_per_second").clip(lower_bound=0.0))
        .drop("_at", "_last", "_checkpoint")
        .select(list(SCHEMA))
    )


def _sum_or_null(name: str) -> pl.Expr:
    """The sum, or null when every value is (the first look has no throughput yet)."""
    return pl.when(pl.col(name).is_not_null().any()).then(pl.col(name).sum()).alias(name)


def summary(frame: pl.DataFrame) -> pl.DataFrame:
    """Per hub and consumer group: unprocessed in all, the worst partition, the longest wait,
    throughput in and out, the oldest checkpoint and how many processors own partitions."""
    return (
        frame.group_by("eventhub", "consumer_group")
        .agg(
            pl.col("sampled_at").max(),
            pl.col("unprocessed").sum().alias("unprocessed"),
            pl.col("unprocessed").max().alias("worst_partition"),
            pl.col("lag_seconds").max().alias("lag_seconds"),
            pl.col("lost_to_retention").sum(),
            *(_sum_or_null(name) for name in ("enqueued_per_second", "processed_per_second")),
            pl.col("checkpoint_time").min().alias("oldest_checkpoint"),
            pl.col("owner").drop_nulls().n_unique().alias("owners"),
        )
        .sort("eventhub", "consumer_group")
    )


@dataclass(frozen=True)
class LagAlert:
    """A rule's verdict on one consumer group: ``state`` is ``"fired"`` or ``"resolved"``."""

    state: str
    eventhub: str
    consumer_group: str
    at: datetime
    unprocessed: int
    threshold: int
    above_since: datetime

    @property
    def message(self) -> str:
        held = (self.at - self.above_since).total_seconds()
        if self.state == "fired":
            return (
                f"{self.eventhub}/{self.consumer_group}: {self.unprocessed:,} events unprocessed, above "
                f"{self.threshold:,} for {held:.0f} s"
            )
        return f"{self.eventhub}/{self.consumer_group}: back to {self.unprocessed:,} unprocessed after {held:.0f} s"


class LagRule:
    """Fires when a consumer group's unprocessed events stay above ``threshold`` for ``for_`` or longer.

    Feed it each look (:meth:`evaluate`): it returns the alerts that look raises — ``fired`` once
    per episode, ``resolved`` when the group drops to the threshold or below. The time is the
    looks' ``sampled_at``, so a test drives it with looks at chosen times.
    """

    def __init__(self, threshold: int, *, for_: Duration = "1m") -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ConfigurationError(f"threshold={threshold!r} must be a whole number of events, 0 or more")
        self.threshold = threshold
        self.hold_seconds = to_seconds(for_, name="for_")
        self._above_since: dict[tuple[str, str], datetime] = {}
        self._firing: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"LagRule(threshold={self.threshold}, for_={self.hold_seconds:g}s)"

    @property
    def firing(self) -> list[tuple[str, str]]:
        """The (hub, consumer group) pairs in an episode now."""
        return sorted(self._firing)

    def evaluate(self, frame: pl.DataFrame) -> list[LagAlert]:
        """The alerts this look raises (``frame``: one look, as :func:`lag_frame` returns it)."""
        alerts = []
        for row in summary(frame).iter_rows(named=True):
            key = (row["eventhub"], row["consumer_group"])
            now, count = row["sampled_at"], row["unprocessed"]
            if count > self.threshold:
                since = self._above_since.setdefault(key, now)
                if key not in self._firing and (now - since).total_seconds() >= self.hold_seconds:
                    self._firing.add(key)
                    alerts.append(LagAlert("fired", *key, now, count, self.threshold, since))
                continue
            since = self._above_since.pop(key, now)
            if key in self._firing:
                self._firing.discard(key)
                alerts.append(LagAlert("resolved", *key, now, count, self.threshold, since))
        return alerts


@dataclass(frozen=True)
class LagSample:
    """One look at a hub: a row per consumer group and partition, and the alerts the look raised."""

    frame: pl.DataFrame
    alerts: list[LagAlert] = field(default_factory=list)

    @property
    def sampled_at(self) -> datetime | None:
        return self.frame["sampled_at"].max() if self.frame.height else None  # type: ignore[return-value]

    @property
    def unprocessed(self) -> int:
        """Events waiting, over every group and partition."""
        return int(self.frame["unprocessed"].sum())

    def summary(self) -> pl.DataFrame:
        """Per hub and consumer group (see :func:`summary`)."""
        return summary(self.frame)


def over_time(frame: pl.DataFrame) -> pl.DataFrame:
    """Looks one after the other (:meth:`iotlib.hub.monitor.Recording.frame`) as one row per look and
    group: unprocessed events in all, the longest wait, throughput in and out."""
    return (
        frame.group_by("sampled_at", "eventhub", "consumer_group")
        .agg(
            pl.col("unprocessed").sum(),
            pl.col("lag_seconds").max(),
            *(_sum_or_null(name) for name in ("enqueued_per_second", "processed_per_second")),
        )
        .sort("sampled_at", "eventhub", "consumer_group")
    )
