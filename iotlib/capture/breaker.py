"""The per-partition circuit breaker on frames received but not yet stored.

As in the journey's cold-storage processor: when storage is slow or down, frames pile up in
memory. At ``warn`` buffered frames the breaker logs a warning; at ``trip`` it stops the
partition's receiving (the callback waits, so the client stops asking for more events; what the
client already prefetched is bounded by its prefetch count) and re-checks every ``stall``
seconds, logging once per stall that it is still waiting. Receiving resumes when storage has
taken the backlog down to half the warning level (hysteresis: no flapping at a level). Memory is
therefore bounded per partition by about ``breaker_trip`` × ``frame_size`` plus ``prefetch``
events, and the checkpoint never moves while nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from iotlib.capture.report import BreakerEvent

_LOG = logging.getLogger("iotlib.capture")


class CircuitBreaker:
    """Counts a partition's buffered frames and stalls its receiving above the trip level."""

    def __init__(
        self,
        partition_id: str,
        *,
        warn: int,
        trip: int,
        stall: float,
        record: Callable[[BreakerEvent], None],
        last_error: Callable[[], str] = lambda: "",
    ) -> None:
        self.partition_id = partition_id
        self.warn, self.trip, self.stall = warn, trip, stall
        self.record = record
        self.last_error = last_error
        self.buffered = 0
        self.state = "closed"  # closed | warning | tripped
        self._progress = asyncio.Event()
        self.tripped_at: float | None = None

    def add(self, frames: int = 1) -> None:
        self.buffered += frames
        if self.state == "closed" and self.buffered >= self.warn:
            self.state = "warning"
            self._event("warning", f"{self.buffered} frames buffered: storage is not keeping up")
            _LOG.warning(
                "partition %s: %d frames buffered (warning level %d): storage is slow or down (%s)",
                self.partition_id, self.buffered, self.warn, self.last_error() or "no error yet",
            )  # fmt: skip

    def stored(self, frames: int = 1) -> None:
        self.buffered = max(0, self.buffered - frames)
        self._progress.set()
        # hysteresis: clear at half the warning level, so a backlog hovering at the level does not flap
        if self.state == "warning" and self.buffered <= self.warn // 2:
            self.state = "closed"
            self._event("cleared", "storage caught up")
            _LOG.warning("partition %s: storage caught up (%d frames buffered)", self.partition_id, self.buffered)

    def wake(self) -> None:
        """Make a stalled receiver look at its stop condition now (the run is stopping)."""
        self._progress.set()

    def forget(self) -> None:
        """The partition dropped its buffered frames (handover, reset): nothing is pending any more."""
        self.buffered = 0
        self.state = "closed"
        self._progress.set()

    async def wait_if_tripped(self, stopping: Callable[[], bool]) -> None:
        """Return at once below the trip level; otherwise stall until storage drains below ``warn``."""
        if self.buffered < self.trip:
            return
        self.state = "tripped"
        self.tripped_at = time.monotonic()
        self._event("tripped", f"{self.buffered} frames buffered; receiving stalled")
        _LOG.warning(
            "partition %s: circuit breaker TRIPPED at %d buffered frames (trip level %d): receiving stalls "
            "until storage takes the backlog (last error: %s)",
            self.partition_id, self.buffered, self.trip, self.last_error() or "none",
        )  # fmt: skip
        while self.buffered > self.warn // 2 and not stopping():
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), self.stall)
            except TimeoutError:
                _LOG.warning(
                    "partition %s: still stalled after %.0f s, %d frames buffered (last error: %s)",
                    self.partition_id, time.monotonic() - self.tripped_at, self.buffered, self.last_error() or "none",
                )  # fmt: skip
        took = time.monotonic() - self.tripped_at
        self.state = "closed" if self.buffered <= self.warn // 2 else "warning"
        self._event("resumed", f"after {took:.1f} s stalled")
        _LOG.warning("partition %s: circuit breaker reset after %.1f s; receiving resumes (%d frames buffered)",
                     self.partition_id, took, self.buffered)  # fmt: skip

    def _event(self, state: str, detail: str) -> None:
        self.record(BreakerEvent(datetime.now(UTC), self.partition_id, state, self.buffered, detail))
