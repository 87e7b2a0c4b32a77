"""Integrity: every committed Capture file carries its Content-MD5, and the loader checks it; capture's
checkpoints are checked against storage at start.

Avro's null codec has no checksum, so bytes changed in storage after a commit (a flipped digit in a
body) load silently wrong. Real emulator (private, over TCP) and a real Azurite of the test's own,
whose files on disk the corruption test rewrites in place, keeping their length. A deleted container
leaves checkpoints that name events no blob holds: the writer says so at start, and
``--reset-checkpoints`` captures them again from the hub.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from capturekit import capture_process, captured, hub_ids, private_hub, send, simulated

from iotlib import coldstore
from iotlib.capture import CaptureWriter
from iotlib.capture import format as cf
from iotlib.capture.report import CaptureReport
from iotlib.errors import ColdStoreError
from iotlib.local import stack
from iotlib.local.emulator import Emulator


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An Azurite of our own (its files are rewritten here): connection string and data folder."""
    home = tmp_path_factory.mktemp("azurite")
    st = stack.up(home=home, blob_port=0, services=("azurite",))
    try:
        yield st.settings().storage_connection_string, home
    finally:
        st.down()


@pytest.fixture
def hub() -> Iterator[Emulator]:
    with private_hub(partitions=2) as emu:
        yield emu


def _names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"container": f"cap-{tag}", "checkpoint_container": f"ckpt-{tag}"}


def _writer(hub: Emulator, storage: str, **options: object) -> CaptureWriter:
    return CaptureWriter.from_connection_string(
        hub.connection_string, storage, eventhub_name=hub.eventhub_name, load_balancing_interval=1,
        max_wait_time=0.5, grace=1, **options,
    )  # fmt: skip


def test_every_committed_file_carries_the_md5_of_its_bytes(hub: Emulator, azurite: tuple[str, Path]) -> None:
    storage, _ = azurite
    names = _names()
    send(hub.connection_string, simulated(300, seed=21))
    with _writer(hub, storage, time_window=900, frame_size=1024, **names) as w:
        first = w.run(until_idle=1.5, timeout=60)  # stops mid-window: files committed early
    send(hub.connection_string, simulated(300, seed=22))
    with _writer(hub, storage, time_window=900, frame_size=1024, **names) as w:
        second = w.run(once=True, timeout=60)  # a new run extends them: hashes the stored bytes, then more
    with _writer(hub, storage, time_window=1, skip_empty_archives=False, **_names()) as w:

        def stop_at_the_first_empty_file(report: CaptureReport, final: bool = False) -> None:
            if any(f.reason == "empty" for f in report.files):
                w.stop()

        empty = w.run(timeout=60, progress=stop_at_the_first_empty_file)  # header-and-empty-block files, uploaded
    assert first.files and second.files and all(f.extended for f in second.files)
    assert [f for f in empty.files if f.reason == "empty"]
    for container in (names["container"], w.options.container):
        client = ContainerClient.from_connection_string(storage, container)
        listed = list(client.list_blobs())
        assert listed
        for blob in listed:
            data = client.download_blob(blob.name).readall()
            assert blob.content_settings.content_md5 == hashlib.md5(data).digest(), blob.name
    got, duplicates, frame = captured(storage, names["container"])
    assert len(got) == 600 and duplicates == 0


