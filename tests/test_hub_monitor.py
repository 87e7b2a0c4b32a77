"""The lag monitor against a real consumer that checkpoints in Azurite."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.storage.blob import BlobServiceClient

import iotlib
from iotlib import hub
from iotlib.cli.monitor import REDRAW
from iotlib.connections import EventHubConnection, eventhub_connection_string, storage_connection_string
from iotlib.errors import ConfigurationError, HubError
from iotlib.fleet import scenario, simulate
from iotlib.hub import aio, monitor
from iotlib.hub.monitor import LagMonitor
from iotlib.hub.paced import PacedConsumer
from iotlib.ingest import IngestClient
from iotlib.local.stack import free_port


def test_lag_counts_what_a_consumer_has_not_checkpointed(local_stack: object, eventhub_name: str) -> None:
    s = iotlib.settings()
    container = f"ckpt-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(s.storage_connection_string).create_container(container)
    events = simulate.generate(
        scenario.original_registry().head(100), start=simulate.DEFAULT_START, duration="4m", seed=4
    )
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        client.send(events, progress=False)
    ends = {p: pos.last_enqueued_sequence_number for p, pos in hub.positions(eventhub_name=eventhub_name).items()}

    before = monitor.lag({"warm": container}, eventhub_name=eventhub_name)
    assert before["checkpoint_sequence_number"].null_count() == before.height
    assert before["unprocessed"].sum() == sum(e + 1 for e in ends.values())

    # A consumer that checkpoints partition 0 up to its 10th event, and every other partition to its end.
    store = BlobCheckpointStore.from_connection_string(s.storage_connection_string, container)
    consumer = EventHubConsumerClient.from_connection_string(
        s.eventhub_connection_string,
        consumer_group="warm",
        eventhub_name=eventhub_name,
        checkpoint_store=store,
    )
    done: set[str] = set()

    def on_batch(ctx, batch):  # type: ignore[no-untyped-def]
        for event in batch:
            target = 9 if ctx.partition_id == "0" else ends[ctx.partition_id]
            if event.sequence_number == target:
                ctx.update_checkpoint(event)
                done.add(ctx.partition_id)
        if len(done) == len(ends):
            threading.Thread(target=consumer.close).start()

    consumer.receive_batch(on_batch, starting_position="-1", max_wait_time=1, max_batch_size=500)

    after = monitor.lag({"warm": container}, eventhub_name=eventhub_name)
    rows = {r["partition_id"]: r for r in after.iter_rows(named=True)}
    assert rows["0"]["checkpoint_sequence_number"] == 9
    assert rows["0"]["unprocessed"] == ends["0"] - 9
    assert all(rows[p]["unprocessed"] == 0 for p in ends if p != "0")
    assert after["checkpoint_time"].null_count() == 0
    # The consumer claimed every partition, then released them when it closed cleanly.
    assert after["ownership_time"].null_count() == 0 and after["owner"].null_count() == after.height
    total = monitor.summary(after).row(0, named=True)
    assert total["unprocessed"] == ends["0"] - 9 and total["owners"] == 0

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotlib",
            "monitor",
            "--consumer-group",
            f"warm={container}",
            "--eventhub",
            eventhub_name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"{ends['0'] - 9:,}" in out.stdout and "warm" in out.stdout
    assert isinstance(after, pl.DataFrame)


def _send(eventhub_name: str, partition: str, count: int) -> None:
    s = iotlib.settings()
    with EventHubProducerClient.from_connection_string(s.eventhub_connection_string, eventhub_name=eventhub_name) as p:
        batch = p.create_batch(partition_id=partition)
        for i in range(count):
            batch.add(EventData(f"event {i}".encode()))
        p.send_batch(batch)


def test_an_unknown_consumer_group_is_a_clear_error_and_a_known_one_without_checkpoints_is_not(
    local_stack: object, eventhub_name: str
) -> None:
    _send(eventhub_name, "1", 3)
    with pytest.raises(ConfigurationError) as err:
        monitor.lag({"wram": "warm-checkpoints"}, eventhub_name=eventhub_name)
    text = str(err.value)
    assert "consumer group 'wram' does not exist on event hub" in text and "amqp:not-found" in text
    # "monitor" exists on the hub; nobody checkpointed it: every retained event is unprocessed, as it should be.
    fresh = monitor.lag({"monitor": f"none-{uuid.uuid4().hex[:8]}"}, eventhub_name=eventhub_name)
    ends = hub.positions(eventhub_name=eventhub_name)
    assert fresh["unprocessed"].sum() == sum(p.last_enqueued_sequence_number - p.begin_sequence_number + 1
                                             for p in ends.values() if not p.is_empty)  # fmt: skip


def test_lag_in_time_and_throughput_come_from_the_looks_clock(local_stack: object, eventhub_name: str) -> None:
    s = iotlib.settings()
    container = f"ckpt-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(s.storage_connection_string).create_container(container)
    store = BlobCheckpointStore.from_connection_string(s.storage_connection_string, container)
    namespace = EventHubConnection.parse(s.eventhub_connection_string, eventhub_name=eventhub_name)

    def checkpoint(seq: int) -> None:
        store.update_checkpoint(
            {
                "fully_qualified_namespace": namespace.fully_qualified_namespace,
                "eventhub_name": eventhub_name,
                "consumer_group": "warm",
                "partition_id": "2",
                "sequence_number": seq,
                "offset": "0",
            }
        )

    start = hub.positions(eventhub_name=eventhub_name)["2"].last_enqueued_sequence_number
    _send(eventhub_name, "2", 50)
    checkpoint(start + 10)  # processed 10 of the 50
    since = {pid: p.last_enqueued_sequence_number for pid, p in hub.positions(eventhub_name=eventhub_name).items()}
    since["2"] = start + 10
    first_waiting = hub.read(since=since, eventhub_name=eventhub_name)["enqueued_time"][0]
    now = [first_waiting.timestamp() + 42.0]
    with LagMonitor.from_settings(
        eventhub_name=eventhub_name, consumer_groups={"warm": container}, clock=lambda: now[0]
    ) as m:
        row = m.sample().frame.filter(pl.col("partition_id") == "2").row(0, named=True)
        assert row["unprocessed"] == 40
        assert row["lag_seconds"] == pytest.approx(42.0, abs=1e-3)
        assert row["enqueued_per_second"] is None  # the first look
        _send(eventhub_name, "2", 30)
        checkpoint(start + 30)
        now[0] += 10
        row = m.sample().frame.filter(pl.col("partition_id") == "2").row(0, named=True)
    assert row["enqueued_per_second"] == pytest.approx(3.0) and row["processed_per_second"] == pytest.approx(2.0)
    assert row["unprocessed"] == 50


def test_a_stopped_stack_is_one_line_naming_the_endpoint_within_seconds(tmp_path: Path) -> None:
    eventhub_port, blob_port = free_port(), free_port()
    env = {
        **os.environ,
        "IOTLIB_HOME": str(tmp_path / ".iotlib"),
        "IOTLIB_EVENTHUB_CONNECTION_STRING": eventhub_connection_string("localhost", eventhub_port),
        "IOTLIB_STORAGE_CONNECTION_STRING": storage_connection_string("127.0.0.1", blob_port),
    }
    # No wall-clock bound (a loaded machine took 10.2 s, mostly imports): the preflight's "connection
    # refused" line below is the proof that no client retried; the timeout only catches a hang.
    out = subprocess.run(
        [sys.executable, "-m", "iotlib", "monitor"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    # The same line as every other command's (iotlib.preflight), for the first endpoint that is silent.
    assert out.stderr == (
        f"iotlib monitor: error: Event Hubs at localhost:{eventhub_port} does not answer (connection refused): "
        "is the local stack up? Start it with `iotlib up` (`iotlib status` shows where it listens)\n"
    )


def _cli(eventhub_name: str, *args: str, terminal: bool = False) -> tuple[int, str]:
    command = [sys.executable, "-m", "iotlib", "monitor", "--eventhub", eventhub_name, *args]
    if not terminal:
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False)
        return out.returncode, out.stdout + out.stderr
    leader, follower = pty.openpty()  # a real terminal, so the command redraws in place
    proc = subprocess.Popen(command, stdout=follower, stderr=follower, env=os.environ.copy())
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(60), b"".join(chunks).decode()


def test_watch_redraws_the_table_in_place_and_raises_alerts(local_stack: object, eventhub_name: str) -> None:
    _send(eventhub_name, "3", 5)
    code, text = _cli(
        eventhub_name, "--consumer-group", "monitor=nothing", "--watch", "0.2", "--count", "2", terminal=True
    )
    assert code == 0, text
    assert text.count(REDRAW) == 2 and "look 1 at" in text and "look 2 at" in text
    code, text = _cli(
        eventhub_name, "--consumer-group", "monitor=nothing", "--watch", "0.2", "--count", "3",
        "--alert-lag", "1", "--alert-for", "0", "--no-lag-time",
    )  # fmt: skip
    assert code == 0, text
    assert REDRAW not in text and text.count("look ") == 3  # piped: one table after the other
    assert text.count("ALERT fired") == 1 and "monitor (all)" in text


def test_the_aio_twin_sees_what_the_sync_monitor_sees(local_stack: object, eventhub_name: str) -> None:
    _send(eventhub_name, "4", 7)

    async def look() -> pl.DataFrame:
        async with aio.LagMonitor.from_settings(
            eventhub_name=eventhub_name, consumer_groups=["monitor=no-such-container"]
        ) as m:
            return (await m.sample()).frame

    async_frame = asyncio.run(look())
    with LagMonitor.from_settings(eventhub_name=eventhub_name, consumer_groups=["monitor=no-such-container"]) as m:
        sync_frame = m.sample().frame
    columns = ["partition_id", "last_enqueued_sequence_number", "unprocessed"]
    assert async_frame.select(columns).equals(sync_frame.select(columns))
    assert async_frame.filter(pl.col("partition_id") == "4")["unprocessed"].item() >= 7


def test_a_slowed_consumer_falls_behind_then_catches_up(local_stack: object, eventhub_name: str) -> None:
    container = f"slow-{uuid.uuid4().hex[:8]}"
    before = hub.positions(eventhub_name=eventhub_name)
    rate, count = 100.0, 1500  # 15 s of work: looks see it behind however slow they are
    with (
        PacedConsumer.from_settings(
            eventhub_name=eventhub_name,
            consumer_group="monitor",
            checkpoint_container=container,
            rate=rate,
            starting_position=before,
        ) as slow,
        LagMonitor.from_settings(eventhub_name=eventhub_name, consumer_groups={"monitor": container}) as m,
    ):
        slow.start()
        started = time.monotonic()
        recording = m.record(every=0.5)
        _send(eventhub_name, "5", count)
        behind = recording.wait_until(lambda look: look.unprocessed > 0, timeout=120)
        caught_up = recording.wait_until(lambda look: look.unprocessed == 0, timeout=300)
        elapsed = time.monotonic() - started
        frame = recording.stop()
    assert slow.handled == count
    assert elapsed >= count / rate  # the pace held: it cannot have been faster than its rate
    assert behind.sampled_at < caught_up.sampled_at  # type: ignore[operator]
    per_look = frame.group_by("sampled_at").agg(pl.col("unprocessed").sum()).sort("sampled_at")
    assert per_look["unprocessed"].max() > 0 and per_look["unprocessed"][-1] == 0


def test_read_back_waits_on_progress_and_names_what_stalled(local_stack: object, eventhub_name: str) -> None:
    events = simulate.generate(
        scenario.original_registry().head(50), start=simulate.DEFAULT_START, duration="3m", seed=7
    )
    before = hub.positions(eventhub_name=eventhub_name)
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        report = client.send(events, progress=False)
    added = {p: n for p, n in report.per_partition.items() if n}
    # No progress allowed at all: the error names every partition still behind, and how far it got.
    with pytest.raises(HubError, match="stalled") as stalled:
        hub.read(eventhub_name=eventhub_name, since=before, stall_timeout=0)
    for pid, n in added.items():
        assert f"{pid} (read 0 of {n:,})" in str(stalled.value)
    # With the default the read goes on while partitions advance, to every event.
    back = hub.read(eventhub_name=eventhub_name, since=before)
    assert back.height == events.height and dict(back.group_by("partition_id").len().iter_rows()) == added
