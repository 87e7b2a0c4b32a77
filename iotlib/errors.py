"""One exception hierarchy for the whole workbench.

Every error iotlib raises on purpose derives from :class:`IotlibError`, so a script can catch
the workbench's failures in one place and let real bugs through. Messages name what was wrong
and, where possible, what to do. The rule:

- a bad argument, setting or connection string raises :class:`ConfigurationError` (also a
  ``ValueError``), before anything connects;
- data that breaks its schema (an event payload, a registry, a frame's columns, a file's bytes)
  raises :class:`ValidationError` (also a ``ValueError``);
- an endpoint that cannot be used as configured (nothing answers, the key is refused, the hub or
  container does not exist) raises :class:`EndpointError`, from the preflight checks every
  command and client makes before work starts (:mod:`iotlib.preflight`);
- what fails while running (a hub, storage, the local stack, a job) raises the error of its
  stage: :class:`StackError`, :class:`EmulatorError`, :class:`IngestError`, :class:`HubError`,
  :class:`CaptureError`, :class:`ColdStoreError`, :class:`ProcessingError`.

Exceptions used for control flow inside a module are private to it and never derive from these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iotlib.ingest.report import IngestReport


class IotlibError(Exception):
    """Base of every error raised on purpose by iotlib."""


class ConfigurationError(IotlibError, ValueError):
    """A setting, connection string or argument is missing or malformed (also a ``ValueError``)."""


class ValidationError(IotlibError, ValueError):
    """Data does not fit the schema it claims (an event payload, a registry); also a ``ValueError``."""


class StackError(IotlibError):
    """The local stack (Azurite, the Event Hubs emulator) could not be managed."""


class EmulatorError(IotlibError):
    """The local Event Hubs emulator failed or was misconfigured."""


class IngestError(IotlibError):
    """Events could not be sent to Event Hubs; ``report`` holds what the run did before it stopped."""

    report: IngestReport | None = None


class HubError(IotlibError):
    """An event hub could not be read (partition positions, reading back)."""


class CaptureError(IotlibError):
    """The capture writer could not store events in the cold store."""


class ColdStoreError(IotlibError):
    """Cold-store files could not be listed, read or decoded."""


class ProcessingError(IotlibError):
    """A stream-processing job failed while running (its hub, its warm store, its state)."""


class EndpointError(IotlibError):
    """Event Hubs or Blob storage cannot be used as configured: nothing answers at the endpoint, the key
    is refused, or the event hub or container named does not exist (see :mod:`iotlib.preflight`)."""
