"""The streaming job against the real emulator and Azurite: streaming equals batch, dead letters,
checkpoints after commits, the warm store's answers, alerts on another hub."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import iotlib
from iotlib import hub
from iotlib.fleet import scenario, simulate
from iotlib.hub import monitor
from iotlib.ingest import IngestClient
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.processing import EventTimePolicy
from iotlib.warm import BuildingTooHot, StreamProcessor, TemperatureJump, WarmStore, compare, incoming, live

FAULTS = [
    "skew:fraction=0.15,min_skew=20s,max_skew=3m",  # some clocks behind (late), some ahead of the hub
    "offline:fraction=0.1,outage=40s",  # buffered readings sent in a late burst
    "duplicates:probability=0.03",
    "malformed:probability=0.03",
    "spikes:probability=0.02",
]


def _stretch(registry: pl.DataFrame, *, seed: int, minutes: float, speed: float, faults=FAULTS) -> pl.DataFrame:
    """A simulated stretch that ends about now once sent live at ``speed``: event times trail arrival."""
    duration = timedelta(minutes=minutes)
    start = datetime.now(UTC).replace(microsecond=0) - duration + duration / speed
    return simulate.generate(registry, start=start, duration=duration, seed=seed, faults=faults)


def _process_while_sending(eventhub_name: str, events: pl.DataFrame, *, speed: float, **options):
    """Start a processor at the hub's current end, send ``events`` live, stop once all is read; flush."""
    before = hub.positions(eventhub_name=eventhub_name)
    processor = StreamProcessor.from_settings(eventhub_name=eventhub_name, starting_position=before,
                                              checkpoint_container=f"warm-{uuid.uuid4().hex[:10]}",
                                              commit_interval=0.5, **options)  # fmt: skip
    run = live.run_alongside(processor, events, speed=speed, settle=0.5, flush=True, timeout=90)
    return before, run.sent, run.report, processor.options


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), late_policy=st.sampled_from(["side_output", "adjust", "drop"]),
       out_of_order=st.sampled_from(["0s", "2s"]))  # fmt: skip
@pytest.mark.slow
def test_the_warm_store_equals_the_batch_job_on_what_the_hub_delivered(local_stack, eventhub_name, tmp_path, seed,
                                                                       late_policy, out_of_order):  # fmt: skip
    registry = scenario.build_registry(150, buildings=4, seed=seed)
    events = _stretch(registry, seed=seed, minutes=1.5, speed=30)
    # The stretch is sent 30 times faster than it happened: a backfill policy (windows are closed
    # by the data's own progress, not by the hub's clock running on meanwhile), on a finer tick.
    policy = EventTimePolicy(late_policy=late_policy, out_of_order=out_of_order, idle_timeout="10m", tick="250ms")
    path = tmp_path / f"warm-{uuid.uuid4().hex[:6]}.sqlite"
    before, sent, report, options = _process_while_sending(eventhub_name, events, speed=30, registry=registry,
                                                           warm_store=path, policy=policy)  # fmt: skip
    assert report.received == sent.events_sent
    back = incoming.from_hub_frame(hub.read(eventhub_name=eventhub_name, since=before))
    with WarmStore(path) as store:
        verdict = compare(store, back, registry, policy=policy)
        assert verdict.equal, verdict
        c = report.counts
        assert c.late + c.clock_ahead > 0 and c.duplicates > 0 and c.accepted > 0
        assert store.watermarks().height > 3  # the watermark moved while the stretch arrived
        # Every malformed payload sent is a dead letter with its reason and raw bytes.
        dead = store.dead_letters()
        assert dead.height == events["fault_malformed"].drop_nulls().len() > 0
        assert dead["body"].null_count() == 0 and dead["reason"].null_count() == 0
        # "What is the average temperature in building b now?": the newest complete window of b, never
        # one the end of the stream cut short (flushed: closed_at null).
        history = store.history()
        assert history.filter(pl.col("closed_at").is_null()).height > 0
        for b in store.building_temperature()["building_id"].to_list():
            complete = history.filter((pl.col("building_id") == b) & pl.col("closed_at").is_not_null())
            newest = complete.sort("last_observed_time").row(-1, named=True)
            now = store.current_temperature(b)
            assert now.complete and now.last_observed_time == newest["last_observed_time"]
            assert (now.window_end, now.events) == (newest["window_end"], newest["events"])
    # The hub was checkpointed after the last commit: nothing left to process.
    lag = monitor.lag({options.consumer_group: options.checkpoint_container}, eventhub_name=eventhub_name)
    assert lag["unprocessed"].sum() == 0


def test_alerts_go_to_the_warm_store_and_to_another_hub(local_stack, tmp_path):
    config = EmulatorConfig(entities=(EntityConfig("telemetry", 2, ("$Default", "warm")), EntityConfig("alerts", 1)))
    registry = scenario.build_registry(60, buildings=2, seed=3)
    events = _stretch(registry, seed=3, minutes=1, speed=30, faults=["heat:buildings=2,rise=30,ramp=0s"])
    with Emulator.start(data_dir=tmp_path / "eventhubs", port=0, config=config) as emu:
        s = iotlib.settings()
        processor = StreamProcessor.from_connection_string(
            emu.connection_string,
            s.storage_connection_string,
            eventhub_name="telemetry",
            registry=registry,
            warm_store=tmp_path / "warm.sqlite",
            checkpoint_container=f"warm-{uuid.uuid4().hex[:10]}",
            alerts=[BuildingTooHot(30, 3), TemperatureJump(100)],
            alert_eventhub="alerts",
            policy=EventTimePolicy(idle_timeout="10m"),
            commit_interval=0.5,
        )
        with IngestClient.from_connection_string(emu.connection_string, eventhub_name="telemetry") as client:
            client.send(events, progress=False)
        report = processor.run(once=True, flush=True, timeout=60)
        assert report.alerts_sent == report.alerts == 1
        with WarmStore(tmp_path / "warm.sqlite") as store:
            alerts = store.alerts()
        assert alerts["building_id"].to_list() == [2] and alerts["sent_at"].null_count() == 0
        delivered = hub.read(emu.connection_string, eventhub_name="alerts")
    body = delivered["body"][0].decode()
    assert delivered.height == 1 and '"Rule":"building_too_hot"' in body and '"BuildingId":2' in body
    assert '"EventType": "TemperatureAlert"' in delivered["properties"][0]
