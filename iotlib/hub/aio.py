"""The ``async`` twins of :func:`iotlib.hub.positions`, :func:`iotlib.hub.read` and the lag monitor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Unpack

import polars as pl
from azure.eventhub.exceptions import EventHubError

from iotlib.clients import MonitorClient
from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.errors import ConfigurationError, HubError
from iotlib.hub.checkpoints import read_container
from iotlib.hub.lag import GroupRecords, LagSample, known_times, lag_frame, waiting
from iotlib.hub.monitor_options import MonitorOptions, MonitorParameters
from iotlib.hub.partitions import PartitionPosition, partition_positions
from iotlib.hub.peek import enqueued_times, group_exists
from iotlib.hub.readback import ReadOptions, read_events, read_positions
from iotlib.preflight import aio as preflight


async def positions(conn_str: str | None = None, *, eventhub_name: str | None = None) -> dict[str, PartitionPosition]:
    """Each partition's position now; see :func:`iotlib.hub.positions`."""
    return await read_positions(EventHubConnection.given(conn_str, eventhub_name=eventhub_name))


async def read(
    conn_str: str | None = None, *, eventhub_name: str | None = None, **options: Unpack[ReadOptions]
) -> pl.DataFrame:
    """The events a run added; see :func:`iotlib.hub.read`."""
    eventhub = EventHubConnection.given(conn_str, eventhub_name=eventhub_name)
    return await read_events(eventhub, **options)


class LagMonitor(MonitorClient):
    """How far consumer groups are behind one hub, look after look (async; the sync twin is
    :class:`iotlib.hub.monitor.LagMonitor`). Create with :meth:`from_settings` or
    :meth:`from_connection_string`; options: :class:`~iotlib.hub.monitor_options.MonitorOptions`.

    ``async with LagMonitor.from_settings(consumer_groups={"warm": "warm-checkpoints"}) as m:
    look = await m.sample()``. Each look makes the same SDK calls against Azure as locally:
    ``get_partition_properties`` per partition, one listing of the checkpoint container, and (for
    ``lag_seconds``) one short read per partition with a backlog.
    """

    def __init__(
        self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[MonitorParameters]
    ):
        self.options = MonitorOptions.of(options)
        self.eventhub = eventhub
        self.storage = storage
        self.eventhub_name = eventhub.eventhub_name
        self._client: Any = None
        self._service: Any = None
        self._checked = False
        self._known: set[str] = set()
        self._previous: pl.DataFrame | None = None

    async def __aenter__(self) -> LagMonitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        client, service, self._client, self._service = self._client, self._service, None, None
        if client is not None:
            await client.close()
        if service is not None:
            await service.close()

    async def sample(self) -> LagSample:
        """One look: a row per consumer group and partition (throughput against the previous look)."""
        try:
            return await asyncio.wait_for(self._look(), self.options.timeout)
        except TimeoutError:
            await self._check_endpoints()  # a stack stopped meanwhile says so
            raise HubError(
                f"a look at event hub '{self.eventhub_name}' and its checkpoints took longer than "
                f"{self.options.timeout:g} s (timeout=)"
            ) from None
        except HubError:
            await self._check_endpoints()
            raise

    async def _check_endpoints(self) -> None:
        """The hub and the storage account, both checked at once; the first mistake in one line
        (:class:`~iotlib.errors.EndpointError`: nothing answers, a key refused, no such hub)."""
        outcomes = await asyncio.gather(
            preflight.check_eventhub(self.eventhub), preflight.check_storage(self.storage), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _look(self) -> LagSample:
        opts = self.options
        if not self._checked:
            await self._check_endpoints()
            self._checked = True
        if self._client is None:
            self._client = self.eventhub.consumer(opts.peek_consumer_group, retry_total=1)
        if self._service is None:
            self._service = self.storage.service()
        sampled_at = datetime.fromtimestamp(opts.clock(), UTC)
        try:
            positions = await partition_positions(self._client)
        except EventHubError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubError(f"cannot read the partitions of event hub '{self.eventhub_name}': {first}") from exc
        groups = await self._records(positions)
        times = known_times(positions)
        if opts.lag_time:
            wanted = waiting(positions, groups)
            times.update(await enqueued_times(self.eventhub, wanted, consumer_group=opts.peek_consumer_group))
        frame = lag_frame(
            self.eventhub_name, positions, groups, sampled_at=sampled_at, enqueued_times=times, previous=self._previous
        )
        self._previous = frame
        return LagSample(frame, opts.rule.evaluate(frame) if opts.rule is not None else [])

    async def _records(self, positions: dict[str, PartitionPosition]) -> list[GroupRecords]:
        """Each monitored group's records; a group that left none must be one the hub knows."""
        by_container: dict[str, dict[str, GroupRecords] | None] = {}
        for container in dict.fromkeys(self.options.consumer_groups.values()):
            client = self._service.get_container_client(container)
            by_container[container] = await read_container(
                client, self.eventhub.fully_qualified_namespace, self.eventhub_name
            )
        groups = []
        for group, container in self.options.consumer_groups.items():
            found = by_container[container]
            records = (found or {}).get(group.lower())
            if records is None or records.empty:
                await self._check_group(group, container, found, positions)
                records = GroupRecords(group, container)
            groups.append(GroupRecords(group, container, records.checkpoints, records.owners))
        return groups

    async def _check_group(
        self,
        group: str,
        container: str,
        found: dict[str, GroupRecords] | None,
        positions: dict[str, PartitionPosition],
    ) -> None:
        if group in self._known:
            return
        exists = await group_exists(self.eventhub, group, positions)
        if exists is False:
            recorded = sorted(g for g, r in (found or {}).items() if not r.empty)
            there = (
                f"container '{container}' does not exist"
                if found is None
                else f"container '{container}' has no records of it"
                + (f" (groups recorded there: {', '.join(recorded)})" if recorded else "")
            )
            raise ConfigurationError(
                f"consumer group '{group}' does not exist on event hub '{self.eventhub_name}' (the hub refused a "
                f"reader with amqp:not-found), and {there}. Check the name; name its checkpoint container as "
                "GROUP=CONTAINER"
            )
        self._known.add(group)
