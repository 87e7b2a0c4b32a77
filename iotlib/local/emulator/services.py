"""What sessions and links need from the server, handed to them rather than reached for.

A link that stores events needs the throughput meter (may this send be
admitted?) and the group commit (settle it once written); one that answers
``$management`` needs the namespace; every token check needs the clock and
the revoked-publisher list. The
server builds one :class:`Services` and each connection passes it on, so no
link reaches through its session and connection into the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from iotlib.devices.revocations import RevokedPublishers
from iotlib.local.emulator.commit import GroupCommit
from iotlib.local.emulator.namespace import Namespace
from iotlib.local.emulator.throughput import ThroughputMeter


@dataclass(frozen=True)
class Services:
    namespace: Namespace
    meter: ThroughputMeter
    commit: GroupCommit
    clock: Callable[[], float] = field(default=time.time)  # wall-clock seconds: enqueued times, token expiry
    revoked: RevokedPublishers = field(default_factory=lambda: RevokedPublishers(None))  # publishers refused

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
