"""IoT Journey workbench: Fabrikam's telemetry back end in Python, locally or on Azure.

The package reads as the pipeline, one stage a subpackage (the README has the full map):

- ``fleet`` — the scenario: device registry, seeded simulation, faults, the event schema,
  the hub's view of simulated events, and how big a run is (``scale``);
- ``devices`` — the device identity registry and each device's publisher token (the emulator
  enforces them: a device sends only as itself, and a revoked one not at all);
- ``ingest`` — devices into Event Hubs (and which partition a key lands in);
- ``hub`` — looking into a hub: partition positions, reading back, consumer-group lag;
- ``capture`` — Event Hubs Capture to Blob storage, in Azure's Avro format;
- ``coldstore`` — Capture files into polars/pandas, pruned, deduplicated, cached as Parquet;
- ``processing`` — Stream Analytics-style windows, event time, the building-average job;
- ``warm`` — the warm path: the streaming job, its SQLite warm store and alerts;
- ``analysis`` — questions over the cold store, out of core, with DuckDB and Spark twins;
- ``local`` — the local stack (Azurite and iotlib's Event Hubs ``emulator``);
- ``cli`` — the ``iotlib`` command line and ``iotlib demo``.

At the root: ``connections`` (``iotlib.settings()``, the two connection strings, parsed once),
``preflight`` (is Event Hubs or Blob storage usable as configured? one line per mistake),
``clients`` (``from_connection_string``/``from_settings``, written once for every client),
``frames`` (polars or pandas in), ``durations`` (one time grammar), ``sas`` (the shared access
signature format) and ``errors`` (one exception hierarchy).
Subpackages load on first use: ``import iotlib; iotlib.fleet.simulate.generate(...)``.
"""

from iotlib._lazy import submodules
from iotlib.connections import Settings, settings
from iotlib.errors import IotlibError

__version__ = "0.1.0"
__all__ = ["IotlibError", "Settings", "settings", "__version__"]

__getattr__ = submodules(
    __name__,
    [
        "fleet",
        "devices",
        "ingest",
        "hub",
        "capture",
        "coldstore",
        "processing",
        "warm",
        "analysis",
        "local",
        "cli",
        "connections",
        "preflight",
        "clients",
        "frames",
        "durations",
        "errors",
        "sas",
    ],
)
