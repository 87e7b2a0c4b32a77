"""Looking into an event hub: where each partition stands, what it holds, who is behind.

- :mod:`~iotlib.hub.partitions` — where each partition stands (one management round trip);
- :mod:`~iotlib.hub.readback` — partition positions and reading back exactly what a run added
  (``async`` twins in :mod:`iotlib.hub.aio`);
- :mod:`~iotlib.hub.monitor` — each consumer group's lag, from the hub and the checkpoint blobs
  (:class:`~iotlib.hub.monitor.LagMonitor`; arithmetic and alert rule in :mod:`~iotlib.hub.lag`,
  the blobs in :mod:`~iotlib.hub.checkpoints`, reads in :mod:`~iotlib.hub.peek`, options in
  :mod:`~iotlib.hub.monitor_options`; a stack not up is :mod:`iotlib.preflight`'s one line);
- :mod:`~iotlib.hub.paced` — a consumer slowed on purpose, to watch lag grow and shrink;
- :mod:`~iotlib.hub.plots` — lag over time;
- :mod:`~iotlib.hub.starting` — where a reader starts: one vocabulary for every engine;
- :mod:`~iotlib.hub.consumer` — the consumer skeleton the capture writer and the warm job share.
"""

from iotlib._lazy import submodules
from iotlib.hub.partitions import PartitionPosition
from iotlib.hub.readback import positions, read

__all__ = ["PartitionPosition", "positions", "read"]

__getattr__ = submodules(
    __name__,
    [
        "aio",
        "checkpoints",
        "consumer",
        "endpoints",
        "lag",
        "monitor",
        "monitor_options",
        "paced",
        "partitions",
        "peek",
        "plots",
        "readback",
        "starting",
    ],
)
