"""Looking into an event hub: where each partition stands, and reading back what it holds.

``positions()`` is a cheap snapshot (the management call monitoring tools
poll); ``read(since=...)`` reads every event enqueued after a snapshot up to
the hub's end at the time of the call, so a test or notebook can check
exactly what a run put in, without guessing with idle timeouts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

import polars as pl

from iotlib._eventloop import run as _run
from iotlib.connections import EventHubConnection
from iotlib.errors import HubError
from iotlib.hub.partitions import PartitionPosition, partition_positions

Since = Mapping[str, PartitionPosition] | Mapping[str, int]


async def read_positions(eventhub: EventHubConnection) -> dict[str, PartitionPosition]:
    """Each partition's position now (see :func:`positions`)."""
    async with eventhub.consumer("$Default") as client:
        return await partition_positions(client)


def positions(conn_str: str | None = None, *, eventhub_name: str | None = None) -> dict[str, PartitionPosition]:
    """Each partition's begin and last-enqueued sequence number, offset and time (an empty
    partition's last sequence number is -1). ``conn_str``: default :func:`iotlib.settings`'s."""
    return _run(read_positions(EventHubConnection.given(conn_str, eventhub_name=eventhub_name)))


_SCHEMA = {
    "partition_id": pl.String(),
    "sequence_number": pl.Int64(),
    "offset": pl.String(),
    "enqueued_time": pl.Datetime("us", "UTC"),
    "partition_key": pl.String(),
    "properties": pl.String(),
    "body": pl.Binary(),
}


def _props_json(props: dict[Any, Any] | None) -> str | None:
    if not props:
        return None

    def text(v: Any) -> Any:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

    return json.dumps({text(k): text(v) for k, v in props.items()}, default=str)


class ReadOptions(TypedDict, total=False):
    """The keywords of :func:`read` and :func:`iotlib.hub.aio.read` besides the hub."""

    since: Since | None
    consumer_group: str
    stall_timeout: float


async def read_events(
    eventhub: EventHubConnection,
    *,
    since: Since | None = None,
    consumer_group: str = "$Default",
    stall_timeout: float = 60.0,
) -> pl.DataFrame:
    """Every event after ``since`` up to each partition's end when the call starts (see :func:`read`)."""
    async with eventhub.consumer(consumer_group) as client:
        ends = {pid: p.last_enqueued_sequence_number for pid, p in (await partition_positions(client)).items()}
        starts: dict[str, int] = {}
        for pid in ends:
            mark = (since or {}).get(pid, -1)
            starts[pid] = mark.last_enqueued_sequence_number if isinstance(mark, PartitionPosition) else int(mark)
        pending = {pid for pid in ends if ends[pid] > starts[pid]}
        rows: list[tuple[Any, ...]] = []
        if not pending:
            return pl.DataFrame(schema=_SCHEMA)
        done, progress = asyncio.Event(), asyncio.Event()
        read_to = dict(starts)

        async def on_batch(ctx: Any, events: list[Any]) -> None:
            pid = ctx.partition_id
            for e in events:
                if e.sequence_number > ends[pid]:
                    break
                key = (e.system_properties or {}).get(b"x-opt-partition-key")
                rows.append(
                    (
                        pid,
                        e.sequence_number,
                        str(e.offset),
                        e.enqueued_time,
                        key.decode() if isinstance(key, bytes) else key,
                        _props_json(e.properties),
                        bytes(b"".join(e.body)) if not isinstance(e.body, bytes) else e.body,
                    )
                )
            if events:
                read_to[pid] = max(read_to[pid], min(events[-1].sequence_number, ends[pid]))
                progress.set()
            if events and events[-1].sequence_number >= ends[pid]:
                pending.discard(pid)
                if not pending:
                    done.set()

        # One receiver per partition, all at once: faster than the load balancer's claiming.
        tasks = [
            asyncio.ensure_future(
                client.receive_batch(
                    on_batch,
                    partition_id=pid,
                    starting_position=starts[pid],
                    starting_position_inclusive=False,
                    max_batch_size=500,
                    max_wait_time=1.0,
                )
            )
            for pid in sorted(pending)
        ]
        try:
            # A long read-back is fine while it advances: give up only when it stops advancing.
            while not done.is_set():
                progress.clear()
                try:
                    await asyncio.wait_for(progress.wait(), stall_timeout)
                except TimeoutError:
                    behind = ", ".join(
                        f"{pid} (read {read_to[pid] - starts[pid]:,} of {ends[pid] - starts[pid]:,})"
                        for pid in sorted(pending)
                    )
                    raise HubError(
                        f"reading back stalled: no partition advanced for {stall_timeout:g}s; "
                        f"not at their end: {behind}"
                    ) from None
        finally:
            await client.close()
            for task in tasks:
                task.cancel()
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row").sort("partition_id", "sequence_number")


def read(
    conn_str: str | None = None, *, eventhub_name: str | None = None, **options: Unpack[ReadOptions]
) -> pl.DataFrame:
    """Every event after ``since`` (a :func:`positions` snapshot or sequence numbers; default: the
    beginning) up to each partition's end when the call starts: one row per event (partition,
    sequence number, offset, enqueued time, partition key, properties as JSON text, body bytes).
    Options: ``eventhub_name``, ``since``, ``consumer_group`` (``$Default``), ``stall_timeout``
    (60 s): the read waits as long as the partitions advance, and raises :class:`~iotlib.errors.HubError`
    naming those not at their end once none has advanced for that long."""
    eventhub = EventHubConnection.given(conn_str, eventhub_name=eventhub_name)
    return _run(read_events(eventhub, **options))
