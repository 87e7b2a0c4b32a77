"""The emulator as a server: listen, group-commit the log, retention, throughput metering, clean shutdown.

Group commit: every frame a connection read in one go is handled first; then
each partition that received events writes them with one ``write`` (and
``fsync`` when configured, off the event loop), and only then are the
deliveries settled ``accepted`` and the waiting consumers woken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from iotlib.errors import EmulatorError
from iotlib.local.emulator import framing as f
from iotlib.local.emulator.config import EmulatorConfig
from iotlib.local.emulator.namespace import Namespace, Partition
from iotlib.local.emulator.throughput import SUMMARY_SECONDS, ThroughputMeter

if TYPE_CHECKING:
    from iotlib.local.emulator.connection import Connection
    from iotlib.local.emulator.log import PartitionLog
    from iotlib.local.emulator.session import Session

_LOG = logging.getLogger("iotlib.local.emulator")


class Server:
    """An AMQP 1.0 listener serving one namespace from a data folder."""

    def __init__(
        self,
        config: EmulatorConfig,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 5672,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.namespace: Namespace | None = None
        self.connections: set[Connection] = set()
        self.loop: asyncio.AbstractEventLoop  # set by start(), before any connection
        self._server: asyncio.base_events.Server | None = None
        self._touched: set[Partition] = set()
        self._acks: list[tuple[Session, int, bytes | None]] = []
        self._retention: asyncio.TimerHandle | None = None
        self._summary: asyncio.TimerHandle | None = None
        self.clock = clock or time.time  # token expiry (and, when given, the throughput budget)
        self.throughput = ThroughputMeter(
            config.throughput_units, namespace=config.namespace, clock=clock or time.monotonic
        )

    async def start(self) -> None:
        from iotlib.local.emulator.connection import Connection

        self.loop = asyncio.get_running_loop()
        self.namespace = Namespace(self.config, self.data_dir)
        try:
            self._server = await self.loop.create_server(
                lambda: Connection(self), self.host, self.port, reuse_address=True, backlog=128
            )
        except OSError as exc:
            self.namespace.close()
            self.namespace = None
            raise EmulatorError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self._schedule_retention()
        if self.throughput.limited:
            self._schedule_summary()
        hubs = ", ".join(f"{h.name} ({len(h.partitions)} partitions)" for h in self.namespace.hubs.values())
        _LOG.info(
            "Event Hubs emulator listening on %s:%d, namespace %s: %s; %s; data in %s",
            self.host,
            self.port,
            self.namespace.name,
            hubs,
            self.throughput.describe_ingress(),
            self.data_dir,
        )

    def _schedule_retention(self) -> None:
        def run() -> None:
            if self.namespace is not None:
                try:
                    self.namespace.enforce_retention(int(self.clock() * 1000))
                except OSError as exc:
                    _LOG.warning("retention failed: %s", exc)
            self._schedule_retention()

        self._retention = self.loop.call_later(self.config.retention_check_seconds, run)

    def _schedule_summary(self) -> None:
        def run() -> None:
            self.throughput.log_summary()
            self._schedule_summary()

        self._summary = self.loop.call_later(SUMMARY_SECONDS, run)

    # --- group commit --------------------------------------------------------------

    def touched(self, partition: Partition) -> None:
        self._touched.add(partition)

    def after_commit(self, session: Session, delivery_id: int, state: bytes | None) -> None:
        """Settle this delivery once the log has written it (``None`` = accepted)."""
        self._acks.append((session, delivery_id, state))

    def commit(self) -> None:
        if not self._touched and not self._acks:
            return
        touched, self._touched = self._touched, set()
        acks, self._acks = self._acks, []
        for partition in touched:
            partition.log.commit()
        if self.config.fsync and touched:
            logs = [p.log for p in touched]
            future = self.loop.run_in_executor(None, _sync_all, logs)
            future.add_done_callback(lambda _: self._settle(acks, touched))
        else:
            self._settle(acks, touched)

    def _settle(self, acks: list[tuple[Session, int, bytes | None]], touched: set[Partition]) -> None:
        # Contiguous accepted deliveries of a session go out as one disposition.
        run_session = None
        first = last = -1
        for session, delivery_id, state in acks:
            if session.ended:
                continue
            if state is None:
                if session is run_session and delivery_id == last + 1:
                    last = delivery_id
                    continue
                if run_session is not None:
                    run_session.send_disposition(first, last, f.ACCEPTED_STATE)
                run_session, first, last = session, delivery_id, delivery_id
            else:
                if run_session is not None:
                    run_session.send_disposition(first, last, f.ACCEPTED_STATE)
                    run_session = None
                session.send_disposition(delivery_id, delivery_id, state)
        if run_session is not None:
            run_session.send_disposition(first, last, f.ACCEPTED_STATE)
        for partition in touched:
            partition.notify()

    # --- shutdown ------------------------------------------------------------------

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
        if self._summary is not None:
            self._summary.cancel()
            self.throughput.log_summary()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        self.commit()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except TimeoutError:
                pass
        await asyncio.sleep(0)
        if self.namespace is not None:
            self.namespace.close()
            self.namespace = None
        _LOG.info("Event Hubs emulator on port %d stopped", self.port)


async def serve(
    config: EmulatorConfig,
    data_dir: str | Path,
    *,
    host: str,
    port: int,
    ready: asyncio.Future | None = None,
    stop: asyncio.Event | None = None,
    server_holder: list[Server] | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when running in the main thread).

    ``server_holder`` receives the :class:`Server` (what an in-process owner reads counts from).
    """
    server = Server(config, data_dir, host=host, port=port, clock=clock)
    if server_holder is not None:
        server_holder.append(server)
    stop = stop or asyncio.Event()
    try:
        await server.start()
    except BaseException as exc:
        if ready is not None and not ready.done():
            ready.set_exception(exc)
        raise
    if ready is not None and not ready.done():
        ready.set_result(server.port)
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass  # not the main thread: the owner sets ``stop``
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.stop()


def run(config: EmulatorConfig, data_dir: str | Path, *, host: str = "127.0.0.1", port: int = 5672) -> int:
    """Run the emulator in the foreground (the ``iotlib emulator`` command)."""
    started = time.monotonic()
    asyncio.run(serve(config, data_dir, host=host, port=port))
    _LOG.debug("ran for %.1f s (pid %d)", time.monotonic() - started, os.getpid())
    return 0


def _sync_all(logs: list[PartitionLog]) -> None:
    """Put the logs' appended data on disk (in an executor thread: fsync blocks)."""
    for log in logs:
        log.sync()
