"""The device identity registry and ``iotlib devices``: states, idempotent provisioning, the revoked list,
bad input. The command-line tests talk to the session's stack, whose emulator watches the registry's list."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError
from emulator_helpers import FAST, ManualClock

import iotlib
from iotlib.connections import Settings
from iotlib.devices.registry import DeviceRegistry
from iotlib.devices.revocations import RevokedPublishers, read_list
from iotlib.devices.tokens import DEVICES_ENV, PublisherPolicy
from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet import scenario
from iotlib.sas import audience_of, expiry_of

FLEET = scenario.original_registry()
IDS = FLEET["device_id"].to_list()
POLICY = PublisherPolicy("sb://localhost:5672", "telemetry", "devices", "DEVICE_SAS_KEY_VALUE", is_local=True)


@pytest.fixture
def registry(tmp_path: Path) -> DeviceRegistry:
    clock = ManualClock(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp())
    with DeviceRegistry(tmp_path / "registry.sqlite", fleet=FLEET, policy=POLICY, clock=clock) as reg:
        yield reg  # type: ignore[misc]


def test_provisioning_is_idempotent_and_tokens_are_publisher_scoped(registry: DeviceRegistry) -> None:
    creds = registry.provision(IDS[0], expiry="24h")
    assert creds.audience == f"sb://localhost/telemetry/publishers/{IDS[0]}"
    assert audience_of(creds.token) == creds.audience and "skn=devices" in creds.token
    assert expiry_of(creds.token) == int(registry.clock()) + 86_400
    assert registry.provision(IDS[0], expiry="1h") == creds  # the same, while valid
    registry.clock.advance(86_400)  # type: ignore[attr-defined]
    fresh = registry.provision(IDS[0], expiry="1h")  # expired: a new one
    assert fresh.token != creds.token and expiry_of(fresh.token) == int(registry.clock()) + 3600
    assert json.loads(json.dumps(fresh.as_json())).keys() >= {"device_id", "token", "audience", "expires"}
    cs = fresh.connection_string()
    assert cs.startswith("Endpoint=sb://localhost:5672/;SharedAccessSignature=SharedAccessSignature sr=")
    assert cs.endswith(";EntityPath=telemetry;UseDevelopmentEmulator=true")


def test_states_move_as_the_rules_say_and_the_revoked_list_follows(registry: DeviceRegistry) -> None:
    a, b = IDS[1], IDS[2]
    registry.provision(a, expiry="1h")
    registry.provision(b, expiry="1h")
    assert registry.disable(a, reason="maintenance").state == "disabled"
    assert read_list(registry.revocation_file)[a].state == "disabled"
    with pytest.raises(ConfigurationError, match="it is disabled"):
        registry.provision(a)
    assert registry.enable(a).state == "provisioned" and read_list(registry.revocation_file) == {}
    watcher = RevokedPublishers(registry.revocation_file)  # what the emulator holds
    assert watcher.refused(b) is None
    assert registry.revoke(b, reason="stolen").state == "revoked"
    assert watcher.refused(b) is not None and watcher.refused(b).state == "revoked"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="cannot become disabled"):
        registry.disable(b)
    with pytest.raises(ConfigurationError, match="valid until .* Enable it after that time"):
        registry.enable(b)  # its token could still be replayed
    registry.clock.advance(3601)  # type: ignore[attr-defined]
    assert registry.enable(b).state == "provisioned"  # every token it had is expired now
    history = registry.history()
    assert history.filter(history["device_id"] == b)["action"].to_list() == ["provision", "revoked", "provisioned"]
    assert registry.list(state="provisioned")["device_id"].to_list() == sorted([a, b])


def test_bad_input_is_a_clear_error(registry: DeviceRegistry, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown device 'not-a-device': it is not in the fleet registry"):
        registry.provision("not-a-device")
    with pytest.raises(ConfigurationError, match="is not provisioned"):
        registry.revoke(IDS[3])
    with pytest.raises(ConfigurationError, match="expiry"):
        registry.provision(IDS[3], expiry="soon")
    with pytest.raises(ConfigurationError, match="shorter than a second"):
        registry.provision(IDS[3], expiry="500ms")
    with pytest.raises(ConfigurationError, match="state 'lost'"):
        registry.list(state="lost")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValidationError, match="not a revoked-publisher list"):
        read_list(garbage)
    azure = Settings(
        "Endpoint=sb://fabrikam.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=k",
        "UseDevelopmentStorage=true",
        "telemetry",
        "environment",
    )
    os.environ.pop(DEVICES_ENV, None)
    with pytest.raises(ConfigurationError, match=DEVICES_ENV):
        PublisherPolicy.from_settings(azure)
    policy = PublisherPolicy.parse(
        "Endpoint=sb://fabrikam.servicebus.windows.net/;SharedAccessKeyName=devices;SharedAccessKey=k",
        eventhub_name="telemetry",
    )
    creds = policy.issue(IDS[0], datetime(2030, 1, 1, tzinfo=UTC))
    assert creds.audience == f"sb://fabrikam.servicebus.windows.net/telemetry/publishers/{IDS[0]}"
    assert "UseDevelopmentEmulator" not in creds.connection_string()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotlib", "devices", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )


def test_the_command_line_provisions_revokes_and_the_running_emulator_obeys(local_stack: object) -> None:
    # The stack's own registry, which a stack kept running between test runs keeps: a device no run used.
    device = random.choice(scenario.default_registry()["device_id"].to_list())
    first = _cli("provision", device, "--expiry", "2h")
    assert first.returncode == 0, first.stderr
    creds = json.loads(first.stdout)
    assert {"device_id", "token", "audience", "expires"} <= creds.keys() and creds["device_id"] == device
    assert json.loads(_cli("provision", device).stdout)["token"] == creds["token"]  # idempotent
    with EventHubProducerClient.from_connection_string(creds["connection_string"], **FAST) as producer:
        batch = producer.create_batch(partition_key=device)
        batch.add(EventData(b"from the command line's token"))
        producer.send_batch(batch)
        revoked = _cli("revoke", device, "--reason", "test")
        assert revoked.returncode == 0 and json.loads(revoked.stdout)["state"] == "revoked"
        with pytest.raises(AuthenticationError, match=f"publisher '{device}' is revoked"):
            batch = producer.create_batch(partition_key=device)
            batch.add(EventData(b"refused"))
            producer.send_batch(batch)  # the emulator (another process) read the list without a restart
    listing = _cli("list", "--state", "revoked", "--json")
    assert any(json.loads(line)["device_id"] == device for line in listing.stdout.splitlines())
    unknown = _cli("provision", "not-a-device")
    assert unknown.returncode == 1 and "unknown device 'not-a-device'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert _cli("enable", device).returncode == 1  # its token is still valid for two hours
    assert iotlib.settings().is_local
