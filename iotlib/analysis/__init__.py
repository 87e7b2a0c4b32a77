"""Analysis over the cold store: ad-hoc questions and batch analytics, out of core.

Each question is a function over a simulated day, a Parquet cache or a polars frame of
cold-store events (:mod:`~iotlib.analysis.source`) that returns a polars DataFrame without
materialising the events (polars lazy/streaming), with a DuckDB SQL twin beside it
(``<question>_sql``, the text in the module's ``SQL``); the batch questions also run on Apache
Spark (:mod:`~iotlib.analysis.spark`). Modules load on first use.

- :mod:`~iotlib.analysis.day` — a simulated day as a real cold store (Capture files, Parquet
  cache, ground truth), built without a hub;
- :mod:`~iotlib.analysis.source` — what the questions run on, time ranges, bad-input checks;
- :mod:`~iotlib.analysis.window` — building (and room) temperature over a window;
- :mod:`~iotlib.analysis.spikes` — rolling z-score spikes and the devices behind them;
- :mod:`~iotlib.analysis.localday` — the building's local day, across DST;
- :mod:`~iotlib.analysis.completeness` — expected vs received per device-hour, silent devices;
- :mod:`~iotlib.analysis.stuck`, :mod:`~iotlib.analysis.skew`, :mod:`~iotlib.analysis.duplicates` —
  frozen sensors, wrong device clocks, readings sent twice;
- :mod:`~iotlib.analysis.counts` — the original Hive query: events per device;
- :mod:`~iotlib.analysis.heatmap` — building × hour;
- :mod:`~iotlib.analysis.scoring` — detectors against ground truth (precision, recall);
- :mod:`~iotlib.analysis.duck` — the DuckDB plumbing; :mod:`~iotlib.analysis.spark` — Spark;
- :mod:`~iotlib.analysis.plots` — figures (imports matplotlib).
"""

from iotlib._lazy import submodules

__getattr__ = submodules(
    __name__,
    [
        "day",
        "source",
        "window",
        "spikes",
        "localday",
        "completeness",
        "stuck",
        "skew",
        "duplicates",
        "counts",
        "heatmap",
        "scoring",
        "duck",
        "spark",
        "plots",
    ],
)
