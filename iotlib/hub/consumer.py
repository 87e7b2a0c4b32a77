"""One consumer skeleton for the engines that read a consumer group (capture, the warm job).

A :class:`Consumer` is an async ``EventHubConsumerClient`` with a ``BlobCheckpointStore`` on one
consumer group (the client balances partitions between every consumer on that group through
ownership records in the checkpoint container). :meth:`Consumer.run` receives in a task of its
own and looks at the stop conditions every :data:`POLL_INTERVAL` seconds until one holds; the
engine supplies the callbacks and a ``tick`` (its own stop conditions and periodic work) through
the :class:`Engine` protocol.

**Until idle** means every partition of the hub is caught up by a live owner, not only the ones this
consumer happens to hold: after a ``kill -9`` the dead process's ownership records stay valid until
they expire (``ownership_expiry``, 60 s by default), and only then may a live consumer take its
partitions. So once this consumer is quiet and caught up it looks at each other partition: one whose
checkpoint is at the hub's last event is done; one held by another consumer that renews its claim
is that consumer's; any other (an owner that stopped renewing, or none) is waited for — the load
balancer claims it when its claim expires and it is read like the rest. If that does not happen
(nothing changes for longer than the claim expiry plus two balancing rounds and the idle time, or
``timeout`` comes first) the run fails, naming the partitions that are not caught up.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypedDict

from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.durations import Duration, to_seconds
from iotlib.errors import ConfigurationError, IotlibError
from iotlib.hub.partitions import EMPTY, PartitionPosition, partition_positions
from iotlib.hub.starting import SdkPosition, StartingPosition, check_starting_position

_LOG = logging.getLogger("iotlib.hub")
#: Seconds between looks at the stop conditions.
POLL_INTERVAL = 0.1
#: Seconds between progress callbacks.
PROGRESS_INTERVAL = 0.5
#: Seconds between looks at the other partitions (ownership, checkpoints, positions) while idle.
SETTLE_INTERVAL = 1.0
#: Seconds the client may take to close (each partition's close callback, then its ownership released).
CLOSE_TIMEOUT = 15.0


class Engine(Protocol):
    """What an engine hands the consumer: the client's callbacks and its own stop conditions."""

    async def on_batch(self, context: Any, events: list[Any]) -> None: ...
    async def on_claim(self, context: Any) -> None: ...
    async def on_close(self, context: Any, reason: Any) -> None: ...
    async def on_error(self, context: Any, error: Exception) -> None: ...

    async def tick(self, now: float) -> str | None:
        """Periodic work; a reason to stop, or None to go on. May raise to fail the run."""
        ...

    def caught_up(self) -> bool:
        """Whether ``until_idle`` may stop now (the client has nothing more to give)."""
        ...

    def stopping(self) -> Awaitable[None] | None:
        """Called once the loop ends, before the client closes (and closes each partition); a
        coroutine function is awaited (e.g. to flush what the engine holds, within its own time limit)."""
        ...


class ConsumerParameters(TypedDict, total=False):
    """The reading keywords every consumer-group engine takes (see :class:`ConsumerOptions`)."""

    consumer_group: str
    checkpoint_container: str
    starting_position: StartingPosition
    load_balancing_interval: Duration
    ownership_expiry: Duration | None
    load_balancing_strategy: str
    max_batch_size: int
    max_wait_time: Duration
    prefetch: int


def consumer_values(values: dict[str, Any]) -> dict[str, Any]:
    """The reading keywords among ``values`` in their checked form (durations in seconds)."""
    for name in ("load_balancing_interval", "ownership_expiry", "max_wait_time"):
        if values.get(name) is not None:
            values[name] = to_seconds(values[name], name=name)
    if "starting_position" in values:
        values["starting_position"] = check_starting_position(values["starting_position"])
    return values


