"""Throughput units: how much a namespace may take in and hand out per second.

Azure Event Hubs' standard tier meters each namespace (all its hubs together)
by throughput units (TU). One TU admits 1,000 events/s or 1 MiB/s of ingress,
whichever comes first, and hands out 4,096 events/s or 2 MiB/s of egress. An
event inside a batch counts as one event; the bytes are the AMQP message's size.

The emulator meters with token buckets, one for events and one for bytes per
direction, refilled continuously and holding about one second's worth (the
short burst Azure tolerates). A bucket that is full admits one message even
when it is larger than the bucket (a 1 MiB batch at 1 TU, or a batch of 5,000
small events): the bucket goes into debt and the next sends wait for it, so no
legal message is refused forever and the long-run rate still holds.

* Ingress over budget: the whole transfer is refused with the delivery outcome
  ``rejected`` and error ``com.microsoft:server-busy`` (Azure's error code
  50002), nothing of it is stored and the link stays attached, as on Azure.
  azure-eventhub 5.x (pyamqp transport) turns that outcome into
  ``EventDataSendError`` with ``.error == "server-busy"``; ``send_batch`` and
  ``send_event`` of ``EventHubProducerClient`` re-send once, immediately, on
  the same link, then raise it. Its retry policy and the 4 s back-off it keeps
  for server-busy are not applied on that path: pacing is the sender's job.
* Egress over budget: deliveries are held back until the bucket refills
  (Azure does not fail reads for throughput, it slows them down).

Off (``None``) by default: local runs are never throttled unless asked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

_LOG = logging.getLogger("iotlib.local.emulator.throughput")

INGRESS_EVENTS_PER_TU = 1000
INGRESS_BYTES_PER_TU = 1024 * 1024
EGRESS_EVENTS_PER_TU = 4096
EGRESS_BYTES_PER_TU = 2 * 1024 * 1024
BURST_SECONDS = 1.0
EGRESS_SLICE_SECONDS = 0.1
MAX_THROUGHPUT_UNITS = 40  # what Azure's standard tier can be scaled to
SERVER_BUSY = "com.microsoft:server-busy"
SUMMARY_SECONDS = 10.0  # while throttling lasts, one summary line per this many seconds


class TokenBucket:
    """Tokens refilled continuously at ``rate`` per second, holding at most ``capacity``."""

    def __init__(self, rate: float, capacity: float, *, now: float) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = self.capacity
        self._at = now

    def level(self, now: float) -> float:
        """The tokens available at ``now`` (negative while in debt)."""
        if now > self._at:
            self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
            self._at = now
        return self.tokens

    def fits(self, amount: float, now: float) -> bool:
        """Can ``amount`` be taken now? A full bucket takes anything (and goes into debt)."""
        level = self.level(now)
        return level >= amount or level >= self.capacity

    def take(self, amount: float) -> None:
        self.tokens -= amount

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0 if it fits now)."""
        level = self.level(now)
        if level >= amount or level >= self.capacity:
            return 0.0
        return (min(amount, self.capacity) - level) / self.rate


@dataclass(frozen=True)
class ThroughputStats:
    """What a namespace took in and handed out since the emulator started, and what it throttled.

    ``throttled_*`` count transfers refused with ``com.microsoft:server-busy``
    (and the events and bytes they carried, none of which were stored);
    ``egress_holds`` counts the times a delivery waited for egress budget.
    ``throughput_units`` is ``None`` when the emulator does not meter.
    """

    throughput_units: int | None
    accepted_transfers: int
    accepted_events: int
    accepted_bytes: int
    throttled_transfers: int
    throttled_events: int
    throttled_bytes: int
    delivered_events: int
    delivered_bytes: int
    egress_holds: int


