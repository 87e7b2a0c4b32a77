"""The synchronous stream processor: the async engine (:mod:`iotlib.stream.aio`) on a thread of its own.

The engine runs on a private event loop in a background thread, so :meth:`StreamProcessor.run`
works the same in a script, the CLI and a Jupyter kernel (which already runs a loop). Ctrl-C
(``KeyboardInterrupt``) in the calling thread asks the engine to commit and stop, waits for it, and
returns the report with ``stop_reason == "interrupted"``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import polars as pl

from iotlib.errors import ProcessingError
from iotlib.processing.reference import Registry
from iotlib.stream import aio
from iotlib.stream.options import ProcessorOptions
from iotlib.stream.progress import Progress
from iotlib.stream.report import ProcessReport


class StreamProcessor:
    """The warm path: a consumer group of an event hub into the SQLite warm store.

    >>> with StreamProcessor.from_settings(warm_store="/tmp/warm.sqlite") as processor:  # doctest: +SKIP
    ...     report = processor.run(until_idle=10)
    ...     print(report.summary())

    Options are those of :class:`~iotlib.stream.options.ProcessorOptions` (consumer group,
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
        self._thread: threading.Thread | None = None

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

    @property
    def options(self) -> ProcessorOptions:
        return self._engine.options

    @property
    def report(self) -> ProcessReport | None:
        """The report of the current or last run (live while it runs)."""
        return self._engine.report

    def __enter__(self) -> StreamProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop a run still going (from another thread) and wait for its last commit."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def stop(self) -> None:
        """Ask the run to commit, checkpoint and return. Safe from any thread."""
        self._engine.stop()

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

        See :meth:`iotlib.stream.aio.StreamProcessor.run`; ``progress`` shows a tqdm bar.
        Raises :class:`~iotlib.errors.ProcessingError` if processing failed (nothing past the
        failure is committed or checkpointed).
        """
        if self._thread is not None and self._thread.is_alive():
            raise ProcessingError("this processor is already running")
        self._engine._stop_requested = False  # noqa: SLF001 - a new run
        bar = Progress() if progress else None
        outcome: dict[str, Any] = {}

        def main() -> None:
            try:
                outcome["report"] = asyncio.run(
                    self._engine.run(once=once, until_idle=until_idle, timeout=timeout, flush=flush, progress=bar)
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                outcome["error"] = exc

        self._thread = threading.Thread(target=main, name="iotlib-stream", daemon=True)
        self._thread.start()
        interrupted = False
        while self._thread.is_alive():
            try:
                self._thread.join(0.2)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                self.stop()
        if "error" in outcome:
            raise outcome["error"]
        report: ProcessReport = outcome["report"]
        if interrupted:
            report.stop_reason = "interrupted"
        return report
