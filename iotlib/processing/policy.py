"""Event time, watermarks and lateness: the exact semantics of a stream job.

This text is the contract shared by the batch job
(:func:`iotlib.processing.event_time.windows_with_policy`), the incremental
engine (:class:`iotlib.processing.incremental.WindowEngine`), the streaming
job built on it and notebook 05. Both implementations give identical results —
windows, side outputs, counts, watermarks — for the same events fed in arrival
order, however the stream is cut into micro-batches. (The warm job, :mod:`iotlib.warm`, applies
them to each partition of the hub on its own — the partition is its "fleet" — and merges the
partitions' windows once every partition's watermark has passed them.)

Times
-----
- **Event time** ``e``: ``time_observed``, taken by the device clock (ASA's
  ``TIMESTAMP BY TimeObserved``). With ``time="arrival"`` windows use arrival
  time instead and no event is ever late (ASA ignores its policies then too).
- **Arrival time** ``a``: ``enqueued_time`` (set by the hub), else ``sent_at``.
  Events are processed in **arrival order**: by ``a``, then ``sequence_number``,
  then ``partition_id`` (as text), then input order.
- **Ticks**: the arrival time line is cut into ticks of ``tick`` (default 1 s)
  aligned to the Unix epoch. The fleet watermark is re-evaluated once per
  tick, at the first event that arrives in it — so results depend on arrival
  times only, never on how events are grouped into micro-batches.

What happens to each event, in arrival order
--------------------------------------------
1. **Invalid** — a missing device id, time or value: side output ``invalid``.
   (The building job also sends devices missing from the registry to
   ``unmatched``, reason ``unknown_device``.) Neither affects anything else.
2. **Duplicate** — the same ``(device_id, time_observed, values)`` as an
   earlier event (reason ``duplicate_event``), or the same ``(partition_id,
   sequence_number)`` (``duplicate_sequence``, e.g. a redelivery after a
   restart), where that earlier event arrived at most ``dedupe_horizon``
   before. "Earlier event" includes earlier duplicates. Duplicates go to
   ``duplicates`` and affect nothing but the arrival clock.
3. **Clock ahead** — ``e > a + clock_ahead``: the device clock runs ahead of
   the hub's (a correct clock gives ``e <= a``; the tolerance absorbs clock
   sync error). Such an event never moves a watermark, so one fast clock
   cannot make everybody else late; it is handled by ``late_policy`` with
   reason ``clock_ahead`` and its device is reported (``devices`` state).
4. **Watermarks** (all take only non-duplicate, not-clock-ahead events):
   - device watermark ``W_d`` = newest event time seen from the device −
     ``out_of_order`` (ASA's per-device substreams);
   - partition watermark ``W_p`` = the highest device watermark among the
     partition's devices, i.e. newest event time in the partition −
     ``out_of_order``;
   - **fleet watermark**, evaluated at the first event of each tick ``k``
     from the events of earlier ticks only::

         W_k = max(W_prev, max(min(W_p over active partitions), k*tick - idle_timeout))

     A partition is *active* while its latest arrival is within
     ``idle_timeout`` of the tick start. The ``k*tick - idle_timeout`` floor
     means a quiet partition or device never holds windows open longer than
     ``idle_timeout`` of arrival time. ``W`` never decreases.
   - the **frontier** ``F_k = W_k - late_arrival``: windows ending before it
     are closed.
5. **Late** — an event arriving in tick ``k`` is late when the earliest
   window containing ``e`` ends before ``F_k`` (that window was closed).
   Otherwise it is **accepted** into every window containing ``e``; accepted
   events older than their device's newest earlier event count as
   ``reordered`` (buffered and put in order by the windows; nothing lost).
6. **Late policy** for late and clock-ahead events:
   - ``"side_output"`` (default): not aggregated; side output ``late`` with
     the reason and the frontier at the time;
   - ``"adjust"`` (ASA): aggregated at the adjusted time ``F_k`` (late) or
     ``max(a, F_k)`` (clock ahead) — the earliest instant whose windows are
     all open — and listed in ``adjusted`` with ``adjusted_time``;
   - ``"drop"``: not aggregated; listed in ``dropped``.

When a window closes
--------------------
Fixed windows ``(start, end]`` (ASA; ``closed="left"`` gives ``[start, end)``)
close at the first watermark evaluation whose frontier has passed their end:
``end < F_k``, i.e. the fleet watermark is beyond ``end + late_arrival``.
The window is then emitted once with ``closed_at = k*tick`` (arrival time) and
never changes. At the end of input (batch) or on ``flush()`` (incremental),
windows still open are emitted with ``closed_at`` null. An out-of-order
tolerance therefore delays every window by that much; a late-arrival
tolerance keeps each window open that much longer after the watermark
passes its end. Only tumbling and hopping windows have fixed ends; sliding
and session windows are batch-only (:func:`iotlib.processing.windowed`).

Aggregates are computed over the window's events in arrival order with exact
(reproducible) sums; ``last``/``max`` of ``time_observed`` use the raw event
time, as ASA's ``MAX(TimeObserved)`` does even for adjusted events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from iotlib.durations import Duration, describe, to_us
from iotlib.errors import ConfigurationError

LatePolicy = Literal["side_output", "adjust", "drop"]
LATE_POLICIES = ("side_output", "adjust", "drop")

# Reasons written into side outputs.
LATE = "late"
CLOCK_AHEAD = "clock_ahead"
DUPLICATE_EVENT = "duplicate_event"
DUPLICATE_SEQUENCE = "duplicate_sequence"
UNKNOWN_DEVICE = "unknown_device"


@dataclass(frozen=True)
class EventTimePolicy:
    """Tolerances and the late policy; see the module text for what each does.

    Defaults follow ASA where it has one (late arrival 5 s, out of order 0 s)
    and send late events to a side output rather than adjusting them.
    """

    # Durations as given (a bare number is seconds); policies compare by their microsecond forms.
    out_of_order: Duration = field(default="0s", compare=False)
    late_arrival: Duration = field(default="5s", compare=False)
    late_policy: LatePolicy = "side_output"
    clock_ahead: Duration = field(default="5s", compare=False)
    idle_timeout: Duration = field(default="30s", compare=False)
    dedupe_horizon: Duration | None = field(default="2m", compare=False)
    tick: Duration = field(default="1s", compare=False)
    # Microsecond forms, derived.
    out_of_order_us: int = field(init=False, repr=False)
    late_arrival_us: int = field(init=False, repr=False)
    clock_ahead_us: int = field(init=False, repr=False)
    idle_timeout_us: int = field(init=False, repr=False)
    dedupe_horizon_us: int | None = field(init=False, repr=False)
    tick_us: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.late_policy not in LATE_POLICIES:
            raise ConfigurationError(f"late_policy={self.late_policy!r}: use one of {', '.join(LATE_POLICIES)}")
        s = object.__setattr__
        s(self, "out_of_order_us", to_us(self.out_of_order, name="out_of_order"))
        s(self, "late_arrival_us", to_us(self.late_arrival, name="late_arrival"))
        s(self, "clock_ahead_us", to_us(self.clock_ahead, name="clock_ahead"))
        s(self, "idle_timeout_us", to_us(self.idle_timeout, name="idle_timeout", allow_zero=False))
        s(self, "tick_us", to_us(self.tick, name="tick", allow_zero=False))
        horizon = self.dedupe_horizon
        s(self, "dedupe_horizon_us", None if horizon is None else to_us(horizon, name="dedupe_horizon"))

    def describe(self) -> str:
        """One line, e.g. for a plot title."""
        dd = "off" if self.dedupe_horizon_us is None else describe(self.dedupe_horizon_us)
        return (
            f"out-of-order {describe(self.out_of_order_us)}, late arrival {describe(self.late_arrival_us)}, "
            f"late → {self.late_policy}, clock ahead {describe(self.clock_ahead_us)}, "
            f"idle {describe(self.idle_timeout_us)}, dedupe {dd}"
        )
