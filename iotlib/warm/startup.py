"""Where a processor run starts: each partition's position, checkpoints lined up, dead runs' partitions freed.

The warm store is the truth about progress: a partition it has seen resumes right after its stored
progress whatever the checkpoint blobs say, and a partition it has never seen starts at
``starting_position``. The consumer client starts a partition from its checkpoint blob when there is
one, so before reading starts the blobs are lined up with the store: rewritten where they differ from
its progress, removed where the store never saw the partition (an old container reused). Checkpoints
are read before the store's progress, so a blob written meanwhile by another process (always after
its commit) is never mistaken for a stale one.

A run that died (``kill -9``) leaves its partitions owned on the hub until the ownership expires. Runs
register in the store (``processes``: pid, host, the owner id their client claims with); a new run
frees the ownerships of registered runs of this host whose process no longer exists, so a restart
takes its partitions back at once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.hub.consumer import Consumer
from iotlib.hub.partitions import EMPTY, PartitionPosition
from iotlib.hub.starting import SdkPosition
from iotlib.warm.commit import Position
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.store import WarmStore

_LOG = logging.getLogger("iotlib.warm")
EARLIEST = Position(EMPTY, "-1")


@dataclass
class Starts:
    """Where each partition starts: what the client takes (``sdk``) and, for partitions the store never
    saw that start at a known position, that position (``fresh``: stored with the first commit)."""

    sdk: dict[str, SdkPosition] = field(default_factory=dict)
    fresh: dict[str, Position] = field(default_factory=dict)


def first_position(options: ProcessorOptions, pid: str, now: PartitionPosition) -> Position | int | datetime:
    """Where a partition the warm store never saw starts: a position, or what the client takes (time, number)."""
    start = options.starting_position
    one = start.get(pid, "earliest") if isinstance(start, Mapping) else start
    if isinstance(one, str) and one == "latest":
        one = now
    if isinstance(one, PartitionPosition):
        return EARLIEST if one.is_empty else Position(one.last_enqueued_sequence_number, one.last_enqueued_offset)
    if isinstance(one, str) or one == EMPTY:  # "earliest"
        return EARLIEST
    return one


async def starts(
    consumer: Consumer,
    storage: StorageConnection,
    eventhub: EventHubConnection,
    options: ProcessorOptions,
    store: WarmStore,
    positions: dict[str, PartitionPosition],
) -> Starts:
    """Each partition's start; checkpoint blobs lined up with the store (see the module text)."""
    existing = {c["partition_id"]: c for c in await consumer.checkpoints.list_checkpoints(
        eventhub.fully_qualified_namespace, options.eventhub_name, options.consumer_group)}  # fmt: skip
    stored = store.positions()  # after the checkpoints: never older than them
    out = Starts()
    stale = []
    for pid, now in positions.items():
        pos = stored.get(pid)
        if pos is None:
            first = first_position(options, pid, now)
            if isinstance(first, Position):
                out.fresh[pid] = first
                out.sdk[pid] = "-1" if first.sequence_number == EMPTY else first.sequence_number
            else:
                out.sdk[pid] = first
            if pid in existing:
                stale.append(pid)
            continue
        out.sdk[pid] = "-1" if pos.sequence_number == EMPTY else pos.sequence_number
        have = existing.get(pid)
        if have is not None and (
            str(have.get("offset")) != pos.offset or have.get("sequence_number") != pos.sequence_number
        ):
            await consumer.checkpoints.update_checkpoint(checkpoint(eventhub, options, pid, pos))
    if stale:
        async with storage.service() as service:
            container = service.get_container_client(options.checkpoint_container)
            for pid in stale:
                name = f"{eventhub.fully_qualified_namespace}/{options.eventhub_name}/{options.consumer_group}/checkpoint/{pid}"
                try:
                    await container.delete_blob(name.lower())
                except ResourceNotFoundError:
                    pass
    return out


def checkpoint(eventhub: EventHubConnection, options: ProcessorOptions, pid: str, pos: Position) -> dict[str, Any]:
    """A checkpoint record for the checkpoint store."""
    return {"fully_qualified_namespace": eventhub.fully_qualified_namespace, "eventhub_name": options.eventhub_name,
            "consumer_group": options.consumer_group, "partition_id": pid, "sequence_number": pos.sequence_number,
            "offset": pos.offset}  # fmt: skip


async def free_dead_runs(consumer: Consumer, store: WarmStore) -> int:
    """Release the hub ownerships of registered runs of this host whose process is gone; how many partitions."""
    runs = store.processes()
    host = socket.gethostname()
    dead = [r for r in runs.iter_rows(named=True) if r["host"] == host and not _alive(r["pid"])]
    if not dead:
        return 0
    owners = {r["hub_owner_id"] for r in dead if r["hub_owner_id"]}
    freed = 0
    if owners:
        owned = await consumer.ownership()
        stale = [dict(o, owner_id="") for o in owned if o.get("owner_id") in owners]
        if stale:
            await consumer.checkpoints.claim_ownership(stale)
            freed = len(stale)
            _LOG.info("released %d partition(s) a run that died left owned", freed)
    for r in dead:
        store.unregister(r["run_id"])
    return freed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone too
    except (OSError, IndexError):
        return True
