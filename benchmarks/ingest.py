"""Ingestion throughput on the local stack (emulator on this machine), through the real client.

Prints events/s for iotlib's replay mode against a baseline measured in the
same run: the bare SDK sending the same bodies in pre-built full batches (the
client's own ceiling). Then checks live mode holds the Fabrikam rate
(100,000 devices, ~1,667 events/s) without falling behind.

    python benchmarks/ingest.py [--events 100000] [--live-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import timedelta

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from iotlib.fleet import events as ev
from iotlib.fleet import scenario, simulate
from iotlib.ingest import IngestClient
from iotlib.ingest.partitioning import partition_for_key
from iotlib.local import stack


async def _baseline(conn: str, hub: str, frame) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The bare SDK with the same bodies, keys and partitions: (build+send, send-only) events/s."""
    bodies = ev.encode_frame(frame).to_list()
    keys = frame["device_id"].cast(str).to_list()
    async with EventHubProducerClient.from_connection_string(conn, eventhub_name=hub) as producer:
        ids = await producer.get_partition_ids()
        per: dict[str, list[EventData]] = {pid: [] for pid in ids}
        for body, key in zip(bodies, keys):
            e = EventData(body)
            e.properties = ev.properties(key)
            e.raw_amqp_message.annotations = {b"x-opt-partition-key": key}
            per[partition_for_key(key, ids)].append(e)
        for pid in ids:  # open every link before timing
            b = await producer.create_batch(partition_id=pid)
            b.add(EventData(b"warm-up"))
            await producer.send_batch(b)
        built = time.perf_counter()
        batches = []
        for pid, items in per.items():
            batch = await producer.create_batch(partition_id=pid)
            for e in items:
                try:
                    batch.add(e)
                except ValueError:
                    batches.append(batch)
                    batch = await producer.create_batch(partition_id=pid)
                    batch.add(e)
            batches.append(batch)
        began = time.perf_counter()
        await asyncio.gather(*(producer.send_batch(b) for b in batches))
        done = time.perf_counter()
        return len(bodies) / (done - built), len(bodies) / (done - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--live-seconds", type=int, default=20)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="iotlib-bench-ingest-")
    st = stack.up(home=home, blob_port=0, eventhub_port=0)
    os.environ.update(st.environ())
    s = st.settings()
    try:
        registry = scenario.default_registry()
        minutes = max(1, round(args.events / registry.height))
        frame = simulate.generate(registry, start=simulate.DEFAULT_START, duration=timedelta(minutes=minutes), seed=1)
        frame = frame.head(args.events)
        print(f"{frame.height:,} events, {frame['device_id'].n_unique():,} devices")

        base, ceiling = asyncio.run(_baseline(s.eventhub_connection_string, s.eventhub_name, frame))
        print(f"ceiling   bare SDK, sending pre-built full batches: {ceiling:>9,.0f} events/s")
        print(f"baseline  bare SDK, building + sending full batches: {base:>9,.0f} events/s")

        with IngestClient.from_settings() as client:
            client.send(frame.head(1_000), progress=False)  # open links
            began = time.perf_counter()
            report = client.send(frame, progress=False)
            rate = report.events_sent / (time.perf_counter() - began)
        print(
            f"iotlib    replay (encode, route, build, send):      {rate:>9,.0f} events/s "
            f"= {rate / base:.2f}x the bare SDK; {report.batches_sent} batches, {report.retries} retries"
        )

        live = simulate.generate(
            registry,
            start=simulate.DEFAULT_START + timedelta(hours=2),
            duration=timedelta(seconds=args.live_seconds),
            seed=2,
        )
        with IngestClient.from_settings() as client:
            report = client.send(live, mode="live", speed=1.0, progress=False)
        want = live.height / args.live_seconds
        print(
            f"live x1   Fabrikam rate: {want:,.0f} events/s due, sent {report.events_sent:,} in "
            f"{report.elapsed_seconds:,.1f}s; max lag {report.max_lag_seconds:.2f}s "
            f"({'keeps up' if report.max_lag_seconds < 1.0 else 'FALLS BEHIND'})"
        )
    finally:
        st.down()


if __name__ == "__main__":
    main()