@dataclass(frozen=True, kw_only=True)
class ConsumerOptions:
    """What every consumer-group engine is told about reading (each engine's options extend it).

    ``consumer_group``, ``checkpoint_container`` (ownership and checkpoints), ``starting_position``
    (where a partition without a checkpoint starts, :mod:`iotlib.hub.starting`),
    ``load_balancing_interval`` and ``ownership_expiry`` (seconds; partition ownership),
    ``load_balancing_strategy`` (``"greedy"``, the default: every claimable partition up to a fair
    share at once, so a lone consumer starts on all partitions at once; ``"balanced"``: one more
    partition per interval, so a consumer alone on 8 partitions owns the last one 70 s after the first),
    ``max_batch_size``, ``max_wait_time`` (seconds) and ``prefetch`` (the client's receiving).
    """

    consumer_group: str
    checkpoint_container: str
    starting_position: StartingPosition = "earliest"
    load_balancing_interval: float = 10.0
    ownership_expiry: float | None = None
    load_balancing_strategy: str = "greedy"
    max_batch_size: int = 300
    max_wait_time: float = 1.0
    prefetch: int = 1000

    def check_consumer(self) -> None:
        """Raise :class:`ConfigurationError` naming the first reading option out of range."""
        for name in ("consumer_group", "checkpoint_container"):
            if not getattr(self, name):
                raise ConfigurationError(f"{name} must not be empty")
        for name in ("load_balancing_interval", "max_wait_time"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name}={getattr(self, name)!r} must be a positive number of seconds")
        if self.load_balancing_strategy not in ("balanced", "greedy"):
            raise ConfigurationError(
                f"load_balancing_strategy={self.load_balancing_strategy!r}: use 'balanced' or 'greedy'"
            )
        if self.ownership_expiry is not None and self.ownership_expiry <= self.load_balancing_interval:
            raise ConfigurationError(
                f"ownership_expiry={self.ownership_expiry} must be longer than load_balancing_interval="
                f"{self.load_balancing_interval} (owners renew once per interval)"
            )
        if not 1 <= self.max_batch_size <= 10_000 or not 1 <= self.prefetch <= 50_000:
            raise ConfigurationError(
                f"max_batch_size={self.max_batch_size}, prefetch={self.prefetch}: use 1-10,000 and 1-50,000"
            )
        check_starting_position(self.starting_position)


@dataclass(frozen=True)
class Until:
    """When a run stops, besides the engine's own reasons: ``timeout`` and ``until_idle`` seconds.

    ``floor`` (see :meth:`Consumer.idle_floor`): the sequence number each owned partition must have
    been read to before the group counts as idle. Idle means "read what the hub held at the start,
    then nothing came": a partition's first look may come back empty while events wait.
    """

    timeout: float | None = None
    until_idle: float | None = None
    floor: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Unsettled:
    """A partition that is not caught up by a live owner, and why (for the user)."""

    partition_id: str
    reason: str

    def __str__(self) -> str:
        return f"partition {self.partition_id} ({self.reason})"


