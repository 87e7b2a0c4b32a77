"""Preflight: is Event Hubs, or Blob storage, usable as configured? One clear line in seconds when not.

Every command that needs the local stack or Azure calls :func:`check` before it starts work, and the
clients call the same checks on first use, so a newcomer's mistake fails fast and plainly:

- nothing answers at the endpoint → ``Event Hubs at localhost:5672 does not answer (connection
  refused): is the local stack up? Start it with `iotlib up` …``;
- the key is refused → one line naming the namespace or account and the key;
- the event hub does not exist → ``event hub 'x' does not exist in namespace 'fabrikam' (it has:
  telemetry)`` (the list comes from the local stack's record; Azure cannot list hubs over AMQP);
- a named container does not exist → the account's containers.

Each raises :class:`~iotlib.errors.EndpointError`. A slow or busy service passes (the work's own
retries decide). :mod:`iotlib.preflight.aio` has the async twins.

>>> from iotlib import preflight
>>> preflight.check(storage=False)   # the hub of iotlib.settings()  # doctest: +SKIP
"""

from __future__ import annotations

from iotlib._eventloop import run
from iotlib.connections import Connections, EventHubConnection, Settings, StorageConnection
from iotlib.preflight import aio
from iotlib.preflight.aio import TIMEOUT

__all__ = ["TIMEOUT", "check", "check_eventhub", "check_storage"]


def check_eventhub(
    eventhub: EventHubConnection, *, timeout: float = TIMEOUT, **client_options: object
) -> list[str] | None:
    """The hub's partition ids, or None when it was too slow to tell; :class:`EndpointError` for a mistake."""
    return run(aio.check_eventhub(eventhub, timeout=timeout, **client_options))


def check_storage(storage: StorageConnection, *, container: str | None = None, timeout: float = TIMEOUT) -> None:
    """Raises :class:`EndpointError` when the account is unreachable, refuses the key, or lacks ``container``."""
    run(aio.check_storage(storage, container=container, timeout=timeout))


def check(
    settings: Settings | None = None,
    *,
    eventhub_name: str | None = None,
    eventhub: bool = True,
    storage: bool = True,
    container: str | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Check what a command needs of :func:`iotlib.settings` (or ``settings``): the hub, the storage account.

    ``container``, when given, must exist. Both checks run at once; endpoints where nothing answers
    are named together in one line.
    """
    parts = Connections.of(settings, eventhub_name=eventhub_name)
    run(
        aio.check(
            parts.eventhub if eventhub else None,
            parts.storage if storage else None,
            container=container,
            timeout=timeout,
        )
    )
