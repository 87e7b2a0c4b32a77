"""The local stack: Azurite (Blob) and iotlib's Event Hubs emulator as background processes.

``up`` starts what is not running yet and records each process (pid, address,
command line, log file) in ``<home>/stack.json``; ``down`` stops, by pid, only
the processes recorded there; ``status`` reports each service's health. A
service that is recorded and answering is reused, so ``up`` is idempotent.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from iotlib import connections as _settings
from iotlib.devices.revocations import FILE_NAME as REVOKED_PUBLISHERS
from iotlib.errors import StackError
from iotlib.local import state as _state
from iotlib.local.state import Service, StackState

SERVICES = ("azurite", "eventhubs")
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    detail: str


def read_state(home: Path | None = None) -> StackState | None:
    """The recorded stack under ``home`` (default: :func:`iotlib.connections.home`), or None."""
    return _state.read_state(Path(home) if home else _settings.home())


# --- probes -------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def _same_process(svc: Service) -> bool:
    """Is ``svc.pid`` still the process we started (and not a reused pid)?"""
    if not _pid_alive(svc.pid):
        return False
    proc_cmdline = Path(f"/proc/{svc.pid}/cmdline")
    if proc_cmdline.exists():
        try:
            args = proc_cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        text = " ".join(a.decode(errors="replace") for a in args)
        return str(svc.port) in text
    try:  # macOS and other systems without /proc
        out = subprocess.run(
            ["ps", "-p", str(svc.pid), "-o", "command="], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return True
    return str(svc.port) in out


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise StackError(f"cannot listen on {host}: {exc.strerror or exc}") from exc
        return int(sock.getsockname()[1])


def _probe_http(host: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError as exc:
        return False, f"no answer ({exc.strerror or exc})"
    if head.startswith(b"HTTP/1."):
        return True, "answering HTTP"
    return False, f"something else answers on this port ({head[:16]!r})"


def _probe_amqp(host: str, port: int) -> tuple[bool, str]:
    header = b"AMQP\x03\x01\x00\x00"  # the SASL layer's protocol header
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(header)
            got = b""
            while len(got) < 8:
                chunk = sock.recv(8 - len(got))
                if not chunk:
                    break
                got += chunk
    except OSError as exc:
        return False, f"no answer ({exc.strerror or exc})"
    if got == header:
        return True, "answering AMQP 1.0"
    return False, f"something else answers on this port ({got!r})"


_PROBES = {"azurite": _probe_http, "eventhubs": _probe_amqp}


def probe(name: str, host: str, port: int) -> tuple[bool, str]:
    """Does the service ``name`` answer its protocol on ``host:port``?"""
    return _PROBES[name](host, port)


# --- commands -------------------------------------------------------------------------


def _node_bin(tool: str) -> Path | None:
    """An npm-installed tool: the project's node_modules, walking up, then PATH."""
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "node_modules" / ".bin" / tool
            if candidate.exists():
                return candidate
    found = shutil.which(tool)
    return Path(found) if found else None


def azurite_command(host: str, port: int, data_dir: Path) -> list[str]:
    if shutil.which("node") is None:
        raise StackError(
            "Node.js is not installed or not on PATH: Azurite, the local Blob emulator, needs "
            "Node 18+. Install Node.js, then run `npm ci` in the project folder (make does it)."
        )
    tool = _node_bin("azurite-blob")
    if tool is None:
        raise StackError(
            "Azurite is not installed: run `npm ci` in the project folder (make does it), or `npm install -g azurite`."
        )
    return [
        str(tool),
        "--blobHost",
        host,
        "--blobPort",
        str(port),
        "--location",
        str(data_dir),
        "--silent",
        "--loose",
        "--disableTelemetry",
        # azure-storage-blob sends API versions newer than Azurite knows.
        "--skipApiVersionCheck",
    ]


def emulator_available() -> bool:
    return importlib.util.find_spec("iotlib.local.emulator") is not None


