"""One exception hierarchy for the whole workbench.

Every error iotlib raises on purpose derives from :class:`IotlibError`, so a
script can catch the workbench's failures in one place and let real bugs
through. Messages name what was wrong and, where possible, what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iotlib.ingest.report import IngestReport


class IotlibError(Exception):
    """Base of every error raised on purpose by iotlib."""


class ConfigurationError(IotlibError):
    """A setting, connection string or argument is missing or malformed."""


class StackError(IotlibError):
    """The local stack (Azurite, the Event Hubs emulator) could not be managed."""


class ValidationError(IotlibError):
    """Data does not fit the schema it claims (an event payload, a registry)."""


class EmulatorError(IotlibError):
    """The local Event Hubs emulator failed or was misconfigured."""


class IngestError(IotlibError):
    """Events could not be sent to Event Hubs; ``report`` holds what the run did before it stopped."""

    report: IngestReport | None = None


class CaptureError(IotlibError):
    """The capture writer could not store events in the cold store."""


class ColdStoreError(IotlibError):
    """Cold-store files could not be listed, read or decoded."""


class ProcessingError(IotlibError):
    """A stream-processing job was given input or options it cannot handle."""
