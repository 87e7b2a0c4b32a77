"""Shared access signatures are checked for real; unknown entities are not found."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventHubError
from emulator_helpers import FAST, ManualClock, RawClient, error_of, event_message, receive

from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig, KeyConfig
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.auth import make_token

HUB = "telemetry"
ROOT = ("RootManageSharedAccessKey", "SAS_KEY_VALUE")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    config = EmulatorConfig(
        entities=(EntityConfig(HUB, 2, ("$Default", "warm")),),
        keys=(KeyConfig(*ROOT), KeyConfig("device", "DEVICE_KEY", frozenset({"Send"}))),
    )
    with Emulator.start(data_dir=tmp_path_factory.mktemp("eventhubs"), port=0, config=config) as running:
        yield running


def _producer(emu, credential) -> EventHubProducerClient:
    return EventHubProducerClient(f"localhost:{emu.port}", HUB, credential, use_tls=False, **FAST)


def _token(emu, path: str, key_name: str = ROOT[0], key: str = ROOT[1], ttl: int = 300) -> str:
    return make_token(f"sb://localhost:{emu.port}/{path}", key_name, key, int(time.time()) + ttl)


def test_named_key_and_sas_credentials_work(emu):
    with _producer(emu, AzureNamedKeyCredential(*ROOT)) as p:
        p.send_event(EventData(b"named"), partition_id="0")
    with _producer(emu, AzureSasCredential(_token(emu, HUB))) as p:
        p.send_event(EventData(b"sas"), partition_id="0")
        assert p.get_partition_properties("0")["last_enqueued_sequence_number"] >= 1
    # A send-only key (a device's) may send.
    with _producer(emu, AzureSasCredential(_token(emu, HUB, "device", "DEVICE_KEY"))) as p:
        p.send_event(EventData(b"device"), partition_id="0")


@pytest.mark.parametrize(
    "case",
    ["wrong key", "unknown key name", "expired", "another entity"],
)
def test_bad_tokens_are_refused_with_401(emu, case):
    if case == "wrong key":
        p = EventHubProducerClient.from_connection_string(
            emu.connection_string.replace("SAS_KEY_VALUE", "NOT_THE_KEY"), eventhub_name=HUB, **FAST
        )
    elif case == "unknown key name":
        p = _producer(emu, AzureNamedKeyCredential("NoSuchPolicy", "SAS_KEY_VALUE"))
    elif case == "expired":
        p = _producer(emu, AzureSasCredential(_token(emu, HUB, ttl=-10)))
    else:
        p = _producer(emu, AzureSasCredential(_token(emu, "otherhub")))
    with p, pytest.raises(AuthenticationError) as err:
        p.send_event(EventData(b"refused"), partition_id="1")
    assert "401" in str(err.value)


def test_consumer_group_scoped_token_covers_only_its_group(emu):
    raw = RawClient(emu.port)
    try:
        raw.handshake()
        audience = f"sb://localhost:{emu.port}/{HUB}/consumergroups/$default"
        assert raw.put_token(audience, _token(emu, f"{HUB}/consumergroups/$default")) == 202
        attach = raw.attach_receiver(f"{HUB}/ConsumerGroups/$Default/Partitions/0", handle=0)
        assert attach.source is not None and attach.initial_delivery_count == 0  # attached
        attach = raw.attach_receiver(f"{HUB}/ConsumerGroups/warm/Partitions/0", handle=1)
        assert attach.source is None
        _, detach, _ = raw.read_until(p.Detach)
        assert error_of(detach).condition == "amqp:unauthorized-access"
        # Naming another group as the audience of the same token is refused outright.
        assert (
            raw.put_token(
                f"sb://localhost:{emu.port}/{HUB}/consumergroups/warm", _token(emu, f"{HUB}/consumergroups/$default")
            )
            == 401
        )
    finally:
        raw.close()


def test_links_before_a_valid_token_are_refused(emu):
    raw = RawClient(emu.port)
    try:
        raw.handshake()
        attach = raw.attach_sender(HUB, handle=0)
        assert attach.target is None  # refused: no target
        _, detach, _ = raw.read_until(p.Detach)
        assert error_of(detach).condition == "amqp:unauthorized-access"
        # A put-token with a bad signature is answered 401 and grants nothing.
        bad = _token(emu, HUB, key="WRONG")
        assert raw.put_token(f"sb://localhost:{emu.port}/{HUB}", bad) == 401
        attach = raw.attach_sender(HUB, handle=1)
        assert attach.target is None
        _, detach, _ = raw.read_until(p.Detach)
        assert error_of(detach).condition == "amqp:unauthorized-access"
    finally:
        raw.close()


def test_device_key_cannot_listen(emu):
    raw = RawClient(emu.port)
    try:
        raw.handshake()
        device = _token(emu, HUB, "device", "DEVICE_KEY")
        assert raw.put_token(f"sb://localhost:{emu.port}/{HUB}", device) == 202
        attach = raw.attach_receiver(f"{HUB}/ConsumerGroups/$Default/Partitions/0", handle=0)
        assert attach.source is None
        _, detach, _ = raw.read_until(p.Detach)
        assert error_of(detach).condition == "amqp:unauthorized-access"
        assert "Listen" in (error_of(detach).description or "")
    finally:
        raw.close()


def test_unknown_entities_are_not_found(emu):
    raw = RawClient(emu.port)
    try:
        raw.handshake()
        assert raw.put_token(f"sb://localhost:{emu.port}/", _token(emu, "")) == 202
        for handle, (kind, address) in enumerate(
            [
                ("sender", "nohub"),
                ("sender", f"{HUB}/Partitions/9"),
                ("receiver", f"{HUB}/ConsumerGroups/nogroup/Partitions/0"),
                ("receiver", f"{HUB}/ConsumerGroups/$Default/Partitions/5"),
                ("receiver", "nohub/ConsumerGroups/$Default/Partitions/0"),
            ]
        ):
            if kind == "sender":
                raw.attach_sender(address, handle=handle)
            else:
                raw.attach_receiver(address, handle=handle)
            _, detach, _ = raw.read_until(p.Detach)
            assert error_of(detach).condition == "amqp:not-found", (address, detach)
    finally:
        raw.close()
    # The SDK reports an unknown hub as Azure describes it (a 404 on $management), not a hang.
    producer = EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name="nohub", **FAST)
    with producer, pytest.raises(ConnectError) as err:
        producer.get_eventhub_properties()
    assert "Status code: 404" in str(err.value)
    assert "The messaging entity 'sb://localhost/nohub' could not be found" in str(err.value)
    assert "Description: None" not in str(err.value)
    with pytest.raises(EventHubError):
        receive(emu.connection_string, partition_id="0", count=1, consumer_group="nogroup", timeout=5)


def test_links_close_when_their_token_expires_unrenewed(tmp_path):
    clock = ManualClock()  # the token's expiry comes by moving the emulator's clock, not by sleeping
    with Emulator.start(
        data_dir=tmp_path, port=0, config=EmulatorConfig(entities=(EntityConfig(HUB, 1),)), clock=clock
    ) as emu:
        raw = RawClient(emu.port)
        try:
            raw.handshake()
            audience = f"sb://localhost:{emu.port}/{HUB}"
            assert raw.put_token(audience, make_token(audience, *ROOT, int(clock()) + 2)) == 202
            attach = raw.attach_sender(f"{HUB}/Partitions/0", handle=0)
            assert attach.target is not None
            raw.transfer(0, 0, event_message(b"in time"))
            assert isinstance(raw.outcome(), p.Accepted)
            clock.advance(3)
            raw.transfer(0, 1, event_message(b"too late"))
            _, detach, _ = raw.read_until(p.Detach)
            assert error_of(detach).condition == "amqp:unauthorized-access"
        finally:
            raw.close()
