"""Start an emulator from Python: in this process (a thread with its own event loop) or as a subprocess.

::

    with Emulator.start(data_dir=tmp, port=0) as emu:
        producer = EventHubProducerClient.from_connection_string(
            emu.connection_string, eventhub_name=emu.eventhub_name)

``mode="process"`` runs ``python -m iotlib emulator`` instead, which is what a
test of crash durability needs (:meth:`Emulator.kill` sends SIGKILL).

``throughput_units=1`` meters the namespace like one of Azure's throughput units
(sends over budget fail with ``server-busy``); :meth:`Emulator.throughput` tells
what was accepted, throttled and delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from iotlib.connections import eventhub_connection_string
from iotlib.errors import EmulatorError
from iotlib.local.emulator.config import EmulatorConfig
from iotlib.local.emulator.throughput import ThroughputStats

if TYPE_CHECKING:
    from iotlib.local.emulator.server import Server

_LOG = logging.getLogger("iotlib.local.emulator")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Emulator:
    """A running emulator and how to reach it; stop it with :meth:`stop` or ``with``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        data_dir: Path,
        config: EmulatorConfig,
        mode: str,
        owns_data_dir: bool,
        tls_port: int | None = None,
        tls_dir: Path | None = None,
        revoked_publishers: Path | None = None,
    ) -> None:
        self.host = host
        #: The revoked-publisher list it watches (:mod:`iotlib.devices.revocations`), if any.
        self.revoked_publishers = revoked_publishers
        self.port = port
        self.tls_port = tls_port
        self.tls_dir = tls_dir if tls_dir is not None else data_dir / "tls"
        self.data_dir = data_dir
        self.config = config
        self.mode = mode
        self._owns_data_dir = owns_data_dir
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._process: subprocess.Popen | None = None
        self._config_file: Path | None = None
        self._server: list[Server] = []
        self._clock: Callable[[], float] | None = None
        self.exit_code: int | None = None

    # --- what users need -------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        """The official emulator's connection string, pointed at this emulator."""
        return eventhub_connection_string("localhost", self.port)

    @property
    def ca_file(self) -> Path:
        """The local CA certificate a TLS client trusts (``connection_verify=str(emu.ca_file)``)."""
        if self.tls_port is None:
            raise EmulatorError("this emulator has no TLS port: start it with tls_port=0 (or a port)")
        return self.tls_dir / "ca.pem"

    @property
    def eventhub_name(self) -> str:
        return self.config.entities[0].name

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else os.getpid()

    @classmethod
    def start(
        cls,
        *,
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | str | Path | None = None,
        mode: str = "thread",
        timeout: float = 30.0,
        throughput_units: int | None = None,
        clock: Callable[[], float] | None = None,
        tls_port: int | None = None,
        tls_dir: str | Path | None = None,
        revoked_publishers: str | Path | None = None,
    ) -> Emulator:
        """Start an emulator; ``port=0`` picks a free port, ``data_dir=None`` a temporary folder.

        ``tls_port`` (``0``: a free one) also serves AMQP and WebSockets over TLS, with a
        certificate from a local CA kept in ``tls_dir`` (default ``<data_dir>/tls``); clients
        trust it with ``connection_verify=str(emu.ca_file)``.

        ``throughput_units`` overrides the config's ``ThroughputUnits`` (``0``: not metered).
        ``revoked_publishers`` is the revoked-publisher list the device registry writes
        (``DeviceRegistry.revocation_file``); the emulator re-reads it whenever it changes.
        ``clock`` (thread mode only) replaces the wall clock: enqueued times, token expiry,
        retention and throughput budgets all read it, so a test moves time instead of sleeping.
        """
        if mode not in ("thread", "process"):
            raise EmulatorError(f"mode must be 'thread' or 'process', not {mode!r}")
        if clock is not None and mode != "thread":
            raise EmulatorError("a clock can only be given to an emulator running in this process (mode='thread')")
        if config is None:
            cfg = EmulatorConfig()
        elif isinstance(config, EmulatorConfig):
            cfg = config
        else:
            cfg = EmulatorConfig.from_file(config)
        if throughput_units is not None:
            cfg = replace(cfg, throughput_units=throughput_units)
        owns = data_dir is None
        folder = Path(tempfile.mkdtemp(prefix="iotlib-eventhubs-")) if data_dir is None else Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        emu = cls(
            host=host,
            port=port,
            data_dir=folder,
            config=cfg,
            mode=mode,
            owns_data_dir=owns,
            tls_port=tls_port,
            tls_dir=Path(tls_dir) if tls_dir is not None else None,
            revoked_publishers=Path(revoked_publishers) if revoked_publishers is not None else None,
        )
        emu._clock = clock
        try:
            if mode == "thread":
                emu._start_thread(timeout)
            else:
                emu._start_process(timeout)
        except BaseException:
            emu._cleanup_dir()
            raise
        return emu

    def _start_thread(self, timeout: float) -> None:
        from iotlib.local.emulator.server import serve

        ready: Future = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._stop_event = asyncio.Event()
            fut = loop.create_future()
            fut.add_done_callback(
                lambda x: ready.set_exception(x.exception()) if x.exception() else ready.set_result(x.result())
            )
            try:
                loop.run_until_complete(
                    serve(
                        self.config,
                        self.data_dir,
                        host=self.host,
                        port=self.port,
                        ready=fut,
                        stop=self._stop_event,
                        server_holder=self._server,
                        clock=self._clock,
                        tls_port=self.tls_port,
                        tls_dir=self.tls_dir,
                        revoked_publishers=self.revoked_publishers,
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - surfaced through ``ready``
                if not ready.done():
                    ready.set_exception(exc)
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name=f"iotlib-emulator-{self.port}", daemon=True)
        self._thread.start()
        try:
            self.port, self.tls_port = ready.result(timeout)
        except TimeoutError as exc:
            raise EmulatorError(f"the emulator did not start within {timeout:.0f}s") from exc
        except OSError as exc:
            raise EmulatorError(f"the emulator cannot listen on {self.host}:{self.port}: {exc}") from exc

    def _start_process(self, timeout: float) -> None:
        import json

        if not self.port:
            self.port = _free_port(self.host)
        if self.tls_port == 0:
            self.tls_port = _free_port(self.host)
        self._config_file = self.data_dir / "emulator-config.json"
        self._config_file.write_text(json.dumps(self.config.to_dict(), indent=2))
        command = [
            sys.executable,
            "-m",
            "iotlib",
            "emulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--config",
            str(self._config_file),
        ]
        if self.tls_port is not None:
            command += ["--tls-port", str(self.tls_port), "--tls-dir", str(self.tls_dir)]
        if self.revoked_publishers is not None:
            command += ["--revoked-publishers", str(self.revoked_publishers)]
        log = open(self.data_dir / "emulator.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmulatorError(
                    f"the emulator exited with code {self._process.returncode}; see {self.data_dir / 'emulator.log'}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.sendall(b"AMQP\x03\x01\x00\x00")
                    if sock.recv(8) == b"AMQP\x03\x01\x00\x00":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise EmulatorError(f"the emulator did not answer on {self.host}:{self.port} within {timeout:.0f}s")

    def throughput(self, timeout: float = 5.0) -> ThroughputStats:
        """Events and bytes accepted, throttled (refused with ``server-busy``) and delivered so far."""
        if self.mode != "thread":
            raise EmulatorError(
                "throughput counts are read from an emulator running in this process (mode='thread'); "
                f"one in a subprocess logs them instead (see {self.data_dir / 'emulator.log'})"
            )
        if not self._server or self._loop is None or self._thread is None or not self._thread.is_alive():
            raise EmulatorError("the emulator is not running")
        meter = self._server[0].throughput
        answer: Future = Future()
        # Read on the emulator's own loop, so that the counts are one consistent snapshot.
        self._loop.call_soon_threadsafe(lambda: answer.set_result(meter.stats()))
        return answer.result(timeout)

    # --- stopping ----------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        """Stop cleanly (SIGTERM for a subprocess) and remove a temporary data folder."""
        if self._thread is not None and self._loop is not None and self._stop_event is not None:
            if self._thread.is_alive():
                try:
                    self._loop.call_soon_threadsafe(self._stop_event.set)
                except RuntimeError:
                    pass
                self._thread.join(timeout)
            self._thread = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self.exit_code = self._process.returncode
            self._process = None
            self._log_file.close()
        self._cleanup_dir()

    def kill(self) -> None:
        """SIGKILL the subprocess (crash simulation); the data folder is kept."""
        if self._process is None:
            raise EmulatorError("kill() needs an emulator started with mode='process'")
        self._process.kill()
        self.exit_code = self._process.wait()
        self._process = None
        self._log_file.close()

    def _cleanup_dir(self) -> None:
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator({self.mode}, {self.host}:{self.port}, data_dir={str(self.data_dir)!r})"
