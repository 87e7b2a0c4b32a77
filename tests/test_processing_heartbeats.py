"""Heartbeats and merger marks: what a streaming job adds around the engine, still equal to batch.

A streaming job calls ``WindowEngine.advance`` when nothing arrives, at the time
``ArrivalMerger.released_until`` says is safe. Given those heartbeat times, the
batch job reproduces the run exactly, ``closed_at`` included.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotlib.errors import ConfigurationError
from iotlib.processing import BuildingAverager, building_averages
from iotlib.processing.arrival import ArrivalMerger
from iotlib.processing.event_time import windows_with_policy
from iotlib.processing.incremental import WindowEngine
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.results import WindowOutput

T0 = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp()) * 1_000_000
MS = 1_000


def _frame(rows: list[tuple]) -> pl.DataFrame:
    df = pl.DataFrame(
        rows, schema=["device_id", "time_observed", "enqueued_time", "temperature", "partition_id"], orient="row"
    )
    df = df.with_columns(pl.col("time_observed", "enqueued_time").cast(pl.Datetime("us", "UTC")))
    df = df.with_row_index("i").sort("partition_id", "enqueued_time", "i")
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("partition_id").alias("sequence_number")).drop("i")
    return df.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True)


@st.composite
def bursts(draw):
    """Bursts of readings separated by quiet gaps (when heartbeats matter), some late or skewed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows, t = [], 0
    for _ in range(draw(st.integers(1, 5))):
        for _ in range(int(rng.integers(1, 25))):
            d = int(rng.integers(5))
            true_t = t + int(rng.integers(0, 6_000)) * MS
            delay = int(rng.choice([rng.integers(0, 300), rng.integers(2_000, 12_000)], p=[0.85, 0.15])) * MS
            skew = 8_000 * MS if d == 4 else 0
            rows.append((f"d{d}", T0 + true_t + skew, T0 + true_t + delay, float(rng.integers(15, 25)), str(d % 3)))
        t += int(rng.integers(5_000, 40_000)) * MS  # a quiet gap
    return _frame(rows)


policies = st.builds(
    EventTimePolicy,
    out_of_order=st.sampled_from(["0s", "1s"]),
    late_arrival=st.sampled_from(["0s", "2s"]),
    late_policy=st.sampled_from(["side_output", "adjust"]),
    idle_timeout=st.sampled_from(["3s", "10s"]),
    tick=st.sampled_from(["500ms", "1s"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=bursts(), policy=policies, data=st.data())
def test_batch_with_the_runs_heartbeats_equals_the_run(df, policy, data):
    engine = WindowEngine("5s", by=[], policy=policy)
    arrivals = df["enqueued_time"].to_list()
    outs, i = [], 0
    while i < df.height:
        n = data.draw(st.integers(1, 8))
        outs.append(engine.feed(df.slice(i, n)))
        i += n
        if i < df.height:  # heartbeats anywhere before the next arrival
            nxt, prev = arrivals[i], arrivals[i - 1]
            for _ in range(data.draw(st.integers(0, 2))):
                frac = data.draw(st.floats(0, 1))
                outs.append(engine.advance(prev + (nxt - prev) * frac))
    outs.append(engine.advance(arrivals[-1] + (arrivals[-1] - arrivals[0]) * data.draw(st.floats(0, 2))))
    outs.append(engine.flush())  # batch also lists the windows still open at the end
    run = WindowOutput.concat(outs)
    batch = windows_with_policy(df, "5s", policy=policy, heartbeats=run.watermarks["tick_start"])
    for name in ("windows", "late", "adjusted", "duplicates", "watermarks"):
        got, want = getattr(run, name), getattr(batch, name)
        if got.height or want.height:
            assert got.equals(want), name
    assert run.counts == batch.counts


def test_without_the_heartbeats_batch_closes_windows_later():
    rows = [("a", T0 + s * 1_000_000, T0 + s * 1_000_000 + 100_000, 20.0, "0") for s in range(6)]
    df = _frame(rows)
    policy = EventTimePolicy(idle_timeout="5s")
    engine = WindowEngine("5s", policy=policy)
    first = engine.feed(df)
    beat = engine.advance(datetime.fromtimestamp((T0 + 30_000_000) / 1e6, tz=UTC))
    run = WindowOutput.concat([first, beat])
    plain = windows_with_policy(df, "5s", policy=policy)
    assert plain.windows["closed_at"].null_count() == plain.windows.height  # nothing closes without time passing
    beats = windows_with_policy(df, "5s", policy=policy, heartbeats=run.watermarks["tick_start"])
    assert beats.windows.equals(run.windows) and beats.windows["closed_at"].null_count() == 0


def test_building_averages_takes_heartbeats_only_with_a_policy():
    registry = pl.DataFrame({"device_id": ["a"], "building_id": [1]})
    df = _frame([("a", T0, T0 + 1, 20.0, "0")])
    with pytest.raises(ConfigurationError, match="heartbeats"):
        building_averages(df, registry, heartbeats=[datetime.now(UTC)])
    job = BuildingAverager(registry, policy=EventTimePolicy())
    out = job.feed(df)
    assert (
        building_averages(
            df, registry, policy=EventTimePolicy(), heartbeats=out.watermarks["tick_start"]
        ).windows.height
        == 1
    )


def test_a_mark_releases_the_other_partitions_and_bounds_heartbeats():
    a = _frame([("x", T0 + 1_000_000, T0 + 1_000_000, 20.0, "0"), ("x", T0 + 2_000_000, T0 + 2_000_000, 21.0, "0")])
    merger = ArrivalMerger(["0", "1"], idle_timeout="1h")
    merger.push("0", a)
    assert merger.pop().height == 0 and merger.released_until is None  # partition 1 has not spoken
    merger.mark("1", T0 + 1_500_000)  # partition 1 is read to the hub's end as of 1.5 s
    assert merger.pop().height == 1 and merger.released_until == T0 + 1_500_000
    merger.mark("1", T0 + 1_000_000)  # an older mark changes nothing
    assert merger.released_until == T0 + 1_500_000
    merger.mark("1", T0 + 5_000_000)
    # Partition 0 now holds the bound at its own latest arrival (2 s): its event there is not out yet.
    assert merger.pop().height == 0 and merger.released_until == T0 + 2_000_000
    assert merger.drain().height == 1
