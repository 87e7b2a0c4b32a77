"""IoT Journey workbench: Fabrikam's telemetry back end in Python, locally or on Azure.

Modules, one concept each (the README has the full map):

- the scenario: ``scenario`` (device registry), ``simulate`` and ``faults`` (seeded
  telemetry), ``events`` (the ``UpdateTemperatureEvent`` schema and JSON), ``delivery``
  (the hub's view of simulated events);
- where to connect: ``connections`` (``iotlib.settings()``), ``stack`` (the local stack),
  ``emulator`` (local Event Hubs), ``partitioning`` (partition keys);
- the back end: ``ingest``, ``hub`` (positions, reading back), ``captureformat`` and
  ``capture`` (Event Hubs Capture to Blob), ``coldstore`` (loading it), ``processing``
  (windows and event time), ``stream`` (warm store and alerts), ``monitor`` (lag);
- around them: ``plots``, ``scale``, ``demo``, ``eventloop``, ``errors``.
"""

from iotlib.connections import Settings, settings
from iotlib.errors import IotlibError

__version__ = "0.1.0"
__all__ = ["IotlibError", "Settings", "settings", "__version__"]
