"""Streaming equals batch: the incremental engine, the vectorised batch job and a naive
reading of the written semantics agree on every output, whatever the micro-batches."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime

import numpy as np
import polars as pl
import processing_oracle as oracle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processing_helpers import simulated

from iotlib.processing.arrival import ArrivalMerger
from iotlib.processing.event_time import windows_with_policy
from iotlib.processing.incremental import WindowEngine
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.results import WindowOutput
from iotlib.processing.windows import Hopping, Tumbling

T0 = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp()) * 1_000_000
MS = 1_000
OUTPUTS = ("windows", "late", "adjusted", "dropped", "duplicates", "invalid", "watermarks")


@st.composite
def streams(draw):
    """Events with out-of-order, late, duplicate, redelivered and clock-skewed readings."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_dev = draw(st.integers(1, 6))
    n_part = draw(st.integers(1, 3))
    n = draw(st.integers(1, 70))
    skew = {d: int(rng.choice([0, 0, 0, 8_000, -6_000]) * MS) for d in range(n_dev)}  # clock ahead / behind
    rows = []
    for _ in range(n):
        d = int(rng.integers(n_dev))
        true_t = int(rng.integers(0, 40_000)) * MS
        delay = (
            int(
                rng.choice(
                    [rng.integers(0, 300), rng.integers(0, 4_000), rng.integers(5_000, 20_000)], p=[0.7, 0.2, 0.1]
                )
            )
            * MS
        )
        rows.append(
            [f"dev{d}", T0 + true_t + skew[d], T0 + true_t + delay, float(rng.integers(15, 18)), str(d % n_part)]
        )
    for r in list(rows):  # resent readings: same identity, later arrival
        if rng.random() < 0.15:
            rows.append([r[0], r[1], r[2] + int(rng.integers(0, 15_000)) * MS, r[3], r[4]])
    df = pl.DataFrame(
        rows, schema=["device_id", "time_observed", "enqueued_time", "temperature", "partition_id"], orient="row"
    )
    df = df.with_columns(
        pl.col("time_observed", "enqueued_time").cast(pl.Datetime("us", "UTC")),
        pl.col("device_id").cast(pl.Categorical) if draw(st.booleans()) else pl.col("device_id"),
        pl.col("temperature").cast(pl.Float32) if draw(st.booleans()) else pl.col("temperature"),
    )
    df = df.with_row_index("i").sort("partition_id", "enqueued_time", "i")
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("partition_id").alias("sequence_number")).drop("i")
    redelivered = df.filter(pl.Series(rng.random(df.height) < 0.1))  # the hub delivers some twice
    df = pl.concat([df, redelivered]).with_columns(
        (pl.col("device_id").cast(pl.String).str.slice(3).cast(pl.Int32) % 2).alias("building_id")
    )
    return df.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True)


policies = st.builds(
    EventTimePolicy,
    out_of_order=st.sampled_from(["0s", "500ms", "2s"]),
    late_arrival=st.sampled_from(["0s", "1s", "5s"]),
    late_policy=st.sampled_from(["side_output", "adjust", "drop"]),
    clock_ahead=st.sampled_from(["1s", "5s"]),
    idle_timeout=st.sampled_from(["2s", "10s", "1m"]),
    dedupe_horizon=st.sampled_from([None, "3s", "1m"]),
    tick=st.sampled_from(["250ms", "1s", "3s"]),
)
windows = st.sampled_from([Tumbling("2s"), Tumbling("5s"), Hopping("6s", "2s"), Tumbling("3s", closed="left")])


def run_incremental(df, cuts, window, policy, by):
    engine = WindowEngine(window, by=by, policy=policy)
    outs, prev = [], 0
    for c in [*sorted(set(cuts)), df.height]:
        outs.append(engine.feed(df.slice(prev, c - prev)))
        prev = c
    outs.append(engine.flush())
    return engine, WindowOutput.concat(outs), outs


def assert_same(batch, inc, engine, outs):
    for name in OUTPUTS:
        got, want = getattr(inc, name), getattr(batch, name)
        if want.height == 0 and got.height == 0:
            continue
        assert got.equals(want), f"{name} differs:\n{want}\n{got}"
    assert inc.counts == batch.counts == engine.totals
    assert engine.devices().equals(batch.devices)
    assert engine.partitions().equals(batch.partitions)
    c = batch.counts
    assert c.late + c.clock_ahead == c.adjusted + c.dropped + c.side_output
    assert c.events == c.duplicates + c.accepted + c.late + c.clock_ahead
    # Windows come out once each, in end order; closed ones before the final flush.
    assert not inc.windows.select(
        pl.struct(
            pl.exclude(
                "closed_at", "temperature_mean", "temperature_min", "temperature_max", "temperature_last", "events"
            )
        )
        .is_duplicated()
        .any()
    ).item()
    assert outs[-1].windows["closed_at"].null_count() == outs[-1].windows.height


