"""Benchmark: one full Fabrikam day (100,000 devices x 1,440 readings = 144M events).

Prints events/s and peak memory for the vectorised simulator, each run in a
fresh subprocess so its peak resident memory (maxrss) is its own, beside a
baseline measured in the same run: a naive per-device, per-reading Python
simulator (the shape of the original C# loop) on a small slice, extrapolated.

Targets: >= 10M events/s and <= 6 GB peak for the full day.
Run it alone on the machine (it uses ~3 GB and a core for ~10 s per run)::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/simulate.py
    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/simulate.py --quick   # 10,000 devices x 1 h
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

TARGET_RATE = 10e6
TARGET_PEAK_GB = 6.0

# Runs in a child process: generate, then report time and that process's peak memory.
CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from iotlib.fleet import scenario, simulate
    devices, duration, faults = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    registry = scenario.build_registry(int(devices))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    events = simulate.generate(registry, start=simulate.DEFAULT_START, duration=duration, seed=0, faults=faults)
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    scale = 1 if sys.platform == "darwin" else 1024  # maxrss is bytes on macOS, KiB on Linux
    print(json.dumps({"events": events.height, "seconds": took, "cpu": cpu, "peak": after.ru_maxrss * scale,
                      "frame": events.estimated_size()}))
    """
)

# The naive way: one Python loop per device and per reading, rows collected then sorted.
NAIVE = textwrap.dedent(
    """
    import json, random, sys, time
    from datetime import timedelta
    import polars as pl
    from iotlib.fleet import scenario, simulate
    devices, minutes = int(sys.argv[1]), int(sys.argv[2])
    ids = scenario.build_registry(devices)["device_id"].to_list()
    start = simulate.DEFAULT_START
    end = start + timedelta(minutes=minutes)
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    rng = random.Random(0)
    rows = []
    for device in ids:
        when = start + timedelta(seconds=rng.uniform(0, 60))
        temperature = rng.randint(0, 24)
        while when < end:
            rows.append((device, when, float(temperature), when))
            when += timedelta(seconds=60 * rng.uniform(0.9, 1.1))
            temperature += rng.randint(-2, 2)
    frame = pl.DataFrame(rows, schema=["device_id", "time_observed", "temperature", "sent_at"], orient="row")
    frame = frame.sort("sent_at")
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    print(json.dumps({"events": frame.height, "seconds": took, "cpu": cpu}))
    """
)

ALL_FAULTS = [
    "heat:buildings=1+2+3+4+5,start=6h,duration=4h",
    "stuck:fraction=0.01,since=2h",
    "spikes:probability=0.001",
    "skew:fraction=0.02",
    "offline:fraction=0.01,outage=30m",
    "duplicates:probability=0.001",
    "malformed:probability=0.001",
]


def _child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 devices x 1 h instead of the full day")
    parser.add_argument("--no-faults", action="store_true", help="skip the run with every fault on")
    args = parser.parse_args()
    devices, duration = ("10000", "1h") if args.quick else ("100000", "1d")

    print(f"simulating {int(devices):,} devices for {duration} (vectorised, fresh process per run)")
    runs = {"no faults": _child(CHILD, devices, duration, "[]")}
    if not args.no_faults:
        runs["all 7 faults on"] = _child(CHILD, devices, duration, json.dumps(ALL_FAULTS))
    naive = _child(NAIVE, "1000", "60")

    naive_rate = naive["events"] / naive["seconds"]
    print(
        f"\n{'run':<20}{'events':>13}{'wall s':>8}{'cpu s':>8}{'events/s':>10}{'per cpu-s':>11}"
        f"{'peak RSS':>10}{'frame':>8}"
    )
    print(
        f"{'naive Python loop':<20}{naive['events']:>13,}{naive['seconds']:>8.2f}{naive['cpu']:>8.2f}"
        f"{naive_rate / 1e6:>9.2f}M{naive['events'] / naive['cpu'] / 1e6:>10.2f}M{'-':>10}{'-':>8}"
        f"   1,000 devices x 1 h; a full day: ~{100_000 * 1440 / naive_rate / 60:.0f} min"
    )
    verdicts = []
    for name, r in runs.items():
        rate = r["events"] / r["seconds"]
        peak_gb = r["peak"] / 1e9
        print(
            f"{name:<20}{r['events']:>13,}{r['seconds']:>8.2f}{r['cpu']:>8.2f}{rate / 1e6:>9.1f}M"
            f"{r['events'] / r['cpu'] / 1e6:>10.1f}M{peak_gb:>8.2f}GB{r['frame'] / 1e9:>6.2f}GB"
            f"   {rate / naive_rate:,.0f}x the naive loop"
        )
        met = rate >= TARGET_RATE and peak_gb <= TARGET_PEAK_GB
        verdicts.append(f"{name}: {'met' if met else 'NOT met'} ({rate / 1e6:.1f}M events/s, {peak_gb:.2f} GB)")
    if not args.quick:
        print(f"\ntargets for a full day (>= {TARGET_RATE / 1e6:.0f}M events/s wall, <= {TARGET_PEAK_GB:.0f} GB peak):")
        for line in verdicts:
            print(f"  {line}")
        print(
            "(peak RSS includes the interpreter, libraries and the 100,000-device registry; on a busy "
            "machine compare 'per cpu-s': wall time also counts waiting for a core)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
