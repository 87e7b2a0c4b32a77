"""BulkCapture writes the files ``iotlib capture`` writes: same names, same bytes, same metadata.

Events are simulated, sent through a private emulator over TCP with the real client
(:class:`iotlib.ingest.IngestClient`), captured by the real :class:`CaptureWriter` into Azurite,
and read back from the hub; :class:`BulkCapture` is fed what the hub read back (partitions,
sequence numbers, offsets, enqueued times, keys, bodies) and must give the same cold store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from azure.storage.blob import BlobServiceClient
from capturekit import HUB, blobs, private_hub

import iotlib
from iotlib import coldstore, hub
from iotlib.capture import CaptureWriter
from iotlib.capture import format as cf
from iotlib.capture.bulk import BulkCapture
from iotlib.errors import ValidationError
from iotlib.fleet import scenario, simulate
from iotlib.fleet.faults import Duplicates
from iotlib.ingest import IngestClient
from iotlib.local.emulator import Emulator

pytestmark = pytest.mark.usefixtures("local_stack")


@pytest.fixture(scope="module")
def storage() -> str:
    return iotlib.settings().storage_connection_string


@pytest.fixture(scope="module")
def sent_hub() -> Iterator[tuple[Emulator, pl.DataFrame]]:
    """A private hub holding a small simulation sent live over ~4 s (several 1-s windows), and its read-back."""
    registry = scenario.build_registry(80, seed=4)
    events = simulate.generate(registry, duration="6m", seed=4, faults=[Duplicates(probability=0.02)])
    with private_hub(partitions=4) as emu:
        with IngestClient.from_connection_string(emu.connection_string, eventhub_name=HUB) as client:
            report = client.send(events, mode="live", speed=90, progress=False)
        assert report.events_sent == events.height
        back = hub.read(emu.connection_string, eventhub_name=HUB)
        assert back.height == events.height
        yield emu, back


def _capture(emu: Emulator, storage: str, **options: object) -> dict[str, tuple[bytes, dict[str, str]]]:
    tag = uuid.uuid4().hex[:10]
    names = {"container": f"real-{tag}", "checkpoint_container": f"ckpt-{tag}"}
    with CaptureWriter.from_connection_string(
        emu.connection_string, storage, eventhub_name=HUB, load_balancing_interval=1, max_wait_time=0.5, grace=1,
        **names, **options,
    ) as writer:  # fmt: skip
        report = writer.run(once=True, timeout=90)
    assert report.events > 0 and not report.errors
    return blobs(storage, names["container"])


def _bulk(back: pl.DataFrame, dest: object, **options: object) -> BulkCapture:
    with BulkCapture(dest, **options) as bulk:  # type: ignore[arg-type]
        # Two batches in arrival order, as a stream would bring them.
        frame = back.rename({"partition_key": "device_id"}).sort("enqueued_time", "partition_id", "sequence_number")
        half = frame.height // 2
        bulk.write(frame.head(half))
        bulk.write(frame.tail(frame.height - half))
    return bulk


@pytest.mark.parametrize(
    "options",
    [
        {"time_window": 1},
        # Small frames and size windows: many blocks per file and files cut for size.
        {"time_window": 2, "frame_size": 1024, "size_window": "6KB"},
    ],
    ids=["1s-windows", "size-cuts"],
)
def test_same_files_byte_for_byte_as_the_capture_writer(
    sent_hub: tuple[Emulator, pl.DataFrame], storage: str, tmp_path: Path, options: dict[str, object]
) -> None:
    emu, back = sent_hub
    real = _capture(emu, storage, **options)
    container = BlobServiceClient.from_connection_string(storage).create_container(f"bulk-{uuid.uuid4().hex[:10]}")
    bulk = _bulk(back, container, **options)
    mine = blobs(storage, container.container_name)

    assert sorted(mine) == sorted(real) and len(real) > 8  # the same names: several windows per partition
    assert {name: data for name, (data, _) in mine.items()} == {name: data for name, (data, _) in real.items()}
    if "size_window" in options:
        assert any(f.reason == "size" for f in bulk.files)
    fields = ("partitionId", "eventCount", "firstSequenceNumber", "lastSequenceNumber", "firstEnqueueTime",
              "lastEnqueueTime", "sizeInBytes", "windowStart")  # fmt: skip
    for name, (_, meta) in real.items():
        assert {k: mine[name][1][k] for k in fields} == {k: meta[k] for k in fields}, name
    assert sum(f.event_count for f in bulk.files) == back.height == bulk.events

    # The same cold store for the loader, from a local folder too.
    _bulk(back, tmp_path / "folder", **options)
    from_folder = coldstore.load(tmp_path / "folder", decode=None).drop("body", "properties", "system_properties")
    from_real = coldstore.load(storage, container=container.container_name, decode=None)
    assert from_folder.sort("partition_id", "sequence_number").equals(
        from_real.drop("body", "properties", "system_properties").sort("partition_id", "sequence_number")
    )


def test_deflate_files_hold_the_same_records(sent_hub: tuple[Emulator, pl.DataFrame], tmp_path: Path) -> None:
    _, back = sent_hub
    plain = _bulk(back, tmp_path / "null", time_window=2)
    packed = _bulk(back, tmp_path / "deflate", time_window=2, codec="deflate")
    assert [f.name for f in plain.files] == [f.name for f in packed.files]
    assert sum(f.size_in_bytes for f in packed.files) < sum(f.size_in_bytes for f in plain.files) / 2
    for f in plain.files:
        a = list(cf.iter_records((tmp_path / "null" / f.name).read_bytes()))
        b = list(cf.iter_records((tmp_path / "deflate" / f.name).read_bytes()))
        assert a == b and len(a) == f.event_count


def test_events_out_of_sequence_order_are_refused(sent_hub: tuple[Emulator, pl.DataFrame], tmp_path: Path) -> None:
    _, back = sent_hub
    one = back.rename({"partition_key": "device_id"}).filter(pl.col("partition_id") == "0").sort("sequence_number")
    bulk = BulkCapture(tmp_path, time_window=1)
    bulk.write(one.tail(10))
    with pytest.raises(ValidationError, match="sequence order"):
        bulk.write(one.head(10))
    with pytest.raises(ValidationError, match="body"):
        BulkCapture(tmp_path / "x").write(one.drop("body"))