@settings(
    max_examples=int(os.environ.get("IOTLIB_EQUIVALENCE_EXAMPLES", "70")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(df=streams(), policy=policies, window=windows, data=st.data())
def test_streaming_equals_batch_for_any_micro_batches(df, policy, window, data):
    cuts = data.draw(st.lists(st.integers(0, df.height), max_size=12))
    by = data.draw(st.sampled_from([[], ["building_id"]]))
    batch = windows_with_policy(df, window, by=by, policy=policy)
    engine, inc, outs = run_incremental(df, cuts, window, policy, by)
    assert_same(batch, inc, engine, outs)
    # ... and both say what the written semantics say.
    events = [
        oracle.Event(d, e, a, v, p, s, tuple(b for b in [bid] if by))
        for d, e, a, v, p, s, bid in df.select(
            pl.col("device_id").cast(pl.String),
            pl.col("time_observed").dt.epoch("us"),
            pl.col("enqueued_time").dt.epoch("us"),
            pl.col("temperature").cast(pl.Float64),
            "partition_id",
            "sequence_number",
            "building_id",
        ).iter_rows()
    ]
    want = oracle.run(events, policy, window.size_us, window.hop_us, window.closed)
    fates = {f: want.fates.count(f) for f in set(want.fates)}
    c = batch.counts
    assert (c.accepted, c.late, c.clock_ahead) == (
        fates.get("accepted", 0),
        fates.get("late", 0),
        fates.get("clock_ahead", 0),
    )
    assert c.duplicates == fates.get("duplicate_event", 0) + fates.get("duplicate_sequence", 0)
    got = {}
    for row in batch.windows.iter_rows(named=True):
        end = int(row["window_end"].timestamp() * 1_000_000)
        closed = None if row["closed_at"] is None else int(row["closed_at"].timestamp() * 1_000_000)
        got[(tuple(row[k] for k in by), end)] = (row["events"], row["temperature_mean"], closed)
    assert got.keys() == want.windows.keys()
    for k, (n, total, closed) in want.windows.items():
        assert got[k][0] == n and got[k][2] == closed
        assert got[k][1] == pytest.approx(total / n, rel=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=streams(), policy=policies, seed=st.integers(0, 1000))
def test_merging_interleaved_partition_batches_restores_arrival_order(df, policy, seed):
    """Per-partition batches in any interleaving, merged, give the batch result."""
    rng = np.random.default_rng(seed)
    parts = {p: df.filter(pl.col("partition_id") == p) for p in df["partition_id"].unique().sort().to_list()}
    queue = []
    for p, frame in parts.items():
        cuts = sorted(rng.choice(frame.height + 1, size=min(3, frame.height), replace=False).tolist())
        prev = 0
        for c in [*cuts, frame.height]:
            if c > prev:
                queue.append((p, frame.slice(prev, c - prev)))
            prev = max(prev, c)
    # Interleave partitions randomly, keeping each partition's own order.
    order = sorted(range(len(queue)), key=lambda i: (rng.random(), 0))
    by_part: dict[str, list] = {}
    for i in range(len(queue)):
        by_part.setdefault(queue[i][0], []).append(queue[i][1])
    merger = ArrivalMerger(parts, idle_timeout="1h")  # nobody idles here: exact order
    engine = WindowEngine("2s", policy=policy)
    outs = []
    cursors = {p: 0 for p in by_part}
    for _ in order:
        p = list(by_part)[int(rng.integers(len(by_part)))]
        if cursors[p] < len(by_part[p]):
            merger.push(p, by_part[p][cursors[p]])
            cursors[p] += 1
            released = merger.pop()
            if released.height:
                outs.append(engine.feed(released))
    for p, frames in by_part.items():
        for f in frames[cursors[p] :]:
            merger.push(p, f)
    rest = merger.drain()
    if rest.height:
        outs.append(engine.feed(rest))
    outs.append(engine.flush())
    inc = WindowOutput.concat(outs)
    batch = windows_with_policy(df, "2s", policy=policy)
    for name in ("windows", "late", "duplicates"):
        if getattr(batch, name).height or getattr(inc, name).height:
            assert getattr(inc, name).equals(getattr(batch, name)), name
    assert inc.counts == batch.counts


def test_an_engine_snapshot_resumes_where_it_left_off():
    rng = np.random.default_rng(3)
    _, df = simulated(60, 4, seed=3)
    policy = EventTimePolicy(late_policy="adjust")
    whole = windows_with_policy(df, "5s", policy=policy)
    engine = WindowEngine("5s", policy=policy)
    cut = int(rng.integers(50, df.height - 50))
    first = engine.feed(df.head(cut))
    resumed = pickle.loads(pickle.dumps(engine))  # e.g. stored with a checkpoint
    rest = [resumed.feed(df.slice(cut)), resumed.flush()]
    inc = WindowOutput.concat([first, *rest])
    assert inc.windows.equals(whole.windows) and inc.counts == whole.counts


def test_a_replay_from_a_lagging_checkpoint_is_caught_as_duplicates():
    """Restore a snapshot, then replay events it already saw: same windows, replays flagged."""
    _, df = simulated(60, 4, seed=4, resends=False)
    policy = EventTimePolicy(dedupe_horizon="2m")
    whole = windows_with_policy(df, "5s", policy=policy)
    engine = WindowEngine("5s", policy=policy)
    cut, lag = df.height // 2, 40
    first = engine.feed(df.head(cut))
    resumed = pickle.loads(pickle.dumps(engine))
    rest = [resumed.feed(df.slice(cut - lag)), resumed.flush()]  # checkpoint 40 events behind the snapshot
    inc = WindowOutput.concat([first, *rest])
    assert inc.windows.equals(whole.windows)
    assert inc.duplicates.height == lag and set(inc.duplicates["reason"].to_list()) == {"duplicate_sequence"}
    assert inc.counts.accepted == whole.counts.accepted
