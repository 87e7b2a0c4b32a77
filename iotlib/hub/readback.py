"""Looking into an event hub: where each partition stands, and reading back what it holds.

``positions()`` is a cheap snapshot (the management call monitoring tools
poll); ``read(since=...)`` reads every event enqueued after a snapshot up to
the hub's end at the time of the call, so a test or notebook can check
exactly what a run put in, without guessing with idle timeouts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from azure.eventhub.aio import EventHubConsumerClient

from iotlib._eventloop import run as _run
from iotlib.connections import settings as _settings
from iotlib.errors import IotlibError


@dataclass(frozen=True)
class PartitionPosition:
    """One partition's state as the hub reports it."""

    partition_id: str
    begin_sequence_number: int
    last_enqueued_sequence_number: int
    last_enqueued_offset: str
    last_enqueued_time_utc: datetime | None
    is_empty: bool


def _client(conn_str: str | None, eventhub_name: str | None, consumer_group: str) -> EventHubConsumerClient:
    s = _settings()
    return EventHubConsumerClient.from_connection_string(
        conn_str or s.eventhub_connection_string,
        consumer_group=consumer_group,
        eventhub_name=eventhub_name or s.eventhub_name,
    )


async def _partition_properties(client: EventHubConsumerClient) -> dict[str, dict[str, Any]]:
    # The client opens a management link per call (~0.5 s): ask for all partitions at once.
    ids = await client.get_partition_ids()
    found = await asyncio.gather(*(client.get_partition_properties(pid) for pid in ids))
    return dict(zip(ids, found))


async def positions_async(
    conn_str: str | None = None, *, eventhub_name: str | None = None
) -> dict[str, PartitionPosition]:
    async with _client(conn_str, eventhub_name, "$Default") as client:
        found = await _partition_properties(client)
        return {
            pid: PartitionPosition(
                pid,
                p["beginning_sequence_number"],
                p["last_enqueued_sequence_number"],
                p["last_enqueued_offset"],
                p["last_enqueued_time_utc"],
                p["is_empty"],
            )
            for pid, p in found.items()
        }


def positions(conn_str: str | None = None, *, eventhub_name: str | None = None) -> dict[str, PartitionPosition]:
    """Each partition's begin and last-enqueued sequence number, offset and time."""
    return _run(positions_async(conn_str, eventhub_name=eventhub_name))


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


async def read_async(
    conn_str: str | None = None,
    *,
    eventhub_name: str | None = None,
    since: dict[str, PartitionPosition] | dict[str, int] | None = None,
    consumer_group: str = "$Default",
    timeout: float = 120.0,
) -> pl.DataFrame:
    """Every event after ``since`` (a :func:`positions` snapshot or sequence numbers;
    default: the beginning) up to each partition's end when the call starts."""
    async with _client(conn_str, eventhub_name, consumer_group) as client:
        ends = {pid: p["last_enqueued_sequence_number"] for pid, p in (await _partition_properties(client)).items()}
        starts: dict[str, int] = {}
        for pid in ends:
            mark = (since or {}).get(pid, -1)
            starts[pid] = mark.last_enqueued_sequence_number if isinstance(mark, PartitionPosition) else int(mark)
        pending = {pid for pid in ends if ends[pid] > starts[pid]}
        rows: list[tuple[Any, ...]] = []
        if not pending:
            return pl.DataFrame(schema=_SCHEMA)
        done = asyncio.Event()

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
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError:
            raise IotlibError(
                f"reading back timed out after {timeout:.0f}s; partitions not at their end: {sorted(pending)}"
            ) from None
        finally:
            await client.close()
            for task in tasks:
                task.cancel()
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row").sort("partition_id", "sequence_number")


def read(
    conn_str: str | None = None,
    *,
    eventhub_name: str | None = None,
    since: dict[str, PartitionPosition] | dict[str, int] | None = None,
    consumer_group: str = "$Default",
    timeout: float = 120.0,
) -> pl.DataFrame:
    """Sync twin of :func:`read_async`: one row per event (partition, sequence number, offset,
    enqueued time, partition key, properties as JSON text, body bytes)."""
    return _run(
        read_async(conn_str, eventhub_name=eventhub_name, since=since, consumer_group=consumer_group, timeout=timeout)
    )
