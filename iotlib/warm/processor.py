"""The synchronous stream processor: the async engine (:mod:`iotlib.warm.aio`) on a thread of its own.

See :class:`iotlib._eventloop.EngineThread`: it works the same in a script, the CLI and Jupyter,
and Ctrl-C asks the engine to commit, checkpoint and stop (``stop_reason == "interrupted"``).
"""

from __future__ import annotations

from iotlib._eventloop import EngineThread
from iotlib.clients import ProcessorClient
from iotlib.errors import ProcessingError
from iotlib.warm import aio
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.progress import Progress
from iotlib.warm.report import ProcessReport


class StreamProcessor(ProcessorClient, EngineThread):
    """The warm path: a consumer group of an event hub into the SQLite warm store.

    >>> with StreamProcessor.from_settings(warm_store="/tmp/warm.sqlite") as processor:  # doctest: +SKIP
    ...     report = processor.run(until_idle=10)
    ...     print(report.summary())

    Options are those of :class:`~iotlib.warm.options.ProcessorOptions` (consumer group,
    checkpoint container, warm store, window, policy, alerts, starting position, …);
    ``registry`` is the device registry (default: the shipped Fabrikam fleet).
    """

    options: ProcessorOptions
    report: ProcessReport | None
    _engine_class = aio.StreamProcessor
    _busy_error = ProcessingError

    def run(
        self,
        *,
        once: bool = False,
        until_idle: float | None = None,
        timeout: float | None = None,
        flush: bool = False,
        progress: bool = False,
    ) -> ProcessReport:
        """Process until :meth:`stop` (or Ctrl-C), ``once``, ``until_idle`` seconds without events, or ``timeout``.

        See :meth:`iotlib.warm.aio.StreamProcessor.run`; ``progress`` shows a tqdm bar.
        Raises :class:`~iotlib.errors.ProcessingError` if processing failed (nothing past the
        failure is committed or checkpointed).
        """
        bar = Progress() if progress else None
        report: ProcessReport = self._run_engine(
            "iotlib-stream", once=once, until_idle=until_idle, timeout=timeout, flush=flush, progress=bar
        )
        return report
