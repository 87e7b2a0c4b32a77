"""The asynchronous stream processor: ``async with StreamProcessor.from_connection_string(...) as p: await p.run()``.

It is the engine under the synchronous :class:`iotlib.warm.StreamProcessor` too. One
``azure.eventhub.aio.EventHubConsumerClient`` with a ``BlobCheckpointStore`` reads the consumer
group; each partition's batches are decoded (:mod:`iotlib.warm.incoming`) and pushed into the
job (:class:`iotlib.warm.job.WarmJob`), which merges partitions into arrival order, windows,
alerts and dead-letters. Every ``commit_interval`` seconds what the job produced goes to the warm
store in one transaction with its snapshot and progress; only then are the hub checkpoints moved.

**Where it starts.** The warm store is the truth: a partition it has seen resumes right after its
stored progress, whatever the checkpoint blobs say (they are rewritten to match before reading
starts); a partition it has never seen starts at ``starting_position``. Events at or before the
stored progress are skipped if the hub delivers them again. The job's snapshot is restored, so the
output goes on exactly as if the processor had never stopped.

**Quiet partitions and heartbeats.** The job waits for every partition (results are defined on the
global arrival order). Every ``heartbeat_interval`` seconds, partitions that delivered nothing
lately are checked against the hub: one read to its last enqueued event is *marked* as complete up
to the hub's time before the check (:mod:`iotlib.warm.clock`), which releases the others.
With ``heartbeat`` on, the window engine's arrival clock then moves to that time as well, so
windows close and silent devices are noticed when no event comes.

**Ownership.** The job needs every partition: run one processor per consumer group and warm
store. A processor that died holds its partitions' ownership until it expires; a restarted
processor on the same warm store releases its predecessor's ownership first (the owner id is kept
in the store), so it takes the partitions back at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl
from azure.core.exceptions import ResourceExistsError
from azure.eventhub import CloseReason
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import BlobServiceClient

from iotlib._eventloop import StoppableEngine
from iotlib.connections import parse_connection_string
from iotlib.connections import settings as _settings
from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.hub.monitor import namespace_host
from iotlib.processing.reference import Registry
from iotlib.warm import alerthub, incoming
from iotlib.warm.clock import HubClock, local_us
from iotlib.warm.job import WarmJob
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.report import ProcessReport
from iotlib.warm.store import Position, WarmStore

_LOG = logging.getLogger("iotlib.warm")
_EARLIEST = Position(-1, "-1")


class StreamProcessor(StoppableEngine):
    """The warm path: a consumer group of an event hub into the SQLite warm store (async).

    Create with :meth:`from_connection_string` or :meth:`from_settings`; options are those of
    :class:`~iotlib.warm.options.ProcessorOptions`. ``registry``: the device registry (default:
    :func:`iotlib.fleet.scenario.default_registry`). :meth:`run` processes until :meth:`stop`, ``once``,
    ``until_idle`` or ``timeout`` and returns a :class:`~iotlib.warm.report.ProcessReport`.
    """

    def __init__(
        self,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        registry: pl.DataFrame | Registry | None = None,
        **options: Any,
    ) -> None:
        parse_connection_string(eventhub_connection_string, what="Event Hubs connection string")
        parse_connection_string(storage_connection_string, what="storage connection string")
        name = eventhub_name or parse_connection_string(eventhub_connection_string).get("entitypath")
        if not name:
            raise ConfigurationError(
                "no event hub name: pass eventhub_name= or use a connection string with EntityPath="
            )
        self.eventhub_connection_string = eventhub_connection_string
        self.storage_connection_string = storage_connection_string
        self.options = ProcessorOptions.create(eventhub_name=name, **options)
        self._registry = registry
        self.report: ProcessReport | None = None

    @classmethod
    def from_connection_string(
        cls,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        registry: pl.DataFrame | Registry | None = None,
        **options: Any,
    ) -> StreamProcessor:
        """A processor for the hub and storage account the two connection strings name."""
        return cls(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name,
                   registry=registry, **options)  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Any = None, **options: Any) -> StreamProcessor:
        """A processor for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        s = settings or _settings()
        options.setdefault("eventhub_name", s.eventhub_name)
        return cls(s.eventhub_connection_string, s.storage_connection_string, **options)

    def registry(self) -> Registry:
        if not isinstance(self._registry, Registry):
            if self._registry is None:
                from iotlib.fleet.scenario import default_registry

                self._registry = default_registry()
            self._registry = Registry.of(self._registry)
        return self._registry

    async def run(
        self,
        *,
        once: bool = False,
        until_idle: float | None = None,
        timeout: float | None = None,
        flush: bool = False,
        progress: Callable[[ProcessReport, bool], None] | None = None,
    ) -> ProcessReport:
        """Process until :meth:`stop`, or:

        - ``once``: every event enqueued when the run started is stored (with ``heartbeat`` or
          ``flush``; otherwise: read, the newest possibly still waiting in the merger);
        - ``until_idle``: no event came for that many seconds;
        - ``timeout``: that many seconds passed.

        ``flush``: end of stream — emit the windows still open (``closed_at`` null) and mark the
        warm store finished (a later run on it is refused). ``progress`` is called about twice a
        second with the report.
        """
        if until_idle is not None and until_idle <= 0:
            raise ConfigurationError(f"until_idle={until_idle!r} must be a positive number of seconds")
        opts = self.options
        self._arm_stop()
        report = ProcessReport(opts.eventhub_name, opts.consumer_group, str(opts.warm_store))
        self.report = report
        store = WarmStore(opts.warm_store, writer=True)
        run: _Run | None = None
        try:
            run = _Run(self, store, report)
            reason = await run.main(once=once, until_idle=until_idle, timeout=timeout, flush=flush, progress=progress)
            report.stop_reason = reason
        finally:
            if run is not None:
                await run.close()
            store.close()
            report.stopped = datetime.now(UTC)
            self._loop = None
            if progress is not None:
                progress(report, True)
        return report


