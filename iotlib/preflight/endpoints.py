"""Where a connection string points: the host and port a client opens, and whether it is the local stack.

A TCP connect to that address answers the first question a newcomer's mistake raises — is anything
there? — in milliseconds, where the SDKs retry for a quarter of a minute before saying so.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from iotlib.connections import (
    DEFAULT_BLOB_PORT,
    DEFAULT_EVENTHUB_PORT,
    EventHubConnection,
    StorageConnection,
    parse_connection_string,
)

AMQPS_PORT = 5671  # Azure's AMQP over TLS
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class Endpoint:
    """The address a client of ``service`` connects to."""

    service: str  # "Event Hubs" or "Blob storage"
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_local(self) -> bool:
        """On this machine: the local stack (or an emulator started by hand)."""
        return self.host.lower() in _LOOPBACK


def eventhub_endpoint(eventhub: EventHubConnection) -> Endpoint:
    """``Endpoint=sb://host[:port]``: the emulator's plain AMQP port (5672), or Azure's AMQPS port (5671)."""
    endpoint = parse_connection_string(eventhub.connection_string).get("endpoint", "")
    parsed = urlparse(endpoint.replace("sb://", "http://", 1))
    default = DEFAULT_EVENTHUB_PORT if eventhub.is_local else AMQPS_PORT
    return Endpoint("Event Hubs", parsed.hostname or "", parsed.port or default)


def storage_endpoint(storage: StorageConnection) -> Endpoint:
    """The Blob endpoint of a storage connection string (Azurite's, or ``<account>.blob.<suffix>``)."""
    parts = parse_connection_string(storage.connection_string)
    if "blobendpoint" in parts:
        parsed = urlparse(parts["blobendpoint"])
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return Endpoint("Blob storage", parsed.hostname or "", port)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return Endpoint("Blob storage", "127.0.0.1", DEFAULT_BLOB_PORT)
    https = parts.get("defaultendpointsprotocol", "https").lower() == "https"
    suffix = parts.get("endpointsuffix", "core.windows.net")
    return Endpoint("Blob storage", f"{parts.get('accountname', '')}.blob.{suffix}", 443 if https else 80)


def behind_proxy(endpoint: Endpoint) -> bool:
    """True when HTTP clients reach ``endpoint`` through a proxy (a direct connect proves nothing then)."""
    return not endpoint.is_local and any(os.environ.get(name) for name in _PROXY_ENV)


async def connect(endpoint: Endpoint, *, timeout: float) -> str | None:
    """None when ``endpoint`` accepts a TCP connection within ``timeout`` seconds, else why not.

    On this machine a stack that is not up refuses at once; a local endpoint that is merely slow to
    accept (an emulator busy on a loaded machine) is not a mistake, so it counts as answering and the
    caller's own client waits for it.
    """
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), timeout)
    except TimeoutError:
        return None if endpoint.is_local else f"no answer within {timeout:g}s"
    except OSError as exc:
        return socket_reason(exc) or str(exc).lower()
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return None


def socket_reason(exc: BaseException) -> str | None:
    """Why a connection failed, in the errno's own words ("connection refused"), from the socket error
    under an SDK's exception (each SDK wraps it differently and words it "Connect call failed (addr)")."""
    seen: set[int] = set()
    inner: BaseException | None = exc
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if isinstance(inner, OSError) and inner.errno and inner.errno > 0:
            return os.strerror(inner.errno).lower()
        inner = (
            getattr(inner, "inner_exception", None)
            or getattr(inner, "os_error", None)
            or inner.__cause__
            or inner.__context__
        )
    found = re.search(r"\[Errno (-?\d+)\] ([^\n'\"]+)", str(exc))
    if found is None:
        return None
    return os.strerror(int(found[1])).lower() if int(found[1]) > 0 else found[2].strip().lower()
