"""A deliberately naive reading of iotlib.processing.policy, for tests.

Written from the module text, event by event, with plain Python containers and
quadratic scans: slow, but easy to check against the words. Tests compare the
vectorised batch job and the incremental engine with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from iotlib.processing.policy import EventTimePolicy


@dataclass
class Event:
    device: str
    e: int  # event time, µs
    a: int  # arrival time, µs
    value: float
    partition: str = ""
    seq: int | None = None
    key: object = None  # group key for windows


@dataclass
class Outcome:
    fates: list[str] = field(default_factory=list)  # per event in arrival order
    windows: dict = field(default_factory=dict)  # (key, end) -> [count, sum, closed_at or None]
    frontiers: list[int] = field(default_factory=list)


def first_end(t: int, hop: int, closed: str) -> int:
    return math.ceil(t / hop) * hop if closed == "right" else (t // hop + 1) * hop


def ends(t: int, size: int, hop: int, closed: str) -> list[int]:
    out, end = [], first_end(t, hop, closed)
    while (end - size < t <= end) if closed == "right" else (end - size <= t < end):
        out.append(end)
        end += hop
    return out


def run(events: list[Event], p: EventTimePolicy, size: int, hop: int, closed: str = "right") -> Outcome:
    """``events`` already in arrival order."""
    out = Outcome()
    seen: list[Event] = []  # every earlier event (for duplicates)
    newest_p: dict[str, int] = {}
    latest_p: dict[str, int] = {}
    newest_d: dict[str, int] = {}
    tick = None
    W = None
    F = None
    for ev in events:
        k = ev.a // p.tick_us
        if tick is None or k > tick:
            floor = k * p.tick_us - p.idle_timeout_us
            active = [newest_p[q] for q in newest_p if latest_p[q] >= floor]
            cand = max(min(active) - p.out_of_order_us, floor) if active else floor
            W = cand if W is None else max(W, cand)
            tick, F = k, W - p.late_arrival_us
            for (_key, end), win in out.windows.items():
                if win[2] is None and end < F:
                    win[2] = k * p.tick_us
        out.frontiers.append(F)
        h = p.dedupe_horizon_us
        dup = None
        if h is not None:
            if ev.seq is not None and any(
                s.partition == ev.partition and s.seq == ev.seq and ev.a - s.a <= h for s in seen
            ):
                dup = "duplicate_sequence"
            elif any(s.device == ev.device and s.e == ev.e and s.value == ev.value and ev.a - s.a <= h for s in seen):
                dup = "duplicate_event"
        seen.append(ev)
        if dup:
            out.fates.append(dup)
            continue
        if ev.e - ev.a > p.clock_ahead_us:
            fate, t = "clock_ahead", max(ev.a, F)
        else:
            newest_d[ev.device] = max(newest_d.get(ev.device, ev.e), ev.e)
            newest_p[ev.partition] = max(newest_p.get(ev.partition, ev.e), ev.e)
            latest_p[ev.partition] = max(latest_p.get(ev.partition, ev.a), ev.a)
            late = first_end(ev.e, hop, closed) < F
            fate, t = ("late", F) if late else ("accepted", ev.e)
        out.fates.append(fate)
        if fate == "accepted" or p.late_policy == "adjust":
            for end in ends(t, size, hop, closed):
                win = out.windows.setdefault((ev.key, end), [0, 0.0, None])
                assert win[2] is None, "an event reached a closed window"
                win[0] += 1
                win[1] += ev.value
    return out
