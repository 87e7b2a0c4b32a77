"""The synchronous capture writer: the async engine (:mod:`iotlib.capture.aio`) on a thread of its own.

The engine runs on a private event loop in a background thread, so :meth:`CaptureWriter.run`
works the same in a script, a CLI and a Jupyter kernel (which already runs a loop). Ctrl-C
(``KeyboardInterrupt``) in the calling thread asks the engine to flush and stop, waits for it,
and returns the report with ``stop_reason == "interrupted"``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from iotlib.capture import aio
from iotlib.capture.options import CaptureOptions
from iotlib.capture.progress import Progress
from iotlib.capture.report import CaptureReport
from iotlib.errors import CaptureError


class CaptureWriter:
    """Capture an event hub's consumer group into Blob storage as Event Hubs Capture files.

    >>> with CaptureWriter.from_connection_string(eventhub_conn, storage_conn, eventhub_name="telemetry",
    ...                                           time_window=60, container="capture") as writer:  # doctest: +SKIP
    ...     report = writer.run(once=True)
    ...     print(report.summary())

    Options are those of :class:`~iotlib.capture.options.CaptureOptions`.
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
        self._engine = aio.CaptureWriter(
            eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name, namespace=namespace,
            **options,
        )  # fmt: skip
        self._thread: threading.Thread | None = None

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

    @classmethod
    def from_settings(cls, settings: Any = None, **options: Any) -> CaptureWriter:
        """A writer for :func:`iotlib.settings` (the local stack, or Azure from the environment)."""
        import iotlib

        s = settings or iotlib.settings()
        return cls(s.eventhub_connection_string, s.storage_connection_string, eventhub_name=s.eventhub_name, **options)

    @property
    def options(self) -> CaptureOptions:
        return self._engine.options

    @property
    def report(self) -> CaptureReport | None:
        """The report of the current or last run (live while it runs)."""
        return self._engine.report

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop a run still going (from another thread) and wait for it to flush."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def stop(self) -> None:
        """Ask the run to flush open windows, checkpoint and return. Safe from any thread or a signal handler."""
        self._engine.stop()

    def run(
        self,
        *,
        once: bool = False,
        until_idle: float | None = None,
        timeout: float | None = None,
        progress: Any = False,
    ) -> CaptureReport:
        """Capture until :meth:`stop` (or Ctrl-C), ``once``, ``until_idle`` seconds without events, or ``timeout``.

        ``once``: until every event enqueued when it started is stored and checkpointed.
        Open windows are flushed before it returns. ``progress=True`` shows a tqdm bar with
        per-partition counts (or pass a callable ``f(report, final=...)``). Raises :class:`~iotlib.errors.CaptureError` if storage failed hard.
        """
        if self._thread is not None and self._thread.is_alive():
            raise CaptureError("this writer is already running")
        self._engine._stop_requested = False  # noqa: SLF001 - a new run
        bar = progress if callable(progress) else Progress() if progress else None
        outcome: dict[str, Any] = {}

        def main() -> None:
            try:
                outcome["report"] = asyncio.run(
                    self._engine.run(once=once, until_idle=until_idle, timeout=timeout, progress=bar)
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                outcome["error"] = exc

        self._thread = threading.Thread(target=main, name="iotlib-capture", daemon=True)
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
        report: CaptureReport = outcome["report"]
        if interrupted:
            report.stop_reason = "interrupted"
        return report
