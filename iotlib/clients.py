"""How every client is made: ``from_connection_string(...)`` and ``from_settings(...)``, written once.

Each client family (ingest, capture, the warm job; sync and ``.aio`` alike) inherits its two
constructors from one base here. They only parse: ``from_connection_string`` checks the strings
it is given and never reads :func:`iotlib.settings`; ``from_settings`` takes the settings in force
(or the ``Settings`` passed in). ``__init__`` takes the parsed parts
(:class:`~iotlib.connections.EventHubConnection`, :class:`~iotlib.connections.StorageConnection`)
and the family's typed options.

One base per family, not one mixin for all: the keywords are typed by the family's ``TypedDict``,
and a mixin cannot be generic over one (``Unpack`` of a type variable is not allowed, PEP 692).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

from iotlib.connections import Connections, EventHubConnection, Settings, StorageConnection

if TYPE_CHECKING:
    from iotlib.capture.options import CaptureParameters
    from iotlib.hub.monitor_options import MonitorParameters, PacedParameters
    from iotlib.warm.options import ProcessorParameters


class ProducerOptions(TypedDict, total=False):
    """Options of the Azure SDK's producer client an ingest client passes on."""

    retry_total: int
    retry_backoff_factor: float
    retry_backoff_max: float
    retry_mode: str
    idle_timeout: float
    logging_enable: bool
    user_agent: str
    transport_type: Any
    http_proxy: dict[str, Any]
    connection_verify: str


class EventHubClient:
    """``from_connection_string`` / ``from_settings`` for clients of one event hub (ingest)."""

    if TYPE_CHECKING:  # what the two constructors call; each client defines it

        def __init__(self, eventhub: EventHubConnection, /, **options: Unpack[ProducerOptions]) -> None: ...

    @classmethod
    def from_connection_string(
        cls, conn_str: str, *, eventhub_name: str | None = None, **options: Unpack[ProducerOptions]
    ) -> Self:
        """A client for the hub ``conn_str`` names (``eventhub_name``, or its ``EntityPath``)."""
        return cls(EventHubConnection.parse(conn_str, eventhub_name=eventhub_name), **options)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, eventhub_name: str | None = None, **options: Unpack[ProducerOptions]
    ) -> Self:
        """A client for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        return cls(Connections.of(settings, eventhub_name=eventhub_name).eventhub, **options)


class CaptureClient:
    """``from_connection_string`` / ``from_settings`` for the capture writers."""

    if TYPE_CHECKING:  # what the two constructors call; each client defines it

        def __init__(
            self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[CaptureParameters]
        ) -> None: ...

    @classmethod
    def from_connection_string(
        cls,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        **options: Unpack[CaptureParameters],
    ) -> Self:
        """A writer for the hub and storage account the two connection strings name."""
        parts = Connections.parse(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name)
        return cls(*parts, **options)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, eventhub_name: str | None = None, **options: Unpack[CaptureParameters]
    ) -> Self:
        """A writer for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        return cls(*Connections.of(settings, eventhub_name=eventhub_name), **options)


class ProcessorClient:
    """``from_connection_string`` / ``from_settings`` for the stream processors (the warm job)."""

    if TYPE_CHECKING:  # what the two constructors call; each client defines it

        def __init__(
            self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[ProcessorParameters]
        ) -> None: ...

    @classmethod
    def from_connection_string(
        cls,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        **options: Unpack[ProcessorParameters],
    ) -> Self:
        """A processor for the hub and storage account the two connection strings name."""
        parts = Connections.parse(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name)
        return cls(*parts, **options)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        eventhub_name: str | None = None,
        **options: Unpack[ProcessorParameters],
    ) -> Self:
        """A processor for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        return cls(*Connections.of(settings, eventhub_name=eventhub_name), **options)


class MonitorClient:
    """``from_connection_string`` / ``from_settings`` for the lag monitors (sync and ``.aio``)."""

    if TYPE_CHECKING:  # what the two constructors call; each client defines it

        def __init__(
            self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[MonitorParameters]
        ) -> None: ...

    @classmethod
    def from_connection_string(
        cls,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        **options: Unpack[MonitorParameters],
    ) -> Self:
        """A monitor of the hub and checkpoint storage account the two connection strings name."""
        parts = Connections.parse(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name)
        return cls(*parts, **options)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, eventhub_name: str | None = None, **options: Unpack[MonitorParameters]
    ) -> Self:
        """A monitor for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        return cls(*Connections.of(settings, eventhub_name=eventhub_name), **options)


class PacedClient:
    """``from_connection_string`` / ``from_settings`` for the deliberately slow consumer."""

    if TYPE_CHECKING:  # what the two constructors call; each client defines it

        def __init__(
            self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[PacedParameters]
        ) -> None: ...

    @classmethod
    def from_connection_string(
        cls,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        **options: Unpack[PacedParameters],
    ) -> Self:
        """A consumer of the hub and checkpoint storage account the two connection strings name."""
        parts = Connections.parse(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name)
        return cls(*parts, **options)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, eventhub_name: str | None = None, **options: Unpack[PacedParameters]
    ) -> Self:
        """A consumer for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        return cls(*Connections.of(settings, eventhub_name=eventhub_name), **options)
