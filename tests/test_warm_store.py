"""The warm store: partitions' partial windows merged once final, the original's newer-wins upsert,
the answer to "what is it now", exact round trips, several writers fenced by their claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.processing.changelog import EngineChanges
from iotlib.warm.alerts import BuildingTooHot, no_alerts
from iotlib.warm.commit import END_OF_STREAM, Commit, PartitionStep, PartitionTotals, Position
from iotlib.warm.store import WarmStore

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")
US = 1_000_000
T0_US = int(T0.timestamp()) * US


def partials(pid: str, rows: list[tuple[int, float, float, float, int]]) -> pl.DataFrame:
    """(building, window end s, temperature sum, last observed s, events) → one partition's partial windows."""
    return pl.DataFrame(
        {
            "partition_id": [pid] * len(rows),
            "building_id": pl.Series([r[0] for r in rows], dtype=pl.Int32),
            "window_start": [T0 + timedelta(seconds=r[1] - 5) for r in rows],
            "window_end": [T0 + timedelta(seconds=r[1]) for r in rows],
            "temperature_sum": [r[2] for r in rows],
            "last_observed_time": [T0 + timedelta(seconds=r[3]) for r in rows],
            "events": pl.Series([r[4] for r in rows], dtype=pl.Int64),
            "closed_at": [T0 + timedelta(seconds=r[1] + 6) for r in rows],
        }
    ).with_columns(pl.col("window_start", "window_end", "last_observed_time", "closed_at").cast(UTC_US))


def step(pid: str, rows=(), *, frontier_s: float | None, position: Position | None = None, flushed: bool = False,
         **extra) -> PartitionStep:  # fmt: skip
    """A partition's step whose frontier is ``frontier_s`` seconds after T0 (watermark evaluations to match)."""
    frontier = None if frontier_s is None else (END_OF_STREAM if flushed else T0_US + int(frontier_s * US))
    marks = pl.DataFrame()
    if frontier_s is not None:
        marks = pl.DataFrame({"tick_start": [T0_US + int((frontier_s + 5) * US)], "watermark": [T0_US + int((frontier_s + 5) * US)],
                              "frontier": [T0_US + int(frontier_s * US)]}).with_columns(pl.all().cast(UTC_US))  # fmt: skip
    return PartitionStep(
        partition_id=pid, position=position, partials=partials(pid, list(rows)) if rows else pl.DataFrame(),
        side_outputs=extra.get("side_outputs", {}), dead_letters=extra.get("dead_letters", pl.DataFrame()),
        alerts=no_alerts(), watermarks=marks, watermark=frontier, frontier=frontier, flushed=flushed,
        totals=PartitionTotals(received=len(rows)),
        engine=EngineChanges(core=b"core " + pid.encode(), devices=[], rows=pl.DataFrame(), sightings=[],
                             frontier=None, forget_before=None),
        alert_devices=[], events=len(rows),
    )  # fmt: skip


def store_of(path, partitions=("0", "1"), **kw) -> WarmStore:
    store = WarmStore(path, writer=True)
    store.configure({"job": "test"}, partitions=list(partitions), **kw)
    for pid in partitions:
        store.claim(pid, "me")
    return store


def test_a_window_is_final_once_every_partition_passed_it_and_is_merged_from_their_partials(tmp_path):
    with store_of(tmp_path / "w.sqlite", building_rule=BuildingTooHot(30, 2)) as store:
        # Partition 0 closed building 25's window ending at 10 s; partition 1 has not got that far.
        r = store.commit(
            Commit([step("0", [(25, 10, 63.0, 9.5, 3)], frontier_s=12), step("1", [], frontier_s=8)], owner="me")
        )
        assert r.windows.height == 0 and store.history().height == 0 and store.table("partials").height == 1
        # One partition's share of a window (here 3 readings) is never given as the building's "now".
        assert store.current_temperature(25) is None
        # Partition 1 passes it with readings of its own: the window is the sum of both.
        r = store.commit(
            Commit([step("1", [(25, 10, 40.0, 9.9, 2), (25, 15, 62.0, 14.0, 2)], frontier_s=16)], owner="me")
        )
        (w,) = r.windows.iter_rows(named=True)
        assert (w["building_id"], w["events"], w["avg_temperature"]) == (25, 5, 103.0 / 5)
        assert w["last_observed_time"] == T0 + timedelta(seconds=9.9)
        # closed_at: when the later of the two partitions passed the end (partition 1's evaluation at 16+5 s).
        assert w["closed_at"] == T0 + timedelta(seconds=21)
        assert store.table("partials")["window_end"].to_list() == [T0 + timedelta(seconds=15)]  # not final yet
        now = store.current_temperature(25)
        assert now is not None and now.complete and now.events == 5 and now.window_end == T0 + timedelta(seconds=10)
        assert "the average of 5 readings in the window ending 2025-01-06 12:00:10 UTC" in str(now)
        # Too hot (above 30 for 2 windows): the 15 s window (31 °C) after the 10 s one (20.6 °C) is one, not two.
        r = store.commit(
            Commit([step("0", [(25, 20, 64.0, 19.0, 2)], frontier_s=30), step("1", [], frontier_s=30)], owner="me")
        )
        assert r.windows["window_end"].to_list() == [T0 + timedelta(seconds=15), T0 + timedelta(seconds=20)]
        assert r.alerts.height == 1 and store.alerts()["rule"].to_list() == ["building_too_hot"]
        assert store.table("partials").height == 0


