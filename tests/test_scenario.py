"""The Fabrikam device registry: deterministic, realistic in shape, validated, shipped as generated."""

from __future__ import annotations

import re
import zoneinfo

import polars as pl
import pytest

from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet import scenario

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def fleet() -> pl.DataFrame:
    return scenario.build_registry()


def test_same_seed_same_registry_other_seed_other_registry() -> None:
    a = scenario.build_registry(3_000, seed=7)
    assert a.equals(scenario.build_registry(3_000, seed=7))
    b = scenario.build_registry(3_000, seed=8)
    assert not a.equals(b)
    assert set(a["device_id"]).isdisjoint(b["device_id"])


def test_columns_and_dtypes_are_the_contract(fleet: pl.DataFrame) -> None:
    assert fleet.schema == pl.Schema(
        {"device_id": pl.String, "building_id": pl.Int32, "floor": pl.Int16, "room": pl.String, "time_zone": pl.String}
    )


def test_default_fleet_shape(fleet: pl.DataFrame) -> None:
    assert fleet.height == 100_000
    assert fleet["device_id"].n_unique() == 100_000
    assert fleet["device_id"].str.contains(GUID.pattern).all()
    buildings = fleet["building_id"].unique().sort()
    assert buildings.to_list() == list(range(1, len(buildings) + 1)), "building ids run 1..N"
    assert 200 <= len(buildings) <= 800, "a few hundred buildings"
    per_building = fleet.group_by("building_id").agg(
        floors=pl.col("floor").max(),
        zones=pl.col("time_zone").n_unique(),
        devices=pl.len(),
    )
    assert per_building["floors"].min() >= 10 and per_building["floors"].max() <= 30
    assert (per_building["zones"] == 1).all(), "one time zone per building"
    per_apartment = fleet.group_by("building_id", "room").len()["len"]
    assert per_apartment.min() >= 1 and 1.5 <= per_apartment.mean() <= 3.0, "a few devices per apartment"
    zones = set(fleet["time_zone"].unique())
    assert len(zones) >= 6 and {"America/New_York", "America/Chicago", "America/Los_Angeles"} <= zones
    assert zones <= zoneinfo.available_timezones()


def test_room_is_floor_then_apartment(fleet: pl.DataFrame) -> None:
    sample = fleet.sample(2_000, seed=1)
    floor_part = sample["room"].str.slice(0, sample["room"].str.len_chars() - 2).cast(pl.Int16)
    apartment = sample["room"].str.slice(-2).cast(pl.Int32)
    assert (floor_part == sample["floor"]).all()
    assert apartment.min() >= 1 and apartment.max() <= 8


def test_original_shape_is_ten_buildings_of_a_hundred() -> None:
    original = scenario.original_registry()
    assert original.height == 1_000
    assert original.group_by("building_id").len().sort("building_id")["len"].to_list() == [100] * 10


def test_shipped_files_equal_what_the_code_generates(fleet: pl.DataFrame) -> None:
    assert scenario.load_registry(scenario.DEFAULT_REGISTRY_PATH).equals(fleet)
    assert scenario.load_registry(scenario.ORIGINAL_REGISTRY_PATH).equals(scenario.original_registry())
    assert scenario.default_registry().equals(fleet)


@pytest.mark.parametrize("suffix", [".parquet", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix: str) -> None:
    reg = scenario.build_registry(500, seed=3)
    path = scenario.save_registry(reg, tmp_path / f"reg{suffix}")
    assert scenario.load_registry(path).equals(reg)


def test_file_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=r"\.parquet or \.json"):
        scenario.save_registry(scenario.build_registry(10), tmp_path / "reg.csv")
    with pytest.raises(ConfigurationError, match="no registry file"):
        scenario.load_registry(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        scenario.load_registry(tmp_path / "bad.json")
    (tmp_path / "dup.json").write_text(
        '[{"device_id":"a","building_id":1,"floor":1,"room":"101","time_zone":"UTC"},'
        ' {"device_id":"a","building_id":1,"floor":1,"room":"101","time_zone":"UTC"}]'
    )
    with pytest.raises(ValidationError, match=r"dup\.json.*duplicate device id"):
        scenario.load_registry(tmp_path / "dup.json")


def test_validator_reports_missing_columns() -> None:
    reg = scenario.build_registry(20).drop("time_zone", "floor")
    with pytest.raises(ValidationError, match="lacks column.*floor, time_zone"):
        scenario.validate_registry(reg)


def test_validator_reports_duplicates_unknown_zones_nulls_and_bad_ids() -> None:
    reg = scenario.build_registry(20)
    broken = reg.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit(reg["device_id"][0]))
        .otherwise("device_id")
        .alias("device_id"),
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit("Mars/Olympus_Mons"))
        .otherwise("time_zone")
        .alias("time_zone"),
        pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise("room").alias("room"),
        pl.when(pl.int_range(pl.len()) == 8).then(0).otherwise("building_id").alias("building_id"),
    )
    with pytest.raises(ValidationError) as info:
        scenario.validate_registry(broken)
    message = str(info.value)
    assert "1 duplicate device id(s), e.g. " + reg["device_id"][0] in message
    assert "Mars/Olympus_Mons" in message
    assert "null value(s) in column room" in message
    assert "below 1" in message


def test_validator_casts_compatible_dtypes_and_rejects_others() -> None:
    reg = scenario.build_registry(20)
    loose = reg.with_columns(pl.col("building_id").cast(pl.Int64), pl.col("floor").cast(pl.Int64))
    assert scenario.validate_registry(loose).equals(reg)
    with pytest.raises(ValidationError, match="column floor has dtype String"):
        scenario.validate_registry(reg.with_columns(pl.lit("ground").alias("floor")))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="at least one device"):
        scenario.build_registry(0)
    with pytest.raises(ConfigurationError, match="buildings must be between"):
        scenario.build_registry(10, buildings=11)


def test_registry_summary_counts_what_the_registry_holds() -> None:
    original = scenario.original_registry()
    s = scenario.registry_summary(original)
    assert s["devices"] == 1_000 and s["buildings"] == 10
    assert s["devices_per_building_min"] == s["devices_per_building_max"] == 100
    floors = original.group_by("building_id").agg(pl.col("floor").max())["floor"]
    assert (s["floors_min"], s["floors_max"]) == (floors.min(), floors.max())
    assert s["apartments"] == original.group_by("building_id", "room").len().height
    assert s["time_zones"] == original["time_zone"].n_unique()
