"""The ``async`` twins of :func:`iotlib.hub.positions` and :func:`iotlib.hub.read`."""

from __future__ import annotations

from typing import Unpack

import polars as pl

from iotlib.connections import EventHubConnection
from iotlib.hub.partitions import PartitionPosition
from iotlib.hub.readback import ReadOptions, read_events, read_positions


async def positions(conn_str: str | None = None, *, eventhub_name: str | None = None) -> dict[str, PartitionPosition]:
    """Each partition's position now; see :func:`iotlib.hub.positions`."""
    return await read_positions(EventHubConnection.given(conn_str, eventhub_name=eventhub_name))


async def read(
    conn_str: str | None = None, *, eventhub_name: str | None = None, **options: Unpack[ReadOptions]
) -> pl.DataFrame:
    """The events a run added; see :func:`iotlib.hub.read`."""
    eventhub = EventHubConnection.given(conn_str, eventhub_name=eventhub_name)
    return await read_events(eventhub, **options)