def test_a_block_corrupted_in_storage_is_named_or_skipped(hub: Emulator, azurite: tuple[str, Path]) -> None:
    storage, data_dir = azurite
    names = _names()
    send(hub.connection_string, simulated(400, seed=23))
    with _writer(hub, storage, time_window=900, **names) as w:
        report = w.run(once=True, timeout=60)
    client = ContainerClient.from_connection_string(storage, names["container"])
    victim = max(report.files, key=lambda f: f.event_count)
    original = client.download_blob(victim.name).readall()
    record = next(iter(cf.iter_records(original)))
    # A digit of the first reading's temperature, changed in Azurite's own files: same length, same MD5 property.
    at = original.index(b'"Temperature":') + len(b'"Temperature":')
    assert original[at : at + 1].isdigit()
    flipped = b"1" if original[at : at + 1] != b"1" else b"2"
    _rewrite_in_place(data_dir, original[at - 40 : at + 40], 40, flipped)
    corrupted = client.download_blob(victim.name).readall()
    assert len(corrupted) == len(original) and corrupted != original
    assert next(iter(cf.iter_records(corrupted)))["Body"] != record["Body"]  # Avro alone sees nothing wrong

    with pytest.raises(ColdStoreError, match="Content-MD5") as caught:
        coldstore.load(storage, container=names["container"])
    assert victim.name in str(caught.value)

    frame, load = coldstore.load(storage, container=names["container"], errors="skip", with_report=True)
    assert [s.name for s in load.skipped] == [victim.name] and "Content-MD5" in load.skipped[0].reason
    assert frame.height == report.events - victim.event_count
    assert load.blobs_verified == len(report.files) - 1

    unchecked = coldstore.load(storage, container=names["container"], verify_md5=False)
    assert unchecked.height == report.events  # what loading without the check would have given: a wrong row


def _rewrite_in_place(folder: Path, context: bytes, offset: int, replacement: bytes) -> None:
    """Replace the byte at ``offset`` of ``context`` wherever Azurite stored it (exactly one place)."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".json" and path.stat().st_size >= len(context):
            data = path.read_bytes()
            at = data.find(context)
            if at >= 0:
                assert data.find(context, at + 1) < 0
                hits.append((path, at + offset))
    assert len(hits) == 1, f"the block's bytes were found in {len(hits)} files"
    path, at = hits[0]
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(replacement)


def test_checkpoints_ahead_of_storage_are_reported_and_captured_again(
    hub: Emulator, azurite: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage, _ = azurite
    names = _names()
    sent = send(hub.connection_string, simulated(400, seed=24))
    with _writer(hub, storage, time_window=900, **names) as w:
        assert w.run(once=True, timeout=60).events == sent
    ContainerClient.from_connection_string(storage, names["container"]).delete_container()

    # The container is gone: every checkpoint is ahead of storage. Said at start; nothing silently resumed.
    with caplog.at_level(logging.WARNING, logger="iotlib.capture"), _writer(hub, storage, **names) as w:
        gone = w.run(until_idle=1, timeout=60)
    assert [a.partition_id for a in gone.checkpoints_ahead] == ["0", "1"] and gone.events == 0
    assert all("did not exist" in a.reason for a in gone.checkpoints_ahead)
    warned = [r.getMessage() for r in caplog.records if "ahead of storage" in r.getMessage()]
    assert len(warned) == 1 and "--reset-checkpoints" in warned[0]
    assert "warning: partition 0: checkpoint at sequence number" in gone.summary()

    # Restarted again, the container exists (empty): the blobs holding the checkpointed events are missing.
    with _writer(hub, storage, **names) as w:
        empty = w.run(until_idle=1, timeout=60)
    assert [a.partition_id for a in empty.checkpoints_ahead] == ["0", "1"]
    assert all("no blob in container" in a.reason for a in empty.checkpoints_ahead)

    # The way back: capture again from the hub.
    log = tmp_path / "capture.log"
    proc = capture_process(hub.connection_string, storage, "--container", names["container"], "--checkpoint-container",
                           names["checkpoint_container"], "--once", "--reset-checkpoints", log=log)  # fmt: skip
    assert proc.wait(90) == 0, log.read_text()[-3000:]
    assert "checkpoint(s) deleted" in log.read_text()
    got, duplicates, _ = captured(storage, names["container"])
    assert got == hub_ids(hub.connection_string) and len(got) == sent and duplicates == 0
    with _writer(hub, storage, **names) as w:
        assert w.run(until_idle=1, timeout=60).checkpoints_ahead == []  # storage and checkpoints agree again
