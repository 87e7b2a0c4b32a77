"""The synchronous ingestion client: the async engine run on a private event loop thread.

A private loop (rather than ``asyncio.run``) keeps the client usable inside
Jupyter, whose own loop is already running in the main thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from iotlib._eventloop import LoopThread
from iotlib.fleet import events as _events
from iotlib.ingest import aio
from iotlib.ingest.report import IngestReport


class IngestClient:
    """Sends events to one event hub. Create with :meth:`from_connection_string`.

    ``with IngestClient.from_connection_string() as client: report = client.send(frame)``.
    Options are those of :meth:`iotlib.ingest.aio.IngestClient.send`.
    """

    def __init__(self, inner: aio.IngestClient, runner: LoopThread) -> None:
        self._inner = inner
        self._runner = runner
        self.eventhub_name = inner.eventhub_name

    @classmethod
    def from_connection_string(
        cls, conn_str: str | None = None, *, eventhub_name: str | None = None, **producer_options: Any
    ) -> IngestClient:
        runner = LoopThread("iotlib-ingest")

        async def make() -> aio.IngestClient:
            # The aio producer must be created on the loop that will use it.
            return aio.IngestClient.from_connection_string(conn_str, eventhub_name=eventhub_name, **producer_options)

        try:
            inner = runner.run(make())
        except BaseException:
            runner.stop()
            raise
        return cls(inner, runner)

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
        **options: Any,
    ) -> IngestReport:
        """Send ``events``; see :meth:`iotlib.ingest.aio.IngestClient.send` for the options."""
        return self._runner.run(self._inner.send(events, **options))
