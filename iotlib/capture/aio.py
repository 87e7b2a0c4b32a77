"""The asynchronous capture writer: ``async with CaptureWriter.from_connection_string(...) as w: await w.run()``.

It is the engine under the synchronous :class:`iotlib.capture.CaptureWriter` too. It runs an
``azure.eventhub.aio.EventHubConsumerClient`` with a Blob checkpoint store on one consumer group:
the client balances partitions between every writer on that group (ownership records in the
checkpoint container) and gives each owned partition its own task, so one partition stalled by
its circuit breaker does not stop the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from azure.eventhub import CloseReason
from azure.eventhub.aio import EventHubConsumerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from iotlib._eventloop import StoppableEngine
from iotlib.capture.options import CaptureOptions
from iotlib.capture.partition import PartitionCapture, PartitionReset
from iotlib.capture.report import CaptureFile, CaptureReport
from iotlib.capture.storage import (
    CONTAINER_GONE,
    Retrier,
    StorageConflict,
    StorageFatal,
)
from iotlib.connections import parse_connection_string
from iotlib.errors import CaptureError, ConfigurationError

_LOG = logging.getLogger("iotlib.capture")
LOCAL_NAMESPACE = "fabrikam"  # the namespace of iotlib's emulator (EmulatorConfig's default)
_STORAGE_KWARGS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 30}
_STORE_KWARGS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 30}


def namespace_from(eventhub_connection_string: str) -> str:
    """The ``{Namespace}`` of blob names: the namespace host's first label (``fabrikam`` for a local emulator)."""
    parts = parse_connection_string(eventhub_connection_string, what="Event Hubs connection string")
    endpoint = parts.get("endpoint", "")
    host = urlparse(endpoint.replace("sb://", "http://", 1)).hostname or ""
    local = parts.get("usedevelopmentemulator", "").lower() == "true" or host in ("localhost", "127.0.0.1", "::1")
    if local or not host or host.replace(".", "").isdigit():
        return LOCAL_NAMESPACE
    return host.split(".")[0]


def eventhub_name_from(eventhub_connection_string: str, eventhub_name: str | None) -> str:
    if eventhub_name:
        return eventhub_name
    parts = parse_connection_string(eventhub_connection_string, what="Event Hubs connection string")
    if parts.get("entitypath"):
        return parts["entitypath"]
    raise ConfigurationError("no event hub name: pass eventhub_name= or use a connection string with EntityPath=")