class _Run:
    """One run's state: the job, the clients, per-partition bookkeeping."""

    def __init__(self, processor: StreamProcessor, store: WarmStore, report: ProcessReport) -> None:
        self.p = processor
        self.opts = processor.options
        self.store = store
        self.report = report
        self.clock = HubClock()
        self.job: WarmJob | None = None
        self.client: EventHubConsumerClient | None = None
        self.checkpoints: BlobCheckpointStore | None = None
        self.producer: EventHubProducerClient | None = None
        self.fqns = namespace_host(processor.eventhub_connection_string)
        self.received: dict[str, int] = {}  # last sequence number pushed into the job, per partition
        self.unchecked: dict[str, Position] = {}  # committed progress not yet checkpointed
        self.last_event: dict[str, float] = {}  # monotonic time of each partition's last events
        self.last_event_at = time.monotonic()
        self.failure: BaseException | None = None
        self.owner_recorded = False
        self._error_log: dict[str, float] = {}

    # -- set-up --------------------------------------------------------------------------

    async def main(self, *, once: bool, until_idle: float | None, timeout: float | None, flush: bool,
                   progress: Callable[[ProcessReport, bool], None] | None) -> str:  # fmt: skip
        opts, p = self.opts, self.p
        await self._containers()
        self.checkpoints = BlobCheckpointStore.from_connection_string(
            p.storage_connection_string, opts.checkpoint_container
        )
        self.client = EventHubConsumerClient.from_connection_string(
            p.eventhub_connection_string,
            consumer_group=opts.consumer_group,
            eventhub_name=opts.eventhub_name,
            checkpoint_store=self.checkpoints,
            load_balancing_interval=opts.load_balancing_interval,
            partition_ownership_expiration_interval=opts.ownership_expiry,
        )
        if opts.alert_eventhub:
            self.producer = EventHubProducerClient.from_connection_string(
                p.eventhub_connection_string, eventhub_name=opts.alert_eventhub
            )
        try:
            partitions = list(await self.client.get_partition_ids())
            props = await self._properties(partitions)
        except Exception as exc:  # noqa: BLE001 - named for the user
            raise ProcessingError(f"cannot read event hub {opts.eventhub_name!r}: {exc}") from exc
        self.partitions = partitions
        self.job = self._job(partitions, props)
        if self.job.finished:
            raise ProcessingError(
                f"the warm store {self.store.path} was flushed (end of stream) by an earlier run; use a new warm store"
            )
        await self._align_checkpoints(partitions)
        await self._release_predecessor()
        targets = {
            pid: (-1 if pr["is_empty"] else int(pr["last_enqueued_sequence_number"])) for pid, pr in props.items()
        }
        if self.producer is not None:
            await self._send_alerts()  # what a previous run left unsent
        return await self._process(once=once, targets=targets, until_idle=until_idle, timeout=timeout, flush=flush,
                                progress=progress)  # fmt: skip

    async def _containers(self) -> None:
        async with BlobServiceClient.from_connection_string(self.p.storage_connection_string) as service:
            try:
                await service.create_container(self.opts.checkpoint_container)
                _LOG.info("created checkpoint container %r", self.opts.checkpoint_container)
            except ResourceExistsError:
                pass
            except Exception as exc:  # noqa: BLE001 - named for the user
                raise ProcessingError(
                    f"cannot reach the checkpoint container {self.opts.checkpoint_container!r}: {exc}"
                ) from exc

    async def _properties(self, partitions: list[str]) -> dict[str, dict[str, Any]]:
        assert self.client is not None
        found = await asyncio.gather(*(self.client.get_partition_properties(pid) for pid in partitions))
        return dict(zip(partitions, found))

    def _job(self, partitions: list[str], props: dict[str, dict[str, Any]]) -> WarmJob:
        opts = self.opts
        job = WarmJob(self.p.registry(), window=opts.window, policy=opts.policy, rules=opts.alerts,
                      partitions=partitions, heartbeat=opts.heartbeat, merge_timeout=opts.merge_timeout)  # fmt: skip
        stored = self.store.positions()
        snapshot = self.store.state("snapshot")
        if snapshot is not None:
            job.restore(snapshot, stored)
        else:
            self.store.set_state({"settings": json.dumps(job.settings()).encode()})
        for pid in partitions:
            if pid in stored:
                self.received[pid] = stored[pid].sequence_number
                continue
            start = self._start(pid, props[pid])
            job.start_at(pid, start)
            self.received[pid] = start.sequence_number
        self.report.counts = job.totals.counts
        self.report.dead_letters = job.totals.dead_letters
        self.report.alerts = job.totals.alerts
        self.report.positions = dict(self.received)
        return job

    def _start(self, pid: str, props: dict[str, Any]) -> Position:
        start = self.opts.starting_position
        if start == "earliest":
            return _EARLIEST
        if start == "latest":
            if props["is_empty"]:
                return _EARLIEST
            return Position(int(props["last_enqueued_sequence_number"]), str(props["last_enqueued_offset"]))
        assert not isinstance(start, str)  # options accept only "earliest" and "latest" as text
        pos = start.get(pid)
        if pos is None or pos.is_empty:
            return _EARLIEST
        return Position(pos.last_enqueued_sequence_number, str(pos.last_enqueued_offset))

    def _checkpoint(self, pid: str, pos: Position) -> dict[str, Any]:
        return {"fully_qualified_namespace": self.fqns, "eventhub_name": self.opts.eventhub_name,
                "consumer_group": self.opts.consumer_group, "partition_id": pid,
                "sequence_number": pos.sequence_number, "offset": pos.offset}  # fmt: skip

    async def _align_checkpoints(self, partitions: list[str]) -> None:
        """Make the checkpoint blobs say what the warm store says (the client starts from them)."""
        assert self.checkpoints is not None and self.job is not None
        existing = {c["partition_id"]: c for c in await self.checkpoints.list_checkpoints(
            self.fqns, self.opts.eventhub_name, self.opts.consumer_group)}  # fmt: skip
        wanted = {pid: self.job.positions.get(pid) or self.store.positions().get(pid) for pid in partitions}
        for pid, pos in wanted.items():
            if pos is None:
                continue
            have = existing.get(pid) or {}
            if str(have.get("offset")) != pos.offset or have.get("sequence_number") != pos.sequence_number:
                await self.checkpoints.update_checkpoint(self._checkpoint(pid, pos))

    async def _release_predecessor(self) -> None:
        """Release ownership a previous run on this warm store left behind (it may have died)."""
        assert self.checkpoints is not None
        previous = (self.store.state("owner_id") or b"").decode()
        if not previous:
            return
        owned = await self.checkpoints.list_ownership(self.fqns, self.opts.eventhub_name, self.opts.consumer_group)
        stale = [dict(o, owner_id="") for o in owned if o.get("owner_id") == previous]
        if stale:
            await self.checkpoints.claim_ownership(stale)
            _LOG.info("released %d partition(s) a previous run left owned", len(stale))

    # -- the loop ------------------------------------------------------------------------

    async def _process(self, *, once: bool, targets: dict[str, int], until_idle: float | None, timeout: float | None,
                    flush: bool, progress: Callable[[ProcessReport, bool], None] | None) -> str:  # fmt: skip
        opts = self.opts
        assert self.client is not None and self.job is not None and self.p._stop is not None
        receiving = asyncio.create_task(
            self.client.receive_batch(
                self.on_batch,
                max_batch_size=opts.max_batch_size,
                max_wait_time=opts.max_wait_time,
                prefetch=opts.prefetch,
                on_partition_initialize=self.on_claim,
                on_partition_close=self.on_close,
                on_error=self.on_error,
            ),
            name="iotlib-stream-receive",
        )
        beating = asyncio.create_task(self._heartbeats(), name="iotlib-stream-heartbeat")
        started = last_progress = time.monotonic()
        next_commit = started + opts.commit_interval
        self.last_event_at = started
        reason = "stopped"
        try:
            while True:
                try:
                    await asyncio.wait_for(self.p._stop.wait(), 0.1)
                    break
                except TimeoutError:
                    pass
                now = time.monotonic()
                if self.failure is not None:
                    raise ProcessingError(f"the processor failed: {self.failure}") from self.failure
                if receiving.done():
                    exc = receiving.exception()
                    raise ProcessingError(f"receiving stopped: {exc}") from exc
                if now >= next_commit and self.job.has_output:
                    took = await self._commit()
                    next_commit = time.monotonic() + max(opts.commit_interval, 10 * took)
                if progress is not None and now - last_progress >= 0.5:
                    last_progress = now
                    progress(self.report, False)
                if timeout is not None and now - started >= timeout:
                    reason = f"timeout ({timeout:g} s)"
                    break
                if until_idle is not None and now - self.last_event_at >= until_idle:
                    reason = f"idle for {until_idle:g} s"
                    break
                if once and self._once_done(targets, settled=not flush and opts.heartbeat):
                    reason = "once: every event enqueued at the start is " + (
                        "stored" if flush or opts.heartbeat else "read"
                    )
                    break
        finally:
            beating.cancel()
            await self.client.close()
            receiving.cancel()
            for task in (receiving, beating):
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                    pass
        if flush:
            self.job.finish()
        if self.job.has_output:
            await self._commit()
        return reason

    def _once_done(self, targets: dict[str, int], *, settled: bool) -> bool:
        assert self.job is not None
        if any(self.received.get(pid, -1) < t for pid, t in targets.items()):
            return False
        if not settled:
            return True
        return all(self.job.positions.get(pid, _EARLIEST).sequence_number >= t for pid, t in targets.items())

    async def _commit(self) -> float:
        """Store what the job produced, then checkpoint; returns the seconds the snapshot and store took."""
        assert self.job is not None and self.checkpoints is not None
        t0 = time.perf_counter()
        step = self.job.take()
        took_snapshot = time.perf_counter() - t0
        self.store.commit(step, seconds=took_snapshot)
        took = time.perf_counter() - t0
        r = self.report
        r.commits += 1
        r.windows += step.windows.height
        r.counts = self.job.totals.counts
        r.dead_letters, r.alerts, r.heartbeats = (
            self.job.totals.dead_letters,
            self.job.totals.alerts,
            self.job.totals.heartbeats,
        )
        r.positions.update({pid: pos.sequence_number for pid, pos in step.progress.items()})
        self.unchecked.update(step.progress)
        if self.unchecked:
            pending = list(self.unchecked.items())
            results = await asyncio.gather(
                *(self.checkpoints.update_checkpoint(self._checkpoint(pid, pos)) for pid, pos in pending),
                return_exceptions=True,
            )
            for (pid, pos), res in zip(pending, results):
                if isinstance(res, Exception):  # the warm store is the truth: the next commit tries again
                    self._log_error("checkpoint", res)
                elif self.unchecked.get(pid) == pos:
                    del self.unchecked[pid]
        if self.producer is not None and step.alerts.height:
            await self._send_alerts()
        return took

    async def _send_alerts(self) -> None:
        assert self.producer is not None
        unsent = self.store.table("alerts", where="sent_at IS NULL")
        if unsent.height == 0:
            return
        try:
            sent = await alerthub.send(self.producer, unsent)
        except Exception as exc:  # noqa: BLE001 - kept in the outbox, sent later
            self._log_error("alert hub", exc)
            return
        self.store.mark_sent(unsent["alert_id"].to_list())
        self.report.alerts_sent += sent

    async def _heartbeats(self) -> None:
        """Mark partitions read to the hub's end, so the merger need not wait for them."""
        assert self.client is not None and self.job is not None
        interval = self.opts.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            quiet = [pid for pid in self.partitions if now - self.last_event.get(pid, -1e18) >= interval]
            if not quiet:
                continue
            before = self.clock.now()  # a lower bound of the hub's clock as the check starts
            try:
                props = await self._properties(quiet)
            except Exception as exc:  # noqa: BLE001 - try again next time
                self._log_error("partition properties", exc)
                continue
            after_local = local_us()
            for pid, pr in props.items():
                if not pr["is_empty"] and pr.get("last_enqueued_time_utc") is not None:
                    self.clock.observe(int(pr["last_enqueued_time_utc"].timestamp() * 1_000_000), after_local)
                caught_up = pr["is_empty"] or int(pr["last_enqueued_sequence_number"]) <= self.received.get(pid, -1)
                if caught_up and before is not None:
                    self.job.mark(pid, before)
            self._step()

    # -- the consumer's callbacks --------------------------------------------------------

    async def on_batch(self, context: Any, events: list[Any]) -> None:
        if not events or self.failure is not None:
            return
        try:
            pid = context.partition_id
            local = local_us()
            frame = incoming.from_events(pid, events)
            last = self.received.get(pid, -1)
            if (frame["sequence_number"] <= last).any():  # delivered again (re-claimed from an older checkpoint)
                frame = frame.filter(pl.col("sequence_number") > last)
                if frame.height == 0:
                    return
            newest, newest_us = frame["sequence_number"].max(), frame["enqueued_time"].dt.epoch("us").max()
            assert isinstance(newest, int) and isinstance(newest_us, int)  # a non-empty batch
            self.received[pid] = newest
            self.clock.observe(newest_us, local)
            self.last_event[pid] = self.last_event_at = time.monotonic()
            assert self.job is not None
            self.job.push(pid, frame)
            self.report.received += frame.height
            self._step()
        except Exception as exc:  # noqa: BLE001 - stop the run, do not checkpoint past it
            self.failure = exc
            _LOG.exception("processing a batch of partition %s failed", getattr(context, "partition_id", "?"))

    def _step(self) -> None:
        assert self.job is not None
        self.report.released += self.job.step()

    async def on_claim(self, context: Any) -> None:
        self.report.partitions.add(context.partition_id)
        if not self.owner_recorded and self.checkpoints is not None:
            self.owner_recorded = True
            try:
                owned = await self.checkpoints.list_ownership(
                    self.fqns, self.opts.eventhub_name, self.opts.consumer_group
                )
                mine = [o["owner_id"] for o in owned if o["partition_id"] == context.partition_id and o.get("owner_id")]
                if mine:
                    self.store.set_state({"owner_id": mine[0].encode()})
            except Exception as exc:  # noqa: BLE001 - only a faster restart depends on it
                self.owner_recorded = False
                self._log_error("ownership", exc)

    async def on_close(self, context: Any, reason: CloseReason) -> None:
        self.report.partitions.discard(context.partition_id)
        if reason == CloseReason.OWNERSHIP_LOST:
            text = (f"partition {context.partition_id}: ownership lost to another processor on consumer group "
                    f"{self.opts.consumer_group!r}; this job needs every partition (one processor per group)")  # fmt: skip
            _LOG.warning(text)
            self.report.add_error(text)

    async def on_error(self, context: Any, error: Exception) -> None:
        where = f"partition {context.partition_id}" if context is not None else "load balancing"
        self._log_error(where, error)

    def _log_error(self, where: str, error: BaseException) -> None:
        text = f"{where}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        now = time.monotonic()
        if now - self._error_log.get(text, -1e9) >= 60:
            self._error_log[text] = now
            _LOG.warning("stream: %s (retried)", text)
            self.report.add_error(text)

    async def close(self) -> None:
        for closer in (self.client, self.producer, self.checkpoints):
            if closer is None:
                continue
            try:
                await closer.close()
            except Exception:  # noqa: BLE001 - closing
                pass
