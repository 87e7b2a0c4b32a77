"""The warm store: the original's newer-wins upsert, exact round trips, one writer at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.warm.store import Commit, Position, WarmStore

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")


def windows(rows: list[tuple[int, float, float, float, int]]) -> pl.DataFrame:
    """(building, window end s, avg, last observed s, events) → a window frame."""
    return pl.DataFrame(
        {
            "building_id": pl.Series([r[0] for r in rows], dtype=pl.Int32),
            "window_start": [T0 + timedelta(seconds=r[1] - 5) for r in rows],
            "window_end": [T0 + timedelta(seconds=r[1]) for r in rows],
            "avg_temperature": [r[2] for r in rows],
            "last_observed_time": [T0 + timedelta(seconds=r[3]) for r in rows],
            "events": pl.Series([r[4] for r in rows], dtype=pl.Int64),
            "closed_at": [T0 + timedelta(seconds=r[1] + 6) for r in rows],
        }
    ).with_columns(pl.col("window_start", "window_end", "last_observed_time", "closed_at").cast(UTC_US))


def test_building_temperature_is_upserted_newer_wins(tmp_path):
    with WarmStore(tmp_path / "w.sqlite", writer=True) as store:
        store.commit(Commit(windows([(25, 10, 21.0, 9.5, 4), (26, 10, 19.0, 8.0, 2)])))
        # A late-closing window of building 25 whose newest reading is older: it must not overwrite.
        store.commit(Commit(windows([(25, 5, 35.0, 4.9, 3)])))
        now = store.current_temperature(25)
        assert now is not None and now.avg_temperature == 21.0 and now.last_observed_time == T0 + timedelta(seconds=9.5)
        # Same observation time: the stored row stays (applying the same windows again changes nothing).
        store.commit(Commit(windows([(25, 15, 99.0, 9.5, 1)])))
        assert store.current_temperature(25).avg_temperature == 21.0
        store.commit(Commit(windows([(25, 20, 22.5, 19.0, 5)])))
        now = store.current_temperature(25)
        assert (now.avg_temperature, now.events, now.window_end) == (22.5, 5, T0 + timedelta(seconds=20))
        assert "building 25: 22.50 °C" in str(now)
        assert store.current_temperature(99) is None
        table = store.building_temperature()
        assert table["building_id"].to_list() == [25, 26] and table["avg_temperature"].to_list() == [22.5, 19.0]
        # Every window is in the history, in window-end order, exactly as given.
        history = store.history()
        assert history.height == 5 and history["window_end"].is_sorted()
        assert store.history(26).equals(windows([(26, 10, 19.0, 8.0, 2)]))


def test_history_refuses_the_same_window_twice(tmp_path):
    with WarmStore(tmp_path / "w.sqlite", writer=True) as store:
        step = Commit(windows([(1, 10, 20.0, 9.0, 1)]))
        store.commit(step)
        with pytest.raises(Exception, match="UNIQUE"):
            store.commit(step)
        assert store.history().height == 1  # the failed transaction left nothing behind
        assert store.counts()["commits"] == 1


def test_side_outputs_dead_letters_progress_and_state_round_trip(tmp_path):
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
            "partition_id": ["1"],
            "sequence_number": [5],
            "offset": ["800"],
            "enqueued_time": [T0],
            "reason": ["invalid JSON: Expecting value"],
            "body": [b'{"DeviceId":"x",\xff'],
        }  # fmt: skip
    ).with_columns(pl.col("enqueued_time").cast(UTC_US))
    progress = {"3": Position(17, "2720", T0), "1": Position(5, "800", None)}
    with WarmStore(tmp_path / "w.sqlite", writer=True) as store:
        store.commit(Commit(pl.DataFrame(), side_outputs={"late": late}, dead_letters=dead, progress=progress,
                            snapshot=b"\x00snapshot", events=2))  # fmt: skip
    with WarmStore(tmp_path / "w.sqlite") as reader:
        got = reader.late_events()
        assert got.select(late.columns).equals(late)
        assert reader.dead_letters().equals(dead)
        assert reader.positions() == {"1": Position(5, "800", None), "3": Position(17, "2720", T0)}
        assert reader.state("snapshot") == b"\x00snapshot"
        with pytest.raises(ProcessingError, match="writer=True"):
            reader.commit(Commit(pl.DataFrame()))
        with pytest.raises(ConfigurationError, match="no table"):
            reader.table("nope")


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "w.sqlite"
    with WarmStore(path, writer=True):
        with pytest.raises(ProcessingError, match="being written by process"):
            WarmStore(path, writer=True)
        with WarmStore(path) as reader:  # readers are welcome
            assert reader.counts()["window_history"] == 0
    with WarmStore(path, writer=True):  # the lock went with the first writer
        pass


def test_the_warm_store_and_building_averages_name_things_alike(tmp_path):
    """The current temperature and the window history use building_averages' column names."""
    from iotlib.processing.building import BUILDING_COLUMNS
    from iotlib.warm.store import TABLES

    history = [c for c, _ in TABLES["window_history"].columns]
    current = [c for c, _ in TABLES["building_temperature"].columns]
    assert history[: len(BUILDING_COLUMNS)] == BUILDING_COLUMNS
    assert set(current) - {"updated_at"} == set(BUILDING_COLUMNS)


def test_a_warm_store_with_other_columns_is_named(tmp_path):
    import sqlite3

    import pytest

    from iotlib.errors import ConfigurationError
    from iotlib.warm.store import WarmStore

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE building_temperature (building_id INTEGER PRIMARY KEY, temperature REAL)")
    with pytest.raises(ConfigurationError, match="another iotlib version.*building_temperature"):
        WarmStore(path, writer=True)
    WarmStore(tmp_path / "new.sqlite", writer=True).close()  # the lock was released: a fresh store opens
    with pytest.raises(ConfigurationError):
        WarmStore(path, writer=True)  # and the old one is still refused, not locked
