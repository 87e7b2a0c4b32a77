"""The warm path, streaming: Event Hubs → building windows → a SQLite warm store, with alerts.

The original journey's Stream Analytics job, as an event processor you can run and read:

>>> from iotlib.stream import StreamProcessor, WarmStore
>>> with StreamProcessor.from_settings(warm_store="warm.sqlite") as processor:   # doctest: +SKIP
...     report = processor.run(until_idle=10, progress=True)
>>> WarmStore("warm.sqlite").current_temperature(25)                             # doctest: +SKIP
BuildingTemperature(building_id=25, temperature=21.4, ...)

Modules, one concept each:

- :mod:`~iotlib.stream.received` — received events as a decoded frame (hub position, arrival, body);
- :mod:`~iotlib.stream.deadletters` — what could not be decoded, kept with its reason and bytes;
- :mod:`~iotlib.stream.job` — the job without I/O: merger → dead letters | registry → windows → alerts;
- :mod:`~iotlib.stream.alerts` — the rule engine (too hot, jumps, silent devices);
- :mod:`~iotlib.stream.store` — the SQLite warm store (newer-wins upsert, history, side outputs, state);
- :mod:`~iotlib.stream.clock` — the hub's clock, estimated safely for heartbeats;
- :mod:`~iotlib.stream.options` — the processor's options;
- :mod:`~iotlib.stream.aio` / :mod:`~iotlib.stream.processor` — the processor, async and sync;
- :mod:`~iotlib.stream.alerthub` — alerts as events on another hub;
- :mod:`~iotlib.stream.equivalence` — the warm store against the batch job on the same events;
- :mod:`~iotlib.stream.live` — the processor beside a live ingestion, with its lag (notebooks, benchmarks);
- :mod:`~iotlib.stream.report`, :mod:`~iotlib.stream.progress` — what a run did, as it goes;
- :mod:`~iotlib.stream.plots` — figures for notebook 06 (imports matplotlib).

``iotlib process`` is the command line.
"""

from iotlib.stream.alerts import BuildingTooHot, DeviceSilent, TemperatureJump, default_rules
from iotlib.stream.equivalence import Comparison, batch_view, compare
from iotlib.stream.job import WarmJob
from iotlib.stream.options import ProcessorOptions
from iotlib.stream.processor import StreamProcessor
from iotlib.stream.report import ProcessReport
from iotlib.stream.store import BuildingTemperature, WarmStore

__all__ = [
    "BuildingTemperature",
    "BuildingTooHot",
    "Comparison",
    "DeviceSilent",
    "ProcessReport",
    "ProcessorOptions",
    "StreamProcessor",
    "TemperatureJump",
    "WarmJob",
    "WarmStore",
    "batch_view",
    "compare",
    "default_rules",
]
