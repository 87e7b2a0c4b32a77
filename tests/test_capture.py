"""The capture writer against a real emulator (private, over TCP) and the session's real Azurite.

Each test has a hub of its own, so every count is exact; containers are unique per test.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import fastavro
import pytest
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob import BlobServiceClient
from capturekit import (
    blobs,
    capture_process,
    captured,
    checkpoints,
    hub_ids,
    private_hub,
    reap_children,
    send,
    simulated,
)
from children import wait_for

import iotlib
from iotlib import connections
from iotlib.capture import CaptureReport, CaptureWriter, explore
from iotlib.capture import aio as capture_aio
from iotlib.capture import format as cf
from iotlib.errors import CaptureError, EndpointError
from iotlib.hub import peek
from iotlib.local.emulator import Emulator

UTC = UTC


@pytest.fixture
def hub() -> Iterator[Emulator]:
    with private_hub(partitions=4) as emu:
        yield emu


@pytest.fixture
def storage() -> str:
    return iotlib.settings().storage_connection_string


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"container": f"cap-{tag}", "checkpoint_container": f"ckpt-{tag}"}


@pytest.fixture(autouse=True)
def _no_stray_writers() -> Iterator[None]:
    with reap_children():
        yield


def writer(hub: Emulator, storage: str, **options: object) -> CaptureWriter:
    defaults: dict[str, object] = {"load_balancing_interval": 1, "max_wait_time": 0.5, "grace": 1}
    return CaptureWriter.from_connection_string(hub.connection_string, storage, eventhub_name=hub.eventhub_name,
                                                **{**defaults, **options})  # fmt: skip


def test_clean_run_stores_every_event_once_in_azures_format(hub: Emulator, storage: str, names: dict) -> None:
    sent = send(hub.connection_string, simulated(900, seed=1), rate=400)  # spans several 1-s windows
    expected = hub_ids(hub.connection_string)
    assert len(expected) == sent

    with writer(hub, storage, time_window=1, **names) as w:
        report = w.run(once=True, timeout=60)
    assert report.stop_reason.startswith("once")

    got, duplicates, df = captured(storage, names["container"])
    assert got == expected and duplicates == 0
    assert report.events == sent == sum(f.event_count for f in report.files)
    files = blobs(storage, names["container"])
    assert len(files) == len(report.files) > 4  # several windows per partition
    fmt = cf.PathFormat()
    for name, (data, meta) in files.items():
        recs = list(fastavro.reader(io.BytesIO(data), reader_schema=cf.SCHEMA))  # plain fastavro, Azure's schema
        path = fmt.parse(name)
        start = path.window_start.timestamp()
        for r in recs:  # every event lies in the window the name says
            assert start <= r["SystemProperties"]["x-opt-enqueued-time"] / 1000 < start + 1
            assert r["SystemProperties"]["x-opt-partition-key"] == r["Properties"]["DeviceId"]
        seqs = [r["SequenceNumber"] for r in recs]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert (int(meta["firstSequenceNumber"]), int(meta["lastSequenceNumber"]), int(meta["eventCount"])) == (
            seqs[0], seqs[-1], len(seqs))  # fmt: skip
        assert int(meta["sizeInBytes"]) == len(data) and meta["partitionId"] == path.partition_id
        assert path.namespace == "fabrikam" and path.eventhub == "telemetry"
        first_ms = recs[0]["SystemProperties"]["x-opt-enqueued-time"]
        assert recs[0]["EnqueuedTimeUtc"] == cf.format_enqueued_time(datetime.fromtimestamp(first_ms // 1000, UTC))
    # the checkpoint of each partition is its last event, and it is stored
    ckpt = checkpoints(storage, names["checkpoint_container"])
    assert ckpt == {p: max(s for q, s in expected if q == p) for p in {q for q, _ in expected}}
    # thermostat bodies decode through the loader
    assert df.height == sent

    # A second capture of the same events from scratch writes the same names, byte for byte.
    again = {k: f"{v}-2" for k, v in names.items()}
    with writer(hub, storage, time_window=1, **again) as w:
        report2 = w.run(once=True, timeout=60)
    files2 = blobs(storage, again["container"])
    assert files2.keys() == files.keys()
    plain = {f.name for f in report.files if not f.extended} & {f.name for f in report2.files if not f.extended}
    assert len(plain) >= len(files) // 2
    assert all(files[n][0] == files2[n][0] for n in plain)


def test_size_cuts_deflate_and_a_custom_path_format(hub: Emulator, storage: str, names: dict) -> None:
    sent = send(hub.connection_string, simulated(600, seed=2), rate=200)  # over 3 s: cuts need a later second
    fmt = "{EventHub}/{Year}-{Month}-{Day}/{PartitionId}/{Hour}{Minute}{Second}/{Namespace}"
    with writer(hub, storage, time_window=60, size_window="4KB", frame_size=1024, codec="deflate", path_format=fmt,
                **names) as w:  # fmt: skip
        report = w.run(once=True, timeout=60)
    got, duplicates, _ = captured(storage, names["container"], path_format=fmt)
    assert len(got) == sent and duplicates == 0
    per_partition: dict[str, list] = {}
    for f in {f.name: f for f in report.files}.values():  # an extended file's last commit tells its totals
        per_partition.setdefault(f.partition_id, []).append(f)
    parsed = cf.PathFormat(fmt)
    for files in per_partition.values():
        files.sort(key=lambda f: f.first_sequence_number)
        assert len(files) > 1 and any(f.reason == "size" for f in files)  # cut by size
        assert parsed.parse(files[0].name).window_start.second == 0
        for f in files[1:]:  # continuations: named by their first event's second, in the same minute's window
            name_time = parsed.parse(f.name).window_start
            assert name_time <= f.first_enqueue_time < name_time.replace(second=0) + timedelta(seconds=60)
            assert f.window_start == name_time.replace(second=0)
        assert len({f.name for f in files}) == len(files)
    stored = blobs(storage, names["container"])
    data, _ = next(iter(stored.values()))
    assert fastavro.reader(io.BytesIO(data)).codec == "deflate"
    # what the notebook's helpers show agrees with the blobs
    listed = explore.list_files(storage, name=names["container"], path_format=fmt)
    assert listed.height == len(stored) and listed["events"].sum() == sent
    anatomy = explore.describe(data)
    assert anatomy.codec == "deflate" and anatomy.events == len(list(fastavro.reader(io.BytesIO(data))))
    tree = explore.blob_tree(storage, name=names["container"], max_children=50)
    assert all(name.rsplit("/", 1)[1] in tree for name in stored)
    # within a window, a cut happens at the first event of a later second than the file's name (names stay
    # unique); the send may cross a minute, where the window closes the file instead
    for files in per_partition.values():
        for f, nxt in zip(files, files[1:]):
            if nxt.window_start > f.window_start:
                assert f.reason in ("size", "window")
            else:
                later = nxt.first_enqueue_time.replace(microsecond=0) > parsed.parse(f.name).window_start
                assert f.reason == "size" and later


def test_empty_windows_get_azures_empty_file(hub: Emulator, storage: str, names: dict) -> None:
    with writer(hub, storage, time_window=1, skip_empty_archives=False, **names) as w:
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(report=w.run(timeout=120)))
        runner.start()
        # Stopped after a few idle windows per partition, however long a loaded machine takes to get there.
        wait_for(lambda: w.report is not None and sum(f.reason == "empty" for f in w.report.files) >= 4 * 2,
                 "two empty windows a partition")  # fmt: skip
        w.stop()
        runner.join(60)
        report = outcome["report"]
    empty = [f for f in report.files if f.reason == "empty"]
    assert len(empty) >= 4 * 2  # 4 partitions, a few idle seconds each
    data = blobs(storage, names["container"])
    for f in empty:
        body, meta = data[f.name]
        assert len(body) == 508 and list(fastavro.reader(io.BytesIO(body))) == [] and meta["eventCount"] == "0"
    got, _, _ = captured(storage, names["container"])
    assert got == set()


def _stop_once_received(w: CaptureWriter, events: int) -> CaptureReport:
    """Run the writer, stop it once it has received ``events`` (a wait on its progress: a quiet spell can
    come before the backlog does), and return its report."""
    with w:
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(report=w.run(timeout=120)))
        runner.start()
        wait_for(lambda: w.report is not None and w.report.events >= events, f"the writer receiving {events} events")
        w.stop()
        runner.join(60)
    return outcome["report"]


def test_stop_mid_window_then_restart_extends_the_file(hub: Emulator, storage: str, names: dict) -> None:
    first = send(hub.connection_string, simulated(300, seed=3))
    r1 = _stop_once_received(writer(hub, storage, time_window=900, **names), first)  # a window longer than the test
    assert {f.reason for f in r1.files} == {"shutdown"} and r1.events == first, (
        r1.stop_reason,
        r1.events,
        first,
        r1.summary(),
    )
    second = send(hub.connection_string, simulated(300, seed=4))
    with writer(hub, storage, time_window=900, **names) as w:
        r2 = w.run(once=True, timeout=60)
    assert r2.events == second and all(f.extended for f in r2.files)
    assert {f.name for f in r2.files} <= {f.name for f in r1.files}  # same window, same blobs, grown
    got, duplicates, _ = captured(storage, names["container"])
    assert got == hub_ids(hub.connection_string) and duplicates == 0
    assert sum(1 for _ in blobs(storage, names["container"])) == len(r1.files)


def test_a_stop_whose_checkpoint_storage_never_answers_counts_those_events_as_stored(
    hub: Emulator, storage: str, names: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage commits the open window at the stop but never answers its checkpoint: the events are
    stored (not "not stored"), counted apart, and the next run with the same windows skips them."""
    first = send(hub.connection_string, simulated(300, seed=6))

    async def never_answers(self: object, *args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(BlobCheckpointStore, "update_checkpoint", never_answers)
    # The stop waits out its whole time limit on the checkpoint that never answers; the limit must
    # hold the file commits before it, which took over 2 s on a loaded machine (Azurite shares the cores).
    r1 = _stop_once_received(writer(hub, storage, time_window=900, shutdown_timeout=10, **names), first)
    monkeypatch.undo()
    assert r1.unstored == {} and sum(r1.uncheckpointed.values()) == first, r1.summary()
    assert f"stored, checkpoint not written: {first:,} events" in r1.summary()
    assert checkpoints(storage, names["checkpoint_container"]) == {}
    got, duplicates, _ = captured(storage, names["container"])
    assert len(got) == first and duplicates == 0  # stored, as the report says
    with writer(hub, storage, time_window=900, **names) as w:
        r2 = w.run(once=True, timeout=60)
    assert r2.events == 0 and sum(p.skipped_stored for p in r2.partitions.values()) == first, r2.summary()
    got, duplicates, _ = captured(storage, names["container"])
    assert got == hub_ids(hub.connection_string) and duplicates == 0


def test_replay_after_a_lost_checkpoint_skips_what_is_stored(hub: Emulator, storage: str, names: dict) -> None:
    """A crash between commit and checkpoint: the next run sees events the container already holds."""
    sent = send(hub.connection_string, simulated(400, seed=5), rate=400)
    with writer(hub, storage, time_window=1, **names) as w:
        first = w.run(once=True, timeout=60)
    assert first.stop_reason.startswith("once") and first.events == sent, first.summary()  # all stored, not a timeout
    before = blobs(storage, names["container"])
    cc = BlobServiceClient.from_connection_string(storage).get_container_client(names["checkpoint_container"])
    for b in cc.list_blobs(name_starts_with=""):
        if "/checkpoint/" in b.name:
            cc.delete_blob(b.name)  # the checkpoints never happened
    with writer(hub, storage, time_window=1, **names) as w:
        report = w.run(once=True, timeout=60)

    seen = f"{first.summary()}\n{_files(first)}\n--- the replay ---\n{report.summary()}\n{_files(report)}"
    assert report.events == 0 and report.files == [], seen
    assert sum(p.skipped_stored for p in report.partitions.values()) == sent, seen
    assert blobs(storage, names["container"]) == before, seen  # untouched: no second copy
    ids = hub_ids(hub.connection_string)
    assert checkpoints(storage, names["checkpoint_container"]) == {
        p: max(s for q, s in ids if q == p) for p in report.partitions
    }


def _files(r: CaptureReport) -> str:
    """A run's files, one a line: what a failed replay test shows of which ones the replay missed."""
    return "\n".join(f"  {f.name} {f.reason} {f.first_sequence_number}-{f.last_sequence_number}" for f in r.files)


def test_a_replay_sees_a_file_named_before_its_window(hub: Emulator, storage: str, names: dict) -> None:
    """A window whose first second's name is taken gets a file named up to 899 s before it; a replay after
    lost checkpoints must find that file too, not capture its events a second time."""
    sent = send(hub.connection_string, simulated(200, seed=3), rate=200)
    first = asyncio.run(peek.enqueued_times(connections.EventHubConnection.parse(hub.connection_string,
                                            eventhub_name=hub.eventhub_name), {"0": {0}}))[("0", 0)]  # fmt: skip
    w = writer(hub, storage, time_window=1, **names)
    opts = w.options
    taken = opts.path_format.name(opts.namespace, opts.eventhub_name, "0", first.replace(microsecond=0))
    service = BlobServiceClient.from_connection_string(storage)
    service.create_container(names["container"])
    service.get_blob_client(names["container"], taken).upload_blob(  # another tool's file takes the name
        cf.empty_capture_file(sync_marker=cf.sync_marker_for(taken))
    )
    with w:
        stored = w.run(once=True, timeout=60)
    assert stored.events == sent, stored.summary()
    early = [f for f in stored.files if f.partition_id == "0" and f.first_sequence_number == 0]
    assert len(early) == 1 and early[0].name < taken, stored.summary()  # named before its window
    cc = service.get_container_client(names["checkpoint_container"])
    for b in cc.list_blobs():
        if "/checkpoint/" in b.name:
            cc.delete_blob(b.name)  # the checkpoints never happened
    with writer(hub, storage, time_window=1, **names) as again:
        replay = again.run(once=True, timeout=60)
    seen = f"{stored.summary()}\n{_files(stored)}\n--- the replay ---\n{replay.summary()}\n{_files(replay)}"
    assert replay.files == [] and sum(p.skipped_stored for p in replay.partitions.values()) == sent, seen
    got, duplicates, _ = captured(storage, names["container"])
    assert got == hub_ids(hub.connection_string) and duplicates == 0


def test_a_missing_container_is_a_clear_error(hub: Emulator, storage: str, names: dict) -> None:
    with pytest.raises(CaptureError, match="does not exist"):
        # create_container=False: a container that is not there is not made (as with Azure's Capture)
        writer(hub, storage, create_container=False, **names).run(once=True, timeout=30)


def test_a_refused_storage_key_is_a_clear_error(hub: Emulator, storage: str, names: dict) -> None:
    parts = dict(item.split("=", 1) for item in storage.strip(";").split(";"))
    parts["AccountKey"] = "d3Jvbmc=" * 11  # well-formed base64, wrong key
    wrong = ";".join(f"{k}={v}" for k, v in parts.items()) + ";"
    with pytest.raises(EndpointError, match="^Blob storage account 'devstoreaccount1' at .* refused the credentials"):
        writer(hub, wrong, **names).run(once=True, timeout=30)


def test_deleted_container_stops_the_writer_with_one_clear_error(
    hub: Emulator, storage: str, names: dict, caplog: pytest.LogCaptureFixture
) -> None:
    service = BlobServiceClient.from_connection_string(storage)
    w = writer(hub, storage, time_window=1, hard_error_grace=2, retry_backoff=(0.1, 0.5), **names)
    deleted = threading.Event()

    def delete_after_first_file(row: object) -> None:
        if not deleted.is_set():
            deleted.set()
            threading.Thread(target=service.delete_container, args=(names["container"],), daemon=True).start()

    w._engine.on_file = delete_after_first_file  # noqa: SLF001 - a hook for exactly this
    sender = threading.Thread(target=send, args=(hub.connection_string, simulated(1500, seed=7)), kwargs={"rate": 300})
    sender.start()
    # The hard error stops the run (a timeout would return a report): no clock needed to tell them apart.
    gone = r"storage: the container does not exist .*\(for \d+ s, on "
    with caplog.at_level(logging.WARNING, logger="iotlib.capture"), pytest.raises(CaptureError, match=gone):
        w.run(timeout=40)
    sender.join()
    assert deleted.is_set()
    stalls = [
        r for r in caplog.records if r.levelno == logging.ERROR and "Capture stalls and retries" in r.getMessage()
    ]
    assert len(stalls) == 1 and "container does not exist" in stalls[0].getMessage()  # once, not a log storm


def test_sigint_flushes_open_windows_then_checkpoints(hub: Emulator, storage: str, names: dict, tmp_path) -> None:
    sent = send(hub.connection_string, simulated(300, seed=8))
    proc = capture_process(
        hub.connection_string, storage, "--time-window", "900", "--container", names["container"],
        "--checkpoint-container", names["checkpoint_container"], "--load-balancing-interval", "1",
        log=tmp_path / "capture.log",
    )  # fmt: skip
    log = tmp_path / "capture.log"
    wait_for(lambda: "captured 300 events" in log.read_text(), "the writer receiving every event", alive=proc, log=log)
    assert blobs(storage, names["container"]) == {}  # the window is still open: nothing committed yet
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, (tmp_path / "capture.log").read_text()
    got, duplicates, _ = captured(storage, names["container"])
    assert len(got) == sent and duplicates == 0
    assert checkpoints(storage, names["checkpoint_container"]) == {
        p: max(s for q, s in got if q == p) for p in {q for q, _ in got}
    }


def test_the_async_writer_is_the_same_writer(hub: Emulator, storage: str, names: dict) -> None:
    sent = send(hub.connection_string, simulated(200, seed=9))

    async def capture() -> object:
        async with capture_aio.CaptureWriter.from_connection_string(
            hub.connection_string, storage, eventhub_name=hub.eventhub_name, load_balancing_interval=1, **names
        ) as writer:
            return await writer.run(once=True, timeout=60)

    report = asyncio.run(capture())
    got, duplicates, _ = captured(storage, names["container"])
    assert report.events == sent == len(got) and duplicates == 0  # type: ignore[attr-defined]


def _closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_key(conn: str, key: str, value: str) -> str:
    return ";".join(f"{k}={value}" if k == key else f"{k}={v}" for k, v in
                    (item.split("=", 1) for item in conn.strip(";").split(";"))) + ";"  # fmt: skip


@pytest.mark.parametrize("mistake", ["stack down", "hub down", "storage down", "wrong hub", "wrong hub key",
                                     "wrong storage key"])  # fmt: skip
def test_a_newcomers_mistakes_get_one_line_and_exit_1(hub: Emulator, storage: str, names: dict, mistake: str,
                                                      tmp_path) -> None:  # fmt: skip
    eventhub, hub_name = hub.connection_string, hub.eventhub_name
    if mistake in ("stack down", "hub down"):
        eventhub = connections.eventhub_connection_string("localhost", _closed_port())
    if mistake in ("stack down", "storage down"):
        storage = connections.storage_connection_string("127.0.0.1", _closed_port())
    if mistake == "wrong hub":
        hub_name = "nohub"
    if mistake == "wrong hub key":
        eventhub = _with_key(eventhub, "SharedAccessKey", "not-the-key")
    if mistake == "wrong storage key":
        storage = _with_key(storage, "AccountKey", "d3Jvbmc=" * 11)
    log = tmp_path / "capture.log"
    proc = capture_process(eventhub, storage, "--until-idle", "3", "--container", names["container"],
                           log=log, env={"IOTLIB_EVENTHUB_NAME": hub_name})  # fmt: skip
    assert proc.wait(60) == 1, log.read_text()[-3000:]  # never retries forever
    errors = [line for line in log.read_text().splitlines() if line.startswith("iotlib capture: error:")]
    assert len(errors) == 1 and "Traceback" not in log.read_text(), log.read_text()[-3000:]
    expected = {
        "stack down": ["Event Hubs at localhost:", "Blob storage at 127.0.0.1:", "connection refused", "iotlib up"],
        "hub down": ["Event Hubs at localhost:", "iotlib up"],
        "storage down": ["Blob storage at 127.0.0.1:", "iotlib up"],
        "wrong hub": ["event hub 'nohub' does not exist in namespace 'fabrikam'"],
        "wrong hub key": [
            "refused the key 'RootManageSharedAccessKey'",
            "check SharedAccessKeyName and SharedAccessKey",
        ],
        "wrong storage key": ["Blob storage account 'devstoreaccount1'", "refused the credentials", "AccountKey"],
    }[mistake]
    assert all(text in errors[0] for text in expected), errors[0]
