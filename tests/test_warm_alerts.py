"""Alert rules: too hot for N windows, jumps, silent devices — once per episode, however the stream is cut."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iotlib.errors import ConfigurationError
from iotlib.processing.reference import Registry
from iotlib.warm.alerts import AlertEngine, BuildingTooHot, DeviceSilent, TemperatureJump, check_rules

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")
REGISTRY = Registry(
    pl.DataFrame({"device_id": ["a", "b", "c"], "building_id": [25, 25, 7], "room": ["101", "102", "1201"]})
)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def windows(building: int, averages: list[float], *, first_end: int = 5, gap_after: int | None = None) -> pl.DataFrame:
    ends = [first_end + 5 * i + (5 if gap_after is not None and i > gap_after else 0) for i in range(len(averages))]
    return pl.DataFrame(
        {
            "building_id": pl.Series([building] * len(averages), dtype=pl.Int32),
            "window_start": [s(e - 5) for e in ends],
            "window_end": [s(e) for e in ends],
            "avg_temperature": [float(a) for a in averages],
            "closed_at": [s(e + 6) for e in ends],
        }
    ).with_columns(pl.col("window_start", "window_end", "closed_at").cast(UTC_US))


def readings(rows: list[tuple[str, float, float]]) -> pl.DataFrame:
    """(device, arrival s, temperature) in arrival order."""
    return pl.DataFrame(
        {
            "device_id": [r[0] for r in rows],
            "enqueued_time": [s(r[1]) for r in rows],
            "temperature": [float(r[2]) for r in rows],
        }
    ).with_columns(pl.col("enqueued_time").cast(UTC_US))


def engine(*rules) -> AlertEngine:
    return AlertEngine(rules, REGISTRY)


def test_too_hot_needs_consecutive_windows_and_fires_once_per_episode():
    e = engine(BuildingTooHot(30, 3))
    assert e.on_windows(windows(25, [31, 31, 29, 31, 31])).height == 0  # broken by a cool window
    hot = e.on_windows(windows(25, [32, 33], first_end=30))  # the 30 s window makes three with 20 and 25 s
    assert hot.height == 1
    row = hot.row(0, named=True)
    assert (row["rule"], row["building_id"], row["value"], row["threshold"]) == ("building_too_hot", 25, 32.0, 30.0)
    assert row["window_start"] == s(15) and row["window_end"] == s(30) and row["raised_at"] == s(36)
    assert e.on_windows(windows(25, [34, 35], first_end=40)).height == 0  # still the same episode
    assert e.on_windows(windows(25, [20, 31, 31, 31], first_end=50)).height == 1  # cooled down: re-armed
    # A window without readings (none emitted) is no evidence either way: the streak goes on.
    assert engine(BuildingTooHot(30, 3)).on_windows(windows(7, [31, 31, 31], gap_after=1)).height == 1


def test_jumps_are_measured_against_the_devices_previous_reading():
    e = engine(TemperatureJump(10))
    out = e.on_readings(
        readings([("a", 1, 20), ("b", 2, 21), ("a", 3, 21.5), ("a", 4, 45), ("b", 5, 30), ("a", 6, 22)])
    )
    assert out["device_id"].to_list() == ["a", "a"] and out["value"].to_list() == [45.0, 22.0]
    assert out["raised_at"].to_list() == [s(4), s(6)]
    assert out["building_id"].to_list() == [25, 25] and out["room"].to_list() == ["101", "101"]
    assert "21.5 → 45.0" in out["message"][0]


def test_a_silent_device_is_reported_once_at_the_moment_it_went_quiet_too_long():
    e = engine(DeviceSilent("60s"))
    chatter = [("b", t, 20) for t in range(0, 200, 20)]
    out = e.on_readings(readings([("a", 0, 20), ("c", 5, 20), *chatter]))
    # a and c spoke once, at 0 s and 5 s; b keeps talking. The first arrival past 60 s reveals both.
    assert out["device_id"].to_list() == ["a", "c"]
    assert out["raised_at"].to_list() == [s(60), s(65)]
    assert out["value"].to_list() == [80.0, 75.0] and out["building_id"].to_list() == [25, 7]
    assert e.on_readings(readings([("b", 220, 20)])).height == 0  # not again
    e.on_readings(readings([("a", 230, 20)]))  # a is back: watched again
    quiet = e.on_time(int(s(400).timestamp() * 1e6))  # a heartbeat, nothing arriving
    assert sorted(quiet["device_id"].to_list()) == ["a", "b"]


def test_alerts_do_not_depend_on_how_the_stream_is_cut():
    rows = [("a", t, 20 + (30 if t == 90 else 0)) for t in range(0, 300, 30)] + [("b", 1, 20), ("c", 200, 5)]
    rows.sort(key=lambda r: r[1])
    frame = readings(rows)
    rules = (TemperatureJump(10), DeviceSilent("70s"))
    whole = engine(*rules).on_readings(frame)
    e = engine(*rules)
    parts = [e.on_readings(frame.slice(i, 3)) for i in range(0, frame.height, 3)]
    assert pl.concat(parts).equals(whole) and whole.height == 3  # two jumps, b silent; a and c never


def test_the_engine_pickles_without_its_registry():
    e = engine(TemperatureJump(10), DeviceSilent("60s"))
    e.on_readings(readings([("a", 0, 20), ("b", 1, 20)]))
    restored = pickle.loads(pickle.dumps(e))
    assert restored._registry is None
    restored.attach(REGISTRY)
    out = restored.on_readings(readings([("a", 120, 50)]))
    assert sorted(out["rule"].to_list()) == ["device_silent", "device_silent", "temperature_jump"]
    assert set(out["room"].to_list()) == {"101", "102"}


def test_rules_are_checked():
    with pytest.raises(ConfigurationError):
        BuildingTooHot(30, 0)
    with pytest.raises(ConfigurationError):
        TemperatureJump(-1)
    with pytest.raises(Exception, match="DeviceSilent.after"):
        DeviceSilent("soon")
    with pytest.raises(ConfigurationError, match="at most one"):
        check_rules([TemperatureJump(), TemperatureJump(5)])
    with pytest.raises(ConfigurationError, match="not an alert rule"):
        check_rules(["hot"])
