"""Two small reads the monitor needs from a hub: when given events were enqueued, and whether a group exists.

- :func:`enqueued_times`: the enqueued time of one event per partition (by sequence number) —
  how long the oldest unprocessed event has waited. One receiver per partition, on a consumer
  group of the monitor's own (``$Default`` unless told otherwise), so the monitored group's
  exclusive readers (processors use owner level 0) are never disturbed.
- :func:`group_exists`: Event Hubs' data plane has no call that lists consumer groups; a receiver
  on an unknown one is refused with ``amqp:not-found``. The SDK's sync consumer reports that
  refusal through ``on_error`` (its async twin keeps retrying without a word), so the probe runs
  it in a worker thread. It is asked only about a group that left nothing in its checkpoint
  container, where the answer decides between "every event unprocessed" and "no such group".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from iotlib.connections import EventHubConnection
from iotlib.hub.partitions import PartitionPosition

NOT_FOUND = "amqp:not-found"
#: Where the SDK's processor logs a receive error (the probe's expected refusal is not news).
_PROCESSOR_LOG = "azure.eventhub._eventprocessor.event_processor"


class _Quiet(logging.Filter):
    """Drops the processor's records about the probed group while the probe runs."""

    def __init__(self, group: str) -> None:
        super().__init__()
        self.mark = f"consumer group '{group}'"

    def filter(self, record: logging.LogRecord) -> bool:
        return self.mark not in record.getMessage()


async def enqueued_times(
    eventhub: EventHubConnection,
    wanted: Mapping[str, set[int]],
    *,
    consumer_group: str = "$Default",
    timeout: float = 10.0,
) -> dict[tuple[str, int], datetime]:
    """``(partition, sequence number) -> enqueued time`` for the wanted events the hub delivers in time.

    Each partition is read once, from its lowest wanted sequence number, until every wanted one
    (or a later event) has been seen; events retention has removed are simply absent.
    """
    found: dict[tuple[str, int], datetime] = {}
    pending = {pid: sorted(seqs) for pid, seqs in wanted.items() if seqs}
    if not pending:
        return found
    done = asyncio.Event()

    async def on_batch(context: Any, events: list[Any]) -> None:
        pid = context.partition_id
        left = pending.get(pid)
        if not left:
            return
        for event in events:
            while left and left[0] <= event.sequence_number:
                found[(pid, left.pop(0))] = event.enqueued_time
        if not left:
            pending.pop(pid, None)
            if not pending:
                done.set()

    async with eventhub.consumer(consumer_group, retry_total=1) as client:
        starts = {pid: seqs[0] for pid, seqs in pending.items()}
        tasks = [
            asyncio.ensure_future(
                client.receive_batch(
                    on_batch,
                    partition_id=pid,
                    starting_position=start,
                    starting_position_inclusive=True,
                    max_batch_size=100,
                    max_wait_time=1.0,
                    prefetch=100,
                )
            )
            for pid, start in starts.items()
        ]
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            await client.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return found


def _probe(eventhub: EventHubConnection, group: str, position: PartitionPosition | None, timeout: float) -> bool | None:
    """The sync probe behind :func:`group_exists` (runs in a worker thread)."""
    from azure.eventhub import EventHubConsumerClient

    quiet = _Quiet(group)
    logging.getLogger(_PROCESSOR_LOG).addFilter(quiet)
    verdict: list[bool] = []
    decided = threading.Event()

    def decide(value: bool) -> None:
        if not verdict:
            verdict.append(value)
        decided.set()

    def on_error(_context: Any, error: Exception) -> None:
        decide(NOT_FOUND not in str(error))  # refused for another reason (e.g. owner level): it exists

    client = EventHubConsumerClient.from_connection_string(
        eventhub.connection_string, consumer_group=group, eventhub_name=eventhub.eventhub_name, retry_total=0
    )
    start: Any = "@latest" if position is None else position.last_enqueued_sequence_number
    worker = threading.Thread(
        target=client.receive_batch,
        kwargs={
            "on_event_batch": lambda _context, _events: decide(True),  # the link opened: the group exists
            "on_error": on_error,
            "partition_id": position.partition_id if position is not None else "0",
            "starting_position": start,
            "starting_position_inclusive": True,
            "max_batch_size": 1,
            "max_wait_time": 1.0,
        },
        name=f"iotlib-probe-{group}",
        daemon=True,
    )
    worker.start()
    try:
        decided.wait(timeout)
        client.close()
        worker.join(timeout)
    finally:
        logging.getLogger(_PROCESSOR_LOG).removeFilter(quiet)
    return verdict[0] if verdict else None


async def group_exists(
    eventhub: EventHubConnection,
    group: str,
    positions: Mapping[str, PartitionPosition],
    *,
    timeout: float = 15.0,
) -> bool | None:
    """Whether the hub has consumer group ``group``: True, False, or None when it did not say in time.

    The probe reads the last event of a partition that has one (its delivery proves the group),
    else waits at the end of partition 0.
    """
    loaded = [p for p in positions.values() if not p.is_empty]
    position = max(loaded, key=lambda p: p.last_enqueued_sequence_number) if loaded else None
    return await asyncio.to_thread(_probe, eventhub, group, position, timeout)
