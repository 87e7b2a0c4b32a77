"""The synchronous ingestion client: the async engine run on a private event loop thread.

A private loop (rather than ``asyncio.run``) keeps the client usable inside
Jupyter, whose own loop is already running in the main thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Unpack

import polars as pl

from iotlib._eventloop import made_on_loop
from iotlib.clients import EventHubClient, ProducerOptions
from iotlib.connections import EventHubConnection
from iotlib.fleet import events as _events
from iotlib.ingest import aio
from iotlib.ingest.aio import SendOptions
from iotlib.ingest.report import IngestReport


class IngestClient(EventHubClient):
    """Sends events to one event hub. Create with :meth:`from_connection_string` or :meth:`from_settings`.

    ``with IngestClient.from_settings() as client: report = client.send(frame)``.
    ``options`` go to the SDK's producer client (e.g. ``retry_total``).
    """

    def __init__(self, eventhub: EventHubConnection, /, **options: Unpack[ProducerOptions]) -> None:
        self._runner, self._inner = made_on_loop("iotlib-ingest", lambda: aio.IngestClient(eventhub, **options))
        self.eventhub_name = eventhub.eventhub_name

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._inner.close())
        finally:
            self._runner.stop()

    def partition_ids(self) -> list[str]:
        return self._runner.run(self._inner.partition_ids())

    def send(
        self,
        events: pl.DataFrame | Iterable[pl.DataFrame] | Iterable[_events.UpdateTemperatureEvent],
        **options: Unpack[SendOptions],
    ) -> IngestReport:
        """Send ``events``; see :meth:`iotlib.ingest.aio.IngestClient.send` for the options."""
        return self._runner.run(self._inner.send(events, **options))
