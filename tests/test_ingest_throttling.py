"""iotlib.ingest against a throttled hub: a private emulator metered at one throughput unit."""

from __future__ import annotations

import polars as pl

from iotlib import hub
from iotlib.fleet import events, scenario, simulate
from iotlib.ingest import IngestClient
from iotlib.ingest import aio as ingest_aio
from iotlib.local.emulator import Emulator


def test_a_synchronized_burst_at_one_throughput_unit_is_all_sent_once():
    registry = scenario.build_registry(1500, seed=1)
    sent = simulate.generate(registry, start=simulate.DEFAULT_START, duration="2m", firmware="synchronized", seed=4)
    per_second = sent.group_by(pl.col("sent_at").dt.truncate("1s")).len()["len"]
    assert per_second.max() == 1500  # every device in the same second: 1.5x what one TU takes
    with Emulator.start(port=0, throughput_units=1) as emu:
        conn, name = emu.connection_string, emu.eventhub_name
        before = hub.positions(conn, eventhub_name=name)
        with IngestClient.from_connection_string(conn, eventhub_name=name) as client:
            # 60x: the two minute-apart bursts arrive one second apart.
            report = client.send(sent, mode="live", speed=60, progress=False)
        stats = emu.throughput()
        got = hub.read(conn, eventhub_name=name, since=before)
    # Every event went out in the end; each pause was a throttle, and counted as one.
    assert report.events_sent == sent.height and not report.failed and report.accounted
    assert report.throttled >= 1 and report.throttled == report.retries
    assert stats.throttled_transfers >= report.throttled  # the hub refused at least that many sends
    assert stats.accepted_events == sent.height  # and took nothing twice
    # The hub holds each reading exactly once.
    assert got.height == sent.height
    assert got.select("partition_key", "body").n_unique() == sent.height
    decoded = events.decode_bodies(got["body"]).drop("error")
    want = sent.select(pl.col("device_id").cast(pl.String), "time_observed", pl.col("temperature").cast(pl.Float64))
    assert decoded.sort(pl.all()).equals(want.sort(pl.all()))


def test_a_replayed_burst_waits_for_the_budget_instead_of_failing():
    # Eight partitions' batches compete for one unit: a batch refused while others go through is
    # waiting its turn, not failing, however often that happens; and nothing is stored twice.
    sent, report, stats, got = _replay_at_one_unit(6000, seed=2, duration="1m", max_retries=1)
    assert not report.failed and report.events_sent == sent.height == stats.accepted_events
    assert report.throttled >= 1 and stats.throttled_transfers >= report.throttled
    assert got.height == sent.height and got.select("partition_key", "body").n_unique() == sent.height


def test_a_batch_throttled_past_the_give_up_time_is_reported_failed_and_nothing_else_is_lost(monkeypatch):
    # With no patience at all, the first throttle ends a batch: its events are in `failed` with the
    # hub's reason, the accepted ones are stored once, and the two add up to what was given.
    monkeypatch.setattr(ingest_aio, "THROTTLE_GIVE_UP", 0.0)
    sent, report, _, got = _replay_at_one_unit(3000, seed=3, duration="30s")
    assert report.failed and report.events_sent >= 1
    assert all("throttled for 0 s with nothing accepted" in f.reason for f in report.failed)
    assert all("Please wait" in f.reason for f in report.failed)  # the hub's own words
    assert report.events_sent + len(report.failed) == sent.height
    assert got.height == report.events_sent == got.select("partition_key", "body").n_unique()


def _replay_at_one_unit(devices: int, *, seed: int, duration: str, max_retries: int | None = None):
    """A synchronized stretch replayed into a private emulator metered at one unit: what was
    generated, the send's report, the hub's meter and what the hub holds afterwards."""
    registry = scenario.build_registry(devices, seed=seed)
    sent = simulate.generate(
        registry, start=simulate.DEFAULT_START, duration=duration, firmware="synchronized", seed=seed + 3
    )
    options = {} if max_retries is None else {"max_retries": max_retries}
    with Emulator.start(port=0, throughput_units=1) as emu:
        conn, name = emu.connection_string, emu.eventhub_name
        before = hub.positions(conn, eventhub_name=name)
        with IngestClient.from_connection_string(conn, eventhub_name=name) as client:
            report = client.send(sent, progress=False, **options)
        stats = emu.throughput()
        got = hub.read(conn, eventhub_name=name, since=before)
    return sent, report, stats, got
