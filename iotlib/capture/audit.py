"""Checkpoints ahead of storage: capture's checkpoints that name events no blob holds any more.

A checkpoint says "everything up to here is stored". If the capture container was deleted (or a
blob removed) after that, a restart resumes from the checkpoint and never stores the lost events
again. At start the writer therefore looks, per checkpointed partition, for the blob holding the
checkpointed event: it reads that one event's enqueued time from the hub (consumer group
``$Default``, a non-exclusive reader, so running writers are not disturbed), lists the blobs whose
windows may hold it (named up to 900 s before it), and checks their metadata (or, for blobs written
by someone else, their records). A partition whose blob is missing — or every checkpointed
partition when the container itself was missing — is a :class:`CheckpointAhead`, logged and listed
in the report. ``run(reset_checkpoints=True)`` (``iotlib capture --reset-checkpoints``) deletes
capture's checkpoints so every partition starts again from ``starting_position`` and the lost
events are captured again; events still stored are recognised and skipped, not stored twice.

An event the hub no longer holds (past its retention) cannot be checked, nor captured again: such
a partition is left out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from iotlib.capture import format as cf
from iotlib.capture.files import ExistingFile
from iotlib.capture.options import CaptureOptions
from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.hub.partitions import partition_positions

_LOG = logging.getLogger("iotlib.capture")
#: Seconds to read one checkpointed event back from the hub before giving up on that partition.
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class CheckpointAhead:
    """A partition whose checkpoint names an event that no blob in the capture container holds."""

    partition_id: str
    sequence_number: int
    reason: str

    def __str__(self) -> str:
        return (
            f"partition {self.partition_id}: checkpoint at sequence number {self.sequence_number:,}, but {self.reason}"
        )


def advice(ahead: list[CheckpointAhead], container: str) -> str:
    """One warning for the user: what is wrong, what it means, what to do."""
    parts = ", ".join(a.partition_id for a in ahead)
    return (
        f"capture's checkpoints are ahead of storage in {len(ahead)} partition(s) ({parts}): "
        + "; ".join(str(a) for a in ahead)
        + f". Events up to those checkpoints are missing from container {container!r} and will not be captured "
        "again from them. To capture them again from the hub, restart with --reset-checkpoints "
        "(Python: run(reset_checkpoints=True)); events still stored are skipped, not stored twice."
    )


async def checkpoints_ahead(
    eventhub: EventHubConnection,
    container: Any,
    options: CaptureOptions,
    checkpoints: dict[str, int],
    *,
    container_was_missing: bool,
) -> list[CheckpointAhead]:
    """The checkpoints in ``checkpoints`` (partition -> sequence number) whose event no blob holds.

    ``container`` is the capture container (an async ``ContainerClient``).
    """
    wanted = {pid: seq for pid, seq in checkpoints.items() if seq >= 0}
    if not wanted:
        return []
    if container_was_missing:
        why = f"container {options.container!r} did not exist (deleted?)"
        return [CheckpointAhead(pid, seq, why) for pid, seq in sorted(wanted.items(), key=lambda kv: _key(kv[0]))]
    times = await _enqueued_times(eventhub, wanted)
    found = await asyncio.gather(
        *(_holder(container, options, pid, seq, times[pid]) for pid, seq in wanted.items() if pid in times)
    )
    return sorted((a for a in found if a is not None), key=lambda a: _key(a.partition_id))


async def reset_checkpoints(storage: StorageConnection, eventhub: EventHubConnection, options: CaptureOptions) -> int:
    """Delete capture's checkpoints for this hub and consumer group (not the ownership records); how many."""
    prefix = f"{eventhub.fully_qualified_namespace}/{eventhub.eventhub_name}/{options.consumer_group}/checkpoint/"
    deleted = 0
    async with storage.service() as service:
        client = service.get_container_client(options.checkpoint_container)
        async for blob in client.list_blobs(name_starts_with=prefix.lower()):
            await client.delete_blob(blob.name)
            deleted += 1
    return deleted


async def _holder(container: Any, options: CaptureOptions, pid: str, seq: int, ms: int) -> CheckpointAhead | None:
    """None when a blob whose window may hold event ``seq`` (enqueued at ``ms``) holds it."""
    at = datetime.fromtimestamp(ms / 1000, UTC)
    fmt = options.path_format
    names = {"namespace": options.namespace, "eventhub": options.eventhub_name, "partition_id": pid}
    for prefix in fmt.time_prefixes(at, at + timedelta(milliseconds=1), **names):
        async for blob in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            path = fmt.try_parse(blob.name)
            if path is None or (path.namespace, path.eventhub, path.partition_id) != tuple(names.values()):
                continue
            if not fmt.may_overlap(path, at, at + timedelta(milliseconds=1)):
                continue
            existing = ExistingFile.from_properties(blob.name, blob.etag, blob.size, blob.metadata)
            if existing.contains(seq) or (not existing.known and await _holds(container, blob.name, seq)):
                return None
    window = options.time_window
    return CheckpointAhead(
        pid, seq, f"no blob in container {options.container!r} holds that event (enqueued {at:%Y-%m-%d %H:%M:%S} UTC; "
        f"its {window}-s window's file is missing)",
    )  # fmt: skip


async def _holds(container: Any, name: str, seq: int) -> bool:
    """Whether a blob without capture's metadata (written by Azure or another tool) holds event ``seq``."""
    stream = await container.get_blob_client(name).download_blob()
    return any(r["SequenceNumber"] == seq for r in cf.iter_records(await stream.readall()))


async def _enqueued_times(eventhub: EventHubConnection, wanted: dict[str, int]) -> dict[str, int]:
    """Each partition's event ``wanted[pid]``'s enqueued time (ms), read from the hub; partitions whose
    event the hub no longer holds (past its retention) are left out."""
    found: dict[str, int] = {}
    held: dict[str, int] = {}
    done = asyncio.Event()

    async def on_event(context: Any, event: Any) -> None:
        if event is not None and event.sequence_number == held[context.partition_id]:
            found[context.partition_id] = int(event.enqueued_time.timestamp() * 1000)
            if len(found) == len(held):
                done.set()

    async with eventhub.consumer("$Default") as client:
        for pid, pos in (await partition_positions(client, list(wanted))).items():
            if not pos.is_empty and pos.begin_sequence_number <= wanted[pid] <= pos.last_enqueued_sequence_number:
                held[pid] = wanted[pid]
        if not held:
            return {}
        tasks = [
            asyncio.create_task(client.receive(on_event, partition_id=pid, starting_position=seq,
                                               starting_position_inclusive=True, max_wait_time=1.0))
            for pid, seq in held.items()
        ]  # fmt: skip
        try:
            await asyncio.wait_for(done.wait(), READ_TIMEOUT)
        except TimeoutError:
            _LOG.warning("capture: could not read back checkpointed events of partitions %s; not checked",
                         sorted(set(held) - set(found)))  # fmt: skip
        finally:
            await client.close()
            for task in tasks:
                task.cancel()
    return found


def _key(pid: str) -> tuple[int, str]:
    return (int(pid), pid) if pid.isdigit() else (1 << 30, pid)
