"""The asynchronous capture writer: ``async with CaptureWriter.from_connection_string(...) as w: await w.run()``.

It is the engine under the synchronous :class:`iotlib.capture.CaptureWriter` too. It runs the
consumer skeleton (:class:`iotlib.hub.consumer.Consumer`: an ``EventHubConsumerClient`` with a Blob
checkpoint store on one consumer group) with a :class:`~iotlib.capture.run.CaptureRun`: the client balances partitions between every writer on that group (ownership records in the
checkpoint container) and gives each owned partition its own task, so one partition stalled by
its circuit breaker does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Unpack
from urllib.parse import urlparse

from iotlib._eventloop import StoppableEngine
from iotlib.capture.options import CaptureOptions, CaptureParameters
from iotlib.capture.report import CaptureFile, CaptureReport
from iotlib.capture.run import CaptureRun
from iotlib.clients import CaptureClient
from iotlib.connections import EventHubConnection, StorageConnection, parse_connection_string
from iotlib.errors import CaptureError, ConfigurationError
from iotlib.hub.consumer import Consumer, Until
from iotlib.hub.starting import needs_positions, resolve

_LOG = logging.getLogger("iotlib.capture")
LOCAL_NAMESPACE = "fabrikam"  # the namespace of iotlib's emulator (EmulatorConfig's default)
_STORAGE_KWARGS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 30}
_STORE_KWARGS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 30}
#: Seconds the consumer may take to close beyond ``shutdown_timeout`` (it flushes each partition).
_CLOSE_MARGIN = 15


def namespace_from(eventhub: EventHubConnection) -> str:
    """The ``{Namespace}`` of blob names: the namespace host's first label (``fabrikam`` for a local emulator)."""
    endpoint = parse_connection_string(eventhub.connection_string).get("endpoint", "")
    host = urlparse(endpoint.replace("sb://", "http://", 1)).hostname or ""
    if eventhub.is_local or host in ("localhost", "127.0.0.1", "::1") or not host or host.replace(".", "").isdigit():
        return LOCAL_NAMESPACE
    return host.split(".")[0]


class CaptureWriter(CaptureClient, StoppableEngine):
    """Capture an event hub's consumer group into Blob storage as Event Hubs Capture files (async).

    Create with :meth:`from_connection_string` or :meth:`from_settings`; options are those of
    :class:`CaptureOptions` (time and size windows, path format, codec, breaker levels, …).
    :meth:`run` captures until :meth:`stop`, ``once`` (everything enqueued when it started is
    stored) or ``until_idle`` seconds without events, and returns a :class:`CaptureReport`.
    """

    def __init__(
        self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[CaptureParameters]
    ) -> None:
        self.eventhub = eventhub
        self.storage = storage
        self.options = CaptureOptions.create(
            eventhub_name=eventhub.eventhub_name, default_namespace=namespace_from(eventhub), **options
        )
        self.report: CaptureReport | None = None
        self._run: CaptureRun | None = None
        self.on_file: Callable[[CaptureFile], None] | None = None

    async def run(
        self,
        *,
        once: bool = False,
        until_idle: float | None = None,
        timeout: float | None = None,
        progress: Callable[..., None] | None = None,
    ) -> CaptureReport:
        """Capture until stopped; ``once``: until every event enqueued at the start is stored and checkpointed;
        ``until_idle``: until no event came for that many seconds; ``timeout``: at most that long.

        Open windows are flushed (committed, then checkpointed) before it returns. ``progress`` is
        called about twice a second with the report (see :mod:`iotlib.capture.progress`).
        """
        if until_idle is not None and until_idle <= 0:
            raise ConfigurationError(f"until_idle={until_idle!r} must be a positive number of seconds")
        self._arm_stop()
        assert self._stop is not None
        opts = self.options
        report = CaptureReport(opts.eventhub_name, opts.consumer_group, opts.container)
        report.notes.extend(opts.notes())
        for note in opts.notes():
            _LOG.info("capture: %s (accepted for local experiments)", note)
        self.report = report
        service = self.storage.service(**_STORAGE_KWARGS)
        container = service.get_container_client(opts.container)
        run = CaptureRun(opts, container, report, once=once, on_file=self.on_file)
        self._run = run
        consumer: Consumer | None = None
        try:
            await run.prepare_container(container, create=opts.create_container)
            async with self.storage.service(**_STORE_KWARGS) as s2:
                await run.prepare_container(s2.get_container_client(opts.checkpoint_container), create=True)
            consumer = run.consumer = Consumer(self.eventhub, self.storage, opts, store_options=_STORE_KWARGS)
            wanted = once or until_idle is not None or needs_positions(opts.starting_position)
            positions = await consumer.positions() if wanted else None
            start = resolve(opts.starting_position, positions)
            if once and positions is not None:
                run.targets = {pid: p.last_enqueued_sequence_number for pid, p in positions.items()}
            floor = await consumer.idle_floor(positions, start) if until_idle is not None and positions else None
            tell = None if progress is None else lambda: progress(report, final=False)
            report.stop_reason = await consumer.run(
                run,
                self._stop,
                Until(timeout=timeout, until_idle=until_idle, floor=floor),
                start=start,
                start_inclusive=opts.starting_position_inclusive,
                fail=CaptureError,
                progress=tell,
            )
        finally:
            run.is_stopping = True
            if consumer is not None:
                try:
                    await consumer.close(opts.shutdown_timeout + _CLOSE_MARGIN)
                except TimeoutError:
                    _LOG.warning(
                        "capture: the consumer did not close within %.0f s", opts.shutdown_timeout + _CLOSE_MARGIN
                    )
            await container.close()
            await service.close()
            report.stopped = datetime.now(UTC)
            self._loop = None
            if progress is not None:
                progress(report, final=True)
        if run.failure is not None:
            raise CaptureError(str(run.failure)) from run.failure
        return report
