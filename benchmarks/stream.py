"""Stream benchmark: the warm job in-process, and the processor end to end against the emulator.

Figures printed, all measured in this process:

1. **In-process** (no I/O), on a simulated stretch of the Fabrikam fleet (100,000 devices, the
   usual faults), against the vectorised batch job over the same events in the same run:

   - the window update path — ``WindowEngine.feed`` on each partition's decoded, registry-joined
     micro-batches, the partial windows merged;
   - the whole warm job — partition batches, dead letters, the registry join, each partition's
     windows merged, the alert rules (``WarmJob.push_all``), committed to a SQLite warm store every
     second as the processor does (rows, progress and the state's changes);

   with a check that both give exactly the batch job's windows. Target: ≥ 50,000 events/s.
2. **End to end** on a private local stack: ``iotlib.ingest`` sends the fleet live at speed 1
   (1,667 events/s) for ``--live-seconds`` while ``StreamProcessor`` reads the consumer group
   ``warm``; ``iotlib.hub.monitor.lag`` samples the unprocessed events (hub end − checkpoint) every
   two seconds. Target: it keeps up — the lag stays bounded (checkpoints follow commits, so a few
   seconds of events is the floor) and the backlog is gone soon after sending stops.

Run under the shared lock (both cores, a few GB)::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/stream.py
    IOTLIB_SCALE=small .venv/bin/python benchmarks/stream.py        # a quick look
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import polars as pl

from iotlib import hub
from iotlib.fleet import scale, scenario, simulate
from iotlib.local import stack
from iotlib.processing import EventTimePolicy, WindowEngine
from iotlib.processing.building import BUILDING
from iotlib.processing.reference import Registry
from iotlib.warm import StreamProcessor, WarmStore, batch_view, default_rules, incoming, live
from iotlib.warm.commit import Position
from iotlib.warm.job import WarmJob
from iotlib.warm.merge import PARTIAL_AGGS, final_windows

FAULTS = ["skew:fraction=0.01,min_skew=10s,max_skew=10m", "offline:fraction=0.01,outage=90s",
          "duplicates:probability=0.001", "malformed:probability=0.001", "spikes:probability=0.001"]  # fmt: skip
# Live: outages short enough that buffered readings go out within the stretch.
LIVE_FAULTS = [f.replace("outage=90s", "outage=10s") for f in FAULTS]
TARGET = 50_000


def _timed(label: str, events: int, fn):
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"  {label:<58} {dt:7.2f} s  {events / dt:>10,.0f} events/s  (cpu {cpu:.1f} s)", flush=True)
    return out, events / dt


def in_process(registry: pl.DataFrame, minutes: float, batch: int) -> bool:
    events = simulate.generate(registry, start=simulate.DEFAULT_START, duration=timedelta(minutes=minutes), seed=1,
                               faults=FAULTS)  # fmt: skip
    frame = incoming.from_simulation(events)
    policy = EventTimePolicy()
    reg = Registry(registry)
    print(f"\n1. In-process: {frame.height:,} events from {registry.height:,} devices over {minutes:g} min, "
          f"micro-batches of {batch}")  # fmt: skip

    view, batch_rate = _timed("batch job (windows_with_policy per partition, merged)", frame.height,
                              lambda: batch_view(frame, reg, policy=policy))  # fmt: skip

    valid = frame.filter(pl.col("error").is_null()).select(incoming.EVENT_COLUMNS)
    matched, _ = reg.enrich(valid, [BUILDING])
    parts = {str(k[0]): f for k, f in matched.partition_by("partition_id", as_dict=True, maintain_order=True).items()}

    def engine_path() -> pl.DataFrame:
        partials, marks = [], []
        for pid, own in parts.items():
            engine = WindowEngine("5s", by=[BUILDING], aggs=PARTIAL_AGGS, policy=policy)
            outs = [engine.feed(own.slice(i, batch)) for i in range(0, own.height, batch)] + [engine.flush()]
            partials += [o.windows.with_columns(pl.lit(pid).alias("partition_id")) for o in outs if o.windows.height]
            marks += [o.watermarks.with_columns(pl.lit(pid).alias("partition_id")) for o in outs if o.watermarks.height]
        return final_windows(pl.concat(partials), pl.concat(marks), list(parts))

    windows, engine_rate = _timed("window update path (WindowEngine.feed per partition, merged)", matched.height,
                                  engine_path)  # fmt: skip
    same_engine = windows.equals(view.result.windows)

    # The consumer's view: each partition's events in batches, partitions taking turns by arrival.
    by_partition = frame.partition_by("partition_id", as_dict=True, maintain_order=True)
    pieces = sorted(
        ((int(f["enqueued_time"][i].timestamp() * 1e6), f.slice(i, batch))
         for f in by_partition.values() for i in range(0, f.height, batch)),
        key=lambda p: p[0],
    )  # fmt: skip
    store_path = Path(tempfile.mkdtemp(prefix="iotlib-bench-stream-")) / "warm.sqlite"

    def job_path():
        job = WarmJob(reg, policy=policy, rules=default_rules())
        store = WarmStore(store_path, writer=True)
        store.configure(job.settings(), partitions=[str(k[0]) for k in by_partition])
        for k in by_partition:
            store.claim(str(k[0]), "bench")
            job.claim(str(k[0]), None, start=Position(-1, "-1"))
        costs, due, pending = [], time.perf_counter() + 1.0, []
        for _, piece in pieces:
            pending.append(piece)
            if len(pending) >= len(by_partition):  # a step: what every partition delivered meanwhile
                job.push_all(pl.concat(pending))
                pending = []
            if time.perf_counter() >= due:  # the processor's commit rhythm
                t0 = time.perf_counter()
                store.commit(job.take(owner="bench"))
                costs.append(time.perf_counter() - t0)
                due = time.perf_counter() + 1.0
        if pending:
            job.push_all(pl.concat(pending))
        job.finish()
        store.commit(job.take(owner="bench"))
        history = store.history()
        store.close()
        return history, costs

    (history, costs), job_rate = _timed("warm job (dead letters, join, windows, alerts, commits to SQLite)",
                                        frame.height, job_path)  # fmt: skip
    same_job = history.select(view.result.windows.columns).equals(view.result.windows)
    print(f"  engine == batch: {same_engine}; warm job == batch: {same_job}; "
          f"{len(costs)} commits, {1000 * statistics.mean(costs or [0]):.0f} ms mean, {1000 * max(costs or [0]):.0f} ms max")  # fmt: skip
    ok = same_engine and same_job and engine_rate >= TARGET and job_rate >= TARGET
    print(f"  window update path {engine_rate / batch_rate:.2f}x, warm job {job_rate / batch_rate:.2f}x the batch job's rate; "
          f"target ≥ {TARGET:,} events/s: {'MET' if ok else 'NOT MET'}")  # fmt: skip
    return ok


def end_to_end(registry: pl.DataFrame, seconds: int) -> bool:
    home = Path(tempfile.mkdtemp(prefix="iotlib-bench-stream-"))
    st = stack.up(home=home / "stack", blob_port=0, eventhub_port=0)
    os.environ.update(st.environ())
    try:
        rate = registry.height / 60
        print(f"\n2. End to end: {registry.height:,} devices live at speed 1 (~{rate:,.0f} events/s) for {seconds} s")
        events = simulate.generate(registry, start=simulate.DEFAULT_START, duration=timedelta(seconds=seconds), seed=2,
                                   faults=LIVE_FAULTS)  # fmt: skip
        before = hub.positions()
        processor = StreamProcessor.from_settings(registry=registry, warm_store=home / "warm.sqlite",
                                                  checkpoint_container=f"warm-{uuid.uuid4().hex[:8]}",
                                                  starting_position=before)  # fmt: skip
        run = live.run_alongside(processor, events, speed=1.0, start_now=True, settle=0.0, timeout=seconds + 300)
        sent, report = run.sent, run.report
        with WarmStore(home / "warm.sqlite") as store:
            commits = store.commits()
        during = run.lag.filter(pl.col("seconds") <= sent.elapsed_seconds)["unprocessed"].to_list()
        half = len(during) // 2
        first, second = (
            (statistics.mean(during[:half]) if half else 0),
            (statistics.mean(during[half:]) if during else 0),
        )
        caught_up = run.caught_up_seconds
        print(
            f"  ingest: {sent.events_sent:,} events in {sent.elapsed_seconds:.1f} s, max send lag {sent.max_lag_seconds:.2f} s"
        )
        print(f"  processor: {report.received:,} events, {report.windows:,} windows in {report.commits} commits; "
              f"all read {caught_up:.1f} s after sending stopped")  # fmt: skip
        print(f"  checkpoint lag while sending (monitor.lag, unprocessed events): max {max(during, default=0):,}, "
              f"mean {statistics.mean(during) if during else 0:,.0f} (first half {first:,.0f}, second half {second:,.0f}) "
              f"= {max(during, default=0) / rate:.1f} s of events at most")  # fmt: skip
        took = commits["seconds"].drop_nulls()
        print(f"  commits: {took.mean():.2f} s mean, {took.max():.2f} s max; state written up to "
              f"{commits['state_bytes'].max() / 1e6:.1f} MB per commit")  # fmt: skip
        keeps_up = caught_up < 10 and max(during, default=0) < 20 * rate and second <= max(first * 1.5, 5 * rate)
        print(f"  keeps up with the Fabrikam rate: {'YES' if keeps_up else 'NO'}")
        return keeps_up
    finally:
        st.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=scale.pick(full=100_000, small=10_000))
    ap.add_argument("--minutes", type=float, default=scale.pick(full=3, small=2), help="in-process stretch")
    ap.add_argument("--batch", type=int, default=500, help="events per micro-batch (a received batch)")
    ap.add_argument("--live-seconds", type=int, default=scale.pick(full=60, small=20), help="end-to-end stretch")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    registry = scenario.default_registry().head(args.devices) if args.devices < 100_000 else scenario.default_registry()
    ok = in_process(registry, args.minutes, args.batch)
    if not args.skip_e2e:
        ok = end_to_end(registry, args.live_seconds) and ok
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
