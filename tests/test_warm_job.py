"""The warm job without a hub: any interleaving of partition batches, commits and a restart
from a snapshot give exactly what the batch job computes over the same events."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotlib.fleet import scenario, simulate
from iotlib.processing import EventTimePolicy
from iotlib.warm import incoming
from iotlib.warm.alerts import BuildingTooHot, DeviceSilent, TemperatureJump
from iotlib.warm.equivalence import batch_view
from iotlib.warm.job import WarmJob
from iotlib.warm.store import Commit

REGISTRY = scenario.build_registry(90, buildings=3, seed=7)
RULES = (BuildingTooHot(30, 2), TemperatureJump(15), DeviceSilent("90s"))
PARTITIONS = [str(i) for i in range(4)]


def simulated(seed: int) -> pl.DataFrame:
    events = simulate.generate(
        REGISTRY, start=simulate.DEFAULT_START, duration="4m", seed=seed,
        faults=["skew:fraction=0.1,min_skew=10s,max_skew=90s", "offline:fraction=0.08,outage=100s",
                "duplicates:probability=0.03", "malformed:probability=0.02", "spikes:probability=0.02",
                "heat:buildings=2,start=1m,rise=25,ramp=0s"],
    )  # fmt: skip
    return incoming.from_simulation(events, partition_count=len(PARTITIONS))


def run(frame: pl.DataFrame, policy: EventTimePolicy, rng: np.random.Generator, *, restart_at: int | None):
    """Feed per-partition batches the way a consumer delivers them; commit now and then; maybe restart."""
    parts = {p: frame.filter(pl.col("partition_id") == p) for p in PARTITIONS}
    cursor = dict.fromkeys(PARTITIONS, 0)
    make = lambda: WarmJob(REGISTRY, policy=policy, rules=RULES, partitions=PARTITIONS)  # noqa: E731
    job, commits, steps = make(), [], 0
    job.restored = False
    while any(cursor[p] < parts[p].height for p in PARTITIONS):
        live = [p for p in PARTITIONS if cursor[p] < parts[p].height]
        heads = {p: parts[p]["enqueued_time"][cursor[p]] for p in live}
        lowest = min(heads.values())
        p = str(rng.choice([q for q in live if (heads[q] - lowest).total_seconds() < 20]))  # partitions keep pace
        n = int(rng.integers(1, 25))
        job.push(p, parts[p].slice(cursor[p], n))
        cursor[p] += n
        if cursor[p] >= parts[p].height:  # read to its end: the hub says so as of its last arrival
            job.mark(p, int(parts[p]["enqueued_time"].dt.epoch("us").max()) + 1)
        job.step()
        steps += 1
        if rng.random() < 0.15:
            commits.append(job.take())
        if steps == restart_at:
            commit = job.take()
            commits.append(commit)
            job = make()  # a new process: restore the snapshot, re-read after the stored progress
            job.restore(commit.snapshot, _positions(commits))
            job.restored = True
            for q in PARTITIONS:
                cursor[q] = (
                    int(parts[q]["sequence_number"].search_sorted(job.positions[q].sequence_number + 1))
                    if q in job.positions
                    else 0
                )
    job.finish()
    commits.append(job.take())
    return job, commits


def _positions(commits: list[Commit]):
    out = {}
    for c in commits:
        out.update(c.progress)
    return out


def _cat(commits: list[Commit], name: str) -> pl.DataFrame:
    frames = [getattr(c, name) for c in commits if getattr(c, name).height]
    return pl.concat(frames) if frames else pl.DataFrame()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 2**32 - 1),
       late_policy=st.sampled_from(["side_output", "adjust", "drop"]), restart=st.booleans())  # fmt: skip
def test_the_job_equals_batch_for_any_interleaving_commits_and_restart(seed, cut, late_policy, restart):
    frame = simulated(seed)
    policy = EventTimePolicy(late_policy=late_policy, idle_timeout="20s")
    rng = np.random.default_rng(cut)
    job, commits = run(frame, policy, rng, restart_at=int(rng.integers(3, 20)) if restart else None)
    assert not restart or job.restored
    beats = _cat(commits, "watermarks")["tick_start"]
    view = batch_view(frame, REGISTRY, policy=policy, heartbeats=beats)
    assert _cat(commits, "windows").equals(view.result.windows)
    for name in ("late", "adjusted", "dropped", "duplicates"):
        got = pl.concat([c.side_outputs[name] for c in commits if name in c.side_outputs]) if any(
            name in c.side_outputs for c in commits) else None  # fmt: skip
        want = getattr(view.result, name)
        assert (got is None and want.height == 0) or got.equals(want), name
    assert _cat(commits, "dead_letters").equals(view.dead_letters)
    assert job.totals.counts == view.result.counts
    # Each partition's progress ends at its last event; every event was released exactly once.
    last = frame.group_by("partition_id").agg(pl.col("sequence_number").max())
    assert {p: pos.sequence_number for p, pos in _positions(commits).items()} == dict(last.iter_rows())
    assert sum(c.events for c in commits) >= frame.height
    # The same events uncut, in one process, raise the same alerts.
    # (Heartbeats change when a silence is noticed — its ``value`` — not whether or when it began.)
    whole = WarmJob(REGISTRY, policy=policy, rules=RULES, partitions=["all"], heartbeat=False)
    whole.push("all", frame)  # already in arrival order
    whole.finish()
    key = ["raised_at", "rule", "building_id", "device_id"]
    alerts = _cat(commits, "alerts").sort(key)
    expected = whole.take().alerts.sort(key)
    assert alerts.drop("value").equals(expected.drop("value"))
    assert set(alerts["rule"]) == {"building_too_hot", "temperature_jump", "device_silent"}


def test_a_snapshot_only_restores_into_the_same_settings_and_a_finished_job_takes_nothing():
    import pytest

    from iotlib.errors import ConfigurationError, ProcessingError

    frame = simulated(1)
    job = WarmJob(REGISTRY, policy=EventTimePolicy(), rules=RULES, partitions=["all"])
    job.push("all", frame.head(50))
    job.step()
    commit = job.take()
    other = WarmJob(REGISTRY, policy=EventTimePolicy(late_policy="drop"), rules=RULES, partitions=["all"])
    with pytest.raises(ConfigurationError, match="other settings"):
        other.restore(commit.snapshot, commit.progress)
    job.finish()
    with pytest.raises(ProcessingError, match="flushed"):
        job.push("all", frame.slice(50, 10))
    restored = WarmJob(REGISTRY, policy=EventTimePolicy(), rules=RULES, partitions=["all"])
    restored.restore(job.take().snapshot, {})
    assert restored.finished  # the processor refuses to go on with a flushed warm store


def test_processor_options_are_checked_before_anything_connects():
    import pytest

    from iotlib.errors import ConfigurationError
    from iotlib.warm import StreamProcessor

    conn = "Endpoint=sb://localhost:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"
    storage = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=b;BlobEndpoint=http://127.0.0.1:1/a;"
    make = lambda **o: StreamProcessor.from_connection_string(conn, storage, eventhub_name="telemetry", **o)  # noqa: E731
    assert make().options.consumer_group == "warm" and make().options.checkpoint_container == "warm-checkpoints"
    for bad, match in [({"consumer_grp": "x"}, "unknown processor option"), ({"starting_position": "middle"}, "starting_position"),
                       ({"commit_interval": 0}, "commit_interval"), ({"window": "soon"}, "window")]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=match):
            make(**bad)
    with pytest.raises(ConfigurationError, match="event hub name"):
        StreamProcessor.from_connection_string(conn, storage)
