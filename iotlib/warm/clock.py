"""The hub's clock as seen from the processor: a safe estimate of "now" in enqueued time.

Heartbeats must use the hub's time base (``enqueued_time``), not the local
clock, which may be ahead of the hub's. Each received event (or partition
property read) shows the hub's clock at some earlier moment; the hub's time
now is at least that value plus the local time elapsed since. The estimate is
the best such lower bound::

    now ≈ local_now + max(enqueued_time − local_receive_time)

It never runs ahead of the hub (delivery takes time, so every term
underestimates), which is what makes a heartbeat at ``now`` safe: nothing
can still arrive with an earlier enqueued time on a partition read to its end.
The maximum is taken over the last one to two minutes of observations, so a
local clock that drifts faster than the hub's cannot carry an old offset along.
"""

from __future__ import annotations

import time


def local_us() -> int:
    """The local wall clock in microseconds since the epoch."""
    return time.time_ns() // 1_000


class HubClock:
    """Lower-bound estimate of the hub's current enqueued time, in µs since the epoch."""

    def __init__(self, *, memory_s: float = 60.0) -> None:
        self._period = int(memory_s * 1_000_000)
        self._bucket: int | None = None  # local time // period of the current bucket
        self._current: int | None = None  # max(enqueued - local) in the current bucket
        self._previous: int | None = None  # ... in the one before

    def observe(self, enqueued_us: int, local: int | None = None) -> None:
        """The hub's clock read ``enqueued_us`` no later than local time ``local`` (default: now)."""
        local = local_us() if local is None else local
        self._rotate(local)
        offset = enqueued_us - local
        if self._current is None or offset > self._current:
            self._current = offset

    def _rotate(self, local: int) -> None:
        bucket = local // self._period
        if self._bucket is None:
            self._bucket = bucket
        elif bucket > self._bucket:
            self._previous = self._current if bucket == self._bucket + 1 else None
            self._current, self._bucket = None, bucket

    @property
    def known(self) -> bool:
        return self._current is not None or self._previous is not None

    def now(self) -> int | None:
        """The estimate, or ``None`` without a recent observation."""
        local = local_us()
        self._rotate(local)
        known = [o for o in (self._current, self._previous) if o is not None]
        return local + max(known) if known else None
