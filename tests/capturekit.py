"""Helpers for the capture tests: a private hub, sending simulated events, reading back what was captured.

Events go through the real ``EventHubProducerClient`` (partition key = device id, application
properties from :func:`iotlib.fleet.events.properties`, body from :func:`iotlib.fleet.events.encode_frame`),
to a private emulator over TCP, so counts are exact (nobody else sends to it).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.storage.blob import BlobServiceClient
from children import spawn

from iotlib import coldstore
from iotlib.fleet import events, scenario, simulate
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig

HUB = "telemetry"


@contextlib.contextmanager
def private_hub(partitions: int = 4) -> Iterator[Emulator]:
    """An emulator of our own (a thread, plain TCP) with one hub and the ``capture`` consumer group."""
    config = EmulatorConfig(entities=(EntityConfig(HUB, partitions, ("$Default", "capture")),))
    emu = Emulator.start(config=config, mode="thread", port=0)
    try:
        yield emu
    finally:
        emu.stop()


def simulated(n: int, *, seed: int = 0, devices: int = 200) -> pl.DataFrame:
    """``n`` simulated thermostat events with their JSON bodies (column ``body``)."""
    registry = scenario.original_registry().head(devices)
    df = simulate.generate(registry, start=None, duration="2h", seed=seed)
    df = df.head(n)
    assert df.height == n, f"the simulation gave only {df.height} events"
    return df.with_columns(events.encode_frame(df).alias("body"))


def send(
    conn: str,
    frame: pl.DataFrame,
    *,
    rate: float | None = None,
    hub: str = HUB,
    until: threading.Event | None = None,
) -> int:
    """Send the frame's events, each with its device id as partition key; paced at ``rate`` events/s if given.

    With ``until``, keep sending (the frame again from its start when it runs out: new events to the
    hub) until that event is set, so that a test waiting on progress never runs out of traffic.
    """
    sent = 0
    t0 = time.monotonic()
    with EventHubProducerClient.from_connection_string(conn, eventhub_name=hub) as producer:
        chunk = 50 if rate else 500
        starts = range(0, frame.height, chunk)
        while True:
            for lo in starts:
                if until is not None and until.is_set():
                    return sent
                sent += _send_chunk(producer, frame.slice(lo, chunk))
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            if until is None:
                return sent


def _send_chunk(producer: EventHubProducerClient, part: pl.DataFrame) -> int:
    sent = 0
    by_device: dict[str, list[str]] = {}
    for dev, body in zip(part["device_id"].cast(pl.String).to_list(), part["body"].to_list()):
        by_device.setdefault(dev, []).append(body)
    for dev, bodies in by_device.items():
        batch = producer.create_batch(partition_key=dev)
        for body in bodies:
            ev = EventData(body)
            ev.properties = events.properties(dev)
            batch.add(ev)
        producer.send_batch(batch)
        sent += len(bodies)
    return sent


def hub_ids(conn: str, hub: str = HUB) -> set[tuple[str, int]]:
    """Every (partition, sequence number) the hub holds now."""
    out = set()
    with EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default", eventhub_name=hub) as c:
        for pid in c.get_partition_ids():
            props = c.get_partition_properties(pid)
            if not props["is_empty"]:
                out |= {
                    (pid, s)
                    for s in range(props["beginning_sequence_number"], props["last_enqueued_sequence_number"] + 1)
                }
    return out


def captured(storage: str, container: str, **options: object) -> tuple[set[tuple[str, int]], int, pl.DataFrame]:
    """(partition, sequence number) in the container, the number of duplicate copies, the raw frame."""
    df = coldstore.load(storage, container=container, dedupe=False, decode=None, **options)
    keys = list(zip(df["partition_id"].to_list(), df["sequence_number"].to_list()))
    counts = Counter(keys)
    return set(counts), sum(c - 1 for c in counts.values()), df


def blobs(storage: str, container: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """name -> (bytes, metadata) of every blob in the container."""
    cc = BlobServiceClient.from_connection_string(storage).get_container_client(container)
    return {b.name: (cc.download_blob(b.name).readall(), b.metadata) for b in cc.list_blobs(include=["metadata"])}


def checkpoints(storage: str, container: str) -> dict[str, int]:
    """partition -> checkpointed sequence number, read straight from the checkpoint blobs."""
    cc = BlobServiceClient.from_connection_string(storage).get_container_client(container)
    out = {}
    for b in cc.list_blobs(include=["metadata"]):
        if "/checkpoint/" in b.name and b.metadata.get("sequencenumber"):
            out[b.name.rsplit("/", 1)[1]] = int(b.metadata["sequencenumber"])
    return out


def capture_process(
    eventhub_conn: str, storage_conn: str, *args: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``iotlib capture ARGS`` as a child process pointed at the given hub and storage."""
    environ = {**os.environ, "IOTLIB_EVENTHUB_CONNECTION_STRING": eventhub_conn,
               "IOTLIB_STORAGE_CONNECTION_STRING": storage_conn, "IOTLIB_EVENTHUB_NAME": HUB, **(env or {})}  # fmt: skip
    proc = spawn([sys.executable, "-m", "iotlib", "capture", "-v", *args], log, env=environ)
    CHILDREN.append(proc)
    return proc


