"""Ingestion into the real emulator over TCP with the real azure-eventhub client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest

import iotlib
from iotlib import hub
from iotlib.errors import ConfigurationError, EndpointError, ValidationError
from iotlib.fleet import events, scenario, simulate
from iotlib.ingest import IngestClient
from iotlib.ingest import aio as ingest_aio
from iotlib.ingest.partitioning import partition_for_key

pytestmark = pytest.mark.usefixtures("local_stack")


@pytest.fixture(scope="module")
def registry() -> pl.DataFrame:
    return scenario.original_registry()


def _sim(registry: pl.DataFrame, minutes: int, **options: object) -> pl.DataFrame:
    return simulate.generate(registry.head(200), start=simulate.DEFAULT_START, duration=f"{minutes}m", **options)


def test_replay_round_trip_keys_properties_bodies(registry: pl.DataFrame, eventhub_name: str) -> None:
    sent = _sim(registry, 3, seed=11)
    before = hub.positions(eventhub_name=eventhub_name)
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        report = client.send(sent, progress=False)
        ids = client.partition_ids()
    assert report.events_sent == sent.height and report.accounted and not report.failed
    got = hub.read(eventhub_name=eventhub_name, since=before)
    assert got.height == sent.height
    # Every event sits in the partition its device's key maps to, and carries that key.
    assert (
        got["partition_key"]
        == got["properties"].map_elements(lambda p: json.loads(p)["DeviceId"], return_dtype=pl.String)
    ).all()
    expected_pid = got["partition_key"].map_elements(lambda k: partition_for_key(k, ids), return_dtype=pl.String)
    assert (got["partition_id"] == expected_pid).all()
    props = json.loads(got["properties"][0])
    assert props == events.properties(props["DeviceId"])
    # Bodies decode to exactly the simulated readings.
    decoded = events.decode_bodies(got["body"])
    assert decoded["error"].null_count() == decoded.height
    want = sent.select(pl.col("device_id").cast(pl.String), "time_observed", pl.col("temperature").cast(pl.Float64))
    assert decoded.drop("error").sort(pl.all()).equals(want.sort(pl.all()))
    # Per-partition counts in the report match what the hub holds.
    counts = dict(got.group_by("partition_id").len().iter_rows())
    assert counts == report.per_partition
    # Order per device is preserved within its partition.
    for _, group in got.sort("sequence_number").group_by("partition_key"):
        times = events.decode_bodies(group["body"])["time_observed"]
        assert times.is_sorted() or group.height < 2


def test_malformed_payloads_are_held_back_with_reasons_or_sent_on_request(
    registry: pl.DataFrame, eventhub_name: str
) -> None:
    sent = _sim(registry, 5, seed=3, faults=["malformed:probability=0.05"])
    bad = sent["fault_malformed"].is_not_null().sum()
    assert bad > 0
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        before = hub.positions(eventhub_name=eventhub_name)
        held = client.send(sent, progress=False)
        assert len(held.rejected) == bad and held.events_sent == sent.height - bad and held.accounted
        assert all(f.reason.startswith("malformed payload held back: ") for f in held.rejected)
        assert {f.reason.split(": ", 1)[1].split(":")[0] for f in held.rejected} & {"invalid JSON", "missing field(s)"}
        assert hub.read(eventhub_name=eventhub_name, since=before).height == sent.height - bad
        before = hub.positions(eventhub_name=eventhub_name)
        on_purpose = client.send(sent, send_malformed=True, progress=False)
    assert on_purpose.events_sent == sent.height and on_purpose.malformed_sent == bad and not on_purpose.rejected
    got = hub.read(eventhub_name=eventhub_name, since=before)
    assert events.validate_bodies(got["body"]).is_not_null().sum() == bad


def test_live_mode_paces_by_sent_at(registry: pl.DataFrame, eventhub_name: str) -> None:
    sent = _sim(registry, 2, seed=5)  # 2 minutes of readings
    span = (sent["sent_at"].max() - sent["sent_at"].min()).total_seconds()
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        report = client.send(sent, mode="live", speed=60, progress=False)
    assert report.events_sent == sent.height
    # At 60x, two minutes take about two seconds: never faster than the schedule.
    assert report.elapsed_seconds >= span / 60 * 0.95
    thr = report.throughput(every=0.5)
    assert thr.height >= 3, "a paced run spreads its sends over time"


def test_ctrl_c_inside_a_query_on_the_loop_ends_the_send_with_its_report(
    registry: pl.DataFrame, eventhub_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polars raises KeyboardInterrupt in whichever thread runs a query when Ctrl-C arrives; in the
    # send loop's thread it once killed the loop and left the caller waiting forever. Delivered
    # there on the third tick, it is a stop: the report comes back interrupted and agrees with the hub.
    sent = _sim(registry, 4, seed=6)
    due = ingest_aio.ticks

    def interrupted_ticks(*args: Any, **kwargs: Any) -> Iterator[tuple[float, pl.DataFrame]]:
        for n, tick in enumerate(due(*args, **kwargs)):
            if n == 2:
                raise KeyboardInterrupt
            yield tick

    monkeypatch.setattr(ingest_aio, "ticks", interrupted_ticks)
    before = hub.positions(eventhub_name=eventhub_name)
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        report = client.send(sent, mode="live", speed=60, progress=False)
    landed = hub.read(eventhub_name=eventhub_name, since=before)
    assert report.interrupted
    assert 0 < report.events_sent < sent.height
    assert landed.height == report.events_sent


def test_batch_size_cap_is_respected(registry: pl.DataFrame, eventhub_name: str) -> None:
    sent = _sim(registry, 1, seed=6)
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        report = client.send(sent, max_batch_events=10, progress=False)
    assert report.events_sent == sent.height
    assert report.sends()["events"].max() <= 10
    assert report.batches_sent >= sent.height // 10


def test_async_client_sends_a_simulation_stream(registry: pl.DataFrame, eventhub_name: str) -> None:
    sim = simulate.simulation(registry.head(100), start=simulate.DEFAULT_START, duration="3m", seed=8, chunk_events=100)
    expected = sum(
        f.height
        for f in simulate.simulation(
            registry.head(100), start=simulate.DEFAULT_START, duration="3m", seed=8, chunk_events=100
        )
    )

    async def go() -> int:
        async with ingest_aio.IngestClient.from_settings(eventhub_name=eventhub_name) as client:
            report = await client.send(sim, progress=False)
            return report.events_sent

    assert asyncio.run(go()) == expected


def test_bad_input_is_a_clear_error(registry: pl.DataFrame, eventhub_name: str) -> None:
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        with pytest.raises(ValidationError, match="missing column"):
            client.send(pl.DataFrame({"device_id": ["a"]}), progress=False)
        with pytest.raises(ConfigurationError, match="mode must be one of"):
            client.send(_sim(registry, 1), mode="fast", progress=False)
        with pytest.raises(ConfigurationError, match="speed must be positive"):
            client.send(_sim(registry, 1), mode="live", speed=0, progress=False)


def test_wrong_key_is_reported_as_refused_in_one_line(eventhub_name: str) -> None:
    conn = iotlib.settings().eventhub_connection_string.replace("SAS_KEY_VALUE", "not-the-key")
    with pytest.raises(EndpointError, match="refused the key 'RootManageSharedAccessKey'") as caught:
        with IngestClient.from_connection_string(conn, eventhub_name=eventhub_name) as client:
            client.partition_ids()
    text = str(caught.value)
    assert "\n" not in text and text.count("signature does not match") == 1


def test_cli_ingest_reports_what_it_sent(eventhub_name: str) -> None:
    before = hub.positions(eventhub_name=eventhub_name)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotlib",
            "ingest",
            "--devices",
            "50",
            "--duration",
            "2m",
            "--no-progress",
            "--eventhub",
            eventhub_name,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    sent = int(out.stdout.split("sent ", 1)[1].split(" events", 1)[0].replace(",", ""))
    assert sent > 0
    assert hub.read(eventhub_name=eventhub_name, since=before).height == sent
