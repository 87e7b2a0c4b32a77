"""One capture run: the engine the consumer skeleton drives (:class:`CaptureRun`).

It owns the run's shared state — options, the capture container, the report, the partitions this
writer holds — and hands each owned partition's batches to its
:class:`~iotlib.capture.partition.PartitionCapture`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.eventhub import CloseReason
from azure.storage.blob.aio import ContainerClient

from iotlib.capture.options import CaptureOptions
from iotlib.capture.partition import PartitionCapture, _PartitionReset
from iotlib.capture.report import CaptureFile, CaptureReport
from iotlib.capture.storage import CONTAINER_GONE, Retrier, StorageConflict, StorageFatal
from iotlib.errors import CaptureError
from iotlib.hub.consumer import Consumer
from iotlib.hub.partitions import EMPTY

_LOG = logging.getLogger("iotlib.capture")
#: Seconds between reads of the stored checkpoints while ``once`` waits for them.
STORED_CHECK_INTERVAL = 2.0


class CaptureRun:
    """One run's shared state: options, container, report, owned partitions, stop conditions.

    The engine the consumer skeleton (:class:`iotlib.hub.consumer.Consumer`) drives: its
    callbacks hand each owned partition's batches to a :class:`PartitionCapture`.
    """

    def __init__(self, options: CaptureOptions, container: ContainerClient, report: CaptureReport, *, once: bool,
                 on_file: Callable[[CaptureFile], None] | None) -> None:  # fmt: skip
        self.options = options
        self.container = container
        self.report = report
        self.once = once
        self.targets: dict[str, int] = {}  # once: each partition's last sequence number at the start
        self.partitions: dict[str, PartitionCapture] = {}
        self.consumer: Consumer | None = None
        self.is_stopping = False
        self.failure: BaseException | None = None
        self._stored: dict[str, int] = {}
        self._stored_at = 0.0
        self._reported: set[str] = set()
        self._on_file = on_file
        self._error_log: dict[str, float] = {}

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def report_once(self, key: str) -> bool:
        """True the first time ``key`` is seen in this run (so a hard error is logged once)."""
        if key in self._reported:
            return False
        self._reported.add(key)
        self.report.add_error(key)
        return True

    def on_file(self, row: CaptureFile) -> None:
        if self._on_file is not None:
            self._on_file(row)

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            _LOG.error("capture stops: %s", exc)

    async def prepare_container(self, client: ContainerClient, *, create: bool) -> bool:
        """Check the container is there (create it if asked and missing); a clear error otherwise.
        True when it was missing (and was created).

        Existence is checked first, so credentials that may write blobs but not create containers
        (a container SAS) work with a container that exists.
        """
        # At start a hard error (no container, a refused key) fails at once: nothing is running yet.
        retrier = Retrier(where=f"container {client.container_name!r}", backoff=self.options.retry_backoff,
                          hard_error_grace=0, on_retry=self.report.add_retry, report_once=lambda _: False)  # fmt: skip
        try:
            await retrier.call("find the container", client.get_container_properties)
            return False
        except StorageFatal as exc:
            if exc.reason != CONTAINER_GONE:
                raise CaptureError(f"container {client.container_name!r}: {exc.reason or exc}") from exc
            if not create:
                raise CaptureError(
                    f"container {client.container_name!r} does not exist; create it or pass create_container=True"
                ) from exc
        try:
            await retrier.call("create the container", client.create_container)
            _LOG.info("capture: created container %r", client.container_name)
        except StorageConflict:
            pass  # created meanwhile by someone else
        except StorageFatal as exc:
            raise CaptureError(f"container {client.container_name!r} could not be created: {exc}") from exc
        return True

    # --- the consumer's callbacks ----------------------------------------------------

    async def on_claim(self, context: Any) -> None:
        pid = context.partition_id
        old = self.partitions.pop(pid, None)
        if old is not None:  # should not happen: the client closes before it re-claims
            await old.shutdown(flush=False, timeout=1)
        self.partitions[pid] = PartitionCapture(self, pid, context)
        _LOG.info("capture: claimed partition %s", pid)

    async def on_close(self, context: Any, reason: CloseReason) -> None:
        pid = context.partition_id
        p = self.partitions.pop(pid, None)
        if p is None:
            return
        flush = reason == CloseReason.SHUTDOWN
        already = p.stopped  # flushed by stopping(), and counted there
        unstored = await p.shutdown(flush=flush, timeout=self.options.shutdown_timeout)
        if flush and not already:
            self._record_stop(p, unstored)
        _LOG.info("capture: released partition %s (%s)", pid, "shutdown" if flush else "ownership lost or reset")

    async def on_batch(self, context: Any, events: list[Any]) -> None:
        if self.failure is not None or self.is_stopping and not events:
            return
        p = self.partitions.get(context.partition_id)
        if p is None:
            await self.on_claim(context)
            p = self.partitions[context.partition_id]
        if events and self.report.first_received is None:
            self.report.first_received = datetime.now(UTC)
        await p.on_batch(events)

    async def on_error(self, context: Any, error: Exception) -> None:
        if isinstance(error, _PartitionReset):
            return  # logged where it was decided
        where = f"partition {context.partition_id}" if context is not None else "load balancing"
        text = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        now = time.monotonic()
        if now - self._error_log.get(text, -1e9) >= 60:
            self._error_log[text] = now
            _LOG.warning("capture: %s: %s (the client retries)", where, text)
            self.report.add_error(f"{where}: {text}")

    # --- stop conditions ------------------------------------------------------------

    async def tick(self, now: float) -> str | None:
        if self.failure is not None:
            return f"failed: {self.failure}"
        if self.once:
            if now - self._stored_at >= STORED_CHECK_INTERVAL and self.consumer is not None:
                self._stored_at = now
                try:
                    self._stored = await self.consumer.stored_checkpoints()
                except Exception:  # noqa: BLE001 - storage trouble: look again later
                    self._stored = {}
            if self.once_done(self._stored):
                return "once: everything enqueued at the start is stored"
        return None

    async def stopping(self) -> None:
        """Flush every owned partition at once, within ``shutdown_timeout``, before the client closes:
        a stop takes that long at most even when storage does not answer (then what was not stored is
        counted in :attr:`CaptureReport.unstored`, and never checkpointed; what was stored but not
        checkpointed, in :attr:`CaptureReport.uncheckpointed`)."""
        self.is_stopping = True
        parts = list(self.partitions.values())
        timeout = self.options.shutdown_timeout
        counts = await asyncio.gather(*(p.shutdown(flush=True, timeout=timeout) for p in parts))
        for p, n in zip(parts, counts):
            if not (p.broken or self.failed):
                self._record_stop(p, n)

    def _record_stop(self, p: PartitionCapture, unstored: int) -> None:
        """What a flushing stop left: events not stored, and events stored whose checkpoint was not written."""
        for counts, n in ((self.report.unstored, unstored), (self.report.uncheckpointed, p.uncheckpointed)):
            if n:
                counts[p.pid] = counts.get(p.pid, 0) + n

    def caught_up(self) -> bool:
        """Each owned partition's client had nothing more to give at its last look (the consumer checks
        the partitions it does not own: :meth:`iotlib.hub.consumer.Consumer.settle`)."""
        return all(p.caught_up for p in self.partitions.values())

    def once_done(self, stored: dict[str, int]) -> bool:
        if not self.targets:
            return False
        for pid, target in self.targets.items():
            if stored.get(pid, EMPTY) >= target:
                continue
            p = self.partitions.get(pid)
            if p is None or not p.done_for_once(target):
                return False
        return True
