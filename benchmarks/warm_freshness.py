"""Warm-path freshness: how soon a building window lands in the warm store while the fleet sends live.

Each scenario runs on a private local stack: the simulated fleet is sent live from a child process
(paced by its send times, starting now, as real devices would), while ``StreamProcessor`` reads
consumer group ``warm`` in this process with the default event-time policy and options, and
``iotlib.hub.monitor.lag`` is sampled every two seconds. Printed per scenario:

- **freshness** of each building window, p50/p99: when its row landed in the warm store
  (``stored_at``) minus the window's end (the emulator runs on this machine, so the hub's clock is
  this clock), split into
  - the **policy wait** (``closed_at − window_end``): what the event-time policy itself imposes — the
    late-arrival tolerance (5 s), the out-of-order tolerance (0 s), the watermark tick (1 s) and how
    far each partition's newest reading trails the hub — until the last partition's watermark passed;
  - the **processing delay** (``stored_at − closed_at``): everything beyond that — receiving,
    windowing, waiting for the next commit, the commit itself;
- the **lag**: events the hub holds past the consumer group's checkpoints, largest and over time;
- **commits** per second, p99 commit time, and state bytes written per commit.

Scenarios, all 100,000 devices with the default policy: **×1** (a reading a minute, 1,667 events/s)
with today's commits, which write only what changed (state changelogs); the same with the
**baseline** — every commit also writes the whole job pickled, as iotlib did before changelogs
(``WarmRun.full_snapshots``); **×3** (a reading every 20 s, 5,000 events/s). Windows that end in
the first ``--warmup`` seconds (the processor claiming partitions, connections opening) are left out.

Goals on this machine: ×1 p99 processing delay ≤ 3 s and lag never above 10,000 events over
10 minutes; ×3 sustained with p99 processing delay ≤ 6 s.

Run under the shared lock (both cores, a few GB)::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/warm_freshness.py
    IOTLIB_SCALE=small .venv/bin/python benchmarks/warm_freshness.py     # a quick look
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from iotlib import hub
from iotlib.fleet import scale, scenario, simulate
from iotlib.hub import monitor
from iotlib.local import stack
from iotlib.warm import StreamProcessor, WarmStore
from iotlib.warm.run import WarmRun

FAULTS = ["skew:fraction=0.01,min_skew=10s,max_skew=2m", "offline:fraction=0.005,outage=60s",
          "duplicates:probability=0.001", "malformed:probability=0.001", "spikes:probability=0.001"]  # fmt: skip


@dataclass
class Scenario:
    name: str
    period: str  # one reading per device per period
    seconds: int
    baseline: bool = False
    goal_delay: float = 3.0  # p99 processing delay, seconds
    goal_lag: int | None = 10_000


def _send(path: str, out: str) -> None:
    """Child process: send the stretch in ``path`` live, starting now; write the report's figures to ``out``."""
    from iotlib.ingest import IngestClient

    events = pl.read_parquet(path)
    shift = datetime.now(UTC) - events["sent_at"].min()  # type: ignore[operator]
    events = events.with_columns(pl.col("time_observed", "sent_at") + shift)
    with IngestClient.from_settings() as client:
        sent = client.send(events, mode="live", speed=1.0, send_malformed=True, progress=False)
    Path(out).write_text(f"{sent.events_sent} {sent.elapsed_seconds} {sent.max_lag_seconds}")


