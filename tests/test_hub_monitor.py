"""The lag monitor against a real consumer that checkpoints in Azurite."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid

import polars as pl
import pytest
from azure.eventhub import EventHubConsumerClient
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.storage.blob import BlobServiceClient

import iotlib
from iotlib import hub
from iotlib.errors import HubError
from iotlib.fleet import scenario, simulate
from iotlib.hub import monitor
from iotlib.ingest import IngestClient


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
    assert f"{ends['0'] - 9}" in out.stdout and "warm" in out.stdout
    assert isinstance(after, pl.DataFrame)


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
