"""Capture throughput on the local stack (emulator + Azurite on this machine), through the real clients.

Baselines measured in the same run, on the same events and the same consumer settings:

1. **receive only** — the aio consumer with load balancing, a callback that counts (the client's ceiling);
2. **receive + encode** — the same plus building every Capture record (what the format costs);
3. **capture** — ``CaptureWriter``: records into Avro frames, staged as blob blocks, committed per
   window, checkpointed after each commit. Twice: Azure's default windows (300 s, 300 MB) and 5-s
   windows (a commit and a checkpoint per partition every 5 s of enqueued time).

Then **live**: 100,000 devices sent at the Fabrikam rate (~1,667 events/s) while capture runs; the
largest delay between an event's enqueue and its arrival in capture, and how soon after the last
send everything is received.

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/capture.py [--events 100000] [--live-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from datetime import timedelta

from azure.eventhub.aio import EventHubConsumerClient

from iotlib.capture import CaptureWriter
from iotlib.capture.records import RecordEncoder
from iotlib.fleet import scenario, simulate
from iotlib.ingest import IngestClient
from iotlib.local import stack

FABRIKAM_RATE = 100_000 / 60


async def _receive(conn: str, hub: str, total: int, *, encode: bool, prefetch: int, batch: int) -> tuple[float, float]:
    """Receive ``total`` events from the start with the consumer capture uses; (events/s after the first, wall s)."""
    encoder = RecordEncoder()
    seen = 0
    first: float | None = None
    done = asyncio.Event()
    client = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default", eventhub_name=hub,
                                                           load_balancing_interval=1)  # fmt: skip

    async def on_batch(ctx: object, events: list) -> None:  # type: ignore[type-arg]
        nonlocal seen, first
        if events and first is None:
            first = time.perf_counter()
        if encode:
            for e in events:
                encoder.encode(e)
        seen += len(events)
        if seen >= total:
            done.set()

    began = time.perf_counter()
    task = asyncio.ensure_future(client.receive_batch(on_batch, starting_position="-1", max_batch_size=batch,
                                                      prefetch=prefetch, max_wait_time=1))  # fmt: skip
    await asyncio.wait_for(done.wait(), 600)
    ended = time.perf_counter()
    await client.close()
    task.cancel()
    assert first is not None
    return total / (ended - first), ended - began


def _capture(conn: str, storage: str, hub: str, **options: object) -> tuple[float, float, object]:
    tag = uuid.uuid4().hex[:8]
    began = time.perf_counter()
    with CaptureWriter.from_connection_string(conn, storage, eventhub_name=hub, container=f"bench-{tag}",
                                              checkpoint_container=f"bench-ckpt-{tag}", load_balancing_interval=2,
                                              **options) as writer:  # fmt: skip
        report = writer.run(once=True)
    return report.events_per_second(), time.perf_counter() - began, report


def _live(conn: str, storage: str, hub: str, seconds: int) -> None:
    registry = scenario.default_registry()
    start = simulate.DEFAULT_START + timedelta(hours=1)
    frame = simulate.generate(registry, start=start, duration=timedelta(seconds=60 + seconds), seed=2)
    frame = frame.filter(frame["sent_at"] >= start + timedelta(seconds=60))  # past the firmware's warm-up minute
    tag = uuid.uuid4().hex[:8]
    writer = CaptureWriter.from_connection_string(
        conn, storage, eventhub_name=hub, container=f"bench-live-{tag}", checkpoint_container=f"bench-ckpt-{tag}",
        time_window=10, grace=2, starting_position="latest", load_balancing_interval=2,
    )  # fmt: skip
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(report=writer.run()))
    runner.start()
    while writer.report is None or len(writer.report.partitions) < 8:  # every partition claimed
        time.sleep(0.2)
    time.sleep(1)
    sent: dict = {}

    def ingest() -> None:
        with IngestClient.from_connection_string(conn, eventhub_name=hub) as client:
            sent["report"] = client.send(frame, mode="live", speed=1.0, progress=False)

    sender = threading.Thread(target=ingest)
    t0 = time.perf_counter()
    sender.start()
    sender.join()
    sent_at_end = time.perf_counter()
    total = sent["report"].events_sent
    while writer.report.events < total and time.perf_counter() - sent_at_end < 60:  # type: ignore[union-attr]
        time.sleep(0.05)
    caught_up = time.perf_counter() - sent_at_end
    writer.stop()
    runner.join()
    report = result["report"]
    lag = max(p.max_lag for p in report.partitions.values())
    rate = total / (sent_at_end - t0)
    print(f"live at the Fabrikam rate: {total:,} events sent at {rate:,.0f}/s over {sent_at_end - t0:.0f} s "
          f"(sender lag at the end {sent['report'].max_lag_seconds:.1f} s)")  # fmt: skip
    print(f"  capture received everything {caught_up:.2f} s after the last send; largest delay from an event's "
          f"enqueued time to its arrival in capture: {lag:.2f} s")  # fmt: skip
    print(f"  stored {report.events:,} events in {len(report.files)} files (10-s windows), "
          f"breaker trips: {sum(b.state == 'tripped' for b in report.breaker)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--live-seconds", type=int, default=30, help="seconds of live traffic at the Fabrikam rate")
    parser.add_argument("--prefetch", type=int, default=1000)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="iotlib-bench-capture-")
    st = stack.up(home=home, blob_port=0, eventhub_port=0)
    s = st.settings()
    conn, storage, hub = s.eventhub_connection_string, s.storage_connection_string, s.eventhub_name
    try:
        registry = scenario.default_registry()
        frame = simulate.generate(registry, start=simulate.DEFAULT_START, duration=timedelta(minutes=2), seed=1)
        frame = frame.head(args.events)
        with IngestClient.from_connection_string(conn, eventhub_name=hub) as client:
            sent = client.send(frame, progress=False)
        n = sent.events_sent
        print(f"{n:,} events in the hub ({sent.bytes_sent / n:.0f} bytes each, sent in {sent.elapsed_seconds:.1f} s)")

        recv, recv_wall = asyncio.run(_receive(conn, hub, n, encode=False, prefetch=args.prefetch, batch=300))
        enc, enc_wall = asyncio.run(_receive(conn, hub, n, encode=True, prefetch=args.prefetch, batch=300))
        cap, cap_wall, report = _capture(conn, storage, hub, prefetch=args.prefetch)
        cap1, cap1_wall, report1 = _capture(conn, storage, hub, prefetch=args.prefetch, time_window=1)
        print(f"{'':38} {'events/s':>10} {'wall s':>8} {'x Fabrikam':>11}")
        for label, rate, wall in (
            ("receive only (baseline)", recv, recv_wall),
            ("receive + encode records", enc, enc_wall),
            (f"capture, 300 s windows ({len(report.files)} files)", cap, cap_wall),  # type: ignore[attr-defined]
            (f"capture, 1 s windows ({len(report1.files)} files)", cap1, cap1_wall),  # type: ignore[attr-defined]
        ):
            print(f"{label:38} {rate:10,.0f} {wall:8.1f} {rate / FABRIKAM_RATE:10.1f}x")
        print(f"capture / receive-only: {cap / recv:.2f} (300 s windows), {cap1 / recv:.2f} (1 s windows)")
        _live(conn, storage, hub, args.live_seconds)
    finally:
        st.down()


if __name__ == "__main__":
    main()
