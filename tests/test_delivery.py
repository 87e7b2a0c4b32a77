"""The modelled hub view of simulated events: partitions, enqueued times, sequence numbers, replays."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet import scenario, simulate
from iotlib.fleet.delivery import DELIVERY_COLUMNS, Delivery, DeliveryStream, deliver
from iotlib.fleet.faults import Duplicates, Offline
from iotlib.ingest.partitioning import partition_for_key


@pytest.fixture(scope="module")
def fleet():
    reg = scenario.build_registry(120, buildings=6, equal_buildings=True, seed=2)
    offline = Offline(devices=tuple(reg["device_id"][:2]), outage=timedelta(minutes=2))
    sent = simulate.generate(reg, start=None, duration="5m", seed=2, faults=[offline, Duplicates(probability=0.02)])
    return reg, sent


def test_partitions_follow_the_partition_key_and_sequences_follow_arrival(fleet):
    _, sent = fleet
    model = Delivery(partitions=4, slow_fraction=0.1)
    got = deliver(sent, model, seed=1)
    assert got.columns == [*sent.columns, *DELIVERY_COLUMNS] and got.height == sent.height
    pairs = got.select(pl.col("device_id").cast(pl.String), "partition_id").unique()
    assert all(partition_for_key(d, model.partition_ids) == p for d, p in pairs.iter_rows())
    # Per partition: sequence numbers 0..n-1, enqueued time never decreasing along them.
    for (pid,), part in got.group_by("partition_id"):
        part = part.sort("sequence_number")
        assert part["sequence_number"].to_list() == list(range(part.height)), pid
        assert part["enqueued_time"].is_sorted(), pid
    # The frame is in the consumer's arrival order, and nothing arrives before it was sent.
    assert got.equals(got.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True))
    assert (got["enqueued_time"].dt.microsecond() % 1000 == 0).all()  # the hub's clock ticks in ms
    transit = (got["enqueued_time"] - got["sent_at"]).dt.total_microseconds()
    assert transit.min() > 19_000  # latency 20 ms, less the ms the hub's clock drops
    slow = (transit > 2_000_000).mean()  # exponential jitter of mean 100 ms almost never reaches 2 s
    assert 0.05 < slow < 0.15, slow
    assert not got["fault_redelivered"].any()


def test_the_same_seed_gives_the_same_hub_view_whatever_the_row_order(fleet):
    _, sent = fleet
    model = Delivery(partitions=3, slow_fraction=0.05, replays=2)
    a = deliver(sent, model, seed=7)
    assert a.equals(deliver(sent.sample(fraction=1.0, shuffle=True, seed=3), model, seed=7))
    assert not a["enqueued_time"].equals(deliver(sent, model, seed=8)["enqueued_time"])


def test_a_devices_transit_does_not_depend_on_the_other_devices(fleet):
    reg, sent = fleet
    few = reg["device_id"][10:20].to_list()
    whole = deliver(sent, seed=4).filter(pl.col("device_id").cast(pl.String).is_in(few))
    alone = deliver(
        sent.filter(pl.col("device_id").cast(pl.String).is_in(few)).with_columns(pl.col("device_id").cast(pl.String)),
        seed=4,
    )
    key = ["time_observed", "sent_at"]
    assert (
        whole.sort(key)
        .select("partition_id", "enqueued_time")
        .equals(alone.sort(key).select("partition_id", "enqueued_time"))
    )


def test_replays_repeat_a_stretch_of_one_partition(fleet):
    _, sent = fleet
    got = deliver(sent, Delivery(partitions=4, replays=3, replay_span="15s"), seed=5)
    copies = got.filter("fault_redelivered")
    firsts = got.filter(~pl.col("fault_redelivered"))
    assert firsts.height == sent.height and copies.height > 0
    key = ["partition_id", "sequence_number"]
    assert copies.join(firsts, on=key, how="anti").height == 0  # every copy repeats a delivered event
    same = copies.join(firsts, on=key, suffix="_first")
    assert (same["enqueued_time"] == same["enqueued_time_first"]).all()
    assert (same["temperature"] == same["temperature_first"]).all()
    # Each replay is a contiguous run of one partition's sequence numbers, within the span.
    runs = (
        copies.unique(key)
        .sort(key)
        .with_columns((pl.col("sequence_number").diff().over("partition_id").fill_null(1) != 1).cum_sum().alias("run"))
        .group_by("partition_id", "run")
        .agg((pl.col("enqueued_time").max() - pl.col("enqueued_time").min()).alias("spread"))
    )
    assert runs.height <= 3 and (runs["spread"] < timedelta(seconds=15)).all()
    # In arrival order a copy comes right after its first delivery.
    before = got.select(*key).shift(1).filter(got["fault_redelivered"])
    assert before.equals(copies.select(*key))


def test_bad_input_and_settings_are_named(fleet):
    _, sent = fleet
    with pytest.raises(ValidationError, match="sent_at"):
        deliver(sent.drop("sent_at"))
    with pytest.raises(ValidationError, match="already carry"):
        deliver(deliver(sent.head(10)))
    with pytest.raises(ValidationError, match="no time_observed"):
        deliver(sent.head(3).with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("time_observed")))
    with pytest.raises(ConfigurationError, match="partitions"):
        Delivery(partitions=0)
    with pytest.raises(ConfigurationError, match="slow_fraction"):
        Delivery(slow_fraction=1.5)
    with pytest.raises(ConfigurationError, match="latency"):
        Delivery(latency=timedelta(seconds=-1))
    assert deliver(sent.clear()).columns == [*sent.columns, *DELIVERY_COLUMNS]


def test_a_stream_of_chunks_is_delivered_exactly_as_the_whole_frame(fleet):
    reg, _ = fleet
    faults = [Offline(devices=tuple(reg["device_id"][:5]), outage="4m"), Duplicates(probability=0.02)]
    sim = simulate.simulation(reg, start=None, duration="12m", seed=3, faults=faults, chunk_events=300)
    assert len(sim) > 3  # several chunks, with late sends carried between them
    model = Delivery(partitions=4, slow_fraction=0.1)
    whole = deliver(pl.concat(list(sim)), model, seed=5)
    stream = DeliveryStream(reg["device_id"].to_list(), model, seed=5)
    parts = [stream.push(chunk) for chunk in sim] + [stream.finish()]
    assert sum(1 for p in parts if p.height) > 3
    assert pl.concat(parts).equals(whole)
    # Each part is final: nothing later is enqueued before its last event.
    for a, b in zip(parts, parts[1:]):
        if a.height and b.height:
            assert a["enqueued_time"].max() <= b["enqueued_time"].min()
    # Chunks whose rows are not in send order (still one chunk after the other): the general sort.
    shuffled = [chunk.sample(fraction=1.0, shuffle=True, seed=1) for chunk in sim]
    mixed = DeliveryStream(reg["device_id"].to_list(), model, seed=5)
    got = pl.concat([mixed.push(chunk) for chunk in shuffled] + [mixed.finish()])
    assert got.equals(deliver(pl.concat(shuffled), model, seed=5))
    by_partition = DeliveryStream(reg["device_id"].to_list(), model, seed=5, order="partition")
    parts = [by_partition.push(chunk) for chunk in sim] + [by_partition.finish()]
    assert all(p.equals(p.sort("partition_id", "sequence_number")) for p in parts)
    assert pl.concat(parts).sort("enqueued_time", "sequence_number", "partition_id").equals(whole)


def test_a_stream_refuses_replays_and_chunks_out_of_order(fleet):
    reg, sent = fleet
    with pytest.raises(ConfigurationError, match="replays"):
        DeliveryStream(reg["device_id"].to_list(), Delivery(replays=1))
    stream = DeliveryStream(reg["device_id"].to_list())
    stream.push(sent.tail(50))
    with pytest.raises(ValidationError, match="sent_at order"):
        stream.push(sent.head(50))
    with pytest.raises(ValidationError, match="not among"):
        DeliveryStream(reg["device_id"][:3].to_list()).push(sent.head(50))
