"""One run of the stream processor: the engine the consumer skeleton drives (:class:`WarmRun`).

The consumer client balances the partitions of consumer group ``warm`` between every running
processor (ownership blobs in the checkpoint container). When it hands this run a partition
(``on_claim``), the run claims it in the warm store and restores its job from what the store holds;
received batches are buffered per partition and pushed into the job a few times a second (one
decode and one window step per partition and step, however small the batches); every
``commit_interval`` seconds what the job produced goes to the warm store in one transaction, and only
then are the hub checkpoints moved. Quiet partitions are checked against the hub's end and marked
read (the heartbeat), so their watermarks move and windows close when nothing arrives.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import polars as pl
from azure.core.exceptions import ResourceExistsError
from azure.eventhub import CloseReason
from azure.eventhub.aio import EventHubProducerClient

from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.errors import ProcessingError
from iotlib.hub.consumer import Consumer, Until
from iotlib.hub.partitions import EMPTY
from iotlib.processing.reference import Registry
from iotlib.warm import alerthub, incoming, startup
from iotlib.warm.alerts import BuildingTooHot
from iotlib.warm.clock import HubClock, local_us
from iotlib.warm.commit import CommitResult, Position
from iotlib.warm.job import WarmJob
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.report import ProcessReport
from iotlib.warm.store import WarmStore

_LOG = logging.getLogger("iotlib.warm")
#: A partition that stays quiet is checked against the hub at most every this many heartbeat intervals.
QUIET_BACKOFF = 8


class _GiveBack(Exception):
    """Raised from the batch callback for a partition the client still holds while the warm store gave
    it to another run (a commit was refused): the client then closes the partition and releases its
    ownership, and the next claim, this run's or another's, claims the store as well."""


class WarmRun:
    """One run's state: the job, the consumer, per-partition bookkeeping."""

    #: The freshness benchmark's baseline: also store the whole job, pickled, with every commit
    #: (what iotlib did before state changelogs). Never set otherwise.
    full_snapshots: ClassVar[bool] = False

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
        self.store = store
        self.report = report
        self.run_id = uuid.uuid4().hex
        self.clock = HubClock()
        self.job = WarmJob(registry, window=options.window, policy=options.policy, rules=options.alerts,
                           heartbeat=options.heartbeat, time=options.time)  # fmt: skip
        self.consumer: Consumer | None = None
        self.producer: EventHubProducerClient | None = None
        self.partitions: list[str] = []
        self.fresh: dict[str, Position] = {}  # where partitions the store never saw start
        self.pending: dict[str, list[Any]] = {}  # received EventData not yet pushed, per held partition
        self.received: dict[str, int] = {}  # last sequence number received, per held partition
        self.pushed: dict[str, int] = {}  # last sequence number pushed into the job
        self.unchecked: dict[str, Position] = {}  # committed progress not yet checkpointed
        self.last_event: dict[str, float] = {}  # monotonic time of each partition's last events
        self.failure: BaseException | None = None
        self.hub_owner_recorded = False
        self._error_log: dict[str, float] = {}
        self._registered = False
        self._drained: set[str] = set()  # partitions whose last look found nothing more
        self._refused: set[str] = set()  # partitions the store refused a commit of, still held by the client
        self._replay_told = False
        self._once = self._flush = False
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
        hot = next((r for r in opts.alerts if isinstance(r, BuildingTooHot)), None)
        source = {"namespace": self.eventhub.fully_qualified_namespace, "eventhub": opts.eventhub_name,
                  "consumer_group": opts.consumer_group}  # fmt: skip
        self.store.configure(self.job.settings(), partitions=self.partitions, source=source, building_rule=hot)
        if self.store.finished:
            raise ProcessingError(
                f"the warm store {self.store.path} was flushed (end of stream) by an earlier run; use a new warm store"
            )
        begin = await startup.starts(consumer, self.storage, self.eventhub, opts, self.store, positions)
        self.fresh = begin.fresh
        await startup.free_dead_runs(consumer, self.store)
        self.store.register(self.run_id)
        self._registered = True
        self._report_totals()
        if self.producer is not None:
            await self._send_alerts()  # what a previous run left unsent
        self._once, self._flush = once, flush
        self._targets = {pid: pos.last_enqueued_sequence_number for pid, pos in positions.items()}
        self._next_commit = time.monotonic() + opts.commit_interval
        tell = None if progress is None else lambda: progress(self.report, False)
        floor = await consumer.idle_floor(positions, begin.sdk) if until_idle is not None else None
        until = Until(timeout=timeout, until_idle=until_idle, floor=floor)
        reason = await consumer.run(self, stop, until, start=begin.sdk,
                                    fail=ProcessingError, progress=tell, background=(self._heartbeats(),))  # fmt: skip
        if self.failure is None:
            self._step()
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

    # -- the loop (driven by the consumer) ---------------------------------------------------

    async def tick(self, now: float) -> str | None:
        if self.failure is not None:
            raise ProcessingError(f"the processor failed: {self.failure}") from self.failure
        if now >= self._next_commit:
            # What arrived since the last commit goes into the job in one frame, just before the commit:
            # the job's fixed costs per push (a few dozen frame operations per partition) are paid once a
            # commit, not once per received batch; nothing waits longer for it, the commit comes next.
            self._step()
            if self.job.has_output:
                await self._commit()  # its cost follows what changed: no need to space commits out
                self._next_commit = time.monotonic() + self.opts.commit_interval
        if self._once and self._once_done():
            return "once: every event enqueued at the start is stored"
        return None

    def caught_up(self) -> bool:
        """Some partitions are held and the client had nothing more to give for each at its last look."""
        return bool(self.job.partitions) and all(pid in self._drained for pid in self.job.partitions)

    def stopping(self) -> None:
        pass

    def _once_done(self) -> bool:
        if self._flush and not all(pid in self.job.partitions for pid in self.partitions):
            return False  # the end of the stream is every partition's: wait to hold them all
        if any(self.received.get(pid, EMPTY) < t for pid, t in self._targets.items() if pid in self.job.partitions):
            return False
        stored = self.store.positions()
        return all(stored.get(pid, startup.EARLIEST).sequence_number >= t for pid, t in self._targets.items())

    def _step(self, only: str | None = None) -> None:
        """Push the received batches of every held partition (or of ``only``) into the job, in one frame."""
        if self.failure is not None:
            return
        batches = {pid: events for pid, events in self.pending.items() if events and (only is None or pid == only)}
        if not batches:
            return
        for pid in batches:
            self.pending[pid] = []
        try:
            frame = incoming.from_batches(batches)
            firsts = frame.group_by("partition_id").agg(pl.col("sequence_number").min())
            if any(int(seq) <= self.pushed.get(pid, EMPTY) for pid, seq in firsts.iter_rows()):
                # delivered again (a claim from an older checkpoint): skip what the job has seen
                seen = pl.col("partition_id").replace_strict(self.pushed, default=EMPTY, return_dtype=pl.Int64)
                frame = frame.filter(pl.col("sequence_number") > seen)
            if frame.height == 0:
                return
            last = frame.group_by("partition_id").agg(pl.col("sequence_number").max())
            self.job.push_all(frame)
            self.pushed.update({pid: int(seq) for pid, seq in last.iter_rows()})
            self.report.received += frame.height
        except Exception as exc:  # noqa: BLE001 - stop the run, do not checkpoint past it
            self.failure = exc
            _LOG.exception("processing received events failed (partitions %s)", ", ".join(batches))

    async def _commit(self) -> float:
        """Store what the job produced, then checkpoint; returns the seconds the store took."""
        assert self.consumer is not None
        step = self.job.take(owner=self.run_id, snapshot=self.full_snapshots)
        # In this thread: a commit is CPU, mostly, and a thread of its own would only share the GIL with
        # receiving (doubling its wall time); the client buffers what arrives meanwhile.
        result: CommitResult = self.store.commit(step)
        # What survived the commit is the job's long-lived state: keep the garbage collector's full passes
        # off it (they grow with the fleet and stall the stream); ``close`` hands it back.
        gc.freeze()
        r = self.report
        r.commits += 1
        r.windows += result.windows.height
        r.last_commit_seconds = result.seconds
        for pid in result.refused:  # another run claimed it since: its holder reads it from the store
            self._drop(pid, f"partition {pid}: claimed by another processor; handed over")
            self._refused.add(pid)
        done = {s.partition_id: s.position for s in step.steps if s.partition_id not in result.refused}
        r.positions.update({pid: pos.sequence_number for pid, pos in done.items() if pos is not None})
        self.unchecked.update({pid: pos for pid, pos in done.items() if pos is not None})
        self._report_totals()
        if self.unchecked:
            pending = list(self.unchecked.items())
            results = await asyncio.gather(
                *(self.consumer.checkpoints.update_checkpoint(startup.checkpoint(self.eventhub, self.opts, pid, pos))
                  for pid, pos in pending),
                return_exceptions=True,
            )  # fmt: skip
            for (pid, pos), res in zip(pending, results):
                if isinstance(res, Exception):  # the warm store is the truth: the next commit tries again
                    self._log_error("checkpoint", res)
                elif self.unchecked.get(pid) == pos:
                    del self.unchecked[pid]
        if self.producer is not None and (result.alerts.height or any(s.alerts.height for s in step.steps)):
            await self._send_alerts()
        return result.seconds

    def _report_totals(self) -> None:
        totals = self.store.totals()
        r = self.report
        r.counts, r.dead_letters, r.heartbeats, r.behind = (
            totals.counts,
            totals.dead_letters,
            totals.heartbeats,
            totals.behind,
        )
        r.alerts = self.store.count("alerts")

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
        """Mark held partitions read to the hub's end, so their watermarks move when nothing arrives.

        Each check asks the hub for the partition's last enqueued event (a management round trip,
        costly in CPU); a partition that stays quiet is checked less and less often (up to every
        :data:`QUIET_BACKOFF` heartbeat intervals), and as soon as events come again, as often as asked.
        """
        assert self.consumer is not None
        interval = self.opts.heartbeat_interval
        every: dict[str, float] = {}  # seconds between checks of each quiet partition
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            quiet = []
            for pid in list(self.job.partitions):
                if now - self.last_event.get(pid, -1e18) < interval:
                    every.pop(pid, None)  # busy: its own events move its clock
                    due.pop(pid, None)
                    continue
                if now >= due.get(pid, 0.0):
                    quiet.append(pid)
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
                if caught_up and before is not None and pid in self.job.partitions:
                    self._step(pid)
                    if self.failure is None:
                        self.job.mark(pid, before)
                every[pid] = min(every.get(pid, interval / 2) * 2, QUIET_BACKOFF * interval)
                due[pid] = time.monotonic() + every[pid] - interval / 2

    # -- the consumer's callbacks --------------------------------------------------------

    async def on_batch(self, context: Any, events: list[Any]) -> None:
        pid = context.partition_id
        if pid in self._refused:
            # The client still holds it, so the store's claim may be a late one of a run that has lost
            # it (its claim callback ran after ours): holding on would leave the partition unread for
            # good. Given back, it is claimed again within a balancing round, in the hub and the store.
            self._refused.discard(pid)
            raise _GiveBack(pid)
        if not events:  # the client waited max_wait_time and had nothing for this partition
            self._drained.add(pid)
            return
        self._drained.discard(pid)
        pending = self.pending.get(pid)
        if pending is None or self.failure is not None:  # not held (lost, or not claimed in the store)
            return
        pending.extend(events)
        self.received[pid] = max(self.received.get(pid, EMPTY), int(events[-1].sequence_number))
        enqueued = events[-1].enqueued_time
        if enqueued is not None:
            self.clock.observe(int(enqueued.timestamp() * 1_000_000), local_us())
        self.last_event[pid] = time.monotonic()

    async def on_claim(self, context: Any) -> None:
        pid = context.partition_id
        self._refused.discard(pid)
        try:
            stored = self.store.claim(pid, self.run_id)
            job = self.job.claim(pid, stored, start=self.fresh.get(pid))
        except Exception as exc:  # noqa: BLE001 - without its state the partition cannot be processed
            self.failure = exc
            _LOG.exception("claiming partition %s failed", pid)
            return
        start = job.position.sequence_number if job.position is not None else EMPTY
        self.received[pid] = self.pushed[pid] = start
        self.pending[pid] = []
        self.last_event.pop(pid, None)
        self._drained.discard(pid)
        self.report.partitions.add(pid)
        if not self.hub_owner_recorded and self.consumer is not None:
            self.hub_owner_recorded = True
            try:
                owned = await self.consumer.ownership()
                mine = [o["owner_id"] for o in owned if o["partition_id"] == pid and o.get("owner_id")]
                if mine:
                    self.store.set_hub_owner(self.run_id, mine[0])
            except Exception as exc:  # noqa: BLE001 - only a faster restart depends on it
                self.hub_owner_recorded = False
                self._log_error("ownership", exc)

    async def on_close(self, context: Any, reason: CloseReason) -> None:
        pid = context.partition_id
        if reason == CloseReason.OWNERSHIP_LOST:  # its next holder restores it from the store
            self._drop(pid, f"partition {pid}: ownership moved to another processor on consumer group "
                            f"{self.opts.consumer_group!r}")  # fmt: skip

    def _drop(self, pid: str, why: str) -> None:
        if pid not in self.job.partitions:  # dropped already (a refused commit, then the client's close)
            return
        _LOG.info(why)
        self.job.release(pid)
        self.pending.pop(pid, None)
        self.unchecked.pop(pid, None)
        self._drained.discard(pid)
        self.report.partitions.discard(pid)
        self.report.handed_over += 1

    async def on_error(self, context: Any, error: Exception) -> None:
        if isinstance(error, _GiveBack):
            _LOG.info("partition %s: given back to the load balancer (the warm store names another run)", error)
            return
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
        gc.unfreeze()
        if self._registered:
            try:
                self.store.unregister(self.run_id)
            except Exception:  # noqa: BLE001 - closing
                pass
        for closer in (self.consumer, self.producer):
            if closer is None:
                continue
            try:
                await closer.close()
            except Exception:  # noqa: BLE001 - closing
                pass
