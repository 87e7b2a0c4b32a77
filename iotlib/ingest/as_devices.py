"""Sending as the devices themselves: one producer per device, each with that device's own publisher token.

In this mode (``IngestClient.send(events, devices=registry)``) every simulated device connects
with its own credentials (:mod:`iotlib.devices.tokens`) and sends with its id as partition key,
as a real thermostat would; the hub can then refuse one device without touching the others. A
device whose token is refused (revoked, disabled, expired) has its events reported as failed
with the hub's reason, and its producer is dropped: its next events reconnect with whatever
credentials the source holds then (a renewed token, say).

Each device is one AMQP connection, so this mode is for small fleets (the notebooks use a few
dozen devices); at Fabrikam's scale each device is its own process, or a gateway sends for many.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Union

from azure.eventhub.exceptions import AuthenticationError, ClientClosedError, EventHubError

from iotlib.errors import IotlibError

if TYPE_CHECKING:
    from azure.eventhub.aio import EventHubProducerClient

    from iotlib.devices.registry import DeviceRegistry
    from iotlib.devices.tokens import DeviceCredentials

#: Where devices' credentials come from: the registry, a mapping, or a function of the device id.
DeviceSource = Union["DeviceRegistry", Mapping[str, "DeviceCredentials"], Callable[[str], "DeviceCredentials"]]


def refused(exc: BaseException) -> bool:
    """Is this the hub refusing the device (no retry can help), rather than a passing fault?"""
    if isinstance(exc, AuthenticationError | ClientClosedError):
        return True
    return isinstance(exc, EventHubError) and "unauthorized" in str(exc).lower()


def reason(exc: BaseException) -> str:
    """The hub's words, on one line (the SDK repeats them over several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    described = [line for line in lines if line.lower().startswith("description:")]
    text = described[0].split(":", 1)[1].strip() if described else (lines[0] if lines else type(exc).__name__)
    return f"{type(exc).__name__}: {text.strip(chr(34))}"


class DeviceSenders:
    """One async producer per device, made from its credentials on first use and kept."""

    def __init__(self, source: DeviceSource, producer_options: Mapping[str, Any]) -> None:
        self.source = source
        # iotlib retries sends itself, knowing a refusal from a fault; the SDK need not retry much too.
        self.options = {"retry_total": 1, **producer_options}
        self._producers: dict[str, EventHubProducerClient] = {}

    def credentials(self, device: str) -> DeviceCredentials:
        """The device's credentials now (an unknown or unprovisioned device raises, with the reason)."""
        source = self.source
        if isinstance(source, Mapping):
            try:
                return source[device]
            except KeyError:
                raise IotlibError(f"no credentials for device {device!r}") from None
        if callable(source):
            return source(device)
        return source.credentials(device)

    async def producer(self, device: str) -> EventHubProducerClient:
        producer = self._producers.get(device)
        if producer is None:
            from azure.eventhub.aio import EventHubProducerClient

            creds = self.credentials(device)
            producer = EventHubProducerClient.from_connection_string(creds.connection_string(), **self.options)
            self._producers[device] = producer
        return producer

    async def drop(self, device: str) -> None:
        """Forget a refused device's producer: its next events start over with fresh credentials."""
        producer = self._producers.pop(device, None)
        if producer is not None:
            try:
                await producer.close()
            except Exception:  # noqa: BLE001 - a refused connection may fail to close cleanly; it is gone anyway
                pass

    async def close(self) -> None:
        for device in list(self._producers):
            await self.drop(device)
