"""Devices and their credentials: who may send to the hub, each with a token of its own.

The original journey provisioned and revoked each device individually; here that is enforced:

- :mod:`~iotlib.devices.registry` — :class:`DeviceRegistry`, the identity registry (SQLite under
  the stack's state folder, keyed by the fleet registry's device ids; provisioned, disabled, revoked);
- :mod:`~iotlib.devices.tokens` — publisher tokens (audience ``sb://<namespace>/<hub>/publishers/<device>``,
  a Send-only policy, an expiry) and how a device uses one with the unmodified azure-eventhub SDK;
- :mod:`~iotlib.devices.revocations` — the revoked-publisher list the registry writes and the
  local emulator re-reads whenever it changes;
- :mod:`~iotlib.devices.plots` — what each device got through.

The emulator enforces all of it (:mod:`iotlib.local.emulator.auth`); ``iotlib.ingest`` can send
each simulated device with its own token (``IngestClient.send(..., devices=registry)``).
"""

from iotlib._lazy import submodules

__all__ = ["DeviceCredentials", "DeviceRegistry", "DeviceState", "PublisherPolicy"]

_load = submodules(__name__, ["plots", "registry", "revocations", "tokens"])
_EXPORTS = {
    "DeviceRegistry": "registry",
    "DeviceState": "registry",
    "DeviceCredentials": "tokens",
    "PublisherPolicy": "tokens",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(_load(_EXPORTS[name]), name)
    return _load(name)