def test_building_temperature_is_upserted_newer_wins_and_a_flushed_window_is_said_partial(tmp_path):
    with store_of(tmp_path / "w.sqlite", partitions=["0"]) as store:
        store.commit(Commit([step("0", [(25, 10, 84.0, 9.5, 4), (26, 10, 38.0, 8.0, 2)], frontier_s=11)], owner="me"))
        # A later window whose newest reading is older (adjusted late readings): it must not overwrite.
        store.commit(Commit([step("0", [(25, 15, 105.0, 4.9, 3)], frontier_s=16)], owner="me"))
        now = store.current_temperature(25)
        assert now.avg_temperature == 21.0 and now.last_observed_time == T0 + timedelta(seconds=9.5)
        assert store.history(25).height == 2
        # The end of the stream emits the open windows (closed_at null): history, not the current answer.
        store.commit(Commit([step("0", [(25, 20, 99.0, 19.0, 1), (27, 20, 22.0, 17.0, 1)], frontier_s=16,
                                  flushed=True)], owner="me"))  # fmt: skip
        assert store.finished
        assert store.current_temperature(25).window_end == T0 + timedelta(seconds=10)  # the last complete window
        partial = store.current_temperature(27)
        assert not partial.complete and partial.events == 1 and "partial window" in str(partial)
        assert store.current_temperature(99) is None
        history = store.history()
        assert history["window_end"].is_sorted() and history.filter(pl.col("closed_at").is_null()).height == 2
        assert history["stored_at"].null_count() == 0


def test_a_partition_claimed_by_another_run_refuses_the_old_holders_steps(tmp_path):
    path = tmp_path / "w.sqlite"
    with store_of(path, partitions=["0", "1"]) as a, WarmStore(path, writer=True) as b:
        b.configure({"job": "test"}, partitions=["0", "1"])  # the same settings: welcome
        assert b.claim("1", "other") is None  # nothing stored for it yet
        r = a.commit(Commit([step("0", [(1, 10, 20.0, 9.0, 1)], frontier_s=5, position=Position(3, "480")),
                             step("1", [(1, 10, 21.0, 9.0, 1)], frontier_s=5, position=Position(7, "1120"))], owner="me"))  # fmt: skip
        assert r.refused == ["1"]
        assert a.positions() == {"0": Position(3, "480")} and a.table("partials")["partition_id"].to_list() == ["0"]
        stored = b.claim("0", "other")  # and now partition 0 changes hands with its state
        assert stored is not None and stored.core == b"core 0" and stored.position == Position(3, "480")
        assert a.commit(Commit([step("0", [], frontier_s=6)], owner="me")).refused == ["0"]
        assert b.partitions()["owner_id"].to_list() == ["other", "other"]
        with pytest.raises(Exception, match="other partitions"):
            b.configure({"job": "test"}, partitions=["0"])


def test_side_outputs_dead_letters_progress_and_totals_round_trip(tmp_path):
    late = pl.DataFrame(
        {
            "device_id": ["d1"],
            "time_observed": [T0 + timedelta(microseconds=123_457)],
            "temperature": [21.25],
            "enqueued_time": [T0 + timedelta(seconds=40, microseconds=1)],
            "partition_id": ["3"],
            "sequence_number": [17],
            "building_id": pl.Series([4], dtype=pl.Int32),
            "reason": ["late"],
            "frontier": [T0 + timedelta(seconds=30)],
        }
    ).with_columns(pl.col("time_observed", "enqueued_time", "frontier").cast(UTC_US))
    dead = pl.DataFrame(
        {
            "partition_id": ["3"],
            "sequence_number": [5],
            "offset": ["800"],
            "enqueued_time": [T0],
            "reason": ["invalid JSON: Expecting value"],
            "body": [b'{"DeviceId":"x",\xff'],
        }  # fmt: skip
    ).with_columns(pl.col("enqueued_time").cast(UTC_US))
    with store_of(tmp_path / "w.sqlite", partitions=["3"]) as store:
        store.commit(Commit([step("3", frontier_s=None, position=Position(17, "2720", T0), side_outputs={"late": late},
                                  dead_letters=dead)], owner="me"))  # fmt: skip
    with WarmStore(tmp_path / "w.sqlite") as reader:
        assert reader.late_events().select(late.columns).equals(late)
        assert reader.dead_letters().equals(dead)
        assert reader.positions() == {"3": Position(17, "2720", T0)}
        assert reader.totals() == PartitionTotals()  # received 0: a step with no partial rows
        assert reader.partitions()["frontier"].null_count() == 1  # no watermark yet: nothing can be final
        with pytest.raises(ProcessingError, match="writer=True"):
            reader.commit(Commit())
        with pytest.raises(ConfigurationError, match="no table"):
            reader.table("nope")


def test_the_warm_store_and_building_averages_name_things_alike():
    """The current temperature and the window history use building_averages' column names."""
    from iotlib.processing.building import BUILDING_COLUMNS
    from iotlib.warm.store import TABLES

    history = [c for c, _ in TABLES["window_history"].columns]
    current = [c for c, _ in TABLES["building_temperature"].columns]
    assert history[: len(BUILDING_COLUMNS)] == BUILDING_COLUMNS
    assert set(current) - {"updated_at"} == set(BUILDING_COLUMNS)


def test_a_warm_store_with_other_columns_is_named(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE building_temperature (building_id INTEGER PRIMARY KEY, temperature REAL)")
    with pytest.raises(ConfigurationError, match="another iotlib version.*building_temperature"):
        WarmStore(path, writer=True)
    WarmStore(tmp_path / "new.sqlite", writer=True).close()
    with pytest.raises(ConfigurationError):
        WarmStore(path, writer=True)  # still refused
