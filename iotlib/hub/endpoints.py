"""Is anything listening? A quick look at the Event Hubs and Blob endpoints before the SDKs try.

The SDKs retry a refused connection for about 15 s and then raise a long traceback; the
monitor looks first (a TCP connect to each endpoint, a few seconds at most) and, when the local
stack is down, says so in one line naming the endpoint and what to run. Kept small and apart so
that it can join a shared preflight in :mod:`iotlib.connections`.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlparse

from iotlib.connections import (
    DEFAULT_BLOB_PORT,
    DEFAULT_EVENTHUB_PORT,
    EventHubConnection,
    StorageConnection,
    parse_connection_string,
)
from iotlib.errors import HubError, StackError

AMQPS_PORT = 5671


def eventhub_address(eventhub: EventHubConnection) -> tuple[str, int]:
    """Host and port the Event Hubs client connects to (5671 for Azure's AMQP over TLS)."""
    parsed = urlparse(f"sb://{eventhub.fully_qualified_namespace}")
    default = DEFAULT_EVENTHUB_PORT if eventhub.is_local else AMQPS_PORT
    return parsed.hostname or "localhost", parsed.port or default


def storage_address(storage: StorageConnection) -> tuple[str, int]:
    """Host and port of the account's Blob endpoint."""
    parts = parse_connection_string(storage.connection_string)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return "127.0.0.1", DEFAULT_BLOB_PORT
    if "blobendpoint" in parts:
        url = urlparse(parts["blobendpoint"])
        return url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80)
    scheme = parts.get("defaultendpointsprotocol", "https")
    host = f"{parts.get('accountname', '')}.blob.{parts.get('endpointsuffix', 'core.windows.net')}"
    return host, 443 if scheme == "https" else 80


async def _answers(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens; else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return os.strerror(exc.errno).lower() if exc.errno else str(exc)
    writer.close()
    return None


async def check_reachable(
    eventhub: EventHubConnection, storage: StorageConnection | None = None, *, timeout: float = 3.0
) -> None:
    """Raise a one-line :class:`StackError` (local stack) or :class:`HubError` when an endpoint is silent."""
    targets = [("Event Hubs", eventhub_address(eventhub))]
    if storage is not None:
        targets.append(("Blob storage", storage_address(storage)))
    answers = await asyncio.gather(*(_answers(host, port, timeout) for _, (host, port) in targets))
    silent = [(what, f"{host}:{port}", why) for (what, (host, port)), why in zip(targets, answers) if why]
    if not silent:
        return
    where = "; ".join(f"{what} at {address} ({why})" for what, address, why in silent)
    if eventhub.is_local:
        raise StackError(f"the local stack is not up: nothing answers for {where}. Start it with `iotlib up`")
    raise HubError(f"cannot reach {where}; check the connection strings (iotlib.settings()) and the network")
