"""The synchronous ingestion client: the async engine run on a private event loop thread.

A private loop (rather than ``asyncio.run``) keeps the client usable inside
Jupyter, whose own loop is already running in the main thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, Unpack

import polars as pl

from iotlib._eventloop import made_on_loop, wait
from iotlib.clients import EventHubClient, ProducerOptions
from iotlib.connections import EventHubConnection
from iotlib.fleet import events as _events
from iotlib.ingest import aio
from iotlib.ingest.aio import SendOptions
from iotlib.ingest.report import IngestReport

#: Seconds a Ctrl-C'd send waits for the batches in flight before it returns its report.
STOP_GRACE = 1.0
#: Seconds the links may take to close after that: the process is on its way out.
CLOSE_GRACE = 0.5


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
        """Close the producer's links; after an interrupted send, wait at most :data:`CLOSE_GRACE` for that."""
        report = self._inner.report
        try:
            if report is not None and report.interrupted:
                self._runner.run(_at_most(self._inner.close(), CLOSE_GRACE))
            else:
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
        """Send ``events``; see :meth:`iotlib.ingest.aio.IngestClient.send` for the options.

        Ctrl-C stops the send within :data:`STOP_GRACE` seconds: no new batch goes out, those in
        flight finish, and the report comes back with ``interrupted`` set (what was sent, per
        partition, and what was read but not sent). A second Ctrl-C stops waiting for it.
        """
        future = self._runner.submit(self._inner.send(events, **options))
        try:
            return wait(future)
        except KeyboardInterrupt:
            self._inner.stop()
        try:
            return wait(future, STOP_GRACE)
        except TimeoutError:  # a batch still in flight: give up on it (the report counts it as not sent)
            future.cancel()
            report = self._inner.report
            if report is None:  # interrupted before the first batch was even prepared
                raise KeyboardInterrupt from None
            report.finish(interrupted=True, abandoned=True)
            return report


async def _at_most(closing: Coroutine[Any, Any, None], seconds: float) -> None:
    """Run ``closing`` for up to ``seconds``; past that it is left to be cancelled with the loop.

    (``asyncio.wait_for`` would wait for the cancellation itself, which the SDK's close can take
    seconds to honour.)
    """
    await asyncio.wait({asyncio.ensure_future(closing)}, timeout=seconds)
