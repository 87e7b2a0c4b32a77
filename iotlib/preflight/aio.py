"""The preflight checks, async: is the event hub, or the storage account, usable as configured?

Each check first connects to the endpoint's TCP port (a refused or silent port fails at once), then
makes one call the service must answer, with the SDK's retries off: the event hub's properties, or
the container's (the account's when no container is named). A mistake — nothing there, the key
refused, the hub or container missing — raises :class:`~iotlib.errors.EndpointError` with one line
(:mod:`.reasons`); anything else (a slow or busy service) passes, and the caller's own retries decide.
"""

from __future__ import annotations

import asyncio
from typing import Any

from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.errors import EndpointError
from iotlib.preflight import reasons
from iotlib.preflight.endpoints import behind_proxy, connect, eventhub_endpoint, storage_endpoint

#: Seconds each step of a check may take; a failing check answers within about twice that.
TIMEOUT = 4.0
# Client options that route the connection elsewhere than the connection string's host and port.
_ROUTING = ("transport_type", "http_proxy", "custom_endpoint_address")


async def check_eventhub(
    eventhub: EventHubConnection, *, timeout: float = TIMEOUT, **client_options: Any
) -> list[str] | None:
    """The hub's partition ids once it has answered; None when it was too slow to tell.

    ``client_options`` are those the caller's own client uses (TLS trust, transport, proxy), so
    the check connects the same way. Raises :class:`EndpointError` for a mistake.
    """
    from azure.eventhub.aio import EventHubProducerClient
    from azure.eventhub.exceptions import EventHubError

    endpoint = eventhub_endpoint(eventhub)
    if not any(client_options.get(k) for k in _ROUTING):
        why = await connect(endpoint, timeout=timeout)
        if why is not None:
            raise EndpointError(reasons.unreachable(endpoint, why))
    options = {k: v for k, v in client_options.items() if not k.startswith("retry_")}
    client = EventHubProducerClient.from_connection_string(
        eventhub.connection_string, eventhub_name=eventhub.eventhub_name, retry_total=0, **options
    )
    try:
        properties = await asyncio.wait_for(client.get_eventhub_properties(), timeout)
    except TimeoutError:
        return None
    except EventHubError as exc:
        line = reasons.eventhub_failure(exc, eventhub, endpoint)
        if line is None:
            return None
        raise EndpointError(line) from None
    finally:
        try:
            await asyncio.wait_for(client.close(), timeout)
        except (TimeoutError, EventHubError):
            pass
    return [str(p) for p in properties["partition_ids"]]


async def check_storage(storage: StorageConnection, *, container: str | None = None, timeout: float = TIMEOUT) -> None:
    """Is the storage account there and does it take the key (and does ``container`` exist, when named)?

    Raises :class:`EndpointError` for a mistake; the message for a missing container lists the
    account's containers.
    """
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    endpoint = storage_endpoint(storage)
    if not behind_proxy(endpoint):
        why = await connect(endpoint, timeout=timeout)
        if why is not None:
            raise EndpointError(reasons.unreachable(endpoint, why))
    service = BlobServiceClient.from_connection_string(
        storage.connection_string, retry_total=0, connection_timeout=timeout, read_timeout=timeout
    )
    async with service:
        try:
            if container is None:
                await asyncio.wait_for(service.get_service_properties(), timeout)
            else:
                await asyncio.wait_for(service.get_container_client(container).get_container_properties(), timeout)
        except TimeoutError:
            return
        except ResourceNotFoundError as exc:
            if container is None or reasons.error_code(exc) not in ("ContainerNotFound", ""):
                return
            raise EndpointError(reasons.container_missing(storage, container, await _containers(service))) from None
        except AzureError as exc:
            line = reasons.storage_failure(exc, storage, endpoint)
            if line is None:
                return
            raise EndpointError(line) from None


async def _containers(service: Any) -> list[str] | None:
    """The account's container names, for a "(it has: …)" list; None when they cannot be listed."""
    from azure.core.exceptions import AzureError

    try:
        return [c.name async for c in service.list_containers()]
    except AzureError:
        return None
