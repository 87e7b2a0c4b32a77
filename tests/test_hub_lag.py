"""Lag arithmetic and the alert rule, from looks made by hand (no hub: the arithmetic is the subject)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iotlib.cli.monitor import REDRAW, render
from iotlib.errors import ConfigurationError
from iotlib.hub.lag import (
    Checkpoint,
    GroupRecords,
    LagRule,
    Owner,
    first_unprocessed,
    known_times,
    lag_frame,
    summary,
    waiting,
)
from iotlib.hub.monitor_options import MonitorOptions, checkpoint_containers
from iotlib.hub.partitions import PartitionPosition

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def position(pid: str, begin: int, last: int, *, at: datetime = T0) -> PartitionPosition:
    empty = last < begin
    return PartitionPosition(pid, begin, -1 if empty else last, str(last * 100), None if empty else at, empty)


def test_unprocessed_counts_after_the_checkpoint_and_apart_what_retention_removed() -> None:
    assert first_unprocessed(position("0", 0, 99), None) == (0, 100, 0)  # never checkpointed: all of it
    assert first_unprocessed(position("0", 0, 99), 89) == (90, 10, 0)
    assert first_unprocessed(position("0", 0, 99), 99) == (100, 0, 0)  # caught up
    # Retention kept 50..99; the group had processed up to 19: 30 events are gone unprocessed.
    assert first_unprocessed(position("0", 50, 99), 19) == (50, 50, 30)
    assert first_unprocessed(position("0", 0, -1), None) == (0, 0, 0)  # empty partition


def test_a_look_gives_lag_in_events_and_in_time_per_group_and_partition() -> None:
    positions = {"0": position("0", 0, 99, at=T0), "1": position("1", 0, 9, at=T0)}
    warm = GroupRecords(
        "warm",
        "warm-checkpoints",
        {"0": Checkpoint(89, T0 - timedelta(seconds=5)), "1": Checkpoint(9, T0)},
        {"0": Owner("a" * 36, T0), "1": Owner(None, T0)},
    )
    fresh = GroupRecords("capture", "capture-checkpoints")
    assert waiting(positions, [warm, fresh]) == {"0": {90, 0}, "1": {0}}
    times = {("0", 90): T0 - timedelta(seconds=30), ("0", 0): T0 - timedelta(minutes=10), ("1", 0): T0}
    looked = T0 + timedelta(seconds=2)
    frame = lag_frame("telemetry", positions, [warm, fresh], sampled_at=looked, enqueued_times=times)
    rows = {(r["consumer_group"], r["partition_id"]): r for r in frame.iter_rows(named=True)}
    assert rows[("warm", "0")]["unprocessed"] == 10 and rows[("warm", "0")]["lag_seconds"] == 32.0
    assert rows[("warm", "1")]["unprocessed"] == 0 and rows[("warm", "1")]["lag_seconds"] == 0.0
    assert rows[("capture", "0")]["unprocessed"] == 100 and rows[("capture", "0")]["lag_seconds"] == 602.0
    assert rows[("warm", "0")]["owner"] == "a" * 36 and rows[("warm", "1")]["owner"] is None  # released
    assert frame["enqueued_per_second"].null_count() == frame.height  # no look before: no throughput
    # An event the look could not read leaves its lag unknown, never zero.
    unread = lag_frame("telemetry", positions, [warm], sampled_at=looked, enqueued_times={})
    assert unread.filter(pl.col("partition_id") == "0")["lag_seconds"].item() is None
    totals = summary(frame).filter(pl.col("consumer_group") == "capture").row(0, named=True)
    assert totals["unprocessed"] == 110 and totals["worst_partition"] == 100 and totals["lag_seconds"] == 602.0


def test_throughput_in_and_out_is_the_change_since_the_previous_look() -> None:
    group = GroupRecords("warm", "c", {"0": Checkpoint(100)})
    first = lag_frame("h", {"0": position("0", 0, 199)}, [group], sampled_at=T0)
    later = GroupRecords("warm", "c", {"0": Checkpoint(250)})
    second = lag_frame(
        "h", {"0": position("0", 0, 499)}, [later], sampled_at=T0 + timedelta(seconds=10), previous=first
    )
    row = second.row(0, named=True)
    assert row["enqueued_per_second"] == 30.0  # 300 events in 10 s
    assert row["processed_per_second"] == 15.0  # checkpoint moved 150 in 10 s
    assert row["unprocessed"] == 249
    same_time = lag_frame("h", {"0": position("0", 0, 499)}, [later], sampled_at=T0, previous=first)
    assert same_time["enqueued_per_second"].item() is None  # no interval, no rate


def test_the_last_enqueued_event_needs_no_read_its_time_is_in_the_partition_properties() -> None:
    positions = {"0": position("0", 0, 9, at=T0)}
    one_left = GroupRecords("warm", "c", {"0": Checkpoint(8)})
    assert waiting(positions, [one_left]) == {}
    frame = lag_frame(
        "h", positions, [one_left], sampled_at=T0 + timedelta(seconds=4), enqueued_times=known_times(positions)
    )
    assert frame["lag_seconds"].item() == 4.0


def look(at_seconds: float, unprocessed: int, group: str = "warm") -> pl.DataFrame:
    checkpoint = None if unprocessed > 1000 else 1000 - unprocessed
    records = GroupRecords(group, "c", {"0": Checkpoint(checkpoint)} if checkpoint is not None else {})
    positions = {"0": position("0", 1001 - unprocessed if checkpoint is None else 0, 1000)}
    return lag_frame("telemetry", positions, [records], sampled_at=T0 + timedelta(seconds=at_seconds))


def test_the_alert_rule_fires_once_lag_stays_above_the_threshold_for_a_while_and_resolves() -> None:
    rule = LagRule(100, for_="30s")
    assert rule.evaluate(look(0, 50)) == []
    assert rule.evaluate(look(10, 500)) == []  # above, from t=10
    assert rule.evaluate(look(25, 600)) == []  # 15 s above: not yet
    fired = rule.evaluate(look(40, 700))  # 30 s above
    assert [(a.state, a.unprocessed, a.above_since) for a in fired] == [("fired", 700, T0 + timedelta(seconds=10))]
    assert "700 events unprocessed, above 100 for 30 s" in fired[0].message
    assert rule.evaluate(look(50, 800)) == []  # once per episode
    assert rule.firing == [("telemetry", "warm")]
    resolved = rule.evaluate(look(60, 100))  # at the threshold: over
    assert [a.state for a in resolved] == ["resolved"] and rule.firing == []
    # A dip below the threshold restarts the clock: a new episode needs its own 30 s.
    assert rule.evaluate(look(70, 500)) == [] and rule.evaluate(look(80, 50)) == []
    assert rule.evaluate(look(90, 500)) == [] and rule.evaluate(look(110, 500)) == []
    assert [a.state for a in rule.evaluate(look(120, 500))] == ["fired"]


def test_the_rule_keeps_each_group_apart_and_refuses_nonsense() -> None:
    rule = LagRule(10, for_=0)
    both = pl.concat([look(0, 50, "warm"), look(0, 5, "capture")])
    assert [(a.consumer_group, a.state) for a in rule.evaluate(both)] == [("warm", "fired")]
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="threshold"):
            LagRule(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="for_"):
        LagRule(10, for_="soon")


def test_consumer_groups_and_their_containers_are_named_one_way() -> None:
    assert checkpoint_containers(["warm", "capture", "mine=my-container", "other"]) == {
        "warm": "warm-checkpoints",
        "capture": "capture-checkpoints",
        "mine": "my-container",
        "other": "checkpoints",
    }
    assert checkpoint_containers({"g": "c-1"}) == {"g": "c-1"}
    with pytest.raises(ConfigurationError, match="no consumer group"):
        checkpoint_containers([])
    with pytest.raises(ConfigurationError, match="must be named"):
        checkpoint_containers(["=container"])
    with pytest.raises(ConfigurationError, match="'x' of consumer group 'warm' is not a Blob container name"):
        checkpoint_containers(["warm=x"])
    with pytest.raises(ConfigurationError, match="unknown monitor option"):
        MonitorOptions.of({"consumer_group": "warm"})
    with pytest.raises(ConfigurationError, match="rule must be a LagRule"):
        MonitorOptions.of({"rule": 100})


def test_the_command_line_table_shows_each_partition_then_the_group() -> None:
    rule = LagRule(10, for_=0)
    frame = look(5, 50)
    text = render(frame, rule.evaluate(frame), look=3, every=5)
    lines = text.splitlines()
    assert lines[0] == "look 3 at 12:00:05 UTC, every 5 s (Ctrl-C to stop)"
    assert lines[1].split()[:4] == ["hub", "group", "part", "last"]
    assert lines[2].split()[:5] == ["telemetry", "warm", "0", "1,000", "12:00:00"]
    assert "warm (all)" in lines[3] and " 50 " in lines[3]
    assert lines[-1].startswith("ALERT fired at 12:00:05: telemetry/warm: 50 events unprocessed")
    assert REDRAW not in text  # the command adds it on a terminal only
