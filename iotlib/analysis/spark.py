"""The batch questions on Apache Spark, for when the data outgrows one machine.

Ninety days of Fabrikam is about 13 billion events: Spark's job (Databricks, Synapse, Fabric).
The same Parquet cache reads in place — ``spark.read.parquet(folder)``, with ``date=…``
partition discovery — and so would the same folder in ADLS Gen2
(``spark.read.parquet("abfss://<container>@<account>.dfs.core.windows.net/<folder>")``) or the
Capture files themselves (``spark.read.format("avro").load(...)``, built into Databricks). Each
function here is one of :mod:`iotlib.analysis`'s batch questions written with Spark's DataFrame
API, returning the same polars frame as its polars original (tests hold them equal).

:func:`session` makes a local SparkSession fit for a laptop or a test: ``local[cores]``, bound
to 127.0.0.1, no web UI, few shuffle partitions, UTC. Spark needs a Java 17+ runtime.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from iotlib.analysis.localday import SLOT_SECONDS, _by_local_day
from iotlib.analysis.source import Events, events, time_range, warn_if_empty
from iotlib.errors import ConfigurationError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def session(*, cores: int = 2, shuffle_partitions: int = 4, memory: str = "2g", **conf: str) -> SparkSession:
    """A local SparkSession: ``local[cores]`` on 127.0.0.1, UI off, ``shuffle_partitions``, session time zone UTC.

    ``conf`` adds Spark settings (dots as underscores are not translated: pass ``{"spark.x": "y"}``
    as ``**{"spark.x": "y"}``). Stop it with ``.stop()`` when done.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - pyspark ships with the dev extras
        raise ConfigurationError("Spark needs pyspark (pip install pyspark) and a Java 17+ runtime") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this interpreter
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no "hostname resolves to a loopback address" warning
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    quiet = _quiet_log_config()
    builder = (
        SparkSession.builder.master(f"local[{int(cores)}]")
        .appName("iotlib-analysis")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(int(shuffle_partitions)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={quiet.as_uri()}")
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _quiet_log_config() -> Path:
    """A log4j2 configuration that lets only errors through (Spark's start-up chatter stays out of notebooks)."""
    path = Path(tempfile.gettempdir()) / "iotlib-spark-log4j2.properties"
    if not path.exists():
        path.write_text(
            "rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\n"
            "appender.console.type = Console\nappender.console.name = console\nappender.console.target = SYSTEM_ERR\n"
            "appender.console.layout.type = PatternLayout\nappender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n\n"
        )
    return path


def read_events(spark: SparkSession, ev: Events) -> DataFrame:
    """The events of ``ev`` as a Spark DataFrame: its Parquet folder read in place (hive partitions discovered)."""
    if ev.parquet is None:
        raise ConfigurationError("Spark reads the events from Parquet: pass a simulated day or a Parquet cache folder")
    root = ev.parquet.removesuffix(os.path.join("**", "*.parquet")).rstrip("/\\")
    return spark.read.parquet(root)


def _registry(spark: SparkSession, ev: Events, *columns: str) -> DataFrame:
    table = ev.registry.select(pl.col(ev.device).cast(pl.Int64) if ev.keyed else ev.device, *columns)
    return spark.createDataFrame(table.to_arrow())  # Spark has no unsigned integers: device_key as bigint


def _to_polars(frame: DataFrame) -> pl.DataFrame:
    out = pl.from_arrow(frame.toArrow())
    assert isinstance(out, pl.DataFrame)  # an Arrow table becomes a frame
    return out


def _floor(column: str, seconds: int) -> Any:
    """The UTC time ``column`` falls in, in steps of ``seconds`` from the epoch."""
    from pyspark.sql import functions as F

    return F.timestamp_seconds(F.floor(F.unix_seconds(column) / seconds) * seconds)


def _where(frame: DataFrame, column: str, lo: datetime | None, hi: datetime | None) -> DataFrame:
    from pyspark.sql import functions as F

    if lo is not None:
        frame = frame.where(F.col(column) >= F.lit(lo))
    if hi is not None:
        frame = frame.where(F.col(column) < F.lit(hi))
    return frame


def events_per_device(
    spark: SparkSession,
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pl.DataFrame:
    """:func:`iotlib.analysis.counts.events_per_device` on Spark."""
    from iotlib.analysis.counts import _named

    ev = events(source, registry)
    lo, hi = time_range(start, end)
    counts = _where(read_events(spark, ev), "enqueued_time", lo, hi).groupBy(ev.device).count()
    found = _to_polars(counts.withColumnRenamed("count", "events"))
    return warn_if_empty(_named(ev, found), ev, lo, hi)


def local_day_stats(
    spark: SparkSession,
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pl.DataFrame:
    """:func:`iotlib.analysis.localday.local_day_stats` on Spark: the slots summed by Spark, local days as there."""
    from pyspark.sql import functions as F

    from iotlib.analysis.source import check_time_zones

    ev = events(source, registry)
    check_time_zones(ev)
    lo, hi = time_range(start, end)
    frame = _where(read_events(spark, ev), "time_observed", lo, hi).where(F.col("temperature").isNotNull())
    slots = (
        frame.join(_registry(spark, ev, "building_id"), on=ev.device)
        .groupBy("building_id", _floor("time_observed", SLOT_SECONDS).alias("slot"))
        .agg(
            F.count(F.lit(1)).alias("readings"),
            F.sum("temperature").alias("total"),
            F.min("temperature").alias("min_temperature"),
            F.max("temperature").alias("max_temperature"),
            F.min("time_observed").alias("first_observed"),
            F.max("time_observed").alias("last_observed"),
        )
    )
    found = _to_polars(slots).with_columns(
        pl.col("building_id").cast(pl.Int32),
        pl.col("readings").cast(pl.Int64),
        pl.col("slot", "first_observed", "last_observed").dt.convert_time_zone("UTC"),
    )
    return warn_if_empty(_by_local_day(found, ev), ev, lo, hi)


def device_hours(
    spark: SparkSession,
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str,
    end: datetime | str,
) -> pl.DataFrame:
    """:func:`iotlib.analysis.completeness.device_hours` on Spark."""
    from pyspark.sql import functions as F

    from iotlib.analysis.completeness import _named

    ev = events(source, registry)
    lo, hi = time_range(start, end)
    found = (
        _where(read_events(spark, ev), "time_observed", lo, hi)
        .groupBy(ev.device, _floor("time_observed", 3600).alias("hour"))
        .agg(
            F.count(F.lit(1)).alias("readings"),
            F.min("temperature").alias("min_temperature"),
            F.max("temperature").alias("max_temperature"),
        )
    )
    return warn_if_empty(_named(ev, _to_polars(found).with_columns(pl.col("readings").cast(pl.Int64))), ev, lo, hi)


def building_hours(
    spark: SparkSession,
    source: Any,
    registry: pl.DataFrame | None = None,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pl.DataFrame:
    """:func:`iotlib.analysis.heatmap.building_hours` on Spark."""
    from pyspark.sql import functions as F

    ev = events(source, registry)
    lo, hi = time_range(start, end)
    found = (
        _where(read_events(spark, ev), "time_observed", lo, hi)
        .where(F.col("temperature").isNotNull())
        .join(_registry(spark, ev, "building_id"), on=ev.device)
        .groupBy("building_id", _floor("time_observed", 3600).alias("hour"))
        .agg(F.count(F.lit(1)).alias("readings"), F.avg("temperature").alias("mean_temperature"))
    )
    result = (
        _to_polars(found)
        .with_columns(
            pl.col("building_id").cast(pl.Int32),
            pl.col("readings").cast(pl.Int64),
            pl.col("hour").dt.convert_time_zone("UTC"),
        )
        .sort("building_id", "hour")
    )
    return warn_if_empty(result, ev, lo, hi)
