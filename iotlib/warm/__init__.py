"""The warm path, streaming: Event Hubs → building windows → a SQLite warm store, with alerts.

The original journey's Stream Analytics job, as an event processor you can run and read:

>>> from iotlib.warm import StreamProcessor, WarmStore
>>> with StreamProcessor.from_settings(warm_store="warm.sqlite") as processor:   # doctest: +SKIP
...     report = processor.run(until_idle=10, progress=True)
>>> print(WarmStore("warm.sqlite").current_temperature(25))                      # doctest: +SKIP
building 25: 21.40 °C, the average of 19 readings in the window ending 2025-01-06 12:00:05 UTC

Each partition of the hub is processed on its own timeline (its own watermark and partial
windows), so several processors can share a consumer group; the warm store merges the partitions'
partial windows into building windows once every partition's watermark has passed them.

Modules, one concept each:

- :mod:`~iotlib.warm.incoming` — received events as a decoded frame (hub position, arrival, body);
- :mod:`~iotlib.warm.deadletters` — what could not be decoded, kept with its reason and bytes;
- :mod:`~iotlib.warm.partition` — one partition's job without I/O: dead letters | registry → windows → device alerts;
- :mod:`~iotlib.warm.job` — the partitions a process holds, received frames in, commits out;
- :mod:`~iotlib.warm.merge` — partial windows of every partition merged into building windows;
- :mod:`~iotlib.warm.alerts` — the rule engine (too hot, jumps, silent devices);
- :mod:`~iotlib.warm.commit` — what passes between the job and the store (steps, stored state);
- :mod:`~iotlib.warm.store`, :mod:`~iotlib.warm.tables` — the SQLite warm store (newer-wins upsert,
  history, side outputs, the partitions' state as a changelog);
- :mod:`~iotlib.warm.startup` — where a run starts: positions, checkpoints, dead runs' partitions;
- :mod:`~iotlib.warm.clock` — the hub's clock, estimated safely for heartbeats;
- :mod:`~iotlib.warm.options` — the processor's options;
- :mod:`~iotlib.warm.aio` / :mod:`~iotlib.warm.processor` — the processor, async and sync;
- :mod:`~iotlib.warm.run` — one run of it: the engine the consumer skeleton drives;
- :mod:`~iotlib.warm.alerthub` — alerts as events on another hub;
- :mod:`~iotlib.warm.equivalence` — the warm store against the batch job on the same events;
- :mod:`~iotlib.warm.live` — the processor beside a live ingestion, with its lag (notebooks, benchmarks);
- :mod:`~iotlib.warm.report`, :mod:`~iotlib.warm.progress` — what a run did, as it goes;
- :mod:`~iotlib.warm.plots` — figures for notebook 06 (imports matplotlib).

``iotlib process`` is the command line.
"""

from iotlib.warm.alerts import BuildingTooHot, DeviceSilent, TemperatureJump, default_rules
from iotlib.warm.equivalence import Comparison, batch_view, compare
from iotlib.warm.job import WarmJob
from iotlib.warm.options import ProcessorOptions
from iotlib.warm.processor import StreamProcessor
from iotlib.warm.report import ProcessReport
from iotlib.warm.store import BuildingTemperature, WarmStore

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
