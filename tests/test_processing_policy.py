"""Each rule of iotlib.processing.policy on a small hand-made stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iotlib.errors import ConfigurationError, ProcessingError, ValidationError
from iotlib.processing import Sliding
from iotlib.processing.event_time import windows_with_policy
from iotlib.processing.incremental import WindowEngine
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.results import WindowOutput

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def stream(rows) -> pl.DataFrame:
    """rows: (device, observed_s, arrived_s, temperature[, partition[, sequence]])."""
    rows = [tuple(r) + ("0", None)[len(r) - 4 :] if len(r) < 6 else tuple(r) for r in rows]
    df = pl.DataFrame(
        {
            "device_id": [r[0] for r in rows],
            "time_observed": [at(r[1]) for r in rows],
            "enqueued_time": [at(r[2]) for r in rows],
            "temperature": [float(r[3]) for r in rows],
            "partition_id": [str(r[4]) for r in rows],
            "sequence_number": [r[5] for r in rows],
        },
        schema_overrides={"sequence_number": pl.Int64},
    ).with_columns(pl.col("time_observed", "enqueued_time").dt.cast_time_unit("us"))
    return df


def both(df, policy, window="5s", **kw) -> WindowOutput:
    """The batch result, after checking the incremental engine (one event per batch) agrees."""
    arrival = "enqueued_time" if "enqueued_time" in df.columns else "sent_at"
    df = df.sort(arrival, "sequence_number", "partition_id", nulls_last=True, maintain_order=True)
    batch = windows_with_policy(df, window, policy=policy, **kw)
    engine = WindowEngine(window, policy=policy, **kw)
    inc = WindowOutput.concat([engine.feed(df.slice(i, 1)) for i in range(df.height)] + [engine.flush()])
    assert inc.windows.equals(batch.windows) and inc.counts == batch.counts
    return batch


def ends(res) -> list[float]:
    return [(e - T0).total_seconds() for e in res.windows["window_end"].to_list()]


# One device every second, on time, plus a reading of 12:00:02 that arrives at 12:00:14.
STEADY = [("a", s + 0.5, s + 0.6, 20) for s in range(16)]
LATE_ROW = ("b", 2, 14.2, 30)


def test_a_late_event_goes_to_the_side_output_with_its_reason():
    res = both(stream(STEADY + [LATE_ROW]), EventTimePolicy(late_arrival="5s"))
    assert res.counts.late == 1 and res.counts.side_output == 1
    late = res.late.row(0, named=True)
    assert late["device_id"] == "b" and late["reason"] == "late"
    # At 12:00:14 the watermark is 12:00:13.5 (newest event before that tick), so the frontier is 08.5:
    # the 12:00:00-05 window had closed.
    assert late["frontier"] == at(8.5)
    first = res.windows.row(0, named=True)
    assert (first["window_end"], first["events"], first["temperature_max"]) == (at(5), 5, 20.0)


def test_adjust_moves_a_late_event_to_the_earliest_open_window():
    res = both(stream(STEADY + [LATE_ROW]), EventTimePolicy(late_arrival="5s", late_policy="adjust"))
    adj = res.adjusted.row(0, named=True)
    assert adj["reason"] == "late" and adj["adjusted_time"] == at(8.5)
    win = res.windows.filter(pl.col("window_end") == at(10)).row(0, named=True)
    assert win["events"] == 6 and win["temperature_max"] == 30.0
    assert res.counts.adjusted == 1 and res.late.height == 0


def test_drop_lists_the_event_as_dropped_and_counts_it():
    res = both(stream(STEADY + [LATE_ROW]), EventTimePolicy(late_arrival="5s", late_policy="drop"))
    assert res.counts.dropped == 1 and res.dropped["device_id"].to_list() == ["b"]
    assert res.windows["events"].sum() == 16


def test_late_arrival_tolerance_keeps_windows_open_longer():
    tolerant = both(stream(STEADY + [LATE_ROW]), EventTimePolicy(late_arrival="15s"))
    assert tolerant.counts.late == 0
    assert tolerant.windows.filter(pl.col("window_end") == at(5))["events"].item() == 6


def test_windows_close_when_the_frontier_passes_their_end():
    policy = EventTimePolicy(late_arrival="2s", out_of_order="1s")
    res = both(stream(STEADY), policy)
    closed = res.windows.drop_nulls("closed_at")
    assert closed.height > 0
    for end, closed_at in closed.select("window_end", "closed_at").iter_rows():
        wm = res.watermarks.filter(pl.col("tick_start") == closed_at)["watermark"].item()
        assert wm > end + timedelta(seconds=2)  # watermark beyond end + late tolerance
        before = res.watermarks.filter(pl.col("tick_start") < closed_at)["watermark"]
        assert before.is_empty() or before.max() <= end + timedelta(seconds=2)
    assert res.watermarks["watermark"].is_sorted()


def test_out_of_order_within_tolerance_is_reordered_not_late():
    rows = [("a", s + 0.5, s + 0.6, 20) for s in range(12)] + [("a", 3.0, 9.7, 25)]
    strict = both(stream(rows), EventTimePolicy(late_arrival="0s", out_of_order="0s"))
    assert strict.counts.late == 1
    relaxed = both(stream(rows), EventTimePolicy(late_arrival="0s", out_of_order="7s"))
    assert relaxed.counts.late == 0 and relaxed.counts.reordered == 1


def test_a_clock_ahead_device_does_not_make_the_others_late():
    ahead = [("fast", s + 600, s + 0.6, 99) for s in range(0, 16, 3)]  # clock 10 minutes ahead
    res = both(stream(STEADY + ahead), EventTimePolicy(clock_ahead="5s"))
    assert res.counts.late == 0 and res.counts.clock_ahead == len(ahead)
    assert set(res.late["reason"].to_list()) == {"clock_ahead"}
    dev = res.devices.filter(pl.col("device_id") == "fast").row(0, named=True)
    assert dev["clock_ahead_events"] == len(ahead) and dev["max_skew"] > timedelta(minutes=9)
    assert dev["newest_event_time"] is None  # never part of a watermark
    # Without the protection its readings drag the watermark ten minutes ahead: everybody is late.
    naive = both(stream(STEADY + ahead), EventTimePolicy(clock_ahead="1h"))
    assert naive.counts.late > 10


def test_adjusted_clock_ahead_readings_land_at_their_arrival():
    res = both(stream(STEADY + [("fast", 600, 7.2, 99)]), EventTimePolicy(late_policy="adjust"))
    assert res.adjusted["adjusted_time"].to_list() == [at(7.2)]
    assert res.windows.filter(pl.col("window_end") == at(10))["temperature_max"].item() == 99.0


def test_duplicates_within_the_horizon_are_removed():
    rows = [
        ("a", 1, 1.1, 20, 0, 0),
        ("a", 1, 3.0, 20, 0, 1),  # the device resent the same reading
        ("a", 1, 1.1, 20, 0, 0),  # the hub redelivered sequence 0
        ("a", 2, 2.1, 21, 0, 2),
        ("a", 1, 80.0, 20, 0, 3),  # resent again, but outside the 1 min horizon of the last copy
    ]
    df = stream(rows).sort("enqueued_time", "sequence_number", maintain_order=True)
    res = both(df, EventTimePolicy(dedupe_horizon="1m", late_arrival="2m"))
    assert res.duplicates["reason"].to_list() == ["duplicate_sequence", "duplicate_event"]
    assert res.counts.duplicates == 2 and res.counts.accepted == 3
    off = both(df, EventTimePolicy(dedupe_horizon=None, late_arrival="2m"))
    assert off.counts.duplicates == 0


def test_a_quiet_partition_holds_windows_only_until_the_idle_timeout():
    busy = [("a", s + 0.5, s + 0.6, 20, 0) for s in range(60)]
    quiet = [("q", 0.5, 0.6, 10, 1)]  # partition 1 says one thing and falls silent
    long = both(stream(busy + quiet), EventTimePolicy(idle_timeout="40s"))
    short = both(stream(busy + quiet), EventTimePolicy(idle_timeout="10s"))
    first_long = long.windows.row(0, named=True)["closed_at"]
    first_short = short.windows.row(0, named=True)["closed_at"]
    # The quiet partition pins the fleet watermark at 00.5 until its last arrival (00.6) is more than
    # idle_timeout old; from then on the busy partition alone sets it and the window closes at once.
    assert first_short == at(11) and first_long == at(41)
    assert short.windows.row(0, named=True)["events"] == long.windows.row(0, named=True)["events"] == 6


def test_heartbeats_close_windows_when_nothing_arrives():
    df = stream([("a", s + 0.5, s + 0.6, 20) for s in range(7)])
    engine = WindowEngine("5s", policy=EventTimePolicy(idle_timeout="10s"))
    out = engine.feed(df)
    assert out.windows.height == 0  # watermark 00:06.5 - 5 s late arrival: the frontier is short of 00:05
    beat = engine.advance(at(30))
    assert beat.windows["window_end"].to_list() == [at(5), at(10)]
    assert engine.watermark == at(20) and engine.frontier == at(15)
    assert engine.open_windows().is_empty()


def test_arrival_time_windows_have_no_late_events():
    res = both(stream(STEADY + [LATE_ROW]), EventTimePolicy(late_arrival="0s"), time="arrival")
    assert res.counts.late == 0 and res.counts.accepted == 17
    # b's 12:00:02 reading arrived at 14.2: by arrival it belongs to the 10-15 window.
    assert res.windows.filter(pl.col("window_end") == at(15))["events"].item() == 6


def test_engine_state_is_inspectable():
    df = stream(STEADY + [LATE_ROW] + [("q", 3, 3.2, 5, 1)])
    engine = WindowEngine("5s", policy=EventTimePolicy())
    engine.feed(df)
    assert engine.watermark is not None and engine.frontier < engine.watermark
    assert set(engine.partitions()["partition_id"].to_list()) == {"0", "1"}
    assert engine.devices().height == 3 and engine.buffered_rows > 0 and engine.arrival_index == df.height
    assert engine.open_windows()["events"].sum() == engine.buffered_rows


def test_engine_rejects_what_it_cannot_do():
    with pytest.raises(ConfigurationError, match="no fixed bounds"):
        WindowEngine(Sliding("5s"))
    with pytest.raises(ConfigurationError, match="late_policy"):
        EventTimePolicy(late_policy="ignore")  # type: ignore[arg-type]
    engine = WindowEngine("5s")
    engine.feed(stream(STEADY))
    with pytest.raises(ValidationError, match="columns"):
        engine.feed(stream(STEADY).drop("partition_id"))
    engine.flush()
    with pytest.raises(ProcessingError, match="flushed"):
        engine.feed(stream(STEADY))
    with pytest.raises(ValidationError, match="arrival time"):
        windows_with_policy(stream(STEADY).drop("enqueued_time"), "5s")


def test_sent_at_stands_in_for_arrival():
    df = stream(STEADY).rename({"enqueued_time": "sent_at"})
    res = both(df, EventTimePolicy())
    assert res.counts.accepted == 16
