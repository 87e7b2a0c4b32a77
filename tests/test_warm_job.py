"""The warm job without a hub: partitions shared by two processes, handed over, crashed, committed at
random — the warm store ends exactly as the batch job computes it over the same events."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.fleet import scenario, simulate
from iotlib.processing import EventTimePolicy
from iotlib.warm import incoming
from iotlib.warm.alerts import BuildingTooHot, DeviceSilent, TemperatureJump
from iotlib.warm.commit import Position
from iotlib.warm.equivalence import batch_view, compare
from iotlib.warm.job import WarmJob
from iotlib.warm.partition import PartitionJob
from iotlib.warm.store import WarmStore

REGISTRY = scenario.build_registry(90, buildings=3, seed=7)
RULES = (BuildingTooHot(30, 2), TemperatureJump(15), DeviceSilent("90s"))
PARTITIONS = [str(i) for i in range(4)]
EARLIEST = Position(-1, "-1")


def simulated(seed: int) -> pl.DataFrame:
    events = simulate.generate(
        REGISTRY, start=simulate.DEFAULT_START, duration="4m", seed=seed,
        faults=["skew:fraction=0.1,min_skew=10s,max_skew=90s", "offline:fraction=0.08,outage=100s",
                "duplicates:probability=0.03", "malformed:probability=0.02", "spikes:probability=0.02",
                "heat:buildings=2,start=1m,rise=25,ramp=0s"],
    )  # fmt: skip
    return incoming.from_simulation(events, partition_count=len(PARTITIONS))


class Cluster:
    """Two processes sharing one warm store; partitions move between them, processes crash."""

    def __init__(self, store: WarmStore, frame: pl.DataFrame, policy: EventTimePolicy, rng: np.random.Generator):
        self.store, self.policy, self.rng = store, policy, rng
        self.parts = {p: frame.filter(pl.col("partition_id") == p) for p in PARTITIONS}
        self.cursor = dict.fromkeys(PARTITIONS, 0)
        self.owners = ["a", "b"]
        self.jobs = [self.make(), self.make()]
        self.holder: dict[str, int] = {}
        store.configure(self.jobs[0].settings(), partitions=PARTITIONS, building_rule=RULES[0])
        self.refused = self.handovers = self.crashes = 0

    def make(self) -> WarmJob:
        return WarmJob(REGISTRY, policy=self.policy, rules=RULES)

    def claim(self, pid: str, j: int) -> None:
        stored = self.store.claim(pid, self.owners[j])
        job = self.jobs[j].claim(pid, stored, start=None if stored is not None else EARLIEST)
        self.holder[pid] = j
        seqs = self.parts[pid]["sequence_number"]
        self.cursor[pid] = int(seqs.search_sorted(job.position.sequence_number + 1)) if job.position else 0

    def commit(self, j: int) -> None:
        result = self.store.commit(self.jobs[j].take(owner=self.owners[j]))
        for pid in result.refused:  # taken over meanwhile: what this process did for it is dropped
            self.jobs[j].release(pid)
        self.refused += len(result.refused)

    def step(self) -> bool:
        live = [p for p in PARTITIONS if self.cursor[p] < self.parts[p].height]
        if not live:
            return False
        heads = {p: self.parts[p]["enqueued_time"][self.cursor[p]] for p in live}
        lowest = min(heads.values())
        p = str(self.rng.choice([q for q in live if (heads[q] - lowest).total_seconds() < 20]))  # partitions keep pace
        n = int(self.rng.integers(1, 25))
        part, job = self.parts[p], self.jobs[self.holder[p]]
        job.push(p, part.slice(self.cursor[p], n))
        self.cursor[p] += n
        arrivals = part["enqueued_time"].dt.epoch("us")
        if self.cursor[p] >= part.height:  # read to its end: the hub says so as of its last arrival
            job.mark(p, int(arrivals.max()) + 1)  # type: ignore[arg-type]
        elif self.rng.random() < 0.2:  # quiet until its next event: a heartbeat anywhere before it
            job.mark(p, int(self.rng.integers(int(arrivals[self.cursor[p] - 1]), int(arrivals[self.cursor[p]]) + 1)))
        r = self.rng.random()
        if r < 0.15:
            self.commit(int(self.rng.integers(2)))
        elif r < 0.2:  # a hand-over: the other process claims it (the old holder does not know yet)
            self.claim(p, 1 - self.holder[p])
            self.handovers += 1
        elif r < 0.23:  # a process dies: all it did since its last commit is lost; the other takes its partitions
            j = int(self.rng.integers(2))
            self.jobs[j] = self.make()
            for q in [q for q, h in self.holder.items() if h == j]:
                self.claim(q, 1 - j)
            self.crashes += 1
        return True

    def finish(self) -> None:
        for j in (0, 1):
            for pid in list(self.jobs[j].partitions):
                if self.holder[pid] != j:
                    self.jobs[j].release(pid)
            self.jobs[j].finish()
            self.commit(j)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 2**32 - 1),
       late_policy=st.sampled_from(["side_output", "adjust", "drop"]), compact=st.booleans())  # fmt: skip
def test_two_processes_handing_partitions_over_equal_the_batch_job(tmp_path_factory, seed, cut, late_policy, compact):
    # ``compact``: the store's device log is replaced by a full dump at almost every commit.
    PartitionJob.compact_slack = -10_000 if compact else 1000
    try:
        _two_processes(tmp_path_factory, seed, cut, late_policy)
    finally:
        PartitionJob.compact_slack = 1000


def _two_processes(tmp_path_factory, seed: int, cut: int, late_policy: str) -> None:
    frame = simulated(seed)
    policy = EventTimePolicy(late_policy=late_policy, idle_timeout="20s")
    rng = np.random.default_rng(cut)
    store = WarmStore(tmp_path_factory.mktemp("warm") / "w.sqlite", writer=True)
    cluster = Cluster(store, frame, policy, rng)
    for i, pid in enumerate(PARTITIONS):
        cluster.claim(pid, i % 2)
    while cluster.step():
        pass
    cluster.finish()
    event(
        f"hand-overs {min(cluster.handovers, 3)}+, crashes {min(cluster.crashes, 1)}+, refused {min(cluster.refused, 1)}+"
    )

    verdict = compare(store, frame, REGISTRY, policy=policy)
    assert verdict.equal, verdict
    assert store.history().height > 50 and store.finished
    view = batch_view(frame, REGISTRY, policy=policy, heartbeats=store.watermarks(), partitions=PARTITIONS)
    assert store.totals().counts == view.result.counts
    for pid in PARTITIONS:  # each partition's state, restored however often, is the batch's
        engine = cluster.jobs[cluster.holder[pid]].partitions[pid].engine
        assert engine.devices().equals(view.by_partition[pid].devices), pid
    last = frame.group_by("partition_id").agg(pl.col("sequence_number").max())
    assert {p: pos.sequence_number for p, pos in store.positions().items()} == dict(last.iter_rows())
    assert store.table("partials").height == 0  # every partial merged into its window

    # The same events uncut, each partition in one go by one process, raise the same alerts.
    # (Heartbeats change when a silence is noticed — its ``value`` — not whether or when it began.)
    whole_store = WarmStore(tmp_path_factory.mktemp("whole") / "w.sqlite", writer=True)
    whole = WarmJob(REGISTRY, policy=policy, rules=RULES, heartbeat=False)
    whole_store.configure(whole.settings(), partitions=PARTITIONS, building_rule=RULES[0])
    for pid in PARTITIONS:
        whole_store.claim(pid, "w")
        whole.claim(pid, None, start=EARLIEST)
        whole.push(pid, frame.filter(pl.col("partition_id") == pid))
    whole.finish()
    whole_store.commit(whole.take(owner="w"))
    # (Heartbeats close windows earlier, so a too-hot alert, raised when its window closed, is raised
    # earlier: at its window's ``closed_at``.)
    key = ["window_end", "raised_at", "rule", "building_id", "device_id"]
    alerts = store.alerts().drop("alert_id", "value").sort(key, nulls_last=True)
    expected = whole_store.alerts().drop("alert_id", "value").sort(key, nulls_last=True)
    hot = pl.col("rule") == "building_too_hot"
    assert alerts.filter(~hot).equals(expected.filter(~hot))
    assert alerts.filter(hot).drop("raised_at").equals(expected.filter(hot).drop("raised_at"))
    closed = store.history().select("building_id", "window_end", "closed_at")
    raised = alerts.filter(hot).join(closed, on=["building_id", "window_end"])
    assert raised.height == alerts.filter(hot).height and (raised["raised_at"] == raised["closed_at"]).all()
    assert set(alerts["rule"]) == {"building_too_hot", "temperature_jump", "device_silent"}
    store.close()
    whole_store.close()


def test_a_store_refuses_other_settings_and_a_finished_store_is_finished(tmp_path):
    frame = simulated(1)
    with WarmStore(tmp_path / "w.sqlite", writer=True) as store:
        job = WarmJob(REGISTRY, policy=EventTimePolicy(), rules=RULES)
        store.configure(job.settings(), partitions=["0"], building_rule=RULES[0])
        other = WarmJob(REGISTRY, policy=EventTimePolicy(late_policy="drop"), rules=RULES)
        with pytest.raises(ConfigurationError, match="other job settings"):
            store.configure(other.settings(), partitions=["0"], building_rule=RULES[0])
        with pytest.raises(ConfigurationError, match="other partitions"):
            store.configure(job.settings(), partitions=["0", "1"], building_rule=RULES[0])
        store.claim("0", "me")
        job.claim("0", None, start=EARLIEST)
        job.push("0", frame.filter(pl.col("partition_id") == "0").head(50))
        assert store.commit(job.take(owner="someone else")).refused == ["0"]  # not the holder
        job.finish()
        with pytest.raises(ProcessingError, match="flushed"):
            job.push("0", frame.slice(50, 10))
        assert not store.finished
        store.commit(job.take(owner="me"))
        assert store.finished  # the processor refuses to go on with a flushed warm store
        assert store.current_temperature(int(store.history()["building_id"][0])) is not None


def test_processor_options_are_checked_before_anything_connects():
    from iotlib.warm import StreamProcessor

    conn = "Endpoint=sb://localhost:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"
    storage = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=b;BlobEndpoint=http://127.0.0.1:1/a;"
    make = lambda **o: StreamProcessor.from_connection_string(conn, storage, eventhub_name="telemetry", **o)  # noqa: E731
    assert make().options.consumer_group == "warm" and make().options.checkpoint_container == "warm-checkpoints"
    for bad, match in [({"consumer_grp": "x"}, "unknown processor option"), ({"starting_position": "middle"}, "starting_position"),
                       ({"commit_interval": 0}, "commit_interval"), ({"window": "soon"}, "window"),
                       ({"time": "server"}, "time='server'")]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=match):
            make(**bad)
    with pytest.raises(ConfigurationError, match="event hub name"):
        StreamProcessor.from_connection_string(conn, storage)