CHILDREN: list[subprocess.Popen[bytes]] = []  # every capture process started, for reap_children


@contextlib.contextmanager
def reap_children() -> Iterator[None]:
    """Kill the capture processes started meanwhile that are still running (a failed test leaves none)."""
    first = len(CHILDREN)
    try:
        yield
    finally:
        for proc in CHILDREN[first:]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        del CHILDREN[first:]


class CheckpointWatch:
    """Samples, in a thread, each checkpoint and then the committed blobs: every event up to a checkpoint
    must already be in a committed blob (blobs only grow, so listing after reading is conservative).

    ``violations`` collects (partition, checkpoint, first missing sequence number); the hub must start at 0.
    """

    def __init__(self, storage: str, container: str, checkpoint_container: str, every: float = 0.25) -> None:
        import threading

        self.storage, self.container, self.checkpoint_container, self.every = (
            storage,
            container,
            checkpoint_container,
            every,
        )
        self.violations: list[tuple[str, int, int]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                ckpt = checkpoints(self.storage, self.checkpoint_container)
                cc = BlobServiceClient.from_connection_string(self.storage).get_container_client(self.container)
                ranges: dict[str, list[tuple[int, int]]] = {}
                for b in cc.list_blobs(include=["metadata"]):
                    m = {k.lower(): v for k, v in (b.metadata or {}).items()}
                    if int(m.get("eventcount", 0)) > 0:
                        ranges.setdefault(m["partitionid"], []).append(
                            (int(m["firstsequencenumber"]), int(m["lastsequencenumber"]))
                        )
            except Exception:  # noqa: BLE001 - storage may be down on purpose
                continue
            self.samples += 1
            for pid, c in ckpt.items():
                covered = set()
                for lo, hi in ranges.get(pid, []):
                    covered.update(range(lo, hi + 1))
                missing = next((s for s in range(c + 1) if s not in covered), None)
                if missing is not None:
                    self.violations.append((pid, c, missing))


def files_log(path: Path) -> list[dict]:
    """The CaptureFileCreated lines ``iotlib capture --events-out`` wrote (none if it never wrote).

    A writer killed with SIGKILL may leave its last line cut short: that line is not a file yet.
    """
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                raise
    return rows


def log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def writer_up(log: Path, since: int) -> bool:
    """Has an ``iotlib capture`` process logging to ``log`` past byte ``since`` printed its banner? It does
    once its signal handlers are in place (a SIGTERM before that kills it like any Python program)."""
    return log.exists() and b" -> container " in log.read_bytes()[since:]


def final_files(rows: list[dict]) -> list[dict]:
    """The last commit of each blob (an extended file is committed again with its new totals)."""
    return list({r["name"]: r for r in rows}.values())


def stored_events(storage: str, container: str) -> int:
    """Events in the committed blobs of a container, by their metadata (what storage holds, even where a
    killed writer committed a blob but died before logging it)."""
    cc = BlobServiceClient.from_connection_string(storage).get_container_client(container)
    if not cc.exists():
        return 0
    total = 0
    for b in cc.list_blobs(include=["metadata"]):
        meta = {k.lower(): v for k, v in (b.metadata or {}).items()}
        total += int(meta.get("eventcount", 0))
    return total
