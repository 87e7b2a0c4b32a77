"""Alerts: three rules small enough to read, evaluated as the stream goes.

- :class:`BuildingTooHot` — a building's window average above ``threshold`` °C
  for ``windows`` consecutive windows (a heat event, a broken heating plant);
- :class:`TemperatureJump` — one device's reading differs from its previous
  one by more than ``degrees`` (a spike, a sensor fault);
- :class:`DeviceSilent` — no event from a device for more than ``after``
  (absence of events: a dead battery, a network outage).

Times are the stream's own: building alerts are raised when the window that
completes the streak closes (its ``closed_at``, an arrival time), jumps when
the reading arrives (``enqueued_time``), silences at ``last arrival + after``
once the arrival clock — events or the processor's heartbeats — has passed it
(``value`` says how long the device had been quiet when that was noticed).
So a replay of the same events raises the same alerts however it is cut into
batches, and the engine's state pickles with the window engine's snapshot.

Each alert is one row (:data:`SCHEMA`) in the warm store's ``alerts`` table,
and optionally an event on another hub (:mod:`iotlib.warm.alerthub`). An
alert is raised once per episode: a building is re-armed when a window comes
back at or below the threshold, a silent device when it speaks again. A
building's windows are consecutive when no window of that building lies
between them: a window without readings is no evidence either way and
neither breaks nor extends a streak.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl

from iotlib.durations import Duration, describe, to_us
from iotlib.errors import ConfigurationError
from iotlib.processing.reference import Registry

UTC_US = pl.Datetime("us", "UTC")

#: Columns of an alert row.
SCHEMA: dict[str, pl.DataType] = {
    "raised_at": UTC_US,
    "rule": pl.String(),
    "building_id": pl.Int32(),
    "device_id": pl.String(),
    "room": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "window_start": UTC_US,
    "window_end": UTC_US,
    "message": pl.String(),
}


@dataclass(frozen=True)
class BuildingTooHot:
    """A building's average above ``threshold`` °C for ``windows`` consecutive windows."""

    threshold: float = 30.0
    windows: int = 3
    name: ClassVar[str] = "building_too_hot"

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise ConfigurationError(f"BuildingTooHot.windows must be at least 1, got {self.windows}")


@dataclass(frozen=True)
class TemperatureJump:
    """A device's reading more than ``degrees`` away from its previous reading."""

    degrees: float = 10.0
    name: ClassVar[str] = "temperature_jump"

    def __post_init__(self) -> None:
        if not self.degrees > 0:
            raise ConfigurationError(f"TemperatureJump.degrees must be positive, got {self.degrees}")


@dataclass(frozen=True)
class DeviceSilent:
    """No event from a device for more than ``after`` of arrival time (devices seen at least once)."""

    after: Duration = "5m"
    name: ClassVar[str] = "device_silent"

    after_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "after_us", to_us(self.after, name="DeviceSilent.after", allow_zero=False))


Rule = BuildingTooHot | TemperatureJump | DeviceSilent


def default_rules() -> tuple[Rule, ...]:
    """Too hot (above 30 °C for 3 windows), jumps over 10 °C, silent for 5 minutes."""
    return (BuildingTooHot(), TemperatureJump(), DeviceSilent())


def describe_rules(rules: Iterable[Rule]) -> list[str]:
    """One line per rule, for reports and notebooks."""
    out = []
    for r in rules:
        if isinstance(r, BuildingTooHot):
            out.append(f"building average above {r.threshold:g} °C for {r.windows} consecutive windows")
        elif isinstance(r, TemperatureJump):
            out.append(f"device reading jumps more than {r.degrees:g} °C")
        else:
            out.append(f"device silent for more than {describe(r.after_us)}")
    return out


def check_rules(rules: Iterable[Rule] | None) -> tuple[Rule, ...]:
    """The rules as a tuple; at most one of each kind."""
    if rules is None:
        return ()
    rules = tuple(rules)
    kinds = [type(r) for r in rules]
    bad = [r for r in rules if not isinstance(r, (BuildingTooHot, TemperatureJump, DeviceSilent))]
    if bad:
        raise ConfigurationError(f"not an alert rule: {bad[0]!r} (use BuildingTooHot, TemperatureJump, DeviceSilent)")
    if len(set(kinds)) != len(kinds):
        raise ConfigurationError("give at most one rule of each kind")
    return rules


def no_alerts() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


