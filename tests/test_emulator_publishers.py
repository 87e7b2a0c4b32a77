"""Publisher tokens against the real emulator with the real SDK: issue, verify, the partition-key rule,
revocation (on new links and on a live one), expiry and renewal.

Each test runs its own emulator in this process with an injected clock where expiry matters, and a
device registry in a temporary folder whose revoked-publisher list that emulator watches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AzureSasCredential
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, EventHubError
from emulator_helpers import FAST, ManualClock, RawClient, error_of, event_message

from iotlib import hub
from iotlib.devices.registry import DeviceRegistry
from iotlib.devices.tokens import DeviceCredentials, PublisherPolicy
from iotlib.errors import ConfigurationError
from iotlib.fleet import scenario
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.config import DEVICE_KEY, DEVICE_KEY_NAME
from iotlib.sas import make_token

HUB = "telemetry"
FLEET = scenario.original_registry().head(6)
A, B, C, D, E, F = FLEET["device_id"].to_list()


class Stack:
    """An emulator and the registry whose revoked-publisher list it watches."""

    def __init__(self, emu: Emulator, registry: DeviceRegistry, clock: ManualClock) -> None:
        self.emu, self.registry, self.clock = emu, registry, clock

    def producer(self, creds: DeviceCredentials) -> EventHubProducerClient:
        return EventHubProducerClient.from_connection_string(creds.connection_string(), **FAST)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    clock = ManualClock()
    registry_file = tmp_path / "devices" / "registry.sqlite"
    config = EmulatorConfig(entities=(EntityConfig(HUB, 4),))
    with Emulator.start(
        data_dir=tmp_path / "eventhubs",
        port=0,
        config=config,
        clock=clock,
        revoked_publishers=registry_file.parent / "revoked-publishers.json",
    ) as emu:
        policy = PublisherPolicy(f"sb://localhost:{emu.port}", HUB, DEVICE_KEY_NAME, DEVICE_KEY, is_local=True)
        with DeviceRegistry(registry_file, fleet=FLEET, policy=policy, clock=clock) as registry:
            yield Stack(emu, registry, clock)


def send(producer: EventHubProducerClient, key: str | None, body: bytes = b"reading") -> None:
    batch = producer.create_batch(partition_key=key)
    batch.add(EventData(body))
    producer.send_batch(batch)


def received_keys(emu: Emulator) -> list[str]:
    """Partition keys of every event the hub holds, read to its end."""
    return hub.read(emu.connection_string, eventhub_name=HUB)["partition_key"].to_list()


def test_a_provisioned_device_sends_as_itself_with_the_unmodified_sdk_both_ways(stack: Stack) -> None:
    creds = stack.registry.provision(A, expiry="1h")
    assert creds.audience.endswith(f"/{HUB}/publishers/{A}") and f"skn={DEVICE_KEY_NAME}" in creds.token
    assert stack.registry.provision(A, expiry="5h") == creds  # idempotent: the same token while valid
    with stack.producer(creds) as producer:  # the connection string with SharedAccessSignature=
        send(producer, A, b"by connection string")
    with EventHubProducerClient(
        f"localhost:{stack.emu.port}", HUB, AzureSasCredential(creds.token), use_tls=False, **FAST
    ) as producer:  # the token as an AzureSasCredential
        send(producer, A, b"by credential")
    assert received_keys(stack.emu).count(A) == 2


def test_a_device_token_sends_only_with_its_own_partition_key_and_says_why(stack: Stack) -> None:
    creds = stack.registry.provision(B)
    with stack.producer(creds) as producer:
        send(producer, B)
        with pytest.raises(EventHubError) as other:
            send(producer, C)  # another device's key
        with pytest.raises(EventHubError) as none:
            send(producer, None)  # no key: round-robin is not a publisher's to choose
        with pytest.raises(EventHubError) as partition:
            batch = producer.create_batch(partition_id="1")  # nor is a partition
            batch.add(EventData(b"x"))
            producer.send_batch(batch)
        send(producer, B)  # the link survived the refusals
    assert f"sends only with its publisher's name as partition key ('{B}'); this send has partition key '{C}'" in str(
        other.value
    )
    assert "unauthorized" in str(other.value).lower()
    assert "this send has no partition key" in str(none.value)
    assert f"a publisher token (for '{B}') may only send to event hub '{HUB}'" in str(partition.value)
    assert received_keys(stack.emu) == [B, B]


def test_revoking_a_device_cuts_it_off_on_its_live_link_while_the_fleet_sends_on(stack: Stack) -> None:
    compromised, neighbour = stack.registry.provision(C), stack.registry.provision(D)
    with stack.producer(compromised) as bad, stack.producer(neighbour) as good:
        send(bad, C)  # both links are open and working
        send(good, D)
        state = stack.registry.revoke(C, reason="firmware dump found on a forum")
        assert state.state == "revoked"
        with pytest.raises(AuthenticationError) as refused:
            send(bad, C)  # the next send on the open link
        send(good, D)  # the rest of the fleet: unaffected
    assert f"publisher '{C}' is revoked" in str(refused.value)
    with stack.producer(compromised) as again, pytest.raises(AuthenticationError) as new_link:
        send(again, C)  # and on a new connection
    assert f"publisher '{C}' is revoked" in str(new_link.value)
    assert sorted(received_keys(stack.emu)) == sorted([C, D, D])
    with pytest.raises(ConfigurationError, match="cannot provision"):
        stack.registry.provision(C)


def test_a_live_link_is_refused_at_the_protocol_level_as_soon_as_the_list_changes(stack: Stack) -> None:
    """The same cut-off seen on the wire: the transfer after the revocation is settled rejected."""
    creds = stack.registry.provision(E)
    raw = RawClient(stack.emu.port)
    try:
        raw.handshake()
        assert raw.put_token(f"sb://localhost:{stack.emu.port}/{HUB}", creds.token) == 202
        raw.attach_sender(HUB, handle=0)
        raw.transfer(0, 0, event_message(b"before", partition_key=E))
        assert isinstance(raw.outcome(), p.Accepted)
        stack.registry.disable(E, reason="maintenance")
        raw.transfer(0, 1, event_message(b"after", partition_key=E))
        outcome = raw.outcome()
        assert isinstance(outcome, p.Rejected)
        assert error_of(outcome).condition == "amqp:unauthorized-access"
        assert f"publisher '{E}' is disabled" in error_of(outcome).description
        stack.registry.enable(E)  # disabled is temporary: the same link sends again
        raw.transfer(0, 2, event_message(b"back", partition_key=E))
        assert isinstance(raw.outcome(), p.Accepted)
    finally:
        raw.close()


def test_expired_and_tampered_tokens_are_refused(stack: Stack) -> None:
    creds = stack.registry.provision(F, expiry="60s")
    with stack.producer(creds) as producer:
        send(producer, F)
        stack.clock.advance(61)  # the emulator's clock passes the token's expiry: no sleeping
        with pytest.raises(EventHubError) as expired_live:
            send(producer, F)
    assert "expired" in str(expired_live.value)
    with stack.producer(creds) as producer, pytest.raises(AuthenticationError) as expired_new:
        send(producer, F)
    assert f"the token expired at {int(creds.expires.timestamp())}" in str(expired_new.value)
    # Tampered: another device's audience under this token's signature (a device posing as its neighbour).
    fresh = stack.registry.renew(F, expiry="1h")
    forged = fresh.token.replace(F, A)
    with (
        EventHubProducerClient(
            f"localhost:{stack.emu.port}", HUB, AzureSasCredential(forged), use_tls=False, **FAST
        ) as producer,
        pytest.raises(AuthenticationError) as tampered,
    ):
        send(producer, A)
    assert "the signature does not match key 'devices'" in str(tampered.value)
    # A publisher token signed with a key that may not send is no token at all.
    listen_only = make_token(fresh.audience, "RootManageSharedAccessKey", "NOT_THE_KEY", int(stack.clock()) + 60)
    with (
        EventHubProducerClient(
            f"localhost:{stack.emu.port}", HUB, AzureSasCredential(listen_only), use_tls=False, **FAST
        ) as producer,
        pytest.raises(AuthenticationError),
    ):
        send(producer, F)


def test_renewing_on_a_live_link_keeps_the_device_sending_past_the_old_expiry(tmp_path: Path) -> None:
    """The SDK renews a token itself, on the same connection, once 90 % of its life has passed:
    a device updates its ``AzureSasCredential`` and carries on. That schedule is the SDK's own,
    on the real clock, so this test waits for it (about 28 s); the emulator's clock then moves
    past the old token's expiry without waiting."""
    clock = ManualClock(time.time())
    with Emulator.start(data_dir=tmp_path / "eventhubs", port=0, clock=clock) as emu:
        policy = PublisherPolicy(f"sb://localhost:{emu.port}", HUB, DEVICE_KEY_NAME, DEVICE_KEY, is_local=True)
        with DeviceRegistry(tmp_path / "registry.sqlite", fleet=FLEET, policy=policy) as registry:
            first = registry.provision(A, expiry="30s")
            credential = AzureSasCredential(first.token)
            with EventHubProducerClient(f"localhost:{emu.port}", HUB, credential, use_tls=False, **FAST) as producer:
                send(producer, A, b"first token")
                # The SDK refreshes once the token has int(10 % of the whole seconds it had left when
                # put) or fewer to go; it was put before the send above returned, so at least this:
                expires = first.expires.timestamp()
                window = int(0.1 * int(expires - time.time()))
                assert window >= 1, "the first send took too long for the SDK to refresh before expiry"
                connection = _connection_of(emu, A)
                second = registry.renew(A, expiry="1h")
                credential.update(second.token)
                while time.time() < expires - window + 0.2:  # the SDK's refresh window is open
                    time.sleep(0.2)
                send(producer, A, b"renewing")  # the SDK puts the new token before this send
                clock.advance(first.expires.timestamp() + 5 - clock())  # the first token is now expired
                send(producer, A, b"second token")
                assert _connection_of(emu, A) is connection  # the same connection, renewed in place
                grant = next(g for g in connection.grants._by_scope.values() if g.publisher == A)
                assert grant.expires == second.expires.timestamp()


def _connection_of(emu: Emulator, device: str) -> object:
    """The emulator's connection holding a token of ``device`` (introspection, for the renewal test)."""
    server = emu._server[0]  # noqa: SLF001 - the test looks inside on purpose
    found = [c for c in server.connections if any(g.publisher == device for g in c.grants._by_scope.values())]
    assert len(found) == 1, found
    return found[0]