class ThroughputMeter:
    """Ingress and egress metering of one namespace (``units=None``: count only, never throttle)."""

    def __init__(self, units: int | None, *, namespace: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.units = units or None
        self.namespace = namespace
        self.clock = clock
        now = clock()
        self.limited = self.units is not None
        n = self.units or 0
        self.in_events = TokenBucket(n * INGRESS_EVENTS_PER_TU, n * INGRESS_EVENTS_PER_TU * BURST_SECONDS, now=now)
        self.in_bytes = TokenBucket(n * INGRESS_BYTES_PER_TU, n * INGRESS_BYTES_PER_TU * BURST_SECONDS, now=now)
        self.out_events = TokenBucket(n * EGRESS_EVENTS_PER_TU, n * EGRESS_EVENTS_PER_TU * BURST_SECONDS, now=now)
        self.out_bytes = TokenBucket(n * EGRESS_BYTES_PER_TU, n * EGRESS_BYTES_PER_TU * BURST_SECONDS, now=now)
        self.accepted_transfers = self.accepted_events = self.accepted_bytes = 0
        self.throttled_transfers = self.throttled_events = self.throttled_bytes = 0
        self.delivered_events = self.delivered_bytes = self.egress_holds = 0
        self._logged = (0, 0, 0, 0)  # throttled transfers/events/bytes and holds at the last summary
        self._logged_at = now
        self._episode = False

    # --- ingress -------------------------------------------------------------------

    def admit(self, events: int, size: int, hub: str) -> str | None:
        """Charge one transfer of ``events`` events and ``size`` bytes to ``hub``'s namespace.

        Returns ``None`` when it is admitted, else the error description to reject it with.
        """
        if self.limited:
            now = self.clock()
            ev, by = self.in_events, self.in_bytes
            if not (ev.fits(events, now) and by.fits(size, now)):
                return self._throttle(events, size, hub, now)
            ev.take(events)
            by.take(size)
        self.accepted_transfers += 1
        self.accepted_events += events
        self.accepted_bytes += size
        return None

    def _throttle(self, events: int, size: int, hub: str, now: float) -> str:
        self.throttled_transfers += 1
        self.throttled_events += events
        self.throttled_bytes += size
        if not self._episode:
            self._episode = True
            _LOG.warning(
                "namespace '%s' is over its ingress budget (%s); refusing sends with %s "
                "(a summary follows every %.0f s while it lasts)",
                self.namespace,
                self.describe_ingress(),
                SERVER_BUSY,
                SUMMARY_SECONDS,
            )
        for_events, for_bytes = self.in_events.wait(events, now), self.in_bytes.wait(size, now)
        wait = max(for_events, for_bytes)
        which = "events" if for_events >= for_bytes else "bytes"
        return (
            f"The request was throttled: namespace '{self.namespace}' ({self.describe_ingress()}) has no room "
            f"for this send to '{hub}' ({events:,} events, {size:,} bytes; {which} limit). "
            f"Error code : 50002. Please wait {max(1, math.ceil(wait))} seconds and try again."
        )

    def describe_ingress(self) -> str:
        if not self.limited:
            return "ingress not metered"
        n = self.units or 0
        unit = "throughput unit" if n == 1 else "throughput units"
        return f"{n} {unit}: {n * INGRESS_EVENTS_PER_TU:,} events/s or {n} MiB/s in"

    # --- egress --------------------------------------------------------------------

    def egress_allowance(self, max_events: int, max_bytes: int) -> tuple[int, int, float]:
        """How many events and bytes a delivery turn may hand out now, or how long to wait.

        Returns ``(events, bytes, 0.0)`` or, when the budget is spent, ``(0, 0, seconds)``.
        """
        if not self.limited:
            return max_events, max_bytes, 0.0
        now = self.clock()
        # Wait for a useful slice (a tenth of a second's worth) rather than trickling single events.
        want_events = max(1, min(max_events, int(self.out_events.rate * EGRESS_SLICE_SECONDS)))
        want_bytes = max(1, min(max_bytes, int(self.out_bytes.rate * EGRESS_SLICE_SECONDS)))
        events, room = self.out_events.level(now), self.out_bytes.level(now)
        if events < want_events or room < want_bytes:
            self.egress_holds += 1
            return 0, 0, max(self.out_events.wait(want_events, now), self.out_bytes.wait(want_bytes, now), 0.001)
        return min(max_events, int(events)), min(max_bytes, int(room)), 0.0

    def delivered(self, events: int, size: int) -> None:
        """Charge a delivery turn (it may overdraw the byte budget by part of one record)."""
        self.delivered_events += events
        self.delivered_bytes += size
        if self.limited:
            self.out_events.take(events)
            self.out_bytes.take(size)

    # --- reporting -----------------------------------------------------------------

    def stats(self) -> ThroughputStats:
        return ThroughputStats(
            self.units,
            self.accepted_transfers,
            self.accepted_events,
            self.accepted_bytes,
            self.throttled_transfers,
            self.throttled_events,
            self.throttled_bytes,
            self.delivered_events,
            self.delivered_bytes,
            self.egress_holds,
        )

    def log_summary(self) -> None:
        """Log what was throttled since the last summary (nothing if nothing was)."""
        counts = (self.throttled_transfers, self.throttled_events, self.throttled_bytes, self.egress_holds)
        transfers, events, size, holds = (a - b for a, b in zip(counts, self._logged))
        now = self.clock()
        seconds = now - self._logged_at
        self._logged, self._logged_at = counts, now
        if transfers:
            _LOG.info(
                "throttled %s send(s) (%s events, %s bytes) in the last %.0f s on namespace '%s'; "
                "%s events accepted so far",
                f"{transfers:,}",
                f"{events:,}",
                f"{size:,}",
                seconds,
                self.namespace,
                f"{self.accepted_events:,}",
            )
        elif self._episode:
            self._episode = False
            _LOG.info(
                "namespace '%s' is no longer throttled (%s sends refused in all)",
                self.namespace,
                f"{self.throttled_transfers:,}",
            )
        if holds:
            _LOG.info("deliveries waited %s time(s) for egress budget in the last %.0f s", f"{holds:,}", seconds)
