"""Looking into an event hub: where each partition stands, what it holds, who is behind.

- :mod:`~iotlib.hub.partitions` — where each partition stands (one management round trip);
- :mod:`~iotlib.hub.readback` — partition positions and reading back exactly what a run added
  (``async`` twins in :mod:`iotlib.hub.aio`);
- :mod:`~iotlib.hub.monitor` — each consumer group's lag, from the hub and the checkpoint blobs;
- :mod:`~iotlib.hub.starting` — where a reader starts: one vocabulary for every engine;
- :mod:`~iotlib.hub.consumer` — the consumer skeleton the capture writer and the warm job share.
"""

from iotlib._lazy import submodules
from iotlib.hub.partitions import PartitionPosition
from iotlib.hub.readback import positions, read

__all__ = ["PartitionPosition", "positions", "read"]

__getattr__ = submodules(__name__, ["aio", "consumer", "monitor", "partitions", "readback", "starting"])
