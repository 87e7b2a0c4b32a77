"""A synthetic cold store: seeded thermostat events written as Event Hubs Capture files.

Until the capture writer (``iotlib.capture``) lands, notebooks, tests and benchmarks build
their cold store here, with the shared format module (:mod:`iotlib.capture.format`). The events
follow the scenario's ``NoErrorsExpected`` simulator: each device starts at a whole temperature
0-24 and random-walks by up to ±2 per reading, one reading a minute with ±10 % jitter, devices
staggered over the first minute. Partition = CRC32 of the device id modulo the partition
count; each partition's events are cut into aligned capture windows, one file per window
(Azure's empty-window file when empty: the header and one empty block). ``crash_replays`` re-captures the tail of
some windows into the next window's file, as an at-least-once writer does after a crash
between committing a blob and checkpointing: the same events (same sequence numbers) in two
files.
"""

from __future__ import annotations

import os
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from iotlib.capture import format as cf
from iotlib.durations import EPOCH, epoch_us


@dataclass
class SyntheticStore:
    """What was written: one row per file, and the events (before any duplication)."""

    files: pl.DataFrame  # name, partition_id, window_start, events, bytes, replayed
    events: pl.DataFrame  # partition_id, sequence_number, enqueued_time, device_id, time_observed, temperature


def thermostat_events(
    *, devices: int, start: datetime, duration: timedelta, partitions: int = 4, seed: int = 0
) -> pl.DataFrame:
    """Seeded events: device_id, time_observed, temperature, partition_id, enqueued_time, sequence_number, offset."""
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(devices)]
    seconds = duration.total_seconds()
    per_device = int(np.ceil(seconds / 54)) + 1  # enough at the shortest gap: no device falls silent before the end
    first = rng.uniform(0, 60, size=(devices, 1))
    gaps = rng.uniform(54, 66, size=(devices, per_device))  # one a minute, ±10 %
    gaps[:, 0] = 0
    t = first + np.cumsum(gaps, axis=1)
    temps = rng.integers(0, 25, size=(devices, 1)) + np.cumsum(rng.uniform(-2, 2, size=(devices, per_device)), axis=1)
    keep = t < seconds
    dev_idx = np.broadcast_to(np.arange(devices)[:, None], t.shape)[keep]
    observed_us = (t[keep] * 1e6).astype(np.int64) + _micros(start)
    latency_us = rng.exponential(40_000, size=observed_us.shape).astype(np.int64) + 5_000
    part_of_device = np.array([zlib.crc32(d.encode()) % partitions for d in ids], dtype=np.int64)
    df = pl.DataFrame(
        {
            "device_id": pl.Series(ids)[dev_idx],
            "time_observed": pl.Series(observed_us).cast(pl.Datetime("us", "UTC")),
            "temperature": np.round(temps[keep], 2),
            "partition_id": part_of_device[dev_idx].astype(str),
            # The service keeps milliseconds: so does the enqueued time here.
            "enqueued_time": pl.Series((observed_us + latency_us) // 1000 * 1000).cast(pl.Datetime("us", "UTC")),
        }
    ).sort("partition_id", "enqueued_time", "device_id")
    df = df.with_columns(sequence_number=pl.int_range(pl.len()).over("partition_id").cast(pl.Int64))
    return df.with_columns(offset=(pl.col("sequence_number") * 160).cast(pl.String))


def body_json(device_id: str, time_observed: datetime, temperature: float) -> bytes:
    """The thermostat event's JSON body, compact, times in RFC 3339 UTC with milliseconds."""
    t = time_observed.astimezone(UTC)
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return f'{{"DeviceId":"{device_id}","TimeObserved":"{stamp}","Temperature":{temperature!r}}}'.encode()


def write_store(
    dest: Any,
    *,
    devices: int,
    start: datetime,
    duration: timedelta,
    partitions: int = 4,
    window: timedelta = timedelta(seconds=300),
    namespace: str = "fabrikam",
    eventhub: str = "telemetry",
    codec: str = "null",
    skip_empty: bool = False,
    crash_replays: int = 0,
    seed: int = 0,
    path_format: str = cf.DEFAULT_PATH_FORMAT,
) -> SyntheticStore:
    """Write a synthetic cold store to ``dest`` (a directory, or a ``ContainerClient``)."""
    events = thermostat_events(devices=devices, start=start, duration=duration, partitions=partitions, seed=seed)
    fmt = cf.PathFormat(path_format)
    w_us = int(window.total_seconds() * 1e6)
    events = events.with_columns(
        window_start=(pl.col("enqueued_time").dt.epoch("us") // w_us * w_us).cast(pl.Datetime("us", "UTC"))
    )
    rng = np.random.default_rng(seed + 1)
    first_window = _micros(start) // w_us * w_us
    newest = events["window_start"].dt.epoch("us").max()  # None when there are no events
    last_window = max((_micros(start + duration) - 1) // w_us * w_us, newest if isinstance(newest, int) else 0)
    all_windows = list(range(first_window, last_window + 1, w_us))
    # Records are built one window at a time (a Python dict per event for a whole day would not fit).
    by_window = events.partition_by("partition_id", "window_start", as_dict=True, maintain_order=True)
    counts = {(p, _micros(w)): g.height for (p, w), g in by_window.items()}
    tails: dict[tuple[str, int], int] = {}  # window → events of its tail re-captured into the next one
    if crash_replays:
        candidates = [(p, w) for (p, w) in sorted(counts) if w + w_us <= last_window and counts[(p, w)]]
        picks = rng.choice(len(candidates), size=min(crash_replays, len(candidates)), replace=False)
        for k in sorted(picks.tolist()):
            p, w = candidates[k]
            tails[(p, w)] = int(rng.integers(1, max(2, counts[(p, w)] // 3)))
    rows = []
    for p in [str(i) for i in range(partitions)]:
        previous: list[dict[str, Any]] = []
        for w in all_windows:
            ws = EPOCH + timedelta(microseconds=w)
            group = by_window.get((p, ws))
            own = [_record(row) for row in group.iter_rows(named=True)] if group is not None else []
            replay = previous[-tails[(p, w - w_us)] :] if (p, w - w_us) in tails else []
            previous = own
            recs = replay + own
            if not recs and skip_empty:
                continue
            name = fmt.name(namespace, eventhub, p, ws)
            data = cf.write_capture_file(None, recs, codec=codec, sync_marker=cf.sync_marker_for(name))
            _put(dest, name, data)
            rows.append(
                {
                    "name": name,
                    "partition_id": p,
                    "window_start": ws,
                    "events": len(recs),
                    "bytes": len(data),
                    "replayed": len(replay),
                }
            )
    files = pl.DataFrame(rows, schema_overrides={"window_start": pl.Datetime("us", "UTC")})
    return SyntheticStore(files, events.drop("window_start"))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    body = body_json(row["device_id"], row["time_observed"], row["temperature"])
    rec = cf.capture_record(
        sequence_number=row["sequence_number"],
        offset=row["offset"],
        enqueued_time=row["enqueued_time"],
        body=body,
        properties={"DeviceId": row["device_id"], "EventType": "UpdateTemperatureEvent", "EventTypeVersion": 1},
        partition_key=row["device_id"],
    )
    return dict(rec)


def _put(dest: Any, name: str, data: bytes) -> None:
    if hasattr(dest, "upload_blob"):
        dest.upload_blob(name, data, overwrite=True)
        return
    path = os.path.join(os.fspath(dest), *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _micros(t: datetime) -> int:
    return epoch_us(t)
