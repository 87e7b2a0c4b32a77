"""What an ingestion run did: counts, throughput over time, retries and every failure with its reason."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl


@dataclass(frozen=True)
class Failure:
    """An event that was not sent (or not sent as valid), and why."""

    device_id: str
    time_observed: datetime | None
    reason: str
    partition_id: str | None = None


@dataclass
class IngestReport:
    """The outcome of one :meth:`IngestClient.send` call.

    ``rejected`` lists malformed events held back (with the validator's reason);
    ``failed`` lists events the hub did not accept after every retry. Together
    with ``events_sent`` they account for every input row — and, when the send
    was stopped (Ctrl-C, :meth:`~iotlib.ingest.aio.IngestClient.stop`), with
    ``not_sent``: events read but not sent (``interrupted`` is then True).
    """

    eventhub_name: str
    mode: str
    speed: float | None = None
    events_in: int = 0
    events_sent: int = 0
    bytes_sent: int = 0
    batches_sent: int = 0
    malformed_sent: int = 0
    retries: int = 0
    throttled: int = 0
    max_lag_seconds: float = 0.0
    per_partition: dict[str, int] = field(default_factory=dict)
    #: Events sent per device, when each device sent with its own token (``send(..., devices=...)``).
    per_device: dict[str, int] = field(default_factory=dict)
    rejected: list[Failure] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    interrupted: bool = False
    not_sent: int = 0
    #: Batches were still in flight when the stop's grace ran out: the hub may hold some ``not_sent`` events.
    abandoned_in_flight: bool = False
    _sends: list[tuple[float, str, int, int]] = field(default_factory=list, repr=False)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def record_send(
        self, partition_id: str, events: int, size: int, malformed: int, *, device: str | None = None
    ) -> None:
        self._sends.append((time.monotonic() - self._t0, partition_id, events, size))
        if device is not None:  # sent as the device itself, with its own token
            self.per_device[device] = self.per_device.get(device, 0) + events
        self.events_sent += events
        self.bytes_sent += size
        self.batches_sent += 1
        self.malformed_sent += malformed
        self.per_partition[partition_id] = self.per_partition.get(partition_id, 0) + events

    def finish(self, *, interrupted: bool = False, abandoned: bool = False) -> None:
        self.elapsed_seconds = time.monotonic() - self._t0
        self.abandoned_in_flight = self.abandoned_in_flight or abandoned
        if interrupted:  # what was read but neither sent, held back nor failed (in flight counts as not sent)
            self.interrupted = True
            self.not_sent = self.events_in - self.events_sent - len(self.rejected) - len(self.failed)

    @property
    def events_per_second(self) -> float:
        return self.events_sent / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def accounted(self) -> bool:
        """Every input event was sent, rejected or reported failed."""
        return self.events_sent + len(self.rejected) + len(self.failed) + self.not_sent == self.events_in

    def sends(self) -> pl.DataFrame:
        """One row per batch sent: seconds since start, partition, events, bytes."""
        return pl.DataFrame(
            self._sends,
            schema={"seconds": pl.Float64, "partition_id": pl.String, "events": pl.Int64, "bytes": pl.Int64},
            orient="row",
        )

    def throughput(self, *, every: float = 1.0) -> pl.DataFrame:
        """Events and bytes sent per ``every`` seconds of the run (wall clock)."""
        sends = self.sends()
        return (
            sends.with_columns(second=(pl.col("seconds") / every).floor() * every)
            .group_by("second")
            .agg(pl.col("events").sum(), pl.col("bytes").sum())
            .sort("second")
            .with_columns(events_per_second=pl.col("events") / every)
        )

    def partitions(self) -> pl.DataFrame:
        """Events sent per partition."""
        return pl.DataFrame(
            {"partition_id": list(self.per_partition), "events": list(self.per_partition.values())}
        ).sort("partition_id", descending=False)

    def devices(self) -> pl.DataFrame:
        """Per device (when each sent with its own token): events sent, events failed, the first reason."""
        failed: dict[str, list[str]] = {}
        for f in self.failed:
            failed.setdefault(f.device_id, []).append(f.reason)
        names = sorted(set(self.per_device) | set(failed))
        return pl.DataFrame(
            {
                "device_id": names,
                "sent": [self.per_device.get(d, 0) for d in names],
                "failed": [len(failed.get(d, [])) for d in names],
                "reason": [failed[d][0] if d in failed else None for d in names],
            },
            schema={"device_id": pl.String, "sent": pl.Int64, "failed": pl.Int64, "reason": pl.String},
        )

    def summary(self) -> str:
        parts = [
            f"sent {self.events_sent:,} events ({self.bytes_sent / 1e6:,.1f} MB) in {self.batches_sent:,} batches "
            f"to '{self.eventhub_name}' in {self.elapsed_seconds:,.1f}s ({self.events_per_second:,.0f} events/s, "
            f"{self.mode}{f' x{self.speed:g}' if self.mode == 'live' else ''})",
        ]
        if self.malformed_sent:
            parts.append(f"{self.malformed_sent:,} malformed sent on purpose")
        if self.rejected:
            parts.append(f"{len(self.rejected):,} malformed held back")
        if self.failed:
            parts.append(f"{len(self.failed):,} NOT ACCEPTED (report.failed says why)")
        if self.retries:
            parts.append(f"{self.retries:,} retries ({self.throttled:,} throttled)")
        if self.mode == "live" and self.max_lag_seconds > 0.5:
            parts.append(f"fell up to {self.max_lag_seconds:,.1f}s behind schedule")
        if self.interrupted:
            parts.append(f"INTERRUPTED: {self.not_sent:,} events read but not sent")
            if self.abandoned_in_flight:
                parts[-1] += " (batches in flight were given up on: the hub may hold some of them)"
        return "; ".join(parts)

    def partition_line(self) -> str:
        """Events sent per partition, in partition order: ``0: 1,204  1: 1,187 …``."""
        ordered = sorted(self.per_partition.items(), key=lambda kv: (len(kv[0]), kv[0]))
        return "  ".join(f"{pid}: {n:,}" for pid, n in ordered) or "none"

    def __str__(self) -> str:
        return self.summary()
