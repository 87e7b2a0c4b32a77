"""The synchronous capture writer: the async engine (:mod:`iotlib.capture.aio`) on a thread of its own.

See :class:`iotlib._eventloop.EngineThread`: it works the same in a script, the CLI and Jupyter,
and Ctrl-C asks the engine to flush, checkpoint and stop (``stop_reason == "interrupted"``).
"""

from __future__ import annotations

from collections.abc import Callable

from iotlib._eventloop import EngineThread
from iotlib.capture import aio
from iotlib.capture.options import CaptureOptions
from iotlib.capture.progress import Progress
from iotlib.capture.report import CaptureReport
from iotlib.clients import CaptureClient
from iotlib.errors import CaptureError


class CaptureWriter(CaptureClient, EngineThread):
    """Capture an event hub's consumer group into Blob storage as Event Hubs Capture files.

    >>> with CaptureWriter.from_connection_string(eventhub_conn, storage_conn, eventhub_name="telemetry",
    ...                                           time_window=60, container="capture") as writer:  # doctest: +SKIP
    ...     report = writer.run(once=True)
    ...     print(report.summary())

    Options are those of :class:`~iotlib.capture.options.CaptureOptions`.
    """

    _engine_class = aio.CaptureWriter
    _busy_error = CaptureError
    options: CaptureOptions
    report: CaptureReport | None

    def run(
        self,
        *,
        progress: bool | Callable[..., None] = False,
        once: bool = False,
        until_idle: float | None = None,
        timeout: float | None = None,
        reset_checkpoints: bool = False,
    ) -> CaptureReport:
        """Capture until :meth:`stop` (or Ctrl-C), ``once``, ``until_idle`` seconds without events, or ``timeout``.

        ``once``: until every event enqueued when it started is stored and checkpointed.
        ``until_idle``: until quiet that long with every partition caught up by a live owner.
        Open windows are flushed before it returns. ``progress=True`` shows a tqdm bar with
        per-partition counts (or pass a callable ``f(report, final=...)``). ``reset_checkpoints``
        starts every partition again from ``starting_position`` (after a lost container: see
        :mod:`iotlib.capture.audit`). Raises :class:`~iotlib.errors.CaptureError` if storage failed hard.
        """
        bar = progress if callable(progress) else Progress() if progress else None
        report: CaptureReport = self._run_engine(
            "iotlib-capture", once=once, until_idle=until_idle, timeout=timeout, progress=bar,
            reset_checkpoints=reset_checkpoints,
        )  # fmt: skip
        return report
