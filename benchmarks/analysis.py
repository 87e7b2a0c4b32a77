"""Batch analytics over a full Fabrikam day (~144M events) in the Parquet cache: speed and peak memory.

Builds the day once (``iotlib.analysis.day.build_day``, kept in ``<iotlib home>/days``) and
then runs every query in a fresh process, sampling the resident memory of that process and its
children (Spark's JVM) to report the peak:

- events per device (the original Hive query) — polars, DuckDB: target <= 3 s each;
- daily local-day stats per building — polars, DuckDB: <= 10 s;
- completeness per device-hour (all 2.4M device-hours) — polars, DuckDB: <= 15 s;
- peak RSS <= 4 GB per polars or DuckDB query;
- baselines in the same run: the eager way (the whole day into pandas, then group by) — its
  time and peak, or where it runs out of the memory allowed (``--eager-cap``); and Apache Spark
  in local mode on the same Parquet, its query time (session start apart) and the ratio to polars.

Run it alone on the machine::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/analysis.py
    IOTLIB_SCALE=small .venv/bin/python benchmarks/analysis.py   # 2,000 devices: a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _tree import cpu as tree_cpu
from _tree import load, watch

TARGETS = {"events per device": 3.0, "local-day stats": 10.0, "completeness": 15.0}
PEAK_GB = 4.0
QUERIES = tuple(TARGETS)
ENGINES = ("polars", "duckdb", "spark", "eager pandas")


# --------------------------------------------------------------------------- the child: one query, one engine


def child(query: str, engine: str, folder: str) -> dict[str, object]:
    from iotlib.analysis import day as days

    day = days.open_day(folder)
    start, end = day.start, day.end
    extra: dict[str, object] = {}
    if engine == "spark":
        from iotlib.analysis import spark

        began = time.perf_counter()
        session = spark.session()
        extra["session_seconds"] = time.perf_counter() - began
    began, cpu = time.perf_counter(), tree_cpu(reaped=True)
    if engine == "eager pandas":
        rows = _eager(query, day)
    elif engine == "spark":
        if query == "events per device":
            rows = spark.events_per_device(session, day).height
        elif query == "local-day stats":
            rows = spark.local_day_stats(session, day).height
        else:
            from iotlib.analysis import completeness

            found = spark.device_hours(session, day, start=start, end=end)
            rows = completeness.completeness(found, day.registry, start=start, end=end).height
    else:
        from iotlib.analysis import completeness, counts, localday

        sql = engine == "duckdb"
        if query == "events per device":
            rows = (counts.events_per_device_sql if sql else counts.events_per_device)(day).height
        elif query == "local-day stats":
            rows = (localday.local_day_stats_sql if sql else localday.local_day_stats)(day).height
        else:
            hours = completeness.device_hours_sql if sql else completeness.device_hours
            found = hours(day, start=start, end=end)
            rows = completeness.completeness(found, day.registry, start=start, end=end).height
    result = {"seconds": time.perf_counter() - began, "cpu": tree_cpu(reaped=True) - cpu, "rows": rows, **extra}
    if engine == "spark":
        session.stop()
    return result


def _eager(query: str, day: object) -> int:
    """The usual way: read the whole day into pandas, then group by."""
    import pandas as pd

    cache, registry = day.cache, day.registry.to_pandas()  # type: ignore[attr-defined]
    if query == "events per device":
        frame = pd.read_parquet(cache, columns=["device_id"])
        return len(frame.groupby("device_id").size())  # readings without a device id are no device's
    if query == "local-day stats":
        frame = pd.read_parquet(cache, columns=["device_id", "time_observed", "temperature"]).dropna()
        frame = frame.merge(registry[["device_id", "building_id", "time_zone"]], on="device_id")
        parts = []
        for zone, part in frame.groupby("time_zone"):
            part = part.assign(local_date=part["time_observed"].dt.tz_convert(zone).dt.date)
            parts.append(
                part.groupby(["building_id", "local_date"])["temperature"].agg(["count", "mean", "min", "max"])
            )
        return len(pd.concat(parts))
    frame = pd.read_parquet(cache, columns=["device_id", "time_observed"])
    frame["hour"] = frame["time_observed"].dt.floor("h")
    counts = frame.groupby(["device_id", "hour"]).size()
    grid = pd.MultiIndex.from_product(
        [registry["device_id"], pd.date_range(day.start, day.end, freq="h", inclusive="left")],  # type: ignore[attr-defined]
        names=["device_id", "hour"],
    )
    return len(counts.reindex(grid, fill_value=0))


# --------------------------------------------------------------------------- the parent: measure each child


def measure(query: str, engine: str, folder: Path, cap_gb: float | None) -> dict[str, object]:
    """Run one query in a fresh process; its time and CPU, rows, the peak RSS of its process tree."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", query, engine, str(folder)], stdout=out, stderr=err
        )
        usage = watch(proc, every=0.05, cap=None if cap_gb is None else int(cap_gb * 2**30))
        out.seek(0)
        err.seek(0)
        printed, errors = out.read(), err.read()
    common = {"peak": usage.peak, "load": usage.load}
    if usage.killed_after is not None:
        return {"error": f"ran out: passed the {cap_gb:g} GB allowed after {usage.killed_after:.0f} s", **common}
    if usage.returncode != 0:
        last = (errors.strip().splitlines() or ["?"])[-1]
        return {"error": f"failed: {last[:120]}", **common}
    return {**json.loads(printed.strip().splitlines()[-1]), **common}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("QUERY", "ENGINE", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--devices", type=int, default=None, help="default: 100,000 (IOTLIB_SCALE=small: 2,000)")
    ap.add_argument("--folder", type=Path, default=None, help="the day's folder (default: <iotlib home>/days/…)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {', '.join(ENGINES)}")
    ap.add_argument("--eager-cap", type=float, default=12.0, help="GB the eager baseline may use before it is stopped")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    from iotlib.analysis import day as days
    from iotlib.fleet import scale, scenario

    devices = args.devices or scale.pick(full=100_000, small=2_000)
    registry = scenario.build_registry(devices)
    folder = args.folder or days.day_folder(registry)
    print(f"# {devices:,} devices, one day; {os.cpu_count()} cores; day folder {folder}; {load()}")
    t0, cpu0 = time.perf_counter(), os.times()
    day = days.build_day(folder, registry, progress=sys.stderr.isatty())
    if day.built:
        cpu = os.times()
        used = cpu.user - cpu0.user + cpu.system - cpu0.system
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"# {day.summary()}: {used:.0f} s CPU, peak RSS {peak:.2f} GB; {load()}")
    else:
        print(f"# {day.summary()} (opened in {time.perf_counter() - t0:.1f} s)")
    cache_gb = sum(p.stat().st_size for p in day.cache.rglob("*.parquet")) / 2**30
    print(f"# Parquet cache {cache_gb:.2f} GiB; each query in a fresh process, the cache read through first")
    print("# (in the page cache, as a repeated query finds it); peak RSS of the query's process tree\n")

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    results: dict[tuple[str, str], dict[str, object]] = {}
    print(f"{'query':<20}{'engine':<14}{'seconds':>9}{'CPU s':>8}{'peak GB':>9}{'rows':>12}   notes")
    for query in QUERIES:
        for engine in engines:
            _read_through(day.cache)
            r = measure(query, engine, folder, args.eager_cap if engine == "eager pandas" else None)
            results[(query, engine)] = r
            peak = float(r["peak"]) / 2**30  # type: ignore[arg-type]
            if "error" in r:
                print(f"{query:<20}{engine:<14}{'-':>9}{'-':>8}{peak:>9.2f}{'-':>12}   {r['error']}; {_load(r)}")
                continue
            notes = []
            base = results.get((query, "polars"), {})
            if engine in ("polars", "duckdb"):
                ok = float(r["seconds"]) <= TARGETS[query] and peak <= PEAK_GB  # type: ignore[arg-type]
                notes.append(f"target <= {TARGETS[query]:g} s, <= {PEAK_GB:g} GB: {'met' if ok else 'NOT met'}")
            elif "seconds" in base:
                notes.append(f"{float(r['seconds']) / float(base['seconds']):.1f}x polars")  # type: ignore[arg-type]
            if "session_seconds" in r:
                notes.append(f"+ {float(r['session_seconds']):.0f} s to start the session")  # type: ignore[arg-type]
            notes.append(_load(r))
            seconds, cpu, rows = float(r["seconds"]), float(r["cpu"]), int(r["rows"])  # type: ignore[arg-type, call-overload]
            print(f"{query:<20}{engine:<14}{seconds:>9.2f}{cpu:>8.2f}{peak:>9.2f}{rows:>12,}   {'; '.join(notes)}")
    print("\n# seconds: wall time of the query; CPU s: user + system of its process tree (what load does not inflate)")
    return 0


def _read_through(folder: Path) -> None:
    """Read every Parquet file once, so each query finds the cache in the OS page cache as a repeated
    query would (the eager baseline's 12 GB had evicted it, and the next query read from disk)."""
    for path in folder.rglob("*.parquet"):
        with path.open("rb") as f:
            while f.read(16 << 20):
                pass


def _load(r: dict[str, object]) -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*r["load"])  # type: ignore[str-format]


if __name__ == "__main__":
    raise SystemExit(main())
