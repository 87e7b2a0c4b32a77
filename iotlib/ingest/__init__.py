"""Ingestion: simulated devices into Event Hubs, in replay or live mode.

``IngestClient`` (sync) and ``iotlib.ingest.aio.IngestClient`` (async) send a
simulation frame; each call returns an :class:`IngestReport`. Partition key =
device id, application properties ``DeviceId``/``EventType``/``EventTypeVersion``,
body = the event's JSON. Works the same against the local emulator and Azure.
"""

from iotlib.ingest.client import IngestClient
from iotlib.ingest.report import Failure, IngestReport

__all__ = ["Failure", "IngestClient", "IngestReport"]
