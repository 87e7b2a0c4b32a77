"""A simulated day as a real cold store: the Capture files decode to the Parquet cache, which is the simulation
as delivered; the ground truth is the simulator's; a built day is reused."""

from __future__ import annotations

import uuid
from pathlib import Path

import polars as pl
import pytest
from azure.storage.blob import BlobServiceClient

import iotlib
from iotlib import coldstore
from iotlib.analysis import day as days
from iotlib.capture import format as cf
from iotlib.fleet import scenario, simulate
from iotlib.fleet.delivery import Delivery, deliver

HOURS = "3h"


@pytest.fixture(scope="module")
def registry() -> pl.DataFrame:
    return scenario.build_registry(240, buildings=4, seed=9)


@pytest.fixture(scope="module")
def day(registry: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> days.SimulatedDay:
    # Small chunks: many chunks, windows and late sends cross chunk boundaries.
    return days.build_day(
        tmp_path_factory.mktemp("day"), registry, duration=HOURS, seed=9, progress=False, chunk_events=3000
    )


def test_the_capture_files_decode_to_the_parquet_cache(day: days.SimulatedDay) -> None:
    key = ["partition_id", "sequence_number"]
    cache = day.scan().drop("date").collect().sort(key)
    decoded = coldstore.load(day.capture, columns=list(days.CACHE_COLUMNS)).sort(key)
    assert cache.height == decoded.height == day.events > 40_000
    assert cache.drop("device_key").equals(decoded)
    # device_key is the device's row in the registry (also for bodies that did not decode).
    ids = day.registry["device_id"].gather(cache["device_key"])
    readable = cache["device_id"].is_not_null()
    assert (ids.filter(readable) == cache["device_id"].filter(readable)).all()
    assert cache["decode_error"].null_count() == cache.height - day.counts["decode_errors"]
    # Hive partitions by UTC date of the enqueued time, as coldstore's cache.
    assert day.scan().select((pl.col("date") == pl.col("enqueued_time").dt.date()).all()).collect().item()


def test_the_cache_is_the_simulation_as_the_hub_model_delivers_it(
    day: days.SimulatedDay, registry: pl.DataFrame
) -> None:
    sent = simulate.generate(
        registry, duration=HOURS, seed=9, faults=list(day.spec.faults), temperature_range=day.spec.temperature_range
    )
    want = deliver(sent, Delivery(), seed=9).filter(pl.col("fault_malformed").is_null())
    cols = ["partition_id", "sequence_number", "enqueued_time", "device_id", "time_observed"]
    got = day.scan().filter(pl.col("decode_error").is_null()).select(cols).collect().sort(cols[:2])
    assert got.equals(want.select(cols).cast(dict(got.schema)).sort(cols[:2]))
    # Ground truth: every faulty event, with its flags, under its hub key.
    truth = day.truth().collect()
    flags = [c for c in days.TRUTH_COLUMNS if c != "fault_malformed"]
    faulty = deliver(sent, Delivery(), seed=9).filter(
        pl.any_horizontal(*flags) | pl.col("fault_malformed").is_not_null()
    )
    assert truth.height == faulty.height > 0
    assert {c: int(truth[c].sum()) for c in flags} == {c: int(faulty[c].sum()) for c in flags}


def test_files_follow_the_capture_layout_and_windows(day: days.SimulatedDay) -> None:
    fmt = cf.PathFormat()
    files = sorted(day.capture.rglob("*.avro"))
    assert len(files) == day.files
    per_partition: dict[str, int] = {}
    for path in files[:: max(1, len(files) // 20)]:
        name = path.relative_to(day.capture).as_posix()
        where = fmt.parse(name)
        assert where.window_start.timestamp() % day.spec.time_window == 0
        for rec in cf.iter_records(path.read_bytes()):
            t = rec["SystemProperties"]["x-opt-enqueued-time"] / 1000
            assert where.window_start.timestamp() <= t < where.window_start.timestamp() + day.spec.time_window
            assert rec["Properties"]["DeviceId"] == rec["SystemProperties"]["x-opt-partition-key"]
        per_partition[where.partition_id] = per_partition.get(where.partition_id, 0) + 1
    assert len(per_partition) > 1


def test_a_built_day_is_reused_and_a_different_one_rebuilt(day: days.SimulatedDay, registry: pl.DataFrame) -> None:
    again = days.build_day(day.folder, registry, duration=HOURS, seed=9, progress=False, chunk_events=3000)
    assert not again.built and again.events == day.events and again.spec == day.spec
    assert days.open_day(day.folder).registry.equals(registry)
    with pytest.raises(iotlib.errors.ConfigurationError, match="no simulated day"):
        days.open_day(day.folder / "capture")


def test_capture_files_can_go_to_a_blob_container(registry: pl.DataFrame, tmp_path: Path, local_stack: object) -> None:
    storage = iotlib.settings().storage_connection_string
    container = BlobServiceClient.from_connection_string(storage).create_container(f"day-{uuid.uuid4().hex[:10]}")
    small = registry.head(60)
    in_blob = days.build_day(tmp_path / "blob", small, duration="40m", seed=2, progress=False, capture_to=container)
    on_disk = days.build_day(tmp_path / "disk", small, duration="40m", seed=2, progress=False)
    assert in_blob.capture_container == container.container_name and not in_blob.capture.exists()
    key = ["partition_id", "sequence_number"]
    from_blob = coldstore.load(container, decode=None).drop("body").sort(key)
    from_disk = coldstore.load(on_disk.capture, decode=None).drop("body").sort(key)
    assert from_blob.height == in_blob.events and from_blob.equals(from_disk)
    metadata = next(iter(container.list_blobs(include=["metadata"]))).metadata
    assert int(metadata["eventCount"]) > 0
    container.delete_container()
