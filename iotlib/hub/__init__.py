"""Looking into an event hub: where each partition stands, what it holds, who is behind.

- :mod:`~iotlib.hub.readback` — partition positions (the cheap management call) and reading
  back exactly what a run added;
- :mod:`~iotlib.hub.monitor` — each consumer group's lag, from the hub and the checkpoint blobs.
"""

from iotlib._lazy import submodules
from iotlib.hub.readback import PartitionPosition, positions, positions_async, read, read_async

__all__ = ["PartitionPosition", "positions", "positions_async", "read", "read_async"]

__getattr__ = submodules(__name__, ["readback", "monitor"])
