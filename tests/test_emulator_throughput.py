"""Throughput units: metering, server-busy on the wire and through the real client, egress pacing, config and CLI."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import EventDataSendError
from emulator_helpers import ManualClock, RawClient, error_of, event_message, receive, wait_until

from iotlib.connections import eventhub_connection_string
from iotlib.errors import ConfigurationError, EmulatorError
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.auth import make_token
from iotlib.local.emulator.throughput import SERVER_BUSY, ThroughputMeter, TokenBucket

HUB = "telemetry"
ONE_HUB = EmulatorConfig(entities=(EntityConfig(HUB, 2),))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the meter on its own (a fake clock) ------------------------------------------------------


def test_bucket_refills_continuously_up_to_its_capacity():
    bucket = TokenBucket(1000, 1000, now=0.0)
    assert bucket.fits(1000, 0.0) and bucket.fits(5000, 0.0)  # a full bucket takes anything (into debt)
    bucket.take(1000)
    assert bucket.level(0.0) == 0 and not bucket.fits(1, 0.0)
    assert bucket.level(0.25) == pytest.approx(250)
    assert bucket.wait(500, 0.25) == pytest.approx(0.25)
    assert bucket.level(60.0) == 1000  # never more than one second's worth


def test_a_send_over_budget_is_refused_whole_and_takes_nothing():
    clock = Clock()
    meter = ThroughputMeter(1, namespace="ns", clock=clock)
    assert meter.admit(600, 60_000, HUB) is None
    refusal = meter.admit(600, 60_000, HUB)  # 400 events left: refused whole, not 400 of 600
    assert refusal is not None and "Error code : 50002" in refusal and "events limit" in refusal
    assert meter.admit(400, 40_000, HUB) is None  # the refused send took no budget
    assert meter.admit(1, 100, HUB) is not None
    clock.now += 0.5
    assert meter.admit(500, 50_000, HUB) is None  # refilled at 1,000 events/s
    s = meter.stats()
    assert (s.accepted_transfers, s.accepted_events, s.throttled_transfers, s.throttled_events) == (3, 1500, 2, 601)


def test_bytes_are_metered_too_and_a_full_bucket_takes_an_oversized_send():
    clock = Clock()
    meter = ThroughputMeter(1, namespace="ns", clock=clock)
    mib = 1024 * 1024
    assert meter.admit(1, mib, HUB) is None  # a 1 MiB event uses the whole second
    assert "bytes limit" in (meter.admit(1, 10, HUB) or "")
    clock.now += 1.0
    # 5,000 small events in one batch are more than a second's worth: a full bucket admits them
    # (no legal message is refused forever) and the debt holds the long-run rate.
    assert meter.admit(5000, 200_000, HUB) is None
    clock.now += 3.9
    assert meter.admit(1, 10, HUB) is not None
    clock.now += 0.2
    assert meter.admit(1, 10, HUB) is None


def test_unlimited_counts_and_never_refuses():
    meter = ThroughputMeter(None, namespace="ns", clock=Clock())
    for _ in range(100):
        assert meter.admit(10_000, 1024 * 1024, HUB) is None
    assert meter.egress_allowance(300, 512 * 1024) == (300, 512 * 1024, 0.0)
    s = meter.stats()
    assert s.throughput_units is None and s.accepted_events == 1_000_000 and s.throttled_transfers == 0


def test_egress_waits_for_budget():
    clock = Clock()
    meter = ThroughputMeter(1, namespace="ns", clock=clock)
    events, size, wait = meter.egress_allowance(300, 512 * 1024)
    assert (events, size, wait) == (300, 512 * 1024, 0.0)
    meter.delivered(4096, 1000)  # the second's 4,096 events are out
    events, size, wait = meter.egress_allowance(300, 512 * 1024)
    assert events == 0 and 0.05 < wait <= 0.1  # wait for a tenth of a second's worth
    clock.now += wait
    assert meter.egress_allowance(300, 512 * 1024)[0] == 300
    assert meter.stats().egress_holds == 1


def test_throttling_is_logged_once_then_as_summaries(caplog):
    clock = Clock()
    meter = ThroughputMeter(1, namespace="ns", clock=clock)
    caplog.set_level(logging.INFO, logger="iotlib.local.emulator.throughput")
    meter.admit(1000, 1000, HUB)
    for _ in range(5000):
        meter.admit(10, 1000, HUB)
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    clock.now += 10
    meter.log_summary()
    assert len(caplog.records) == 2 and "throttled 5,000 send(s) (50,000 events" in caplog.records[1].getMessage()
    meter.log_summary()  # a quiet interval: throttling is over
    meter.log_summary()  # and then nothing more
    assert len(caplog.records) == 3 and "no longer throttled" in caplog.records[2].getMessage()


# --- configuration -----------------------------------------------------------------------------


def _official(**namespace_keys: object) -> dict:
    ns = {"Type": "EventHub", "Name": "ns1", "Entities": [{"Name": "eh1", "PartitionCount": "2"}], **namespace_keys}
    return {"UserConfig": {"NamespaceConfig": [ns], "LoggingConfig": {"Type": "File"}}}


def test_config_key_is_read_written_and_checked():
    assert EmulatorConfig.from_dict(_official()).throughput_units is None  # default: not metered
    assert EmulatorConfig.from_dict(_official(ThroughputUnits=0)).throughput_units is None
    cfg = EmulatorConfig.from_dict(_official(ThroughputUnits="2"))  # strings, like PartitionCount
    assert cfg.throughput_units == 2
    assert cfg.to_dict()["UserConfig"]["NamespaceConfig"][0]["ThroughputUnits"] == 2
    assert EmulatorConfig.from_dict(cfg.to_dict()) == cfg
    assert "ThroughputUnits" not in EmulatorConfig().to_dict()["UserConfig"]["NamespaceConfig"][0]
    for bad in (1.5, "many", -1, 41, True):
        with pytest.raises(ConfigurationError, match="ThroughputUnits"):
            EmulatorConfig.from_dict(_official(ThroughputUnits=bad))


# --- through the real client over TCP ----------------------------------------------------------


def _batch(producer: EventHubProducerClient, first: int, count: int, pid: str = "0"):
    batch = producer.create_batch(partition_id=pid)
    for i in range(first, first + count):
        batch.add(EventData(f"event-{i:06d}".encode()))
    return batch


def test_a_burst_is_refused_with_server_busy_and_stored_exactly_once():
    clock = ManualClock()  # time stands still during the burst: the budget is exactly one second's
    with Emulator.start(port=0, config=ONE_HUB, throughput_units=1, clock=clock) as emu:
        with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB) as producer:
            producer.get_partition_ids()  # open the connection first
            size, batches = 200, 15  # 3,000 events sent at once: 3x one TU's second
            pending: list[int] = []
            errors: list[EventDataSendError] = []
            for b in range(batches):
                try:
                    producer.send_batch(_batch(producer, b * size, size))
                except EventDataSendError as exc:
                    errors.append(exc)
                    pending.append(b)
            burst = emu.throughput()
            # One throughput unit's bucket holds 1,000 events: five batches, then every send is refused.
            assert burst.accepted_events == 1000 and pending == list(range(5, batches))
            # What the SDK raises: EventDataSendError whose condition is server-busy (Azure's 50002).
            assert all(e.error == "server-busy" for e in errors)
            assert "Error code : 50002" in str(errors[0]) and SERVER_BUSY in str(errors[0])
            # By the emulator's own counts (however often the SDK re-sent): every error is a refusal it
            # counted, a refused transfer is a whole batch, and each stored batch took one transfer.
            assert burst.throttled_transfers >= len(errors)
            assert burst.throttled_events == burst.throttled_transfers * size
            assert burst.accepted_transfers == batches - len(pending)
            # As time passes the same producer (its link stayed attached) gets the rest through.
            for b in pending:
                clock.advance(0.2)  # 200 events' worth of budget
                producer.send_batch(_batch(producer, b * size, size))
        stats = emu.throughput()
        assert stats.accepted_events == batches * size
        assert stats.throttled_transfers == burst.throttled_transfers  # nothing refused once paced
        got = receive(emu.connection_string, partition_id="0", count=batches * size, timeout=20)
    bodies = [e.body_as_str() for e in got]
    assert len(bodies) == batches * size and len(set(bodies)) == len(bodies)  # each event once
    assert set(bodies) == {f"event-{i:06d}" for i in range(batches * size)}


def test_server_busy_on_the_wire_leaves_the_link_attached():
    clock = ManualClock()  # the budget refills only when the test says so
    with Emulator.start(port=0, config=ONE_HUB, throughput_units=1, clock=clock) as emu:
        raw = RawClient(emu.port)
        try:
            raw.handshake()
            audience = f"sb://localhost:{emu.port}/{HUB}"
            token = make_token(audience, "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(clock()) + 300)
            assert raw.put_token(audience, token) == 202
            raw.attach_sender(f"{HUB}/Partitions/0", handle=0)
            payload = event_message(b"z" * 700_000)  # 0.7 MiB: the second one in a row is over 1 MiB/s

            def send(delivery_id: int) -> p.Disposition:
                for i in range(0, len(payload), 60_000):
                    raw.transfer(0, delivery_id, payload[i : i + 60_000], more=i + 60_000 < len(payload))
                for _ in range(50):
                    _, got, _ = raw.read_frame()
                    assert not isinstance(got, (p.Detach, p.Close, p.End)), "a throttled send must not cost the link"
                    if isinstance(got, p.Disposition):
                        return got
                raise AssertionError("no disposition")

            assert isinstance(send(0).state, p.Accepted)
            refused = send(1)
            assert refused.settled is True  # the outcome is final
            assert isinstance(refused.state, p.Rejected)
            error = error_of(refused.state)
            assert error.condition == SERVER_BUSY and "50002" in (error.description or "")
            assert "bytes limit" in (error.description or "")
            clock.advance(0.8)  # 0.7 MiB comes back in 0.7 s
            assert isinstance(send(2).state, p.Accepted)  # same link, same connection
        finally:
            raw.close()
        stats = emu.throughput()
        assert (stats.accepted_transfers, stats.throttled_transfers) == (2, 1)
        with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB) as producer:
            assert producer.get_partition_properties("0")["last_enqueued_sequence_number"] == 1  # two stored


def test_a_steady_rate_under_the_budget_is_never_throttled():
    clock = ManualClock()  # time passes between sends only as the test moves it: a loaded machine sends the same
    with Emulator.start(port=0, config=ONE_HUB, throughput_units=1, clock=clock) as emu:
        with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB) as producer:
            # 200 events, then 0.25 s on the emulator's clock: 800 events/s, 1,600 in all (more than
            # the bucket holds, so this passes only if the budget refills as time goes on).
            for b in range(8):
                producer.send_batch(_batch(producer, b * 200, 200))
                clock.advance(0.25)
        stats = emu.throughput()
    assert stats.throttled_transfers == 0 and stats.accepted_events == 1600


def test_unlimited_by_default():
    with Emulator.start(port=0, config=ONE_HUB) as emu:
        with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB) as producer:
            for b in range(10):  # 10,000 events at once: ten times one TU's second
                producer.send_batch(_batch(producer, b * 1000, 1000, pid=str(b % 2)))
        stats = emu.throughput()
    assert stats.throughput_units is None
    assert stats.throttled_transfers == 0 and stats.accepted_events == 10_000


def test_egress_is_paced_not_failed(tmp_path):
    count = 9000
    with Emulator.start(port=0, data_dir=tmp_path, config=ONE_HUB) as emu:  # written unmetered
        with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB) as producer:
            for b in range(count // 3000):
                producer.send_batch(_batch(producer, b * 3000, 3000))
    clock = ManualClock()  # the budget refills only as the test moves time: slow machines read the same
    with Emulator.start(port=0, data_dir=tmp_path, config=ONE_HUB, throughput_units=1, clock=clock) as emu:
        started = clock()
        got: list = []
        reader = threading.Thread(
            target=lambda: got.extend(receive(emu.connection_string, partition_id="0", count=count, timeout=60))
        )
        reader.start()
        holds = 0
        while reader.is_alive():  # each time a delivery waits for budget, let a tenth of a second pass
            now_holds = emu.throughput().egress_holds
            if now_holds > holds:
                holds = now_holds
                clock.advance(0.1)
            reader.join(0.01)
        elapsed = clock() - started
        stats = emu.throughput()
    assert [e.body_as_str() for e in got] == [f"event-{i:06d}" for i in range(count)]
    # 4,096 events/s out after a one-second burst: the reader waited (on the emulator's clock) instead of failing.
    assert elapsed >= (count - 4096) / 4096
    assert stats.delivered_events == count and stats.egress_holds > 0


# --- the config key through a file, and the CLI flag --------------------------------------------


def _burst_until_busy(connection_string: str) -> EventDataSendError:
    with EventHubProducerClient.from_connection_string(connection_string, eventhub_name=HUB) as producer:
        for b in range(5):
            try:
                producer.send_batch(_batch(producer, b * 1000, 1000))
            except EventDataSendError as exc:
                return exc
    raise AssertionError("5,000 events at once were not throttled at 1 TU")


def test_config_file_key_meters_a_subprocess_emulator(tmp_path):
    config = EmulatorConfig(entities=(EntityConfig(HUB, 2),), throughput_units=1)
    with Emulator.start(port=0, data_dir=tmp_path, config=config, mode="process") as emu:
        assert json.loads(emu._config_file.read_text())["UserConfig"]["NamespaceConfig"][0]["ThroughputUnits"] == 1
        assert _burst_until_busy(emu.connection_string).error == "server-busy"
        with pytest.raises(EmulatorError, match="mode='thread'"):
            emu.throughput()
        log = tmp_path / "emulator.log"
        assert wait_until(lambda: "over its ingress budget" in log.read_text(), timeout=5)
    assert "1 throughput unit: 1,000 events/s or 1 MiB/s in" in log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_flag(tmp_path):
    bad = subprocess.run(
        [sys.executable, "-m", "iotlib", "emulator", "--throughput-units", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "whole number of throughput units" in bad.stderr
    port = _free_port()
    log = tmp_path / "emulator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iotlib",
                "emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--throughput-units",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        assert wait_until(lambda: "listening on" in log.read_text() or proc.poll() is not None, timeout=30)
        assert "1 throughput unit" in log.read_text(), log.read_text()
        assert _burst_until_busy(eventhub_connection_string("localhost", port)).error == "server-busy"
    finally:
        proc.terminate()
        proc.wait(15)
    assert "over its ingress budget" in log.read_text()