class CaptureWriter(StoppableEngine):
    """Capture an event hub's consumer group into Blob storage as Event Hubs Capture files (async).

    Use :meth:`from_connection_string`; options are those of :class:`CaptureOptions` (time and
    size windows, path format, codec, breaker levels, …). :meth:`run` captures until
    :meth:`stop`, ``once`` (everything enqueued when it started is stored) or ``until_idle``
    seconds without events, and returns a :class:`CaptureReport`.
    """

    def __init__(
        self,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> None:
        parse_connection_string(storage_connection_string, what="storage connection string")
        name = eventhub_name_from(eventhub_connection_string, eventhub_name)
        self.eventhub_connection_string = eventhub_connection_string
        self.storage_connection_string = storage_connection_string
        self.options = CaptureOptions.create(
            eventhub_name=name, namespace=namespace or namespace_from(eventhub_connection_string), **options
        )
        self.report: CaptureReport | None = None
        self._run: _Run | None = None
        self.on_file: Callable[[CaptureFile], None] | None = None

    @classmethod
    def from_connection_string(
        cls,
        eventhub_connection_string: str,
        storage_connection_string: str,
        *,
        eventhub_name: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> CaptureWriter:
        """A writer for the hub and storage account the two connection strings name."""
        return cls(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name,
                   namespace=namespace, **options)  # fmt: skip

    async def run(
        self,
        *,
        once: bool = False,
        until_idle: float | None = None,
        timeout: float | None = None,
        progress: Any = None,
    ) -> CaptureReport:
        """Capture until stopped; ``once``: until every event enqueued at the start is stored and checkpointed;
        ``until_idle``: until no event came for that many seconds; ``timeout``: at most that long.

        Open windows are flushed (committed, then checkpointed) before it returns. ``progress`` is
        called about twice a second with the report (see :mod:`iotlib.capture.progress`).
        """
        if until_idle is not None and until_idle <= 0:
            raise ConfigurationError(f"until_idle={until_idle!r} must be a positive number of seconds")
        self._arm_stop()
        opts = self.options
        report = CaptureReport(opts.eventhub_name, opts.consumer_group, opts.container)
        report.notes.extend(opts.notes())
        for note in opts.notes():
            _LOG.info("capture: %s (accepted for local experiments)", note)
        self.report = report
        service = BlobServiceClient.from_connection_string(self.storage_connection_string, **_STORAGE_KWARGS)
        container = service.get_container_client(opts.container)
        run = _Run(opts, container, report, once=once, on_file=self.on_file)
        self._run = run
        store: BlobCheckpointStore | None = None
        client: EventHubConsumerClient | None = None
        try:
            await run.prepare_container(container, create=opts.create_container)
            async with BlobServiceClient.from_connection_string(self.storage_connection_string, **_STORE_KWARGS) as s2:
                await run.prepare_container(s2.get_container_client(opts.checkpoint_container), create=True)
            store = BlobCheckpointStore.from_connection_string(
                self.storage_connection_string, opts.checkpoint_container, **_STORE_KWARGS
            )
            client = EventHubConsumerClient.from_connection_string(
                self.eventhub_connection_string,
                consumer_group=opts.consumer_group,
                eventhub_name=opts.eventhub_name,
                checkpoint_store=store,
                load_balancing_interval=opts.load_balancing_interval,
                partition_ownership_expiration_interval=opts.ownership_expiry,
            )
            if once:
                run.targets = await _targets(client)
            reason = await self._receive_until_done(run, client, store, until_idle=until_idle, timeout=timeout,
                                                    progress=progress)  # fmt: skip
            report.stop_reason = reason
        finally:
            run.stopping = True
            if client is not None:
                try:
                    await asyncio.wait_for(client.close(), opts.shutdown_timeout + 15)
                except TimeoutError:
                    _LOG.warning("capture: the consumer did not close within %.0f s", opts.shutdown_timeout + 15)
            if store is not None:
                await store.close()
            await container.close()
            await service.close()
            report.stopped = datetime.now(UTC)
            self._loop = None
            if progress is not None:
                progress(report, final=True)
        if run.failure is not None:
            raise CaptureError(str(run.failure)) from run.failure
        return report

    async def _receive_until_done(
        self,
        run: _Run,
        client: EventHubConsumerClient,
        store: BlobCheckpointStore,
        *,
        until_idle: float | None,
        timeout: float | None,
        progress: Any,
    ) -> str:
        opts = self.options
        assert self._stop is not None
        receiving = asyncio.create_task(
            client.receive_batch(
                run.on_batch,
                max_batch_size=opts.max_batch_size,
                max_wait_time=opts.max_wait_time,
                prefetch=opts.prefetch,
                starting_position=opts.starting_position,
                starting_position_inclusive=opts.starting_position_inclusive,
                on_partition_initialize=run.on_claim,
                on_partition_close=run.on_close,
                on_error=run.on_error,
            ),
            name="capture-receive",
        )
        started = time.monotonic()
        last_progress = 0.0
        checked_store = 0.0
        stored_checkpoints: dict[str, int] = {}
        try:
            while True:
                try:
                    await asyncio.wait_for(self._stop.wait(), 0.2)
                    return "stopped"
                except TimeoutError:
                    pass
                now = time.monotonic()
                if run.failure is not None:
                    return f"failed: {run.failure}"
                if receiving.done():
                    exc = receiving.exception()
                    if exc is not None:
                        raise CaptureError(f"receiving stopped: {exc}") from exc
                    return "the consumer stopped"
                if progress is not None and now - last_progress >= 0.5:
                    last_progress = now
                    progress(run.report, final=False)
                if timeout is not None and now - started >= timeout:
                    return f"timeout ({timeout:g} s)"
                if until_idle is not None and now - run.last_event_at >= until_idle and run.all_caught_up():
                    return f"idle for {until_idle:g} s"
                if run.once:
                    if now - checked_store >= 2.0:
                        checked_store = now
                        stored_checkpoints = await _checkpoints(store, client, opts)
                    if run.once_done(stored_checkpoints):
                        return "once: everything enqueued at the start is stored"
        finally:
            if not receiving.done():
                run.stopping = True
                await client.close()
                receiving.cancel()
                try:
                    await receiving
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                    pass


async def _targets(client: EventHubConsumerClient) -> dict[str, int | None]:
    """Each partition's last enqueued sequence number now (None when empty): what ``once`` must store."""
    pids = await client.get_partition_ids()
    # one management round trip each: ask for all partitions at once
    found = await asyncio.gather(*(client.get_partition_properties(pid) for pid in pids))
    return {
        pid: None if props.get("is_empty") else int(props["last_enqueued_sequence_number"])
        for pid, props in zip(pids, found)
    }


async def _checkpoints(
    store: BlobCheckpointStore, client: EventHubConsumerClient, opts: CaptureOptions
) -> dict[str, int]:
    try:
        rows = await store.list_checkpoints(client._address.hostname, opts.eventhub_name, opts.consumer_group)  # noqa: SLF001
    except Exception:  # noqa: BLE001 - storage trouble: try again later
        return {}
    return {r["partition_id"]: int(r["sequence_number"]) for r in rows if r.get("sequence_number") is not None}


class _Run:
    """One run's shared state: options, container, report, owned partitions, stop conditions."""

    def __init__(self, options: CaptureOptions, container: ContainerClient, report: CaptureReport, *, once: bool,
                 on_file: Callable[[CaptureFile], None] | None) -> None:  # fmt: skip
        self.options = options
        self.container = container
        self.report = report
        self.once = once
        self.targets: dict[str, int | None] = {}
        self.partitions: dict[str, PartitionCapture] = {}
        self.stopping = False
        self.failure: BaseException | None = None
        self.last_event_at = time.monotonic()
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

    async def prepare_container(self, client: ContainerClient, *, create: bool) -> None:
        """Check the container is there (create it if asked and missing); a clear error otherwise.

        Existence is checked first, so credentials that may write blobs but not create containers
        (a container SAS) work with a container that exists.
        """
        # At start a hard error (no container, a refused key) fails at once: nothing is running yet.
        retrier = Retrier(where=f"container {client.container_name!r}", backoff=self.options.retry_backoff,
                          hard_error_grace=0, on_retry=self.report.add_retry, report_once=lambda _: False)  # fmt: skip
        try:
            await retrier.call("find the container", client.get_container_properties)
            return
        except StorageFatal as exc:
            if exc.reason != CONTAINER_GONE:
                raise CaptureError(f"container {client.container_name!r}: {exc}") from exc
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
        await p.shutdown(flush=flush, timeout=self.options.shutdown_timeout)
        _LOG.info("capture: released partition %s (%s)", pid, "shutdown" if flush else "ownership lost or reset")

    async def on_batch(self, context: Any, events: list[Any]) -> None:
        if self.failure is not None or self.stopping and not events:
            return
        p = self.partitions.get(context.partition_id)
        if p is None:
            await self.on_claim(context)
            p = self.partitions[context.partition_id]
        if events:
            self.last_event_at = time.monotonic()
            if self.report.first_received is None:
                self.report.first_received = datetime.now(UTC)
        await p.on_batch(events)

    async def on_error(self, context: Any, error: Exception) -> None:
        if isinstance(error, PartitionReset):
            return  # logged where it was decided
        where = f"partition {context.partition_id}" if context is not None else "load balancing"
        text = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        now = time.monotonic()
        if now - self._error_log.get(text, -1e9) >= 60:
            self._error_log[text] = now
            _LOG.warning("capture: %s: %s (the client retries)", where, text)
            self.report.add_error(f"{where}: {text}")

    # --- stop conditions ------------------------------------------------------------

    def all_caught_up(self) -> bool:
        """Some partitions are owned and each one's client had nothing more to give at its last look."""
        return bool(self.partitions) and all(p.caught_up for p in self.partitions.values())

    def once_done(self, stored: dict[str, int]) -> bool:
        if not self.targets:
            return False
        for pid, target in self.targets.items():
            if target is None:
                continue
            if stored.get(pid, -1) >= target:
                continue
            p = self.partitions.get(pid)
            if p is None or not p.done_for_once(target):
                return False
        return True