def _cpu(pid: int) -> float:
    """CPU seconds a process (and its waited-for children) has used, from /proc (NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _pct(values: pl.Series, q: float) -> float:
    return float(values.quantile(q, interpolation="linear") or 0.0) if values.len() else float("nan")


def run(sc: Scenario, registry: pl.DataFrame, home: Path, warmup: float, emulator_pid: int) -> dict[str, float]:
    """One scenario on the running stack; prints and returns its figures."""
    events = simulate.generate(registry, start=simulate.DEFAULT_START, duration=f"{sc.seconds}s", period=sc.period,
                               seed=7, faults=FAULTS)  # fmt: skip
    path = home / f"{sc.name}.parquet"
    events.write_parquet(path)
    per_second = events.height / sc.seconds
    del events
    print(f"\n{sc.name}: {registry.height:,} devices, a reading every {sc.period} (~{per_second:,.0f} events/s) for "
          f"{sc.seconds} s; commits {'with the whole job pickled (baseline)' if sc.baseline else 'as changelogs'}",
          flush=True)  # fmt: skip
    WarmRun.full_snapshots = sc.baseline
    store_path = home / f"{sc.name}.sqlite"
    opts = dict(registry=registry, warm_store=store_path, checkpoint_container=f"warm-{uuid.uuid4().hex[:8]}",
                starting_position=hub.positions())  # fmt: skip
    processor = StreamProcessor.from_settings(**opts)  # type: ignore[arg-type]
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(report=processor.run()), daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while processor.report is None or len(processor.report.partitions) < 8:  # every partition claimed
        assert worker.is_alive() and time.monotonic() < deadline, "the processor did not claim its partitions"
        time.sleep(0.05)
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    began = time.monotonic()

    def sample() -> None:
        o = processor.options
        while not done.is_set():
            try:
                lag = monitor.lag({o.consumer_group: o.checkpoint_container}, eventhub_name=o.eventhub_name)
                samples.append((time.monotonic() - began, int(lag["unprocessed"].sum())))
            except Exception:  # noqa: BLE001 - a missed sample
                pass
            done.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    figures = home / f"{sc.name}.sent"
    cpu0 = (time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN), _cpu(emulator_pid))
    sender = mp.get_context("spawn").Process(target=_send, args=(str(path), str(figures)))
    sender.start()
    sender.join()
    sent_events, sent_seconds, send_lag = figures.read_text().split()
    sending = time.monotonic() - began
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sender_cpu = children.ru_utime + children.ru_stime - cpu0[1].ru_utime - cpu0[1].ru_stime
    while processor.report.received < int(sent_events) and worker.is_alive():
        time.sleep(0.05)
    caught_up = time.monotonic() - began - sending
    time.sleep(3)  # the last windows close by heartbeat
    processor.stop()
    worker.join()
    done.set()
    sampler.join()
    WarmRun.full_snapshots = False
    report = outcome["report"]
    processor_cpu, emulator_cpu = time.process_time() - cpu0[0], _cpu(emulator_pid) - cpu0[2]

    with WarmStore(store_path) as store:
        history = store.history()
        commits = store.commits()
    start = history["window_end"].min()
    windows = history.filter(
        pl.col("closed_at").is_not_null() & (pl.col("window_end") >= start + pl.duration(seconds=warmup))  # type: ignore[operator]
    )
    s = lambda a, b: (pl.col(a) - pl.col(b)).dt.total_microseconds() / 1e6  # noqa: E731
    t = windows.select(s("stored_at", "window_end").alias("fresh"), s("closed_at", "window_end").alias("policy"),
                       s("stored_at", "closed_at").alias("delay"))  # fmt: skip
    lag = pl.DataFrame(samples, schema=["seconds", "unprocessed"], orient="row")
    during = lag.filter(pl.col("seconds") <= sending)["unprocessed"]
    half = during.len() // 2
    took = commits.filter(pl.col("events") > 0)
    span = (took["committed_at"].max() - took["committed_at"].min()).total_seconds() if took.height > 1 else 1.0  # type: ignore[operator]
    out = {
        "fresh_p50": _pct(t["fresh"], 0.5), "fresh_p99": _pct(t["fresh"], 0.99),
        "policy_p50": _pct(t["policy"], 0.5), "policy_p99": _pct(t["policy"], 0.99),
        "delay_p50": _pct(t["delay"], 0.5), "delay_p99": _pct(t["delay"], 0.99), "delay_max": float(t["delay"].max() or 0),
        "lag_max": float(during.max() or 0), "lag_first_half": float(during.head(half).mean() or 0),
        "lag_second_half": float(during.tail(during.len() - half).mean() or 0),
        "commits_per_s": took.height / max(span, 1e-9), "commit_p99": _pct(took["seconds"], 0.99),
        "commit_max": float(took["seconds"].max() or 0), "state_mb": float(took["state_bytes"].mean() or 0) / 1e6,
    }  # fmt: skip
    print(f"  sent {int(sent_events):,} events in {float(sent_seconds):.0f} s (sender up to {float(send_lag):.1f} s behind "
          f"schedule); processed {report.received:,} ({report.events_per_second:,.0f}/s), all read {caught_up:.1f} s after "  # type: ignore[attr-defined]
          f"sending stopped; {windows.height:,} windows measured")  # fmt: skip
    print(f"  freshness (stored − window end)   p50 {out['fresh_p50']:5.2f} s   p99 {out['fresh_p99']:5.2f} s")
    print(f"    policy wait (closed − end)      p50 {out['policy_p50']:5.2f} s   p99 {out['policy_p99']:5.2f} s")
    print(f"    processing delay (stored − closed) p50 {out['delay_p50']:5.2f} s   p99 {out['delay_p99']:5.2f} s   "
          f"max {out['delay_max']:.2f} s")  # fmt: skip
    print(f"  lag (hub end − checkpoint): max {out['lag_max']:,.0f} events; mean {out['lag_first_half']:,.0f} in the "
          f"first half of sending, {out['lag_second_half']:,.0f} in the second")  # fmt: skip
    n = int(sent_events) / 1000
    print(f"  CPU per 1,000 events: processor {processor_cpu / n:.2f} s (this process), emulator {emulator_cpu / n:.2f} s, "
          f"sender {sender_cpu / n:.2f} s; the processor used {processor_cpu / (time.monotonic() - began):.0%} of a core")  # fmt: skip
    out["processor_cpu_per_event"] = processor_cpu / int(sent_events)
    print(f"  commits: {out['commits_per_s']:.2f}/s, p99 {out['commit_p99'] * 1000:.0f} ms, max "
          f"{out['commit_max'] * 1000:.0f} ms, {out['state_mb']:.2f} MB of state per commit")  # fmt: skip
    met = out["delay_p99"] <= sc.goal_delay and (sc.goal_lag is None or out["lag_max"] <= sc.goal_lag)
    if not sc.baseline:
        goal = f"p99 processing delay ≤ {sc.goal_delay:g} s" + (f", lag ≤ {sc.goal_lag:,}" if sc.goal_lag else "")
        print(f"  goal ({goal}): {'MET' if met else 'NOT MET'}", flush=True)
    out["met"] = float(met)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=scale.pick(full=100_000, small=10_000))
    ap.add_argument("--seconds", type=int, default=scale.pick(full=600, small=60), help="the ×1 run")
    ap.add_argument("--baseline-seconds", type=int, default=scale.pick(full=180, small=40))
    ap.add_argument("--x3-seconds", type=int, default=scale.pick(full=300, small=40))
    ap.add_argument("--warmup", type=float, default=scale.pick(full=30.0, small=10.0))
    ap.add_argument("--only", choices=["x1", "baseline", "x3"], action="append", help="run only these scenarios")
    args = ap.parse_args()
    registry = scenario.default_registry()
    if args.devices < registry.height:
        registry = registry.head(args.devices)
    runs = [
        Scenario("x1", "60s", args.seconds),
        Scenario("baseline", "60s", args.baseline_seconds, baseline=True),
        Scenario("x3", "20s", args.x3_seconds, goal_delay=6.0, goal_lag=None),
    ]
    runs = [r for r in runs if not args.only or r.name in args.only]
    home = Path(tempfile.mkdtemp(prefix="iotlib-bench-freshness-"))
    st = stack.up(home=home / "stack", blob_port=0, eventhub_port=0)
    os.environ.update(st.environ())
    results = {}
    try:
        for sc in runs:
            results[sc.name] = run(sc, registry, home, args.warmup, st.state.services["eventhubs"].pid)
    finally:
        st.down()
    if "x1" in results and "baseline" in results:
        new, old = results["x1"], results["baseline"]
        print(f"\nchangelog commits against the full-snapshot baseline: p99 commit {new['commit_p99'] * 1000:.0f} ms vs "
              f"{old['commit_p99'] * 1000:.0f} ms, {new['commits_per_s']:.2f} vs {old['commits_per_s']:.2f} commits/s, "
              f"{new['state_mb']:.2f} vs {old['state_mb']:.2f} MB of state per commit, p99 processing delay "
              f"{new['delay_p99']:.2f} vs {old['delay_p99']:.2f} s, largest lag {new['lag_max']:,.0f} vs "
              f"{old['lag_max']:,.0f} events")  # fmt: skip
    goals = [r for r in runs if not r.baseline and r.name in results]
    raise SystemExit(0 if all(results[r.name]["met"] for r in goals) else 1)


if __name__ == "__main__":
    main()
