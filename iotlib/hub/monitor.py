"""The lag monitor: how far each consumer group is behind the hub, partition by partition.

The original journey's monitor compared, per partition and consumer group,
the last enqueued sequence number with the last checkpointed one (events not
yet processed), and showed the last enqueued time beside the checkpoint's
time. This module reads the same two sources a real deployment has: the
hub's partition properties (a cheap management call) and the checkpoint
blobs that ``BlobCheckpointStore`` writes (their metadata holds the sequence
number; their last-modified time is the checkpoint time; ownership blobs say
which processor holds the partition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import polars as pl
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from iotlib._eventloop import run as _run
from iotlib.connections import Connections
from iotlib.hub.readback import read_positions

#: Where iotlib's own consumers keep their checkpoints, by consumer group.
DEFAULT_CHECKPOINTS = {"capture": "capture-checkpoints", "warm": "warm-checkpoints"}

_SCHEMA = {
    "consumer_group": pl.String(),
    "partition_id": pl.String(),
    "last_enqueued_sequence_number": pl.Int64(),
    "checkpoint_sequence_number": pl.Int64(),
    "unprocessed": pl.Int64(),
    "last_enqueued_time": pl.Datetime("us", "UTC"),
    "checkpoint_time": pl.Datetime("us", "UTC"),
    "owner": pl.String(),
    "ownership_time": pl.Datetime("us", "UTC"),
}


def _blobs(container: ContainerClient, prefix: str) -> dict[str, tuple[dict[str, str], datetime]]:
    try:
        return {
            b.name.rsplit("/", 1)[-1]: (dict(b.metadata or {}), b.last_modified)
            for b in container.list_blobs(name_starts_with=prefix.lower(), include=["metadata"])
        }
    except ResourceNotFoundError:
        return {}


def lag(
    consumer_groups: Sequence[str] | Mapping[str, str] = DEFAULT_CHECKPOINTS,
    *,
    eventhub_connection_string: str | None = None,
    storage_connection_string: str | None = None,
    eventhub_name: str | None = None,
) -> pl.DataFrame:
    """One row per consumer group and partition: enqueued vs checkpointed, and who owns it.

    ``consumer_groups`` maps each group to its checkpoint container (a plain
    list uses :data:`DEFAULT_CHECKPOINTS` or ``checkpoints``). ``unprocessed`` counts
    events after the checkpoint (all retained events when there is none). Give both connection
    strings, or neither for :func:`iotlib.settings`'s.
    """
    eventhub, storage = Connections.given(
        eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name
    )
    if not isinstance(consumer_groups, Mapping):
        consumer_groups = {g: DEFAULT_CHECKPOINTS.get(g, "checkpoints") for g in consumer_groups}
    positions = _run(read_positions(eventhub))
    rows = []
    for group, container_name in consumer_groups.items():
        container: ContainerClient = storage.container(container_name)
        base = f"{eventhub.fully_qualified_namespace}/{eventhub.eventhub_name}/{group}"
        checkpoints = _blobs(container, f"{base}/checkpoint/")
        owners = _blobs(container, f"{base}/ownership/")
        for pid, pos in positions.items():
            meta, at = checkpoints.get(pid, ({}, None))
            seq = int(meta["sequencenumber"]) if "sequencenumber" in meta else None
            last = pos.last_enqueued_sequence_number
            if pos.is_empty:
                unprocessed = 0
            elif seq is None:
                unprocessed = last - pos.begin_sequence_number + 1
            else:
                unprocessed = max(0, last - seq)
            owner_meta, owned_at = owners.get(pid, ({}, None))
            rows.append(
                (
                    group,
                    pid,
                    last,
                    seq,
                    unprocessed,
                    pos.last_enqueued_time_utc,
                    at,
                    owner_meta.get("ownerid") or None,
                    owned_at,
                )
            )
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row").sort(
        "consumer_group", pl.col("partition_id").cast(pl.Int64, strict=False)
    )


def summary(frame: pl.DataFrame) -> pl.DataFrame:
    """Per consumer group: unprocessed events in all, the worst partition, the oldest checkpoint."""
    return (
        frame.group_by("consumer_group")
        .agg(
            pl.col("unprocessed").sum().alias("unprocessed"),
            pl.col("unprocessed").max().alias("worst_partition"),
            pl.col("checkpoint_time").min().alias("oldest_checkpoint"),
            pl.col("owner").drop_nulls().n_unique().alias("owners"),
        )
        .sort("consumer_group")
    )
