"""The asynchronous stream processor: ``async with StreamProcessor.from_connection_string(...) as p: await p.run()``.

It is the engine under the synchronous :class:`iotlib.warm.StreamProcessor` too. The consumer
skeleton (:class:`iotlib.hub.consumer.Consumer`: a client with a ``BlobCheckpointStore``) reads the
consumer group and drives one :class:`~iotlib.warm.run.WarmRun`; each partition it is given is a job
of its own (:mod:`iotlib.warm.partition`: its own watermark, partial windows, device alerts),
restored from the warm store when it was processed before. Every ``commit_interval`` seconds what
the partitions produced goes to the warm store in one transaction with their state changes and
progress; only then are the hub checkpoints moved. The store merges the partitions' partial windows
into building windows once every partition's watermark has passed them (:mod:`iotlib.warm.merge`).

**Where it starts.** The warm store is the truth: a partition it has seen resumes right after its
stored progress, whatever the checkpoint blobs say (they are rewritten to match before reading
starts); a partition it has never seen starts at ``starting_position`` (:mod:`iotlib.hub.starting`:
``"earliest"``, ``"latest"`` and snapshots become its first stored progress; a time or a sequence
number is handed to the client, any old checkpoint blob of it removed, and its progress is stored
from the first event on). Events at or before the stored progress are skipped if the hub delivers
them again.

**More than one process.** Run as many processors as you like on one consumer group and warm store:
the client balances the partitions between them (ownership in the checkpoint container), each claims
its partitions in the store, and a processor that dies has its partitions taken over once their
ownership expires (``ownership_expiry``), restored from the store and read again from their progress.
A restarted processor on the same machine frees the ownerships of runs that died at once.

**Quiet partitions and heartbeats.** Every ``heartbeat_interval`` seconds, held partitions that
delivered nothing lately are checked against the hub: one read to its last enqueued event is
*marked* as complete up to the hub's time before the check (:mod:`iotlib.warm.clock`), so with
``heartbeat`` on its watermark moves on, windows close and silent devices are noticed when no event comes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Unpack

from iotlib._eventloop import StoppableEngine
from iotlib.clients import ProcessorClient
from iotlib.connections import EventHubConnection, StorageConnection
from iotlib.durations import describe
from iotlib.errors import ConfigurationError
from iotlib.processing.reference import Registry
from iotlib.warm.options import ProcessorOptions, ProcessorParameters
from iotlib.warm.report import ProcessReport
from iotlib.warm.run import WarmRun
from iotlib.warm.store import WarmStore


class StreamProcessor(ProcessorClient, StoppableEngine):
    """The warm path: a consumer group of an event hub into the SQLite warm store (async).

    Create with :meth:`from_connection_string` or :meth:`from_settings`; options are those of
    :class:`~iotlib.warm.options.ProcessorOptions`. ``registry``: the device registry (default:
    :func:`iotlib.fleet.scenario.default_registry`). :meth:`run` processes until :meth:`stop`, ``once``,
    ``until_idle`` or ``timeout`` and returns a :class:`~iotlib.warm.report.ProcessReport`.
    """

    def __init__(
        self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[ProcessorParameters]
    ) -> None:
        self.eventhub = eventhub
        self.storage = storage
        self._registry = options.pop("registry", None)
        self.options = ProcessorOptions.create(eventhub_name=eventhub.eventhub_name, **options)
        self.report: ProcessReport | None = None

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
        report = ProcessReport(opts.eventhub_name, opts.consumer_group, str(opts.warm_store),
                               idle_timeout=describe(opts.policy.idle_timeout_us))  # fmt: skip
        self.report = report
        store = WarmStore(opts.warm_store, writer=True)
        run: WarmRun | None = None
        try:
            run = WarmRun(self.eventhub, self.storage, opts, self.registry(), store, report)
            assert self._stop is not None
            reason = await run.main(
                self._stop, once=once, until_idle=until_idle, timeout=timeout, flush=flush, progress=progress
            )
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
