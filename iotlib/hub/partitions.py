"""Where each partition of a hub stands: one management round trip for all of them.

Every reader in iotlib (the read-back, the capture writer, the warm job) asks the hub the same
question the same way; an empty partition's last sequence number is :data:`EMPTY` (-1), the
number before the first event, so "read everything up to it" needs no special case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The last enqueued sequence number of an empty partition: the one before the first event.
EMPTY = -1


@dataclass(frozen=True)
class PartitionPosition:
    """One partition's state as the hub reports it."""

    partition_id: str
    begin_sequence_number: int
    last_enqueued_sequence_number: int
    last_enqueued_offset: str
    last_enqueued_time_utc: datetime | None
    is_empty: bool

    @classmethod
    def of(cls, partition_id: str, props: dict[str, Any]) -> PartitionPosition:
        """From the SDK's ``get_partition_properties`` answer."""
        empty = bool(props["is_empty"])
        return cls(
            partition_id,
            int(props["beginning_sequence_number"]),
            EMPTY if empty else int(props["last_enqueued_sequence_number"]),
            str(props["last_enqueued_offset"]),
            props.get("last_enqueued_time_utc"),
            empty,
        )


async def partition_positions(client: Any, partition_ids: Sequence[str] | None = None) -> dict[str, PartitionPosition]:
    """Each partition's position (all of them, or ``partition_ids``), asked for all at once.

    ``client`` is an async ``EventHubConsumerClient`` or ``EventHubProducerClient``; it opens a
    management link per call (~0.5 s), so the calls go out together.
    """
    ids = list(partition_ids) if partition_ids is not None else list(await client.get_partition_ids())
    found = await asyncio.gather(*(client.get_partition_properties(pid) for pid in ids))
    return {pid: PartitionPosition.of(pid, props) for pid, props in zip(ids, found)}
