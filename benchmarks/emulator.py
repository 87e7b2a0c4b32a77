"""Throughput of the local Event Hubs emulator through the real azure-eventhub client.

Sends N ~100-byte JSON thermostat readings with partition keys (device ids) in
full batches, then reads them all back with one consumer, and reports:

* send and receive events/s (the client is usually the bottleneck),
* the emulator's own CPU seconds (it runs as a subprocess; read from /proc),
  and events per emulator CPU-second (target: >= 30,000),
* a baseline from the same run: the client's own cost of building the same
  batches without sending them, and the ratio of send time to it,
* durability: the same sends against an emulator that fsyncs (group commit:
  one ``fdatasync`` per partition written per read of the connection, before
  ``accepted``) and one that does not, in full batches and in batches of 100
  events, and what the fsync costs in send throughput.

Run it alone on the machine: ``flock /tmp/iotlib-bench.lock python benchmarks/emulator.py``
(``--events 1000000`` for the full-scale figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.eventhub import EventData, EventHubProducerClient  # noqa: E402
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer  # noqa: E402

from iotlib.local.emulator import Emulator, EmulatorConfig  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def readings(n: int, devices: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = []
    base = 1_700_000_000.0
    for i in range(n):
        device = f"device-{rng.randrange(devices):06d}"
        body = json.dumps(
            {
                "DeviceId": device,
                "TimeObserved": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i)) + ".000Z",
                "Temperature": round(rng.uniform(0, 30), 2),
                "EventType": "UpdateTemperatureEvent",
            }
        ).encode()
        out.append((device, body))
    return out


def build_batches(producer: EventHubProducerClient, events: list[tuple[str, bytes]], limit: int = 0) -> list:
    """Full batches (or of at most ``limit`` events), one partition key each (events grouped by device)."""
    by_device: dict[str, list[bytes]] = {}
    for device, body in events:
        by_device.setdefault(device, []).append(body)
    batches = []
    for device, bodies in by_device.items():
        batch = producer.create_batch(partition_key=device)
        for body in bodies:
            try:
                if limit and len(batch) >= limit:
                    raise ValueError("batch holds its limit")
                batch.add(EventData(body))
            except ValueError:
                batches.append(batch)
                batch = producer.create_batch(partition_key=device)
                batch.add(EventData(body))
        batches.append(batch)
    return batches


def timed_send(producer: EventHubProducerClient, events: list[tuple[str, bytes]], limit: int = 0) -> float:
    """Seconds to build and send ``events`` (one batch at a time, each acknowledged before the next)."""
    t0 = time.perf_counter()
    for batch in build_batches(producer, events, limit):
        producer.send_batch(batch)
    return time.perf_counter() - t0


def durability_costs(events: list[tuple[str, bytes]], small: int) -> dict[bool, tuple[float, float]]:
    """Send rates (full batches, batches of ``small``) without and with fsync, each on a fresh emulator."""
    rates: dict[bool, tuple[float, float]] = {}
    subset = events[: max(len(events) // 5, small)]  # small batches take longer: a fifth of the events
    state = ROOT / ".iotlib"
    state.mkdir(exist_ok=True)
    for fsync in (False, True):
        with (
            tempfile.TemporaryDirectory(prefix="bench-", dir=state) as tmp,  # the project's disk, never a tmpfs
            Emulator.start(data_dir=tmp, port=0, mode="process", config=EmulatorConfig(fsync=fsync)) as emu,
            EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name="telemetry") as prod,
        ):
            prod.get_eventhub_properties()  # connect before timing
            full = len(events) / timed_send(prod, events)
            little = len(subset) / timed_send(prod, subset, small)
        rates[fsync] = (full, little)
    return rates


async def receive_all(connection_string: str, expected: int) -> int:
    """Read every partition from the start with one aio consumer (partitions run concurrently)."""
    received = 0
    done = asyncio.Event()
    consumer = AsyncConsumer.from_connection_string(
        connection_string, consumer_group="$Default", eventhub_name="telemetry"
    )

    async def on_batch(_ctx, batch) -> None:
        nonlocal received
        received += len(batch)
        if received >= expected:
            done.set()

    async with consumer:
        task = asyncio.create_task(
            consumer.receive_batch(on_batch, starting_position="-1", max_batch_size=300, prefetch=1000)
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=600)
        finally:
            await consumer.close()
            task.cancel()
    return received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=16, help="distinct partition keys (default 16: full batches)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--small-batch", type=int, default=100, help="events per batch of the small-batch sends")
    args = parser.parse_args()

    events = readings(args.events, args.devices, args.seed)
    avg = sum(len(b) for _, b in events) / len(events)
    print(f"{args.events:,} events of ~{avg:.0f} bytes, {args.devices} partition keys")

    with (
        tempfile.TemporaryDirectory(prefix="iotlib-bench-") as tmp,
        Emulator.start(data_dir=tmp, port=0, mode="process") as emu,
    ):
        pid = emu.pid
        producer = EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name="telemetry")
        with producer:
            producer.get_eventhub_properties()  # connect before timing

            t0 = time.perf_counter()
            baseline = build_batches(producer, events)
            build_s = time.perf_counter() - t0
            del baseline

            cpu0 = cpu_seconds(pid)
            t0 = time.perf_counter()
            batches = build_batches(producer, events)
            for batch in batches:
                producer.send_batch(batch)
            send_s = time.perf_counter() - t0
            send_cpu = cpu_seconds(pid) - cpu0
        print(f"send:    {args.events / send_s:10,.0f} events/s  ({len(batches)} batches, {send_s:.2f} s)")
        print(
            f"  baseline (client builds the same batches, no send): {args.events / build_s:10,.0f} events/s"
            f"  -> send takes {send_s / build_s:.2f}x the client's own batch building"
        )

        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        received = asyncio.run(receive_all(emu.connection_string, args.events))
        recv_s = time.perf_counter() - t0
        recv_cpu = cpu_seconds(pid) - cpu0
        print(f"receive: {received / recv_s:10,.0f} events/s  ({received:,} events, {recv_s:.2f} s)")

        total_cpu = send_cpu + recv_cpu
        print(f"emulator CPU: send {send_cpu:.2f} s, receive {recv_cpu:.2f} s, total {total_cpu:.2f} s")
        per_cpu = args.events / total_cpu if total_cpu else float("inf")
        print(
            f"emulator capacity: {per_cpu:,.0f} events per CPU-second (each event in and out; target 30,000)"
            f" -> {per_cpu / 30000:.2f}x target"
        )
        print(
            f"  in:  {args.events / send_cpu if send_cpu else float('inf'):,.0f} events/CPU-s;"
            f"  out: {received / recv_cpu if recv_cpu else float('inf'):,.0f} events/CPU-s"
        )
    rates = durability_costs(events, args.small_batch)
    (plain_full, plain_small), (synced_full, synced_small) = rates[False], rates[True]
    cost_full = 1 - synced_full / plain_full
    cost_small = 1 - synced_small / plain_small
    print("durability (group commit: fdatasync before accepted), send events/s, fresh emulator each:")
    print(f"  full batches:       no fsync {plain_full:10,.0f}   fsync {synced_full:10,.0f}   cost {cost_full:6.1%}")
    print(
        f"  {args.small_batch}-event batches: no fsync {plain_small:10,.0f}   fsync {synced_small:10,.0f}"
        f"   cost {cost_small:6.1%}"
    )
    verdict = "within" if cost_full <= 0.20 else "over"
    print(f"  -> fsync costs {cost_full:.1%} of full-batch send throughput ({verdict} the 20 % budget)")
    return 0 if received >= args.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