class _Renewals:
    """Which ownership records are renewed while we watch: a live owner renews its claim every
    load-balancing round; a dead one's record stays as it was until it expires."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, float]] = {}  # partition -> (owner, last modified) when first seen
        self.live: set[tuple[str, str]] = set()  # (partition, owner) seen renewing

    def see(self, record: Mapping[str, Any]) -> bool:
        """Record one ownership record; True when its owner has renewed it since we first saw it."""
        pid, owner, modified = record["partition_id"], record.get("owner_id") or "", record["last_modified_time"]
        if (pid, owner) in self.live:
            return True
        seen = self.first.get(pid)
        if seen is None or seen[0] != owner:
            self.first[pid] = (owner, modified)
            return False
        if modified > seen[1]:
            self.live.add((pid, owner))
            return True
        return False


class Consumer:
    """A consumer group of one event hub, with a Blob checkpoint store."""

    def __init__(
        self,
        eventhub: EventHubConnection,
        storage: StorageConnection,
        options: ConsumerOptions,
        *,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.eventhub = eventhub
        self.options = options
        self.consumer_group = options.consumer_group
        self.checkpoints = storage.checkpoint_store(options.checkpoint_container, **dict(store_options or {}))
        self.client = eventhub.consumer(
            options.consumer_group,
            checkpoint_store=self.checkpoints,
            load_balancing_interval=options.load_balancing_interval,
            partition_ownership_expiration_interval=options.ownership_expiry,
            load_balancing_strategy=options.load_balancing_strategy,
        )
        #: Monotonic time of the last non-empty batch (or of the start of :meth:`run`).
        self.last_event_at = time.monotonic()
        #: The partitions this consumer owns now, and the newest sequence number received from each.
        self.owned: set[str] = set()
        self.received: dict[str, int] = {}
        #: Partitions not caught up by a live owner at the last look (``until_idle`` waits for them).
        self.unsettled: list[Unsettled] = []
        self._renewals = _Renewals()

    async def positions(self, partition_ids: list[str] | None = None) -> dict[str, PartitionPosition]:
        """Where each partition stands now (one round trip for all)."""
        return await partition_positions(self.client, partition_ids)

    async def stored_checkpoints(self) -> dict[str, int]:
        """The checkpointed sequence number of each partition that has one."""
        rows = await self.checkpoints.list_checkpoints(
            self.eventhub.fully_qualified_namespace, self.eventhub.eventhub_name, self.consumer_group
        )
        return {r["partition_id"]: int(r["sequence_number"]) for r in rows if r.get("sequence_number") is not None}

    async def idle_floor(
        self, positions: Mapping[str, PartitionPosition], start: SdkPosition | dict[str, SdkPosition]
    ) -> dict[str, int]:
        """For :class:`Until`: each partition whose reading begins before the hub's last event at the
        start (from its checkpoint, else from ``start``), mapped to that last sequence number.

        A partition that starts at a time is left out (where a time falls is not known in sequence
        numbers); so is one whose checkpoint or start is already at the end.
        """
        try:
            checkpoints = await self.stored_checkpoints()
        except Exception:  # noqa: BLE001 - without them, the start positions decide
            checkpoints = {}
        floor = {}
        for pid, now in positions.items():
            begin: int | None = checkpoints.get(pid)
            if begin is None:
                one = start.get(pid, "-1") if isinstance(start, dict) else start
                if isinstance(one, datetime):
                    continue
                begin = EMPTY if one == "-1" else int(one)
            if begin < now.last_enqueued_sequence_number:
                floor[pid] = now.last_enqueued_sequence_number
        return floor

    @property
    def ownership_expiry(self) -> float:
        """Seconds after its last renewal that a claim expires (the SDK's default: 6 balancing rounds)."""
        return self.options.ownership_expiry or 6 * self.options.load_balancing_interval

    async def settle(self, floor: Mapping[str, int] | None) -> list[Unsettled]:
        """The partitions of the hub not caught up by a live owner (none: the group is idle).

        Ours must have been read to ``floor`` (what the hub held at the start), counting a
        checkpoint another consumer left there; every other must be checkpointed at the hub's last
        event or held by an owner seen renewing its claim.
        """
        positions = await self.positions()
        checkpoints = await self.stored_checkpoints()
        now = time.time()
        records = {r["partition_id"]: r for r in await self.ownership()}
        mine = {records[p].get("owner_id") for p in self.owned if p in records}
        out = []
        for pid, pos in positions.items():
            done = max(self.received.get(pid, EMPTY), checkpoints.get(pid, EMPTY))
            if pid in self.owned:
                if floor is not None and done < floor.get(pid, EMPTY):
                    out.append(Unsettled(pid, f"read to {done:,} of {floor[pid]:,}"))
                continue
            record = records.get(pid)
            renewed = record is not None and self._renewals.see(record)
            if done >= pos.last_enqueued_sequence_number:
                continue
            owner = (record or {}).get("owner_id") or ""
            behind = f"checkpoint {done:,}, last event {pos.last_enqueued_sequence_number:,}"
            if not owner:
                out.append(Unsettled(pid, f"no owner; {behind}"))
            elif owner in mine:
                out.append(Unsettled(pid, f"being claimed by this consumer; {behind}"))
            elif not renewed:
                assert record is not None
                age = now - record["last_modified_time"]
                left = max(0.0, self.ownership_expiry - age)
                out.append(Unsettled(pid, f"its owner has not renewed its claim for {age:.0f} s (a stopped "
                                          f"process?): it expires in {left:.0f} s; {behind}"))  # fmt: skip
        return out

    async def ownership(self) -> list[dict[str, Any]]:
        return list(
            await self.checkpoints.list_ownership(
                self.eventhub.fully_qualified_namespace, self.eventhub.eventhub_name, self.consumer_group
            )
        )

    async def run(
        self,
        engine: Engine,
        stop: asyncio.Event,
        until: Until,
        *,
        start: SdkPosition | dict[str, SdkPosition],
        start_inclusive: bool = False,
        fail: type[IotlibError],
        progress: Callable[[], None] | None = None,
        background: tuple[Coroutine[Any, Any, None], ...] = (),
    ) -> str:
        """Receive until ``stop`` is set, ``until`` holds or the engine's ``tick`` gives a reason; the reason.

        ``start`` is where partitions without a checkpoint start (:func:`iotlib.hub.starting.resolve`).
        ``background`` coroutines run beside the receiving and are cancelled at the end; the
        client closes (so partitions are closed with ``SHUTDOWN``) before this returns. A receive
        task that ends by itself fails the run with ``fail``.
        """

        async def on_batch(context: Any, events: list[Any]) -> None:
            if events:
                self.last_event_at = time.monotonic()
                pid = context.partition_id
                self.received[pid] = max(self.received.get(pid, EMPTY), events[-1].sequence_number)
            await engine.on_batch(context, events)

        async def on_claim(context: Any) -> None:
            self.owned.add(context.partition_id)
            await engine.on_claim(context)

        async def on_close(context: Any, reason: Any) -> None:
            self.owned.discard(context.partition_id)
            await engine.on_close(context, reason)

        receiving = asyncio.create_task(
            self.client.receive_batch(
                on_batch,
                max_batch_size=self.options.max_batch_size,
                max_wait_time=self.options.max_wait_time,
                prefetch=self.options.prefetch,
                starting_position=start,
                starting_position_inclusive=start_inclusive,
                on_partition_initialize=on_claim,
                on_partition_close=on_close,
                on_error=engine.on_error,
            ),
            name=f"iotlib-receive-{self.consumer_group}",
        )
        tasks = [asyncio.create_task(c) for c in background]
        started = last_progress = self.last_event_at = time.monotonic()
        settled_at = 0.0  # last look at the other partitions
        waiting: tuple[float, frozenset[str]] | None = None  # since when, for which partitions
        try:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
                    return "stopped"
                except TimeoutError:
                    pass
                now = time.monotonic()
                reason = await engine.tick(now)
                if reason is not None:
                    return reason
                if receiving.done():
                    exc = receiving.exception()
                    raise fail(f"receiving stopped: {exc or 'the client returned'}") from exc
                if progress is not None and now - last_progress >= PROGRESS_INTERVAL:
                    last_progress = now
                    progress()
                if until.timeout is not None and now - started >= until.timeout:
                    if waiting is not None:
                        raise fail(self._not_caught_up(f"the timeout ({until.timeout:g} s) came first"))
                    return f"timeout ({until.timeout:g} s)"
                idle = until.until_idle is not None and now - self.last_event_at >= until.until_idle
                if idle and engine.caught_up() and now - settled_at >= SETTLE_INTERVAL:
                    settled_at = now
                    try:
                        self.unsettled = await self.settle(until.floor)
                    except Exception as exc:  # noqa: BLE001 - the hub or storage did not answer: look again
                        self.unsettled = [Unsettled("?", f"could not look: {type(exc).__name__}: {exc}")]
                    if not self.unsettled:
                        return f"idle for {until.until_idle:g} s"
                    which = frozenset(u.partition_id for u in self.unsettled)
                    if waiting is None or which != waiting[1]:  # something moved: wait again
                        if waiting is None:
                            _LOG.warning("until idle: waiting for %s", "; ".join(map(str, self.unsettled)))
                        waiting = (now, which)
                    assert until.until_idle is not None
                    patience = self.ownership_expiry + 2 * self.options.load_balancing_interval + until.until_idle
                    if now - waiting[0] > patience:
                        raise fail(self._not_caught_up(f"nothing changed for {patience:.0f} s"))
                elif not idle:
                    waiting = None
        finally:
            stopped = engine.stopping()
            if inspect.isawaitable(stopped):
                await stopped
            for task in tasks:
                task.cancel()
            try:  # bounded: releasing ownership needs the checkpoint store, which may not answer
                await asyncio.wait_for(self.client.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                _LOG.warning("the %s consumer did not close within %.0f s (storage not answering?); its claims "
                             "expire by themselves", self.consumer_group, CLOSE_TIMEOUT)  # fmt: skip
            receiving.cancel()
            for task in (receiving, *tasks):
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                    pass

    def _not_caught_up(self, why: str) -> str:
        return f"not idle: {len(self.unsettled)} partition(s) not caught up by a live owner ({why}): " + "; ".join(
            map(str, self.unsettled)
        )

    async def close(self, timeout: float | None = None) -> None:
        """Close the client (again: harmless) and the checkpoint store."""
        try:
            await asyncio.wait_for(self.client.close(), timeout)
        finally:
            await self.checkpoints.close()
