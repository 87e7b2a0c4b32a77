"""Cold-store loading speed: Capture Avro → decoded polars DataFrame, and the Parquet cache.

Writes N thermostat events as Capture files (one deflate file, as in issue 5's measurement, and a
windowed store: 4 partitions × 5-minute windows, in a local directory and in Azurite), then
times in one run:

- naive:   fastavro reader + json.loads per row → pandas (Microsoft's capture-reader recipe)
- generic: iotlib.coldstore.load(decoder="generic")  (fastavro records + bulk body decoding)
- fast:    iotlib.coldstore.load()                   (compiled Capture decoder, both cores)
- cache:   load(cache=…) served from the zstd Parquet cache (listing + freshness check included)
- md5:     the windowed store from Azurite with and without checking each blob's Content-MD5
           (``verify_md5``, on by default), the cost of integrity past Avro, alternating runs

and prints events/s and the ratios to the naive recipe. Targets: fast ≥ 1M events/s and ≥ 10×
naive; cache ≥ 10M events/s. Run it alone: ``flock /tmp/iotlib-bench.lock .venv/bin/python
benchmarks/coldstore.py [--events N]`` (default 1,000,000; IOTLIB_SCALE=small: 100,000).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pandas as pd

import iotlib
from iotlib import coldstore
from iotlib.capture import format as cf
from iotlib.coldstore import synthetic
from iotlib.fleet import scale
from iotlib.local import stack

START = datetime(2024, 3, 1, tzinfo=UTC)
# What an analysis of the scenario reads: ids, times, the decoded body (no raw maps or bytes).
ANALYSIS = [
    "partition_id",
    "sequence_number",
    "enqueued_time",
    "device_id",
    "time_observed",
    "temperature",
    "decode_error",
]


def naive(path: Path) -> pd.DataFrame:
    """The usual recipe: read every record with fastavro, json.loads each body, build pandas."""
    rows = []
    for p in sorted(path.rglob("*.avro")):
        with open(p, "rb") as fh:
            for rec in fastavro.reader(fh):
                row = {
                    "SequenceNumber": rec["SequenceNumber"],
                    "Offset": rec["Offset"],
                    "EnqueuedTimeUtc": rec["EnqueuedTimeUtc"],
                }
                if rec["Body"]:
                    row.update(json.loads(rec["Body"]))
                rows.append(row)
    df = pd.DataFrame(rows)
    df["TimeObserved"] = pd.to_datetime(df["TimeObserved"], utc=True)
    return df


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        best = min(best, times[-1])
    return best, statistics.median(times), out


def write_one_file(root: Path, events: int) -> None:
    devices = max(1, events // 10)
    ev = synthetic.thermostat_events(
        devices=devices, start=START, duration=timedelta(minutes=10), partitions=1, seed=7
    ).head(events)
    records = [synthetic._record(r) for r in ev.iter_rows(named=True)]
    name = cf.PathFormat().name("fabrikam", "telemetry", 0, START)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cf.write_capture_file(None, records, codec="deflate"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=scale.pick(full=1_000_000, small=100_000))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-azurite", action="store_true")
    args = ap.parse_args()
    n = args.events
    work = Path(tempfile.mkdtemp(prefix="iotlib-bench-coldstore-"))
    own_stack = None
    try:
        print(
            f"# {n:,} events, {os.cpu_count()} cores, polars threads {os.environ.get('POLARS_MAX_THREADS', 'default')}"
        )
        t0 = time.perf_counter()
        one = work / "one-file"
        write_one_file(one, n)
        windowed = work / "windowed"
        store = synthetic.write_store(
            windowed, devices=max(1, n // 10), start=START, duration=timedelta(minutes=10), partitions=4, seed=7
        )
        size_one = sum(p.stat().st_size for p in one.rglob("*.avro"))
        print(
            f"# wrote one deflate file ({size_one / 2**20:.1f} MiB) and {store.files.height} windowed null-codec files "
            f"({store.files['bytes'].sum() / 2**20:.1f} MiB, {store.events.height:,} events) in {time.perf_counter() - t0:.1f} s"
        )

        # Warm up: load the compiled decoders (numba cache) outside the timings.
        coldstore.load(one, start=START, end=START + timedelta(seconds=1))

        results: dict[str, tuple[float, int]] = {}

        def run(label: str, fn, repeat: int) -> None:
            best, median, out = timed(fn, repeat)
            rows = len(out)
            results[label] = (best, rows)
            print(f"{label:<34} {best:7.3f} s (median {median:.3f})  {rows / best:>12,.0f} events/s")

        print("## one deflate Capture file (issue 5's set-up)")
        run("naive fastavro+json.loads→pandas", lambda: naive(one), 1)
        run("generic load (fastavro records)", lambda: coldstore.load(one, decoder="generic"), 1)
        run("fast load", lambda: coldstore.load(one), args.repeat)
        run("fast load, analysis columns", lambda: coldstore.load(one, columns=ANALYSIS), args.repeat)
        cache = work / "cache"
        coldstore.load(one, cache=cache)
        run("cache load, all columns", lambda: coldstore.load(one, cache=cache), args.repeat)
        run("cache load, analysis columns", lambda: coldstore.load(one, cache=cache, columns=ANALYSIS), args.repeat)
        print(f"# Parquet cache: {sum(p.stat().st_size for p in cache.rglob('*.parquet')) / 2**20:.1f} MiB")

        print("## windowed store (4 partitions × 5 min, null codec), local directory")
        run("fast load, windowed dir", lambda: coldstore.load(windowed), args.repeat)

        if not args.no_azurite:
            conn = os.environ.get(iotlib.connections.STORAGE_ENV)
            if not conn:
                own_stack = stack.up(home=work / "stack", blob_port=0, eventhub_port=0, services=("azurite",))
                conn = own_stack.settings().storage_connection_string
            from azure.storage.blob import ContainerClient

            client = ContainerClient.from_connection_string(conn, f"bench-{uuid.uuid4().hex[:8]}")
            client.create_container()
            try:
                t0 = time.perf_counter()
                for p in sorted(windowed.rglob("*.avro")):
                    client.upload_blob(p.relative_to(windowed).as_posix(), p.read_bytes(), overwrite=True)
                print(f"## windowed store in Azurite (uploaded in {time.perf_counter() - t0:.1f} s)")
                run("fast load, Azurite container", lambda: coldstore.load(client), args.repeat)
                _, checked = coldstore.load(client, with_report=True)
                assert checked.blobs_verified == store.files.height, "Azurite stored no Content-MD5"
                print(f"## Content-MD5 check: {checked.blobs_verified} blobs, {checked.bytes_read / 2**20:.1f} MiB")
                md5 = {True: [], False: []}
                for _ in range(max(3, args.repeat)):  # alternate, so both see the same machine
                    for verify in (True, False):
                        t0 = time.perf_counter()
                        coldstore.load(client, verify_md5=verify)
                        md5[verify].append(time.perf_counter() - t0)
                on, off = min(md5[True]), min(md5[False])
                print(f"{'fast load, Azurite, MD5 checked':<34} {on:7.3f} s  {n / on:>12,.0f} events/s")
                print(f"{'fast load, Azurite, not checked':<34} {off:7.3f} s  {n / off:>12,.0f} events/s")
                print(f"# MD5 check costs {100 * (on - off) / off:+.1f} % of the load time ({on - off:+.3f} s; best of "
                      f"{len(md5[True])} each)")  # fmt: skip
            finally:
                client.delete_container()

        naive_s, _ = results["naive fastavro+json.loads→pandas"]
        print("## ratios (events/s relative to the naive recipe, same run)")
        for label, (best, rows) in results.items():
            print(f"{label:<34} {(rows / best) / (n / naive_s):7.1f}×")
        fast = n / results["fast load"][0]
        cached = n / results["cache load, analysis columns"][0]
        print(
            f"# targets: fast ≥ 1,000,000/s and ≥ 10× naive: {fast:,.0f}/s, {fast / (n / naive_s):.1f}×; "
            f"cache (analysis columns) ≥ 10,000,000/s: {cached:,.0f}/s"
        )
        return 0
    finally:
        if own_stack is not None:
            own_stack.down()
        shutil.rmtree(work, ignore_errors=True)
        _ = io, sys


if __name__ == "__main__":
    raise SystemExit(main())
