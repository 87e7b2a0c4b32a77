"""Duplicate events, removed within a horizon of arrival time.

Two events are duplicates when they share ``(device_id, time_observed,
values)`` — a device or gateway resent a reading — or ``(partition_id,
sequence_number)`` — the hub delivered the same event twice, as after a
consumer restart from an older checkpoint. The later one (in arrival order)
is the duplicate if the earlier one arrived at most ``horizon`` before it.
Every sighting counts as "earlier", duplicates included, so a burst of
resends is caught as long as each copy is within the horizon of the last.

:func:`duplicate_reason` computes this for a whole frame with window
expressions; :class:`DuplicateFilter` does the same event by event with
memory bounded by the horizon, for the incremental engine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence

import polars as pl

from iotlib.processing import columns as C
from iotlib.processing.policy import DUPLICATE_EVENT, DUPLICATE_SEQUENCE


def duplicate_reason(key: Sequence[str], horizon_us: int | None) -> pl.Expr:
    """Reason (or null) per row of a frame in arrival order with ``__a``, ``__p``, ``__seq``.

    ``key``: the event identity columns, ``device_id``, ``time_observed`` and the values.
    """
    if horizon_us is None:
        return pl.lit(None, dtype=pl.String)
    a = pl.col(C.A)
    seen_event = a - a.shift(1).over(list(key))
    seen_seq = a - a.shift(1).over([C.P, C.SEQ])
    return (
        pl.when(pl.col(C.SEQ).is_not_null() & (seen_seq <= horizon_us))
        .then(pl.lit(DUPLICATE_SEQUENCE))
        .when(seen_event <= horizon_us)
        .then(pl.lit(DUPLICATE_EVENT))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


class DuplicateFilter:
    """Event-by-event duplicate detection with the same rules as :func:`duplicate_reason`.

    Keeps, per identity, the arrival time of its latest sighting; entries older
    than the horizon behind the newest arrival are forgotten, so memory is
    bounded by the events of one horizon.
    """

    def __init__(self, horizon_us: int | None) -> None:
        self.horizon_us = horizon_us
        self._event: dict[Hashable, int] = {}
        self._sequence: dict[Hashable, int] = {}
        self._order: deque[tuple[int, bool, Hashable]] = deque()
        self._clock = None  # newest arrival seen

    def __len__(self) -> int:
        return len(self._event) + len(self._sequence)

    def check(self, arrival: int, event_key: Hashable, sequence_key: Hashable | None) -> str | None:
        """The duplicate reason for this event (``None`` if new); records the sighting."""
        h = self.horizon_us
        if h is None:
            return None
        if self._clock is None or arrival > self._clock:
            self._clock = arrival
            self._forget(self._clock - h)
        reason = None
        if sequence_key is not None:
            prev = self._sequence.get(sequence_key)
            if prev is not None and arrival - prev <= h:
                reason = DUPLICATE_SEQUENCE
            self._sequence[sequence_key] = arrival
            self._order.append((arrival, True, sequence_key))
        prev = self._event.get(event_key)
        if reason is None and prev is not None and arrival - prev <= h:
            reason = DUPLICATE_EVENT
        self._event[event_key] = arrival
        self._order.append((arrival, False, event_key))
        return reason

    def _forget(self, before: int) -> None:
        order = self._order
        while order and order[0][0] < before:
            arrival, is_seq, key = order.popleft()
            table = self._sequence if is_seq else self._event
            if table.get(key) == arrival:
                del table[key]
