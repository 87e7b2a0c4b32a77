"""Publisher tokens: each device's own credential for one event hub, as Event Hubs publisher policies define them.

A publisher token is a shared access signature whose audience is
``sb://<namespace>/<event hub>/publishers/<device id>``, signed with a policy that may only send,
and valid until an expiry. Its holder can send to that hub only with the partition key
``<device id>`` (the service's rule for publishers), so a stolen token speaks for one device and
one device only, and the hub can refuse that one device (revocation) without touching the others.

A device uses its token with the unmodified azure-eventhub SDK, either way:

- a connection string ``Endpoint=sb://<namespace>/;SharedAccessSignature=<token>;EntityPath=<hub>``
  (plus ``UseDevelopmentEmulator=true`` for the local emulator, which speaks plain AMQP on 5672):
  :meth:`DeviceCredentials.connection_string`;
- ``EventHubProducerClient(<namespace>, <hub>, AzureSasCredential(<token>))`` — TLS on 5671, so
  against the local emulator it needs its TLS port and CA (README), or ``use_tls=False``.

Either way the device sends with ``partition_key=<device id>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from iotlib.connections import Settings, parse_connection_string
from iotlib.errors import ConfigurationError
from iotlib.sas import make_token

if TYPE_CHECKING:
    from azure.core.credentials import AzureSasCredential

#: A Send-only policy's connection string for signing devices' tokens (needed against Azure).
DEVICES_ENV = "IOTLIB_DEVICES_CONNECTION_STRING"
#: The local emulator's send-only policy (well known, like its root key).
LOCAL_POLICY = ("devices", "DEVICE_SAS_KEY_VALUE")


def publisher_audience(namespace: str, eventhub_name: str, device_id: str) -> str:
    """``sb://<namespace>/<event hub>/publishers/<device id>``: the one thing a device's token may address."""
    return f"sb://{namespace}/{eventhub_name}/publishers/{device_id}"


@dataclass(frozen=True)
class DeviceCredentials:
    """What a provisioned device holds: its token, for which audience, until when."""

    device_id: str
    token: str
    audience: str
    expires: datetime
    eventhub_name: str
    #: ``sb://<namespace>[:port]``: where the device connects.
    endpoint: str
    #: Whether the endpoint is the local emulator (plain AMQP: ``UseDevelopmentEmulator=true``).
    is_local: bool = False

    def connection_string(self) -> str:
        """The device's connection string for ``EventHubProducerClient.from_connection_string``."""
        text = f"Endpoint={self.endpoint}/;SharedAccessSignature={self.token};EntityPath={self.eventhub_name}"
        return text + (";UseDevelopmentEmulator=true" if self.is_local else "")

    def credential(self) -> AzureSasCredential:
        """The token as an ``AzureSasCredential`` (``credential.update(new)`` renews it on a live client)."""
        from azure.core.credentials import AzureSasCredential

        return AzureSasCredential(self.token)

    def as_json(self) -> dict[str, Any]:
        """What ``iotlib devices provision`` prints."""
        return {
            "device_id": self.device_id,
            "token": self.token,
            "audience": self.audience,
            "expires": self.expires.isoformat(),
            "eventhub": self.eventhub_name,
            "connection_string": self.connection_string(),
        }


@dataclass(frozen=True)
class PublisherPolicy:
    """The Send policy that signs publisher tokens, and the hub they are for."""

    endpoint: str
    eventhub_name: str
    key_name: str
    key: str
    is_local: bool = False

    @property
    def namespace(self) -> str:
        """The namespace host the audiences name (no port)."""
        return urlparse(self.endpoint).hostname or ""

    @classmethod
    def parse(cls, connection_string: str, *, eventhub_name: str | None = None) -> PublisherPolicy:
        """From a policy's connection string (``Endpoint``, ``SharedAccessKeyName``, ``SharedAccessKey``)."""
        what = f"publisher policy connection string ({DEVICES_ENV})"
        parts = parse_connection_string(connection_string, what=what)
        endpoint = parts.get("endpoint", "").rstrip("/")
        if not endpoint.lower().startswith("sb://") or not urlparse(endpoint).hostname:
            raise ConfigurationError(f"malformed {what}: Endpoint=sb://<namespace host> is missing")
        if not parts.get("sharedaccesskeyname") or not parts.get("sharedaccesskey"):
            raise ConfigurationError(f"malformed {what}: it needs SharedAccessKeyName and SharedAccessKey")
        hub = eventhub_name or parts.get("entitypath")
        if not hub:
            raise ConfigurationError(
                "no event hub name: pass eventhub_name= or use a connection string with EntityPath="
            )
        local = parts.get("usedevelopmentemulator", "").lower() == "true"
        return cls(endpoint, hub, parts["sharedaccesskeyname"], parts["sharedaccesskey"], local)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, eventhub_name: str | None = None) -> PublisherPolicy:
        """``$IOTLIB_DEVICES_CONNECTION_STRING``, else, on the local stack, its send-only ``devices`` policy."""
        from iotlib.connections import settings as in_force

        s = settings if settings is not None else in_force()
        hub = eventhub_name or s.eventhub_name
        given = os.environ.get(DEVICES_ENV)
        if given:
            return cls.parse(given, eventhub_name=hub)
        if not s.is_local:
            raise ConfigurationError(
                f"devices' tokens are signed with a Send-only policy of the hub: create one (e.g. 'devices', "
                f"rights Send) and set {DEVICES_ENV} to its connection string"
            )
        endpoint = parse_connection_string(s.eventhub_connection_string)["endpoint"].rstrip("/")
        return cls(endpoint, hub, *LOCAL_POLICY, is_local=True)

    def issue(self, device_id: str, expires: datetime) -> DeviceCredentials:
        """A token for ``device_id`` until ``expires`` (no registry involved: see :class:`DeviceRegistry`)."""
        audience = publisher_audience(self.namespace, self.eventhub_name, device_id)
        expiry = int(expires.timestamp())
        token = make_token(audience, self.key_name, self.key, expiry)
        when = datetime.fromtimestamp(expiry, UTC)
        return DeviceCredentials(device_id, token, audience, when, self.eventhub_name, self.endpoint, self.is_local)
