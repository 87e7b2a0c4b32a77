"""Analysis over the cold store: ad-hoc questions and batch analytics, out of core.

Each question is a function over a polars LazyFrame (or the Parquet cache) that returns a
polars DataFrame, with a DuckDB SQL twin beside it; the batch questions also run on Apache
Spark. Modules load on first use.

- :mod:`~iotlib.analysis.day` — a simulated day as a real cold store (Capture files, Parquet
  cache, ground truth), built without a hub.
"""

from iotlib._lazy import submodules

__getattr__ = submodules(__name__, ["day"])
