"""The synchronous stream processor: the async engine (:mod:`iotlib.warm.aio`) on a thread of its own.

See :class:`iotlib._eventloop.EngineThread`: it works the same in a script, the CLI and Jupyter,
and Ctrl-C asks the engine to commit, checkpoint and stop (``stop_reason == "interrupted"``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from iotlib._eventloop import EngineThread
from iotlib.errors import ProcessingError
from iotlib.processing.reference import Registry
from iotlib.warm import aio
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.progress import Progress
from iotlib.warm.report import ProcessReport


class StreamProcessor(EngineThread):
    """The warm path: a consumer group of an event hub into the SQLite warm store.

    >>> with StreamProcessor.from_settings(warm_store="/tmp/warm.sqlite") as processor:  # doctest: +SKIP
    ...     report = processor.run(until_idle=10)
    ...     print(report.summary())

    Options are those of :class:`~iotlib.warm.options.ProcessorOptions` (consumer group,
    checkpoint container, warm store, window, policy, alerts, starting position, …);
    ``registry`` is the device registry (default: the shipped Fabrikam fleet).
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
        self._engine = aio.StreamProcessor(eventhub_connection_string, storage_connection_string,
                                           eventhub_name=eventhub_name, registry=registry, **options)  # fmt: skip

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
        import iotlib

        s = settings or iotlib.settings()
        options.setdefault("eventhub_name", s.eventhub_name)
        return cls(s.eventhub_connection_string, s.storage_connection_string, **options)

    _busy_error = ProcessingError
    options: ProcessorOptions
    report: ProcessReport | None

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