class AlertEngine:
    """Evaluates the rules on closed windows, readings and the passing of arrival time.

    The state pickles (the registry lookup is rebuilt from the registry on restore).
    """

    def __init__(self, rules: Sequence[Rule], registry: Registry) -> None:
        self.rules = check_rules(rules)
        self._hot = next((r for r in self.rules if isinstance(r, BuildingTooHot)), None)
        self._jump = next((r for r in self.rules if isinstance(r, TemperatureJump)), None)
        self._silent = next((r for r in self.rules if isinstance(r, DeviceSilent)), None)
        self._streaks: dict[int, list[int]] = {}  # building -> [streak, its first window's start µs]
        self._last_value: dict[str, float] = {}  # device -> previous reading
        self._last_seen: OrderedDict[str, int] = OrderedDict()  # device -> last arrival µs, oldest first
        self._registry: Registry | None = registry
        self._places: dict[str, tuple[int, str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_registry"] = None
        state["_places"] = None
        return state

    def attach(self, registry: Registry) -> None:
        """Give a restored engine its registry back (used for building and room in device alerts)."""
        self._registry = registry
        self._places = None

    @property
    def watching_time(self) -> bool:
        """True when a rule needs :meth:`on_time` (the silence rule)."""
        return self._silent is not None

    # -- the rules ----------------------------------------------------------------------

    def on_windows(self, windows: pl.DataFrame) -> pl.DataFrame:
        """Closed building windows (in window-end order) → "too hot" alerts."""
        rule = self._hot
        if rule is None or windows.height == 0:
            return no_alerts()
        rows = []
        cols = windows.select(
            "building_id",
            pl.col("window_start").dt.epoch("us").alias("s"),
            pl.col("window_end").dt.epoch("us").alias("e"),
            "avg_temperature",
            pl.coalesce("closed_at", "window_end").dt.epoch("us").alias("at"),
        )
        for b, start, end, avg, at in cols.iter_rows():
            st = self._streaks.get(b)  # [windows above the threshold in a row, start of the first]
            if avg <= rule.threshold:
                if st is not None:
                    st[0] = 0
                continue
            if st is None or st[0] == 0:
                st = self._streaks[b] = [0, start]
            st[0] += 1
            if st[0] == rule.windows:
                rows.append((at, rule.name, b, None, None, avg, rule.threshold, st[1], end,
                             f"building {b}: average above {rule.threshold:g} °C for {rule.windows} consecutive windows "
                             f"({avg:.1f} °C in the last)"))  # fmt: skip
        return _frame(rows)

    def on_readings(self, readings: pl.DataFrame) -> pl.DataFrame:
        """Readings in arrival order (duplicates removed) → jump and silence alerts.

        Each reading first moves the arrival clock (devices quiet for longer than
        ``after`` by then are reported), then counts as its device speaking, so
        the alerts do not depend on how the stream was cut into batches.
        """
        if readings.height == 0 or (self._jump is None and self._silent is None):
            return no_alerts()
        devices = readings["device_id"].to_list()
        arrivals = readings["enqueued_time"].dt.epoch("us").to_list()
        rows: list[tuple] = []
        if self._silent is not None:
            seen, after = self._last_seen, self._silent.after_us
            move = seen.move_to_end
            for d, a in zip(devices, arrivals):
                if seen and next(iter(seen.values())) < a - after:  # the oldest is overdue
                    self._expire(a, after, rows)
                seen[d] = a
                move(d)
        rule = self._jump
        if rule is not None:
            last, limit = self._last_value, rule.degrees
            for i, (d, t) in enumerate(zip(devices, readings["temperature"].to_list())):
                prev = last.get(d)
                last[d] = t
                if prev is not None and abs(t - prev) > limit:
                    building, room = self._place(d)
                    rows.append((arrivals[i], rule.name, building, d, room, t, limit, None, None,
                                 f"device {d} in building {building} room {room}: {prev:.1f} → {t:.1f} °C"))  # fmt: skip
        return _frame(rows)

    def on_time(self, now_us: int) -> pl.DataFrame:
        """The arrival clock reached ``now_us`` without events (a heartbeat) → silence alerts."""
        rows: list[tuple] = []
        if self._silent is not None:
            self._expire(now_us, self._silent.after_us, rows)
        return _frame(rows)

    def _expire(self, now_us: int, after: int, rows: list[tuple]) -> None:
        """Report devices whose last event is more than ``after`` before ``now_us`` (oldest first)."""
        seen = self._last_seen
        limit = now_us - after
        while seen:
            device, last = next(iter(seen.items()))
            if last >= limit:
                return
            del seen[device]  # alert once; it is watched again when it speaks
            building, room = self._place(device)
            rows.append((last + after, "device_silent", building, device, room, (now_us - last) / 1e6, after / 1e6,
                         None, None, f"device {device} in building {building} room {room}: "
                         f"silent for more than {describe(after)}"))  # fmt: skip

    def _place(self, device: str) -> tuple[int | None, str | None]:
        if self._places is None:
            frame = self._registry.frame if self._registry is not None else None
            if frame is None or "room" not in frame.columns:
                self._places = {}
            else:
                self._places = dict(
                    zip(frame["device_id"].to_list(), zip(frame["building_id"].to_list(), frame["room"].to_list()))
                )
        return self._places.get(device, (None, None))


def _frame(rows: list[tuple]) -> pl.DataFrame:
    if not rows:
        return no_alerts()
    raw = {**SCHEMA, "raised_at": pl.Int64(), "window_start": pl.Int64(), "window_end": pl.Int64()}
    out = pl.DataFrame(rows, schema=raw, orient="row")
    return out.with_columns(pl.col("raised_at", "window_start", "window_end").cast(UTC_US))
