"""Warm-path freshness: how soon a building window lands in the warm store while the fleet sends live.

Each scenario runs on a private local stack: the simulated fleet is sent live from a child process
(paced by its send times, starting now, as real devices would), while ``StreamProcessor`` reads
consumer group ``warm`` in a child process of its own with the default event-time policy and
options, and ``iotlib.hub.monitor.lag`` is sampled every two seconds from this one. Printed per
scenario:

- **freshness** of each building window, p50/p99: when its row landed in the warm store
  (``stored_at``) minus the window's end (the emulator runs on this machine, so the hub's clock is
  this clock), split into
  - the **policy wait** (``closed_at − window_end``): what the event-time policy itself imposes — the
    late-arrival tolerance (5 s), the out-of-order tolerance (0 s), the watermark tick (1 s) and how
    far each partition's newest reading trails the hub — until the last partition's watermark passed;
  - the **processing delay** (``stored_at − closed_at``): everything beyond that — receiving,
    windowing, waiting for the next commit, the commit itself;
- the **lag**: events the hub holds past the consumer group's checkpoints, largest and over time;
- **commits** per second, p99 commit time, and state bytes written per commit;
- **CPU** seconds per 1,000 events and share of a core of the warm job's process, the emulator and
  the sender, from their own CPU counters (user + system, psutil) over sending and catching up:
  unlike the times above they hardly depend on what else the machine runs.

Scenarios, all 100,000 devices with the default policy: for each ``--speed`` (×1: a reading a
minute, 1,667 events/s; ×3: a reading every 20 s, 5,000 events/s) a run of ``--duration`` with
today's commits, which write only what changed (state changelogs); then, at the first speed, the
**baseline** for ``--baseline-duration`` — every commit also writes the whole job pickled, as iotlib
did before changelogs (``WarmRun.full_snapshots``). Windows that end in the first ``--warmup``
seconds (the processor claiming partitions, connections opening) are left out.

Goals on this machine: ×1 p99 processing delay ≤ 3 s and lag never above 10,000 events over
10 minutes; ×3 sustained with p99 processing delay ≤ 6 s.

Run under the shared lock (both cores, a few GB)::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/warm_freshness.py --speed 1 --duration 10m
    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/warm_freshness.py --speed 3 --duration 5m --baseline-duration 0
    IOTLIB_SCALE=small .venv/bin/python benchmarks/warm_freshness.py     # a quick look
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import psutil
from _tree import cpu

from iotlib import hub
from iotlib.durations import to_seconds
from iotlib.fleet import scale, scenario, simulate
from iotlib.hub import monitor
from iotlib.local import stack
from iotlib.warm import WarmStore

FAULTS = ["skew:fraction=0.01,min_skew=10s,max_skew=2m", "offline:fraction=0.005,outage=60s",
          "duplicates:probability=0.001", "malformed:probability=0.001", "spikes:probability=0.001"]  # fmt: skip


@dataclass
class Scenario:
    name: str
    speed: float  # readings per device per minute
    seconds: float
    baseline: bool = False

    @property
    def period(self) -> str:
        return f"{60 / self.speed:g}s"

    @property
    def goal_delay(self) -> float:  # p99 processing delay, seconds
        return 3.0 if self.speed <= 1 else 6.0

    @property
    def goal_lag(self) -> int | None:
        return 10_000 if self.speed <= 1 else None


def _devices(n: int) -> pl.DataFrame:
    registry = scenario.default_registry()
    return registry.head(n) if n < registry.height else registry


def _send(path: str, out: str) -> None:
    """Child process: send the stretch in ``path`` live, starting now; write the report's figures to ``out``."""
    from iotlib.ingest import IngestClient

    events = pl.read_parquet(path)
    first = events["sent_at"].min()
    assert isinstance(first, datetime)
    events = events.with_columns(pl.col("time_observed", "sent_at") + (datetime.now(UTC) - first))
    with IngestClient.from_settings() as client:
        sent = client.send(events, mode="live", speed=1.0, send_malformed=True, progress=False)
    Path(out).write_text(f"{sent.events_sent} {sent.elapsed_seconds} {sent.max_lag_seconds}")


def _process(devices: int, store: str, container: str, baseline: bool, status: Any, stop: Any, out: str) -> None:
    """Child process: the warm job, as ``iotlib process`` runs it, until ``stop``; ``status`` = (partitions held,
    events received), refreshed every 0.1 s; the report's figures go to ``out``."""
    from iotlib.warm import StreamProcessor
    from iotlib.warm.run import WarmRun

    WarmRun.full_snapshots = baseline
    processor = StreamProcessor.from_settings(registry=_devices(devices), warm_store=store,
                                              checkpoint_container=container, starting_position=hub.positions())  # fmt: skip
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(report=processor.run()), daemon=True)
    worker.start()
    while not stop.wait(0.1) and worker.is_alive():
        if processor.report is not None:
            status[0], status[1] = len(processor.report.partitions), processor.report.received
    processor.stop()
    worker.join()
    report = outcome["report"]
    Path(out).write_text(f"{report.received} {report.events_per_second}")


