"""What ``iotlib up`` recorded: each background service's pid, address, command line and log.

Kept apart from :mod:`iotlib.local.stack` (which starts and stops the services) so that
:func:`iotlib.settings` can read where a running stack listens without importing the code
that manages it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from iotlib.errors import StackError

STATE_FILE = "stack.json"


@dataclass
class Service:
    """One background process of the stack, as recorded by ``up``."""

    name: str
    pid: int
    host: str
    port: int
    command: list[str]
    log: str
    tls_port: int | None = None  # the emulator's TLS port, when asked for

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class StackState:
    """What ``up`` recorded in ``<home>/stack.json``."""

    home: Path
    services: dict[str, Service] = field(default_factory=dict)

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / STATE_FILE
        tmp = path.with_suffix(".tmp")
        payload = {name: asdict(svc) for name, svc in self.services.items()}
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, path)


def read_state(home: Path) -> StackState | None:
    """The stack recorded under ``home``, or None when nothing is recorded there."""
    path = home / STATE_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        services = {name: Service(**svc) for name, svc in raw.items()}
    except (ValueError, TypeError) as exc:
        raise StackError(f"{path} is not a stack record iotlib wrote ({exc}); delete it") from exc
    return StackState(home=home, services=services)