def eventhubs_command(
    host: str,
    port: int,
    data_dir: Path,
    config: Path | None = None,
    throughput_units: int | None = None,
    *,
    tls_port: int | None = None,
    tls_dir: Path | None = None,
    fsync: bool | None = None,
    revoked_publishers: Path | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "iotlib",
        "emulator",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if config is not None:
        command += ["--config", str(config)]
    if throughput_units is not None:
        command += ["--throughput-units", str(throughput_units)]
    if tls_port is not None:
        command += ["--tls-port", str(tls_port)]
        if tls_dir is not None:
            command += ["--tls-dir", str(tls_dir)]
    if fsync is not None:
        command.append("--fsync" if fsync else "--no-fsync")
    if revoked_publishers is not None:
        command += ["--revoked-publishers", str(revoked_publishers)]
    return command


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(log is empty)"


def _start(name: str, command: list[str], host: str, port: int, log: Path, timeout: float) -> Service:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell that ran `iotlib up`
        )
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(
                f"{name} exited with code {proc.returncode} while starting on {host}:{port}. "
                f"Last lines of {log}:\n{_log_tail(log)}"
            )
        ok, detail = probe(name, host, port)
        if ok:
            return Service(name, proc.pid, host, port, command, str(log))
        time.sleep(0.1)
    _terminate(proc.pid)
    raise StackError(
        f"{name} did not answer on {host}:{port} within {timeout:.0f}s ({detail}). "
        f"Last lines of {log}:\n{_log_tail(log)}"
    )


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Stack:
    """A running local stack; ``started`` names what this handle started (and will stop).

    A context manager: ``with stack.up(blob_port=0, eventhub_port=0) as st: ...`` stops, on
    leaving, what it started (and leaves running what was already there).
    """

    state: StackState
    started: list[str]

    @property
    def home(self) -> Path:
        return self.state.home

    @property
    def services(self) -> dict[str, Service]:
        return self.state.services

    def settings(self) -> _settings.Settings:
        """Settings pointing at this stack (ignores the environment)."""
        return _settings.stack_settings(self.state)

    def environ(self) -> dict[str, str]:
        """Environment variables that point child processes at this stack."""
        s = self.settings()
        return {
            _settings.EVENTHUB_ENV: s.eventhub_connection_string,
            _settings.STORAGE_ENV: s.storage_connection_string,
            _settings.EVENTHUB_NAME_ENV: s.eventhub_name,
            _settings.HOME_ENV: str(self.home),
        }

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def down(self) -> list[str]:
        """Stop what this handle started; leave services someone else started running."""
        stopped = down(self.home, only=self.started)
        self.started = []
        return stopped


def up(
    *,
    home: Path | None = None,
    host: str = "127.0.0.1",
    blob_port: int | None = None,
    eventhub_port: int | None = None,
    services: tuple[str, ...] | None = None,
    eventhubs_config: Path | None = None,
    throughput_units: int | None = None,
    tls_port: int | None = None,
    fsync: bool | None = None,
    timeout: float = START_TIMEOUT,
) -> Stack:
    """Start the services that are not running yet; reuse the ones that are.

    A port of ``0`` picks a free port. ``eventhubs_config`` is the emulator's
    entity configuration (the official emulator's ``Config.json`` shape);
    ``throughput_units`` meters it like Azure's standard tier (default: not metered);
    ``tls_port`` also serves the emulator over TLS, with a local CA under ``<home>/tls``
    (clients trust ``<home>/tls/ca.pem``; default: no TLS); ``fsync=False`` acknowledges
    events before they reach the disk. Raises :class:`StackError` when a port is
    taken by a process the stack did not start (before anything starts), or a service
    fails to start (after stopping those this call started).
    """
    home = Path(home).resolve() if home else _settings.home()
    if services is None:
        services = ("azurite", "eventhubs") if emulator_available() else ("azurite",)
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise StackError(f"unknown service(s) {sorted(unknown)}; known: {list(SERVICES)}")
    state = read_state(home) or StackState(home=home)
    wanted_ports = {
        "azurite": _settings.DEFAULT_BLOB_PORT if blob_port is None else blob_port,
        "eventhubs": _settings.DEFAULT_EVENTHUB_PORT if eventhub_port is None else eventhub_port,
    }
    started: list[str] = []
    try:
        _start_missing(state, services, host, wanted_ports, started, eventhubs_config, throughput_units,
                       tls_port, fsync, timeout)  # fmt: skip
    except BaseException:
        # All or nothing: a service that fails leaves none of those this call started running.
        down(home, only=started)
        raise
    state.save()
    return Stack(state=state, started=started)


