"""One run of the stream processor: the engine the consumer skeleton drives (:class:`WarmRun`).

It restores the job from the warm store, lines the checkpoint blobs up with it, pushes each
partition's batches into the job, commits what the job produced every ``commit_interval``
seconds (then checkpoints), and marks quiet partitions complete from the hub's positions
(the heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import polars as pl
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.eventhub import CloseReason
from azure.eventhub.aio import EventHubProducerClient

from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.errors import ProcessingError
from iotlib.hub.consumer import Consumer, Until
from iotlib.hub.partitions import EMPTY, PartitionPosition
from iotlib.hub.starting import SdkPosition
from iotlib.processing.reference import Registry
from iotlib.warm import alerthub, incoming
from iotlib.warm.clock import HubClock, local_us
from iotlib.warm.job import WarmJob
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.report import ProcessReport
from iotlib.warm.store import Position, WarmStore

_LOG = logging.getLogger("iotlib.warm")
_EARLIEST = Position(EMPTY, "-1")


class WarmRun:
    """One run's state: the job, the consumer, per-partition bookkeeping."""

    def __init__(
        self,
        eventhub: EventHubConnection,
        storage: StorageConnection,
        options: ProcessorOptions,
        registry: Registry,
        store: WarmStore,
        report: ProcessReport,
    ) -> None:
        self.eventhub = eventhub
        self.storage = storage
        self.opts = options
        self.registry = registry
        self.store = store
        self.report = report
        self.clock = HubClock()
        self.job: WarmJob | None = None
        self.consumer: Consumer | None = None
        self.producer: EventHubProducerClient | None = None
        self.partitions: list[str] = []
        self.received: dict[str, int] = {}  # last sequence number pushed into the job, per partition
        self.unchecked: dict[str, Position] = {}  # committed progress not yet checkpointed
        self.last_event: dict[str, float] = {}  # monotonic time of each partition's last events
        self.failure: BaseException | None = None
        self.owner_recorded = False
        self._error_log: dict[str, float] = {}
        # set by main() for the loop
        self._once = False
        self._flush = False
        self._targets: dict[str, int] = {}
        self._next_commit = 0.0

    # -- set-up --------------------------------------------------------------------------

    async def main(self, stop: asyncio.Event, *, once: bool, until_idle: float | None, timeout: float | None,
                   flush: bool, progress: Callable[[ProcessReport, bool], None] | None) -> str:  # fmt: skip
        opts = self.opts
        await self._containers()
        self.consumer = consumer = Consumer(self.eventhub, self.storage, opts)
        if opts.alert_eventhub:
            self.producer = self.eventhub.producer(eventhub_name=opts.alert_eventhub)
        try:
            positions = await consumer.positions()
        except Exception as exc:  # noqa: BLE001 - named for the user
            raise ProcessingError(f"cannot read event hub {opts.eventhub_name!r}: {exc}") from exc
        self.partitions = list(positions)
        self.job, starts = self._job(positions)
        if self.job.finished:
            raise ProcessingError(
                f"the warm store {self.store.path} was flushed (end of stream) by an earlier run; use a new warm store"
            )
        await self._align_checkpoints(starts)
        await self._release_predecessor()
        if self.producer is not None:
            await self._send_alerts()  # what a previous run left unsent
        self._once, self._flush = once, flush
        self._targets = {pid: pos.last_enqueued_sequence_number for pid, pos in positions.items()}
        self._next_commit = time.monotonic() + opts.commit_interval
        tell = None if progress is None else lambda: progress(self.report, False)
        floor = await consumer.idle_floor(positions, starts) if until_idle is not None else None
        until = Until(timeout=timeout, until_idle=until_idle, floor=floor)
        reason = await consumer.run(self, stop, until, start=starts,
                                    fail=ProcessingError, progress=tell, background=(self._heartbeats(),))  # fmt: skip
        if flush:
            self.job.finish()
        if self.job.has_output:
            await self._commit()
        return reason

    async def _containers(self) -> None:
        async with self.storage.service() as service:
            try:
                await service.create_container(self.opts.checkpoint_container)
                _LOG.info("created checkpoint container %r", self.opts.checkpoint_container)
            except ResourceExistsError:
                pass
            except Exception as exc:  # noqa: BLE001 - named for the user
                raise ProcessingError(
                    f"cannot reach the checkpoint container {self.opts.checkpoint_container!r}: {exc}"
                ) from exc

    def _job(self, positions: dict[str, PartitionPosition]) -> tuple[WarmJob, dict[str, SdkPosition]]:
        """The job, restored from the warm store; and where each partition the store never saw starts."""
        opts = self.opts
        job = WarmJob(self.registry, window=opts.window, policy=opts.policy, rules=opts.alerts,
                      partitions=list(positions), heartbeat=opts.heartbeat, merge_timeout=opts.merge_timeout)  # fmt: skip
        stored = self.store.positions()
        snapshot = self.store.state("snapshot")
        if snapshot is not None:
            job.restore(snapshot, stored)
        else:
            self.store.set_state({"settings": json.dumps(job.settings()).encode()})
        starts: dict[str, SdkPosition] = {}
        for pid, now in positions.items():
            if pid in stored:
                self.received[pid] = stored[pid].sequence_number
                continue
            start = self._start(pid, now)
            if isinstance(start, Position):
                job.start_at(pid, start)
                self.received[pid] = start.sequence_number
            else:  # a time or a sequence number: the client starts there, the job's progress at the first event
                starts[pid] = start
                self.received[pid] = start if isinstance(start, int) else EMPTY
        self.report.counts = job.totals.counts
        self.report.dead_letters = job.totals.dead_letters
        self.report.alerts = job.totals.alerts
        self.report.positions = dict(self.received)
        return job, starts

    def _start(self, pid: str, now: PartitionPosition) -> Position | int | datetime:
        """Where a partition the warm store never saw starts: a position to checkpoint, or what the client takes."""
        start = self.opts.starting_position
        one = start.get(pid, "earliest") if isinstance(start, Mapping) else start
        if isinstance(one, str) and one == "latest":
            one = now
        if isinstance(one, PartitionPosition):
            return _EARLIEST if one.is_empty else Position(one.last_enqueued_sequence_number, one.last_enqueued_offset)
        if isinstance(one, str) or one == EMPTY:  # "earliest"
            return _EARLIEST
        return one

    def _checkpoint(self, pid: str, pos: Position) -> dict[str, Any]:
        return {"fully_qualified_namespace": self.eventhub.fully_qualified_namespace,
                "eventhub_name": self.opts.eventhub_name, "consumer_group": self.opts.consumer_group,
                "partition_id": pid, "sequence_number": pos.sequence_number, "offset": pos.offset}  # fmt: skip

    async def _align_checkpoints(self, starts: dict[str, SdkPosition]) -> None:
        """Make the checkpoint blobs say what the warm store says (the client starts from them).

        A partition that starts at a time or a sequence number has no position to checkpoint yet:
        its checkpoint blob is removed, so the client takes ``starts`` rather than an old checkpoint.
        """
        assert self.consumer is not None and self.job is not None
        checkpoints = self.consumer.checkpoints
        existing = {c["partition_id"]: c for c in await checkpoints.list_checkpoints(
            self.eventhub.fully_qualified_namespace, self.opts.eventhub_name, self.opts.consumer_group)}  # fmt: skip
        wanted = {pid: self.job.positions.get(pid) or self.store.positions().get(pid) for pid in self.partitions}
        for pid, pos in wanted.items():
            if pos is None:
                continue
            have = existing.get(pid) or {}
            if str(have.get("offset")) != pos.offset or have.get("sequence_number") != pos.sequence_number:
                await checkpoints.update_checkpoint(self._checkpoint(pid, pos))
        stale = [pid for pid in starts if pid in existing]
        if stale:
            async with self.storage.service() as service:
                container = service.get_container_client(self.opts.checkpoint_container)
                for pid in stale:
                    name = f"{self.eventhub.fully_qualified_namespace}/{self.opts.eventhub_name}/" \
                           f"{self.opts.consumer_group}/checkpoint/{pid}"  # fmt: skip
                    try:
                        await container.delete_blob(name.lower())
                    except ResourceNotFoundError:
                        pass

    async def _release_predecessor(self) -> None:
        """Release ownership a previous run on this warm store left behind (it may have died)."""
        assert self.consumer is not None
        previous = (self.store.state("owner_id") or b"").decode()
        if not previous:
            return
        owned = await self.consumer.ownership()
        stale = [dict(o, owner_id="") for o in owned if o.get("owner_id") == previous]
        if stale:
            await self.consumer.checkpoints.claim_ownership(stale)
            _LOG.info("released %d partition(s) a previous run left owned", len(stale))

    # -- the loop (driven by the consumer) ---------------------------------------------------

    async def tick(self, now: float) -> str | None:
        assert self.job is not None
        if self.failure is not None:
            raise ProcessingError(f"the processor failed: {self.failure}") from self.failure
        if now >= self._next_commit and self.job.has_output:
            took = await self._commit()
            self._next_commit = time.monotonic() + max(self.opts.commit_interval, 10 * took)
        settled = self._flush or self.opts.heartbeat
        if self._once and self._once_done(self._targets, settled=not self._flush and self.opts.heartbeat):
            return "once: every event enqueued at the start is " + ("stored" if settled else "read")
        return None

    def caught_up(self) -> bool:
        return True

    def stopping(self) -> None:
        pass

    def _once_done(self, targets: dict[str, int], *, settled: bool) -> bool:
        assert self.job is not None
        if any(self.received.get(pid, -1) < t for pid, t in targets.items()):
            return False
        if not settled:
            return True
        return all(self.job.positions.get(pid, _EARLIEST).sequence_number >= t for pid, t in targets.items())

    async def _commit(self) -> float:
        """Store what the job produced, then checkpoint; returns the seconds the snapshot and store took."""
        assert self.job is not None and self.consumer is not None
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
                *(self.consumer.checkpoints.update_checkpoint(self._checkpoint(pid, pos)) for pid, pos in pending),
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
        assert self.consumer is not None and self.job is not None
        interval = self.opts.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            quiet = [pid for pid in self.partitions if now - self.last_event.get(pid, -1e18) >= interval]
            if not quiet:
                continue
            before = self.clock.now()  # a lower bound of the hub's clock as the check starts
            try:
                found = await self.consumer.positions(quiet)
            except Exception as exc:  # noqa: BLE001 - try again next time
                self._log_error("partition properties", exc)
                continue
            after_local = local_us()
            for pid, pos in found.items():
                if not pos.is_empty and pos.last_enqueued_time_utc is not None:
                    self.clock.observe(int(pos.last_enqueued_time_utc.timestamp() * 1_000_000), after_local)
                caught_up = pos.last_enqueued_sequence_number <= self.received.get(pid, EMPTY)
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
            last = self.received.get(pid, EMPTY)
            first, newest = frame.select(
                pl.col("sequence_number").min().alias("a"), pl.col("sequence_number").max().alias("b")
            ).row(0)
            if first <= last:  # delivered again (re-claimed from an older checkpoint)
                frame = frame.filter(pl.col("sequence_number") > last)
                if frame.height == 0:
                    return
            self.received[pid] = int(newest)
            self.clock.observe(int(frame.select(pl.col("enqueued_time").dt.epoch("us").max()).item()), local)
            self.last_event[pid] = time.monotonic()
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
        if not self.owner_recorded and self.consumer is not None:
            self.owner_recorded = True
            try:
                owned = await self.consumer.ownership()
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
        for closer in (self.consumer, self.producer):
            if closer is None:
                continue
            try:
                await closer.close()
            except Exception:  # noqa: BLE001 - closing
                pass
