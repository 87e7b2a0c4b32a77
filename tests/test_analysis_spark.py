"""The batch questions on Apache Spark (local mode, one session for the module) give polars' answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iotlib.analysis import completeness, counts, heatmap, localday, spark
from iotlib.analysis import day as days
from iotlib.errors import ConfigurationError
from iotlib.fleet import scenario


@pytest.fixture(scope="module")
def session() -> Iterator[object]:
    s = spark.session(cores=2, shuffle_partitions=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> days.SimulatedDay:
    registry = scenario.build_registry(150, buildings=3, seed=8)
    return days.build_day(tmp_path_factory.mktemp("day"), registry, duration="6h", seed=8, progress=False)


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.height > 0
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_events_per_device(session: object, day: days.SimulatedDay) -> None:
    hours = {"start": day.start + timedelta(hours=1), "end": day.start + timedelta(hours=5)}
    same(spark.events_per_device(session, day, **hours), counts.events_per_device(day, **hours))  # type: ignore[arg-type]


def test_local_days_device_hours_and_building_hours(session: object, day: days.SimulatedDay) -> None:
    same(spark.local_day_stats(session, day), localday.local_day_stats(day))  # type: ignore[arg-type]
    span = {"start": day.start, "end": day.end}
    same(spark.device_hours(session, day, **span), completeness.device_hours(day, **span))  # type: ignore[arg-type]
    same(spark.building_hours(session, day), heatmap.building_hours(day))  # type: ignore[arg-type]


def test_a_parquet_folder_by_device_id_and_frames_refused(session: object, day: days.SimulatedDay) -> None:
    # The cache folder with a registry: the device-id path, no device_key.
    by_id = spark.events_per_device(session, day.cache.as_posix(), day.registry)  # type: ignore[arg-type]
    assert by_id["events"].sum() == day.events
    with pytest.raises(ConfigurationError, match="Parquet"):
        spark.events_per_device(session, day.scan(), day.registry)  # type: ignore[arg-type]
