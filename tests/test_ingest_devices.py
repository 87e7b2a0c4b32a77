"""``IngestClient.send(..., devices=registry)``: every simulated device sends with its own publisher token;
the hub refuses the ones the registry says, with its reason, and the rest of the fleet is unaffected."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from emulator_helpers import FAST

from iotlib import hub
from iotlib.devices.registry import DeviceRegistry
from iotlib.devices.tokens import PublisherPolicy
from iotlib.fleet import scenario, simulate
from iotlib.ingest import IngestClient
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator.config import DEVICE_KEY, DEVICE_KEY_NAME

HUB = "telemetry"


def test_each_device_sends_as_itself_and_only_the_refused_ones_fail(tmp_path: Path) -> None:
    fleet = scenario.original_registry().head(8)
    ids = fleet["device_id"].to_list()
    events = simulate.generate(fleet, start=simulate.DEFAULT_START, duration="2m", period="10s", seed=3)
    per_device = events.group_by("device_id").len()
    count = dict(zip(per_device["device_id"].cast(pl.String), per_device["len"]))
    revoked, disabled, unknown = ids[0], ids[1], ids[2]  # the last is never provisioned
    registry_file = tmp_path / "devices" / "registry.sqlite"
    with Emulator.start(
        data_dir=tmp_path / "eventhubs",
        port=0,
        config=EmulatorConfig(entities=(EntityConfig(HUB, 4),)),
        revoked_publishers=registry_file.parent / "revoked-publishers.json",
    ) as emu:
        policy = PublisherPolicy(f"sb://localhost:{emu.port}", HUB, DEVICE_KEY_NAME, DEVICE_KEY, is_local=True)
        with (
            DeviceRegistry(registry_file, fleet=fleet, policy=policy) as registry,
            IngestClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as client,
        ):
            for device in ids:
                if device != unknown:
                    registry.provision(device)
            registry.revoke(revoked, reason="stolen")
            registry.disable(disabled, reason="maintenance")
            report = client.send(events, devices=registry, progress=False)
            by_device = {r["device_id"]: r for r in report.devices().iter_rows(named=True)}
            assert report.accounted
            for device in ids[3:]:
                assert by_device[device]["sent"] == count[device] and by_device[device]["failed"] == 0
            assert by_device[revoked]["failed"] == count[revoked]
            assert f"publisher '{revoked}' is revoked" in by_device[revoked]["reason"]
            assert f"publisher '{disabled}' is disabled" in by_device[disabled]["reason"]
            assert f"device '{unknown}' has no credentials" in by_device[unknown]["reason"]
            # Enabled again, the device reconnects with its credentials and sends.
            registry.enable(disabled)
            again = client.send(events.filter(pl.col("device_id") == disabled), devices=registry, progress=False)
            assert again.per_device == {disabled: count[disabled]} and not again.failed
        stored = hub.read(emu.connection_string, eventhub_name=HUB)
    keys = stored.group_by("partition_key").len()
    assert dict(zip(keys["partition_key"], keys["len"])) == {d: count[d] for d in [disabled, *ids[3:]]}
