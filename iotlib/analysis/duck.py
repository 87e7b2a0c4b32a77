"""The DuckDB side of every question: SQL over the same events, returning polars frames.

:func:`query` opens an in-memory DuckDB connection with two relations — ``events`` (the Parquet
cache read in place with ``read_parquet(..., hive_partitioning = true)``, or a polars frame)
and ``registry`` (with ``device_key``) — runs one of the questions' SQL texts with named
parameters (``$start``, ``$end`` …) and returns a polars DataFrame. Times come back in UTC.
``{device}`` in a text is the device column of :attr:`Events.device`.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from iotlib.analysis.source import Events
from iotlib.errors import ConfigurationError


def connect(ev: Events, *, threads: int | None = None) -> Any:
    """A DuckDB connection with views ``events`` and ``registry`` over ``ev``."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb ships with the dev extras
        raise ConfigurationError("the SQL twins need DuckDB: pip install duckdb") from None
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's own progress bar is a Jupyter widget per slow query: noise in a notebook's output.
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.register("registry", ev.registry.to_arrow())
    if ev.parquet is not None:
        glob = ev.parquet.replace("'", "''")
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
    else:
        con.register("events", ev.frame.collect().to_arrow())
    return con


def query(ev: Events, sql: str, **params: Any) -> pl.DataFrame:
    """Run ``sql`` (``{device}`` filled in) with named ``params`` over ``ev``; the result as polars."""
    con = connect(ev)
    try:
        text = sql.replace("{device}", ev.device)
        used = {k: v for k, v in params.items() if f"${k}" in text}
        return con.sql(text, params=used).pl()
    finally:
        con.close()
