"""Before a command works: can the hub and the storage account be reached, with these keys?

A newcomer's commonest mistakes — the local stack not started, a wrong key, a wrong hub name — make
the Azure SDKs retry for a long time and then print pages of traceback. These checks answer in a
few seconds with one line that names the endpoint and says what to do (``iotlib up`` for a local
endpoint). Every command that needs the hub or storage can call them first:

>>> await check(eventhub=conn.eventhub, storage=conn.storage, error=CaptureError)  # doctest: +SKIP

(:func:`check_sync` for synchronous code). Each raises ``error`` (an :class:`~iotlib.errors.IotlibError`
of the caller's stage) with one line; nothing is retried.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from iotlib.connections import (
    DEFAULT_BLOB_PORT,
    DEFAULT_EVENTHUB_PORT,
    EVENTHUB_ENV,
    STORAGE_ENV,
    EventHubConnection,
    StorageConnection,
    parse_connection_string,
)
from iotlib.errors import IotlibError

#: Seconds to wait for a TCP connection, then for the hub to answer a management request.
CONNECT_TIMEOUT = 4.0
ANSWER_TIMEOUT = 6.0
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}  # noqa: S104 - names, not a bind


@dataclass(frozen=True)
class Endpoint:
    """Where a service listens, as the connection string says, and what it is called for the user."""

    service: str  # "Event Hubs" or "Blob storage"
    host: str
    port: int
    setting: str  # the environment variable that sets it

    @property
    def local(self) -> bool:
        return self.host.lower() in _LOCAL_HOSTS

    def __str__(self) -> str:
        return f"{self.service} at {self.host}:{self.port}"


def eventhub_endpoint(eventhub: EventHubConnection) -> Endpoint:
    """The AMQP endpoint: the port in the namespace, else 5672 for an emulator and 5671 (TLS) for Azure."""
    host, _, port = eventhub.fully_qualified_namespace.rpartition(":")
    if not host or not port.isdigit():
        host, port = eventhub.fully_qualified_namespace, str(DEFAULT_EVENTHUB_PORT if eventhub.is_local else 5671)
    return Endpoint("Event Hubs", host.strip("[]"), int(port), EVENTHUB_ENV)


def storage_endpoint(storage: StorageConnection) -> Endpoint:
    """The Blob endpoint: ``BlobEndpoint``, the development account, or ``<account>.blob.<suffix>``."""
    parts = parse_connection_string(storage.connection_string, what="storage connection string")
    if parts.get("blobendpoint"):
        url = urlparse(parts["blobendpoint"])
        port = url.port or (443 if url.scheme == "https" else 80)
        return Endpoint("Blob storage", url.hostname or "", port, STORAGE_ENV)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return Endpoint("Blob storage", "127.0.0.1", DEFAULT_BLOB_PORT, STORAGE_ENV)
    scheme = parts.get("defaultendpointsprotocol", "https")
    host = f"{parts.get('accountname', '')}.blob.{parts.get('endpointsuffix', 'core.windows.net')}"
    return Endpoint("Blob storage", host, 443 if scheme == "https" else 80, STORAGE_ENV)


async def reachable(endpoint: Endpoint, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when a TCP connection to ``endpoint`` opens; otherwise why not, in a few words."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except socket.gaierror:
        return f"the host name {endpoint.host!r} does not resolve"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    writer.close()
    return None


def unreachable_message(down: list[tuple[Endpoint, str]]) -> str:
    """One line for endpoints nothing answers at, with what to do."""
    where = "; ".join(f"{e} ({why})" for e, why in down)
    if all(e.local for e, _ in down):
        return f"cannot reach {where}: is the local stack up? Start it with `iotlib up` (`iotlib status` shows it)"
    settings = " and ".join(dict.fromkeys(e.setting for e, _ in down))
    return f"cannot reach {where}: check {settings} and the network"


async def check_eventhub_answers(eventhub: EventHubConnection, *, timeout: float = ANSWER_TIMEOUT) -> str | None:
    """None when the hub answers a management request with these credentials; otherwise one line on why not."""
    from azure.eventhub.exceptions import AuthenticationError, EventHubError

    client = eventhub.consumer("$Default", retry_total=0)
    try:
        await asyncio.wait_for(client.get_eventhub_properties(), timeout)
    except TimeoutError:
        return f"{eventhub_endpoint(eventhub)} did not answer within {timeout:g} s"
    except (AuthenticationError, EventHubError) as exc:
        return _eventhub_refusal(eventhub, exc)
    finally:
        await client.close()
    return None


def _eventhub_refusal(eventhub: EventHubConnection, exc: Exception) -> str:
    text = str(exc)
    status = re.search(r"Status code: (\d+)", text)
    described = re.search(r"Description: ([^\n]+)", text)
    detail = described.group(1) if described else text.splitlines()[0] if text else type(exc).__name__
    detail = detail.strip().strip('"').split(" To know more")[0].rstrip(".")
    code = status.group(1) if status else ""
    ns = eventhub.fully_qualified_namespace
    if code == "404" or "could not be found" in text:
        return f"event hub {eventhub.eventhub_name!r} does not exist in namespace {ns} ({detail})"
    if code == "401" or "Unauthorized" in text or "authentication" in text.lower():
        return f"Event Hubs at {ns} refused the credentials ({detail}): check {EVENTHUB_ENV}"
    return f"Event Hubs at {ns}: {detail}"


async def check(
    *,
    eventhub: EventHubConnection | None = None,
    storage: StorageConnection | None = None,
    error: type[IotlibError],
) -> None:
    """Raise ``error`` with one line unless every given service is reachable (and the hub answers)."""
    endpoints = [e for e in (eventhub and eventhub_endpoint(eventhub), storage and storage_endpoint(storage)) if e]
    answers = await asyncio.gather(*(reachable(e) for e in endpoints))
    down = [(e, why) for e, why in zip(endpoints, answers) if why is not None]
    if down:
        raise error(unreachable_message(down))
    if eventhub is not None:
        refused = await check_eventhub_answers(eventhub)
        if refused is not None:
            raise error(refused)


def check_sync(
    *,
    eventhub: EventHubConnection | None = None,
    storage: StorageConnection | None = None,
    error: type[IotlibError],
) -> None:
    """:func:`check` for synchronous code (runs it on iotlib's event loop thread)."""
    from iotlib._eventloop import run

    run(check(eventhub=eventhub, storage=storage, error=error))
