"""IoT Journey workbench: Fabrikam's telemetry back end in Python, locally or on Azure.

Modules, one concept each: ``scenario`` (device registry), ``simulate``
(events), ``events`` (schema and JSON), ``connections`` (connection strings, ``iotlib.settings()``),
``stack`` (the local stack), ``emulator`` (local Event Hubs), ``ingest``,
``capture`` (Event Hubs Capture to Blob), ``coldstore`` (loading captured data),
``processing`` and ``stream`` (windows, warm store, alerts).
"""

from iotlib.errors import IotlibError
from iotlib.connections import Settings, settings

__version__ = "0.1.0"
__all__ = ["IotlibError", "Settings", "settings", "__version__"]
