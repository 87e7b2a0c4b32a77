"""The emulator as a server: listen (plain and TLS), retention, throughput metering, clean shutdown.

It builds the :class:`~iotlib.local.emulator.services.Services` every
connection hands its sessions and links (namespace, throughput meter, group
commit, clock) and commits after each read of a connection (see
:mod:`~iotlib.local.emulator.commit`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from iotlib.devices.revocations import RevokedPublishers
from iotlib.errors import EmulatorError
from iotlib.local.emulator.commit import GroupCommit
from iotlib.local.emulator.config import EmulatorConfig
from iotlib.local.emulator.namespace import Namespace
from iotlib.local.emulator.services import Services
from iotlib.local.emulator.throughput import SUMMARY_SECONDS, ThroughputMeter
from iotlib.local.emulator.websocket import Door

if TYPE_CHECKING:
    from iotlib.local.emulator.connection import Connection
    from iotlib.local.emulator.tls import TlsFiles

_LOG = logging.getLogger("iotlib.local.emulator")


class Server:
    """An AMQP 1.0 server for one namespace over a data folder.

    It listens on ``port`` (AMQP, or AMQP over WebSockets at ``/$servicebus/websocket``)
    and, with ``tls_port``, on a second port that speaks both over TLS with a
    certificate from the local CA in ``tls_dir`` (see :mod:`~iotlib.local.emulator.tls`).
    """

    def __init__(
        self,
        config: EmulatorConfig,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 5672,
        tls_port: int | None = None,
        tls_dir: str | Path | None = None,
        clock: Callable[[], float] | None = None,
        revoked_publishers: Path | None = None,
    ) -> None:
        self.config = config
        self.revoked_publishers = revoked_publishers
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.tls: TlsFiles | None = None
        self._tls_dir = Path(tls_dir) if tls_dir is not None else self.data_dir / "tls"
        self.clock = clock or time.time
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self.connections: set[Connection] = set()
        self.undecided: set[asyncio.BaseTransport] = set()  # connected, first bytes not read yet
        self._listeners: list[asyncio.base_events.Server] = []
        self._retention: asyncio.TimerHandle | None = None
        self._summary: asyncio.TimerHandle | None = None
        # An injected clock drives the budgets too; by default they run on the monotonic clock.
        self.throughput = ThroughputMeter(
            config.throughput_units, namespace=config.namespace, clock=clock or time.monotonic
        )
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise EmulatorError("the emulator is not running")
        return self._services

    @property
    def namespace(self) -> Namespace:
        return self.services.namespace

    async def start(self) -> None:
        from iotlib.local.emulator.connection import Connection

        self.loop = asyncio.get_running_loop()
        namespace = Namespace(self.config, self.data_dir)
        self._services = Services(
            namespace,
            self.throughput,
            GroupCommit(self.loop, fsync=self.config.fsync),
            self.clock,
            RevokedPublishers(self.revoked_publishers),
        )

        def door() -> Door:
            return Door(lambda: Connection(self), self.undecided)

        try:
            plain = await self._listen(door, self.port, None)
            self.port = plain.sockets[0].getsockname()[1]
            if self.tls_port is not None:
                from iotlib.local.emulator.tls import ensure_certificates  # cryptography loads only for TLS

                self.tls = ensure_certificates(self._tls_dir, [self.host])
                secure = await self._listen(door, self.tls_port, self.tls.server_context())
                self.tls_port = secure.sockets[0].getsockname()[1]
        except (OSError, EmulatorError, ssl.SSLError):
            for listener in self._listeners:
                listener.close()
            namespace.close()
            self._services = None
            raise
        self._schedule_retention()
        if self.throughput.limited:
            self._schedule_summary()
        hubs = ", ".join(f"{h.name} ({len(h.partitions)} partitions)" for h in namespace.hubs.values())
        tls = f", TLS on {self.host}:{self.tls_port} (CA: {self.tls.ca})" if self.tls is not None else ""
        _LOG.info(
            "Event Hubs emulator listening on %s:%d (AMQP and WebSockets)%s, namespace %s: %s; %s; %s; data in %s",
            self.host,
            self.port,
            tls,
            namespace.name,
            hubs,
            self.throughput.describe_ingress(),
            "fsync before accepted" if self.config.fsync else "no fsync (acknowledged events survive kill -9 only)",
            self.data_dir,
        )

    async def _listen(
        self, factory: Callable[[], asyncio.Protocol], port: int, context: ssl.SSLContext | None
    ) -> asyncio.base_events.Server:
        try:
            if context is None:
                listener = await self.loop.create_server(factory, self.host, port, reuse_address=True, backlog=128)
            else:
                listener = await self.loop.create_server(
                    factory, self.host, port, reuse_address=True, backlog=128, ssl=context, ssl_handshake_timeout=10
                )
        except OSError as exc:
            raise EmulatorError(f"cannot listen on {self.host}:{port}: {exc.strerror or exc}") from exc
        self._listeners.append(listener)
        return listener

    def _schedule_retention(self) -> None:
        def run() -> None:
            if self._services is not None:
                try:
                    self._services.namespace.enforce_retention(int(self.clock() * 1000))
                except OSError as exc:
                    _LOG.warning("retention failed: %s", exc)
            self._schedule_retention()

        self._retention = self.loop.call_later(self.config.retention_check_seconds, run)

    def _schedule_summary(self) -> None:
        def run() -> None:
            self.throughput.log_summary()
            self._schedule_summary()

        self._summary = self.loop.call_later(SUMMARY_SECONDS, run)

    # --- shutdown ------------------------------------------------------------------

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
        if self._summary is not None:
            self._summary.cancel()
            self.throughput.log_summary()
        for listener in self._listeners:
            listener.close()
        for conn in list(self.connections):
            conn.shutdown()
        for transport in list(self.undecided):
            transport.close()
        if self._services is not None:
            self._services.commit.commit()
        for listener in self._listeners:
            try:
                await asyncio.wait_for(listener.wait_closed(), 2)
            except TimeoutError:
                pass
        await asyncio.sleep(0)
        if self._services is not None:
            self._services.namespace.close()
            self._services = None
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
    tls_port: int | None = None,
    tls_dir: str | Path | None = None,
    revoked_publishers: Path | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when running in the main thread).

    ``ready`` gets ``(port, tls_port)`` once listening; ``server_holder`` receives the
    :class:`Server` (what an in-process owner reads counts from).
    """
    server = Server(
        config,
        data_dir,
        host=host,
        port=port,
        tls_port=tls_port,
        tls_dir=tls_dir,
        clock=clock,
        revoked_publishers=revoked_publishers,
    )
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
        ready.set_result((server.port, server.tls_port))
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


def run(
    config: EmulatorConfig,
    data_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 5672,
    tls_port: int | None = None,
    tls_dir: str | Path | None = None,
    revoked_publishers: Path | None = None,
) -> int:
    """Run the emulator in the foreground (the ``iotlib emulator`` command)."""
    started = time.monotonic()
    asyncio.run(
        serve(
            config,
            data_dir,
            host=host,
            port=port,
            tls_port=tls_port,
            tls_dir=tls_dir,
            revoked_publishers=revoked_publishers,
        )
    )
    _LOG.debug("ran for %.1f s (pid %d)", time.monotonic() - started, os.getpid())
    return 0