_PORT_FLAGS = {"azurite": "--blob-port", "eventhubs": "--eventhub-port"}


def _start_missing(
    state: StackState,
    services: tuple[str, ...],
    host: str,
    wanted_ports: dict[str, int],
    started: list[str],
    eventhubs_config: Path | None,
    throughput_units: int | None,
    tls_port: int | None,
    fsync: bool | None,
    timeout: float,
) -> None:
    """Start each of ``services`` not running yet, appending its name to ``started`` once it answers."""
    missing = []
    for name in services:
        recorded = state.services.get(name)
        if recorded and _same_process(recorded) and probe(name, recorded.host, recorded.port)[0]:
            if name == "eventhubs" and tls_port is not None and recorded.tls_port is None:
                raise StackError(
                    "the running emulator serves no TLS; stop it with `iotlib down`, then `iotlib up --tls-port ...`"
                )
            continue  # already running: idempotent
        if recorded:
            # Recorded but dead: forget it. If the pid lives but does not answer, stop it.
            if _same_process(recorded):
                _terminate(recorded.pid)
            del state.services[name]
        missing.append(name)
    # Every port is looked at before anything starts: a taken one then costs nothing to undo.
    ports = {name: wanted_ports[name] or free_port(host) for name in missing}
    for name, port in ports.items():
        if port_in_use(host, port):
            raise StackError(
                f"port {port} on {host} is taken by a process `iotlib up` did not start, so "
                f"{name} cannot listen there. Stop that process, or choose another port with "
                f"`iotlib up {_PORT_FLAGS[name]} PORT` (0 picks a free one)."
            )
    for name in missing:
        port = ports[name]
        secure = None
        if name == "eventhubs" and tls_port is not None:
            secure = tls_port or free_port(host)
            if port_in_use(host, secure):
                raise StackError(
                    f"port {secure} on {host} is taken by a process `iotlib up` did not start, so the "
                    "emulator cannot serve TLS there. Choose another with `iotlib up --tls-port PORT` (0: a free one)."
                )
        data_dir = state.home / name
        data_dir.mkdir(parents=True, exist_ok=True)
        command = (
            azurite_command(host, port, data_dir)
            if name == "azurite"
            else eventhubs_command(
                host,
                port,
                data_dir,
                eventhubs_config,
                throughput_units,
                tls_port=secure,
                tls_dir=state.home / "tls",
                fsync=fsync,
                revoked_publishers=state.home / "devices" / REVOKED_PUBLISHERS,
            )
        )
        svc = _start(name, command, host, port, state.home / "logs" / f"{name}.log", timeout)
        svc.tls_port = secure
        state.services[name] = svc
        state.save()
        started.append(name)


def down(home: Path | None = None, *, only: list[str] | None = None) -> list[str]:
    """Stop the recorded services (all, or those named in ``only``); return their names."""
    state = read_state(home)
    if state is None:
        return []
    stopped = []
    for name in list(state.services):
        if only is not None and name not in only:
            continue
        svc = state.services.pop(name)
        if _same_process(svc):
            _terminate(svc.pid)
            stopped.append(name)
    state.save()
    return stopped


def status(home: Path | None = None) -> list[ServiceStatus]:
    """Each recorded service with its address, pid and health."""
    state = read_state(home)
    report = []
    for name in SERVICES:
        svc = state.services.get(name) if state else None
        if svc is None:
            report.append(ServiceStatus(name, "-", None, False, "not started (run `iotlib up`)"))
            continue
        if not _same_process(svc):
            report.append(ServiceStatus(name, svc.address, svc.pid, False, "recorded but not running"))
            continue
        ok, detail = probe(name, svc.host, svc.port)
        report.append(ServiceStatus(name, svc.address, svc.pid, ok, detail))
    return report
