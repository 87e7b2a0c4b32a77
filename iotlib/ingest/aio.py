"""Send simulated telemetry to Event Hubs, asynchronously: the engine behind both clients.

Each event goes to the partition its device id maps to (Event Hubs' own key
hash, see :mod:`iotlib.partitioning`) and carries that key, its JSON body and
the ``DeviceId``/``EventType``/``EventTypeVersion`` application properties.
Events are packed into batches up to the link's maximum size, one task per
partition sends them in order, and several partitions are in flight at once.
Throttling and transient errors are retried with exponential back-off and
counted; a batch that still fails is reported event by event, never dropped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from typing import Any

import polars as pl
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import (
    AuthenticationError,
    ClientClosedError,
    EventDataError,
    EventHubError,
)
from tqdm.auto import tqdm

from iotlib import events as _events
from iotlib.connections import settings as _settings
from iotlib.errors import IngestError, ValidationError
from iotlib.ingest.plan import MODES, Outgoing, chunks, frames, route, ticks
from iotlib.ingest.report import Failure, IngestReport

PARTITION_KEY = b"x-opt-partition-key"
# Errors no retry can fix: report them at once.
_FATAL = (AuthenticationError, ClientClosedError, EventDataError)


def _event(body: bytes, key: str, props: dict[str, str]) -> EventData:
    event = EventData(body)
    event.properties = props
    # Keep the key on each event while batching per partition, as the SDK's buffered producer does.
    event.raw_amqp_message.annotations = {PARTITION_KEY: key}
    return event


def _is_throttle(exc: BaseException) -> bool:
    text = f"{exc!r} {getattr(exc, 'error', '')}".lower()
    return "server-busy" in text or "serverbusy" in text or "throttl" in text


class IngestClient:
    """Sends events to one event hub (async). Create with :meth:`from_connection_string`.

    Use as ``async with IngestClient.from_connection_string(...) as client:
    report = await client.send(frame)``.
    """

    def __init__(self, producer: EventHubProducerClient, *, eventhub_name: str) -> None:
        self._producer = producer
        self.eventhub_name = eventhub_name
        self._partition_ids: list[str] | None = None
        self._props: dict[str, dict[str, str]] = {}

    @classmethod
    def from_connection_string(
        cls, conn_str: str | None = None, *, eventhub_name: str | None = None, **producer_options: Any
    ) -> IngestClient:
        """A client for ``eventhub_name`` (default: ``iotlib.settings()``'s hub and connection string)."""
        s = _settings()
        conn_str = conn_str or s.eventhub_connection_string
        name = eventhub_name or s.eventhub_name
        try:
            producer = EventHubProducerClient.from_connection_string(conn_str, eventhub_name=name, **producer_options)
        except ValueError as exc:
            raise IngestError(f"cannot use this Event Hubs connection string: {exc}") from exc
        return cls(producer, eventhub_name=name)

    async def __aenter__(self) -> IngestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._producer.close()

    async def partition_ids(self) -> list[str]:
        if self._partition_ids is None:
            try:
                self._partition_ids = list(await self._producer.get_partition_ids())
            except EventHubError as exc:
                raise IngestError(f"cannot reach event hub '{self.eventhub_name}': {exc}") from exc
        return self._partition_ids

    async def send(
        self,
        events: pl.DataFrame | Iterable[pl.DataFrame] | Iterable[_events.UpdateTemperatureEvent],
        *,
        mode: str = "replay",
        speed: float = 1.0,
        send_malformed: bool = False,
        max_batch_events: int | None = None,
        concurrency: int = 8,
        chunk_events: int = 50_000,
        tick: float = 0.1,
        max_retries: int = 6,
        backoff: float = 0.2,
        progress: bool = True,
    ) -> IngestReport:
        """Send ``events``: a simulation frame, a :class:`~iotlib.simulate.Simulation` (streamed
        chunk by chunk), an iterable of frames, or ``UpdateTemperatureEvent`` objects.

        ``mode="replay"`` sends as fast as the hub takes them; ``mode="live"``
        paces them by ``sent_at``, ``speed`` times faster than real time (1 = the
        scenario's own rate). ``max_batch_events`` caps events per batch (default:
        as many as fit the link's size limit). Malformed payloads are held back
        and reported unless ``send_malformed``.
        """
        if mode not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if max_batch_events is not None and max_batch_events < 1:
            raise ValidationError(f"max_batch_events must be at least 1, got {max_batch_events}")
        if concurrency < 1:
            raise ValidationError(f"concurrency must be at least 1, got {concurrency}")
        if mode == "live" and speed <= 0:
            raise ValidationError(f"speed must be positive, got {speed}")
        stream, total = frames(events)
        partition_ids = await self.partition_ids()
        report = IngestReport(self.eventhub_name, mode, speed if mode == "live" else None)
        gate = asyncio.Semaphore(concurrency)
        bar = tqdm(total=total, unit="ev", desc=f"ingest ({mode})", disable=not progress, smoothing=0.1)
        origin = None
        clock: float | None = None
        try:
            for frame in stream:
                report.events_in += frame.height
                if mode == "replay":
                    for chunk in chunks(frame, chunk_events):
                        await self._send_chunk(chunk, partition_ids, report, gate, bar, send_malformed,
                                               max_batch_events, max_retries, backoff)
                    continue
                if origin is None and frame.height:
                    origin = frame["sent_at"][0]
                for due, chunk in ticks(frame, speed=speed, tick=tick, origin=origin):
                    if clock is None:
                        # The first tick opens the sender links (about half a second each in the
                        # client); the schedule starts once it is out, so that cost is not lag.
                        await self._send_chunk(chunk, partition_ids, report, gate, bar, send_malformed,
                                               max_batch_events, max_retries, backoff)
                        clock = time.monotonic() - due
                        continue
                    delay = clock + due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        report.max_lag_seconds = max(report.max_lag_seconds, -delay)
                    await self._send_chunk(chunk, partition_ids, report, gate, bar, send_malformed,
                                           max_batch_events, max_retries, backoff)
        finally:
            bar.close()
            report.finish()
        return report

    async def _send_chunk(
        self,
        chunk: pl.DataFrame,
        partition_ids: list[str],
        report: IngestReport,
        gate: asyncio.Semaphore,
        bar: Any,
        send_malformed: bool,
        max_batch_events: int | None,
        max_retries: int,
        backoff: float,
    ) -> None:
        groups, held = route(chunk, partition_ids, send_malformed=send_malformed)
        report.rejected.extend(held)
        bar.update(len(held))
        jobs = [
            self._send_partition(group, report, gate, bar, max_batch_events, max_retries, backoff)
            for group in groups.values()
        ]
        await asyncio.gather(*jobs)

    def _properties(self, device: str) -> dict[str, str]:
        props = self._props.get(device)
        if props is None:
            props = self._props[device] = _events.properties(device)
        return props

    async def _send_partition(
        self,
        group: Outgoing,
        report: IngestReport,
        gate: asyncio.Semaphore,
        bar: Any,
        max_batch_events: int | None,
        max_retries: int,
        backoff: float,
    ) -> None:
        async with gate:
            pid = group.partition_id
            limit = max_batch_events or len(group)
            start = 0
            while start < len(group):
                batch = await self._producer.create_batch(partition_id=pid)
                end = start
                while end < len(group) and end - start < limit:
                    try:
                        batch.add(_event(group.bodies[end], group.keys[end], self._properties(group.keys[end])))
                    except ValueError:
                        if end == start:  # one event larger than the hub takes: report it, move on
                            report.failed.append(
                                Failure(group.keys[end], group.observed[end],  # type: ignore[arg-type]
                                        f"event of {len(group.bodies[end]):,} bytes exceeds the hub's "
                                        f"{batch.max_size_in_bytes:,}-byte limit", pid)
                            )
                            end += 1
                            bar.update(1)
                            start = end
                            continue
                        break
                    end += 1
                if len(batch) == 0:
                    continue
                await self._send_with_retries(batch, group, start, end, report, bar, max_retries, backoff)
                start = end

    async def _send_with_retries(
        self, batch: Any, group: Outgoing, start: int, end: int, report: IngestReport,
        bar: Any, max_retries: int, backoff: float,
    ) -> None:
        pid = group.partition_id
        attempt = 0
        while True:
            try:
                await self._producer.send_batch(batch)
            except _FATAL as exc:
                raise IngestError(f"event hub '{self.eventhub_name}' refused the send: {exc}") from exc
            except EventHubError as exc:
                attempt += 1
                report.retries += 1
                report.throttled += _is_throttle(exc)
                if attempt > max_retries:
                    reason = f"not accepted after {max_retries} retries: {exc}"
                    report.failed.extend(
                        Failure(group.keys[i], group.observed[i], reason, pid)  # type: ignore[arg-type]
                        for i in range(start, end)
                    )
                    bar.update(end - start)
                    return
                pause = backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                await asyncio.sleep(min(pause, 30.0))
                continue
            malformed = sum(group.malformed[start:end])
            report.record_send(pid, end - start, batch.size_in_bytes, malformed)
            bar.update(end - start)
            return
