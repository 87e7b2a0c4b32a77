"""The asynchronous stream processor: ``async with StreamProcessor.from_connection_string(...) as p: await p.run()``.

It is the engine under the synchronous :class:`iotlib.warm.StreamProcessor` too. The consumer
skeleton (:class:`iotlib.hub.consumer.Consumer`: a client with a ``BlobCheckpointStore``) reads the
consumer group and drives one :class:`~iotlib.warm.run.WarmRun`; each partition's batches are decoded (:mod:`iotlib.warm.incoming`) and pushed into the
job (:class:`iotlib.warm.job.WarmJob`), which merges partitions into arrival order, windows,
alerts and dead-letters. Every ``commit_interval`` seconds what the job produced goes to the warm
store in one transaction with its snapshot and progress; only then are the hub checkpoints moved.

**Where it starts.** The warm store is the truth: a partition it has seen resumes right after its
stored progress, whatever the checkpoint blobs say (they are rewritten to match before reading
starts); a partition it has never seen starts at ``starting_position`` (:mod:`iotlib.hub.starting`:
``"earliest"``, ``"latest"`` and snapshots become its first stored progress; a time or a sequence
number is handed to the client, any old checkpoint blob of it removed, and its progress is stored
from the first event on). Events at or before the stored progress are skipped if the hub delivers
them again. The job's snapshot is restored, so the
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

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Unpack

from iotlib._eventloop import StoppableEngine
from iotlib.clients import ProcessorClient
from iotlib.connections import EventHubConnection, StorageConnection
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
        report = ProcessReport(opts.eventhub_name, opts.consumer_group, str(opts.warm_store))
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
