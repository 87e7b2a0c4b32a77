"""Stream processing on polars: windows, event time, lateness, the building-average job.

Modules, one concept each:

- :mod:`~iotlib.processing.windows` — window kinds (tumbling, hopping, sliding, session).
- :mod:`~iotlib.processing.aggregates` — what is computed per window.
- :mod:`~iotlib.processing.batch` — batch windows of every kind, no policies.
- :mod:`~iotlib.processing.policy` — event time, watermarks, lateness: **the semantics**.
- :mod:`~iotlib.processing.dedupe` — duplicate detection within a horizon.
- :mod:`~iotlib.processing.watermarks` — per-device, per-partition and fleet watermarks.
- :mod:`~iotlib.processing.event_time` — the policies applied to a whole frame, vectorised.
- :mod:`~iotlib.processing.incremental` — the same, one micro-batch at a time (no I/O).
- :mod:`~iotlib.processing.arrival` — merging per-partition batches into arrival order.
- :mod:`~iotlib.processing.reference` — joining events with the device registry.
- :mod:`~iotlib.processing.building` — the original ASA job: building averages.
- :mod:`~iotlib.processing.results` — what every job returns (windows, side outputs, counts).
- :mod:`~iotlib.processing.plots` — figures for notebook 05 (imports matplotlib).
"""

from iotlib.processing.aggregates import Agg, stats
from iotlib.processing.arrival import ArrivalMerger
from iotlib.processing.batch import windowed
from iotlib.processing.building import BuildingAverager, building_averages
from iotlib.processing.event_time import windows_with_policy
from iotlib.processing.incremental import WindowEngine
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.reference import Registry, enrich
from iotlib.processing.results import Counts, EventTimeResult, WindowOutput
from iotlib.processing.windows import Hopping, Session, Sliding, Tumbling

__all__ = [
    "Agg",
    "ArrivalMerger",
    "BuildingAverager",
    "Counts",
    "EventTimePolicy",
    "EventTimeResult",
    "Hopping",
    "Registry",
    "Session",
    "Sliding",
    "Tumbling",
    "WindowEngine",
    "WindowOutput",
    "building_averages",
    "enrich",
    "stats",
    "windowed",
    "windows_with_policy",
]
