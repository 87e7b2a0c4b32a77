"""A consumer slowed on purpose: it handles at most ``rate`` events a second and checkpoints as it goes.

Monitoring is best understood by watching a consumer fall behind and catch up. This one is a
stand-in for a job that cannot keep up with its hub (a slow database, an overloaded function):
the real ``EventHubConsumerClient`` with a ``BlobCheckpointStore``, load balancing included, whose
"work" is a pause of ``1 / rate`` seconds per event, shared by all its partitions. It checkpoints
what it handled every ``checkpoint_every`` seconds and once more when it stops, like a real consumer, so a monitor sees exactly what it would see in production.

    with PacedConsumer.from_settings(consumer_group="monitor", checkpoint_container="slow", rate=200) as slow:
        slow.start()
        ...  # send; watch the lag with iotlib.hub.monitor.LagMonitor
    slow.handled  # events it got through
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any, Unpack

from azure.core.exceptions import ResourceExistsError

from iotlib.clients import PacedClient
from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.durations import to_seconds
from iotlib.errors import ConfigurationError, HubError
from iotlib.hub.monitor_options import PacedParameters
from iotlib.hub.partitions import PartitionPosition, partition_positions
from iotlib.hub.starting import check_starting_position, needs_positions, resolve


class PacedConsumer(PacedClient):
    """Reads ``consumer_group`` at no more than ``rate`` events/s, checkpointing to ``checkpoint_container``.

    ``starting_position`` is where partitions without a checkpoint start (:mod:`iotlib.hub.starting`);
    the container is created if missing. :meth:`start` runs it in a background thread until
    :meth:`stop` (or the end of a ``with`` block).
    """

    def __init__(self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[PacedParameters]):
        unknown = set(options) - set(PacedParameters.__annotations__)
        if unknown:
            raise ConfigurationError(f"unknown PacedConsumer option(s) {sorted(unknown)}")
        self.eventhub = eventhub
        self.storage = storage
        self.consumer_group = options.get("consumer_group", "$Default")
        self.checkpoint_container = options.get("checkpoint_container", "checkpoints")
        self.rate = float(options.get("rate", 100.0))
        if not self.rate > 0:
            raise ConfigurationError(f"rate={self.rate!r} must be a positive number of events per second")
        self.starting_position = check_starting_position(options.get("starting_position", "earliest"))
        self.checkpoint_every = to_seconds(options.get("checkpoint_every", 1.0), name="checkpoint_every")
        self.max_batch_size = int(options.get("max_batch_size", 50))
        #: Events handled (paused over) so far.
        self.handled = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()

    def __enter__(self) -> PacedConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, *, timeout: float = 60.0) -> None:
        """Start in the background; returns once the consumer has claimed its partitions."""
        if self._thread is not None:
            raise HubError("this PacedConsumer is already running")
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="iotlib-paced", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise HubError(f"the paced consumer did not claim its partitions within {timeout:g} s")
        if self._error is not None:
            raise self._error

    def stop(self) -> int:
        """Checkpoint what was handled, stop, and return :attr:`handled`."""
        loop, event, thread = self._loop, self._stop, self._thread
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile: it is over anyway
                pass
        if thread is not None:
            thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        return self.handled

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._run(self._stop)
        except BaseException as exc:  # noqa: BLE001 - handed to start()/stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _mark_start(self, store: Any, positions: dict[str, PartitionPosition]) -> None:
        """Checkpoint where a partition without a checkpoint starts, when that is after known events.

        A consumer starting at ``"latest"`` or a snapshot will never process what came before; saying so
        in a checkpoint is what lets a monitor (and a restart) see where it stands before its first event.
        """
        namespace, hub = self.eventhub.fully_qualified_namespace, self.eventhub.eventhub_name
        done = {c["partition_id"] for c in await store.list_checkpoints(namespace, hub, self.consumer_group)}
        start = self.starting_position
        for pid, now in positions.items():
            mark = start.get(pid) if isinstance(start, Mapping) else (now if start == "latest" else None)
            if mark == "latest":
                mark = now
            if pid in done or not isinstance(mark, PartitionPosition) or mark.is_empty:
                continue
            await store.update_checkpoint(
                {
                    "fully_qualified_namespace": namespace,
                    "eventhub_name": hub,
                    "consumer_group": self.consumer_group,
                    "partition_id": pid,
                    "sequence_number": mark.last_enqueued_sequence_number,
                    "offset": mark.last_enqueued_offset,
                }
            )

    async def _run(self, stop: asyncio.Event) -> None:
        async with self.storage.service() as service:
            try:
                await service.create_container(self.checkpoint_container)
            except ResourceExistsError:
                pass
        store = self.storage.checkpoint_store(self.checkpoint_container)
        client = self.eventhub.consumer(self.consumer_group, checkpoint_store=store, load_balancing_interval=2.0)
        pace = asyncio.Lock()  # one budget for every partition together
        pending: dict[str, tuple[Any, Any]] = {}  # partition -> (context, last event handled), not yet checkpointed
        claimed: set[str] = set()
        partitions: list[str] = []

        async def on_batch(context: Any, events: list[Any]) -> None:
            if not events:
                return
            async with pace:
                await asyncio.sleep(len(events) / self.rate)  # the deliberate slowness
            self.handled += len(events)
            pending[context.partition_id] = (context, events[-1])

        async def checkpoint() -> None:
            for pid, (context, event) in list(pending.items()):
                if pending.get(pid, (None, None))[1] is event:
                    del pending[pid]
                await context.update_checkpoint(event)

        async def checkpoints() -> None:
            while True:
                await asyncio.sleep(self.checkpoint_every)
                await checkpoint()

        async def on_claim(context: Any) -> None:
            claimed.add(context.partition_id)
            if partitions and claimed >= set(partitions):
                self._ready.set()

        async with client:
            positions = await partition_positions(client)
            partitions.extend(positions)
            start = resolve(self.starting_position, positions if needs_positions(self.starting_position) else None)
            await self._mark_start(store, positions)
            receiving = asyncio.ensure_future(
                client.receive_batch(
                    on_batch,
                    max_batch_size=self.max_batch_size,
                    max_wait_time=0.5,
                    starting_position=start,
                    on_partition_initialize=on_claim,
                )
            )
            writing = asyncio.ensure_future(checkpoints())
            try:
                await stop.wait()
            finally:
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
                await checkpoint()
                await client.close()
                receiving.cancel()
                await asyncio.gather(receiving, return_exceptions=True)
                await store.close()
