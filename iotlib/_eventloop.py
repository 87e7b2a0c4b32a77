"""A private asyncio loop on a background thread, so sync APIs can drive async engines.

``asyncio.run`` fails inside Jupyter (its loop already runs in the main
thread); a loop of our own on a daemon thread works everywhere.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
#: Seconds between looks at a pending result: how soon Ctrl-C is seen while waiting on one.
POLL = 0.2


class LoopThread:
    """Runs coroutines to completion on its own loop; ``stop()`` when done."""

    def __init__(self, name: str = "iotlib-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = self.submit(coro)
        try:
            return wait(future)
        except KeyboardInterrupt:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start ``coro`` on the loop; wait for it with :func:`wait`."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        # Tasks left behind (a run given up on at Ctrl-C) are cancelled and finish first, as
        # asyncio.run does: a loop closed under them prints "Task was destroyed but it is pending!".
        try:
            asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(timeout=2)
        except Exception:  # noqa: BLE001, S110 - stopping anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def made_on_loop(name: str, make: Callable[[], T]) -> tuple[LoopThread, T]:
    """A private loop, and what ``make()`` returns when called on it (an async SDK client must be
    made on the loop that will use it). The loop is stopped again if ``make`` fails."""
    runner = LoopThread(name)

    async def build() -> T:
        return make()

    try:
        return runner, runner.run(build())
    except BaseException:
        runner.stop()
        raise


async def _cancel_others() -> None:
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=0.5)


def wait(future: Future[T], timeout: float | None = None) -> T:
    """``future.result(timeout)``, looking up every :data:`POLL` seconds so Ctrl-C is seen at once.

    The kernel hands SIGINT to any thread; when it lands on the loop's, Python raises
    KeyboardInterrupt in the main thread only once that thread runs again — never, while it
    blocks on a result without a timeout.
    """
    remaining = timeout
    while True:
        step = POLL if remaining is None else min(POLL, remaining)
        try:
            return future.result(timeout=step)
        except TimeoutError:
            if remaining is not None:
                remaining -= step
                if remaining <= 0:
                    raise


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh private loop."""
    runner = LoopThread()
    try:
        return runner.run(coro)
    finally:
        runner.stop()


class EngineThread:
    """The synchronous face of an async engine that runs until stopped (capture, stream processing).

    The engine (``self._engine``) has an async ``run(**options)`` returning a report with a
    ``stop_reason``, a thread-safe ``stop()``, and ``options``/``report`` attributes. Each run gets
    a private event loop on a thread of its own, so it works the same in a script, the CLI and a
    Jupyter kernel (which already runs a loop). Ctrl-C in the calling thread asks the engine to
    finish cleanly, waits for it and returns the report with ``stop_reason == "interrupted"``; a
    second Ctrl-C stops waiting.
    """

    #: The async engine's class; ``__init__`` makes one from the same arguments.
    _engine_class: type[Any]
    _engine: Any
    _thread: threading.Thread | None = None
    #: Raised when ``run`` is called while a run is going.
    _busy_error: type[Exception] = RuntimeError

    def __init__(self, *parts: Any, **options: Any) -> None:
        self._engine = self._engine_class(*parts, **options)

    @property
    def options(self) -> Any:
        return self._engine.options

    @property
    def eventhub(self) -> Any:
        """The hub it reads (:class:`~iotlib.connections.EventHubConnection`)."""
        return self._engine.eventhub

    @property
    def storage(self) -> Any:
        """The storage account it writes to (:class:`~iotlib.connections.StorageConnection`)."""
        return self._engine.storage

    @property
    def report(self) -> Any:
        """The report of the current or last run (live while it runs)."""
        return self._engine.report

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop a run still going (from another thread) and wait for it to finish cleanly."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def stop(self) -> None:
        """Ask the run to finish cleanly and return. Safe from any thread or a signal handler."""
        self._engine.stop()

    def _run_engine(self, thread_name: str, **options: Any) -> Any:
        if self._thread is not None and self._thread.is_alive():
            raise self._busy_error(f"this {type(self).__name__} is already running")
        self._engine._stop_requested = False  # noqa: SLF001 - a new run
        outcome: dict[str, Any] = {}
        # Completion is an Event, not Thread.join: a join that Ctrl-C interrupts can leave the thread
        # marked as stopped while it still runs (CPython 3.11), and the run's report would be lost.
        done = threading.Event()

        def main() -> None:
            try:
                outcome["report"] = asyncio.run(self._engine.run(**options))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                outcome["error"] = exc
            finally:
                done.set()

        self._thread = threading.Thread(target=main, name=thread_name, daemon=True)
        self._thread.start()
        interrupted = False
        while not done.is_set():
            try:
                done.wait(0.2)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                self.stop()
        if "error" in outcome:
            raise outcome["error"]
        report = outcome["report"]
        if interrupted:
            report.stop_reason = "interrupted"
        return report


class StoppableEngine:
    """An async engine that runs until stopped; ``stop()`` may come from any thread.

    A run calls :meth:`_arm_stop` when it starts (on its own loop) and waits on ``self._stop``;
    :meth:`stop` before or during the run makes it finish cleanly.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _stop_requested: bool = False

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask a running ``run`` to finish cleanly and return. Safe from any thread."""
        self._stop_requested = True
        loop, event = self._loop, self._stop
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile: the run is over anyway
                pass

    def _arm_stop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