def _pct(values: pl.Series, q: float) -> float:
    return float(values.quantile(q, interpolation="linear") or 0.0) if values.len() else float("nan")


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run(sc: Scenario, devices: int, home: Path, warmup: float, emulator_pid: int) -> dict[str, float]:
    """One scenario on the running stack; prints and returns its figures."""
    registry = _devices(devices)
    events = simulate.generate(registry, start=simulate.DEFAULT_START, duration=f"{sc.seconds}s", period=sc.period,
                               seed=7, faults=FAULTS)  # fmt: skip
    path = home / f"{sc.name}.parquet"
    events.write_parquet(path)
    per_second = events.height / sc.seconds
    del events
    print(f"\n{sc.name}: {registry.height:,} devices, a reading every {sc.period} (~{per_second:,.0f} events/s) for "
          f"{sc.seconds:g} s; commits {'with the whole job pickled (baseline)' if sc.baseline else 'as changelogs'}; "
          f"{_load()}", flush=True)  # fmt: skip
    store_path = home / f"{sc.name}.sqlite"
    container = f"warm-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    status, stop, reported = ctx.Array("q", 2), ctx.Event(), home / f"{sc.name}.processed"
    job = ctx.Process(
        target=_process, args=(devices, str(store_path), container, sc.baseline, status, stop, str(reported))
    )
    job.start()
    deadline = time.monotonic() + 180
    while status[0] < 8:  # every partition claimed
        assert job.is_alive() and time.monotonic() < deadline, "the processor did not claim its partitions"
        time.sleep(0.05)
    samples: list[tuple[float, int]] = []
    rss: list[int] = []
    done = threading.Event()
    began = time.monotonic()
    job_proc, emulator = psutil.Process(job.pid), psutil.Process(emulator_pid)

    def sample() -> None:
        while not done.is_set():
            try:
                lag = monitor.lag({"warm": container})
                samples.append((time.monotonic() - began, int(lag["unprocessed"].sum())))
                rss.append(job_proc.memory_info().rss)
            except Exception:  # noqa: BLE001 - a missed sample
                pass
            done.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    figures = home / f"{sc.name}.sent"
    cpu0 = (cpu(job_proc), cpu(emulator))
    sender = ctx.Process(target=_send, args=(str(path), str(figures)))
    sender.start()
    sender_proc, sender_cpu = psutil.Process(sender.pid), 0.0
    while sender.is_alive():  # its counters, read while it lives (the last read is at most 0.2 s short)
        sender_cpu = max(sender_cpu, cpu(sender_proc)) if sender_proc.is_running() else sender_cpu
        time.sleep(0.2)
    sender.join()
    sent_events, sent_seconds, send_lag = figures.read_text().split()
    sending = time.monotonic() - began
    while status[1] < int(sent_events) and job.is_alive():
        time.sleep(0.05)
    caught_up = time.monotonic() - began
    job_cpu, emulator_cpu = cpu(job_proc) - cpu0[0], cpu(emulator) - cpu0[1]
    time.sleep(3)  # the last windows close by heartbeat
    stop.set()
    job.join()
    done.set()
    sampler.join()
    received, job_rate = reported.read_text().split()

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
    n = int(sent_events) / 1000
    out = {
        "fresh_p50": _pct(t["fresh"], 0.5), "fresh_p99": _pct(t["fresh"], 0.99),
        "policy_p50": _pct(t["policy"], 0.5), "policy_p99": _pct(t["policy"], 0.99),
        "delay_p50": _pct(t["delay"], 0.5), "delay_p99": _pct(t["delay"], 0.99), "delay_max": float(t["delay"].max() or 0),
        "lag_max": float(during.max() or 0), "lag_first_half": float(during.head(half).mean() or 0),
        "lag_second_half": float(during.tail(during.len() - half).mean() or 0),
        "commits_per_s": took.height / max(span, 1e-9), "commit_p99": _pct(took["seconds"], 0.99),
        "commit_max": float(took["seconds"].max() or 0), "state_mb": float(took["state_bytes"].mean() or 0) / 1e6,
        "job_cpu_per_k": job_cpu / n, "job_core": job_cpu / caught_up,
        "emulator_cpu_per_k": emulator_cpu / n, "sender_cpu_per_k": sender_cpu / n,
    }  # fmt: skip
    print(f"  sent {int(sent_events):,} events in {float(sent_seconds):.0f} s (sender up to {float(send_lag):.1f} s behind "
          f"schedule); processed {int(received):,} ({float(job_rate):,.0f}/s), all read {caught_up - sending:.1f} s after "
          f"sending stopped; {windows.height:,} windows measured")  # fmt: skip
    print(f"  freshness (stored − window end)   p50 {out['fresh_p50']:5.2f} s   p99 {out['fresh_p99']:5.2f} s")
    print(f"    policy wait (closed − end)      p50 {out['policy_p50']:5.2f} s   p99 {out['policy_p99']:5.2f} s")
    print(f"    processing delay (stored − closed) p50 {out['delay_p50']:5.2f} s   p99 {out['delay_p99']:5.2f} s   "
          f"max {out['delay_max']:.2f} s")  # fmt: skip
    print(f"  lag (hub end − checkpoint): max {out['lag_max']:,.0f} events; mean {out['lag_first_half']:,.0f} in the "
          f"first half of sending, {out['lag_second_half']:,.0f} in the second")  # fmt: skip
    print(f"  CPU (user + system) per 1,000 events, over {caught_up:.0f} s of sending and catching up: warm job "
          f"{out['job_cpu_per_k']:.3f} s ({out['job_core']:.0%} of a core, peak RSS {max(rss, default=0) / 2**30:.2f} GB), "
          f"emulator {out['emulator_cpu_per_k']:.3f} s ({emulator_cpu / caught_up:.0%}), sender {out['sender_cpu_per_k']:.3f} s "
          f"({sender_cpu / sending:.0%} while sending)")  # fmt: skip
    print(f"  commits: {out['commits_per_s']:.2f}/s, p99 {out['commit_p99'] * 1000:.0f} ms, max "
          f"{out['commit_max'] * 1000:.0f} ms, {out['state_mb']:.2f} MB of state per commit")  # fmt: skip
    met = out["delay_p99"] <= sc.goal_delay and (sc.goal_lag is None or out["lag_max"] <= sc.goal_lag)
    if not sc.baseline:
        goal = f"p99 processing delay ≤ {sc.goal_delay:g} s" + (f", lag ≤ {sc.goal_lag:,}" if sc.goal_lag else "")
        print(f"  goal ({goal}): {'MET' if met else 'NOT MET'}", flush=True)
    print(f"  {_load()}", flush=True)
    out["met"] = float(met)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=scale.pick(full=100_000, small=10_000))
    ap.add_argument("--speed", type=float, action="append",
                    help="readings per device per minute (×1: Fabrikam's rate); repeat for several runs (default: 1 and 3)")  # fmt: skip
    ap.add_argument("--duration", type=lambda v: to_seconds(v, allow_zero=False),
                    help="sending time of each speed's run, e.g. 10m (default: 10 min at ×1, 5 min faster; small: 60 s, 40 s)")  # fmt: skip
    ap.add_argument("--baseline-duration", type=to_seconds, default=scale.pick(full=180.0, small=40.0),
                    help="sending time of the full-snapshot baseline at the first speed (0: none; default 3 min, small 40 s)")  # fmt: skip
    ap.add_argument("--warmup", type=float, default=scale.pick(full=30.0, small=10.0))
    args = ap.parse_args()
    speeds = args.speed or [1.0, 3.0]
    runs = [Scenario(f"x{v:g}", v, args.duration or scale.pick(full=600.0 if v <= 1 else 300.0, small=60.0 if v <= 1 else 40.0))
            for v in speeds]  # fmt: skip
    if args.baseline_duration:
        runs.insert(1, Scenario(f"x{speeds[0]:g} baseline", speeds[0], args.baseline_duration, baseline=True))
    home = Path(tempfile.mkdtemp(prefix="iotlib-bench-freshness-"))
    st = stack.up(home=home / "stack", blob_port=0, eventhub_port=0)
    os.environ.update(st.environ())
    results = {}
    try:
        for sc in runs:
            results[sc.name] = run(sc, args.devices, home, args.warmup, st.state.services["eventhubs"].pid)
    finally:
        st.down()
    if args.baseline_duration:
        new, old = results[runs[0].name], results[runs[1].name]
        print(f"\nchangelog commits against the full-snapshot baseline ({runs[0].name}): p99 commit "
              f"{new['commit_p99'] * 1000:.0f} ms vs {old['commit_p99'] * 1000:.0f} ms, {new['commits_per_s']:.2f} vs "
              f"{old['commits_per_s']:.2f} commits/s, {new['state_mb']:.2f} vs {old['state_mb']:.2f} MB of state per commit, "
              f"warm job CPU {new['job_cpu_per_k']:.3f} vs {old['job_cpu_per_k']:.3f} s per 1,000 events, p99 processing "
              f"delay {new['delay_p99']:.2f} vs {old['delay_p99']:.2f} s, largest lag {new['lag_max']:,.0f} vs "
              f"{old['lag_max']:,.0f} events")  # fmt: skip
    goals = [r for r in runs if not r.baseline]
    raise SystemExit(0 if all(results[r.name]["met"] for r in goals) else 1)


if __name__ == "__main__":
    main()
