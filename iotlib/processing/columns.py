"""The events frame this package reads, and its normalised internal form.

Input contract (shared with ``iotlib.fleet.simulate`` and the streaming job):

- ``device_id``: String, Categorical or Enum (kept categorical at full scale).
- ``time_observed``: Datetime, the event time from the device clock (UTC).
- ``temperature``: Float32/Float64 (or any other value column an aggregate names).
- ``enqueued_time`` (optional): Datetime, arrival at the hub. Without it,
  ``sent_at`` (when the device transmitted) stands in as the arrival time.
- ``partition_id`` (optional): String or Int; ``sequence_number`` (optional): Int64.

**Arrival order** is ``(arrival time, sequence_number, partition_id as text)``,
ties kept in input order. Internally times become Int64 microseconds since the
epoch (columns ``__e`` for the chosen window time, ``__a`` for arrival), the
partition a string ``__p`` ("" when absent) and the sequence number ``__seq``.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from iotlib.errors import ValidationError

DEVICE = "device_id"
TIME_OBSERVED = "time_observed"
ENQUEUED = "enqueued_time"
SENT = "sent_at"
PARTITION = "partition_id"
SEQUENCE = "sequence_number"
ARRIVAL = "arrival"  # the virtual time column: enqueued_time, else sent_at

# Internal columns (double underscore: never in user data).
E = "__e"
A = "__a"
P = "__p"
SEQ = "__seq"
ORDER = "__order"
REASON = "reason"

UTC_US = pl.Datetime("us", "UTC")


def arrival_column(schema: pl.Schema | dict) -> str:
    """The column that carries arrival time: ``enqueued_time``, else ``sent_at``."""
    if ENQUEUED in schema:
        return ENQUEUED
    if SENT in schema:
        return SENT
    raise ValidationError(
        f"events need an arrival time: an '{ENQUEUED}' column (arrival at the hub) "
        f"or a '{SENT}' column (device send time, used as its proxy)"
    )


def time_source(schema: pl.Schema | dict, time: str) -> str:
    """The physical column behind the window time ``time`` ("arrival" resolves)."""
    return arrival_column(schema) if time == ARRIVAL else time


def _require(schema: pl.Schema | dict, column: str, kinds: tuple[type, ...], what: str) -> None:
    if column not in schema:
        raise ValidationError(f"events have no '{column}' column ({what}); columns: {list(schema)}")
    dtype = schema[column]
    if not isinstance(dtype, kinds) and not any(dtype == k for k in kinds):
        raise ValidationError(f"events column '{column}' is {dtype}, expected {what}")


def check(events: pl.DataFrame | pl.LazyFrame, *, time: str, values: Sequence[str], need_arrival: bool) -> pl.Schema:
    """Validate the schema against the contract; returns it."""
    schema = events.collect_schema() if isinstance(events, pl.LazyFrame) else events.schema
    _require(schema, DEVICE, (pl.String, pl.Categorical, pl.Enum), "device ids as String, Categorical or Enum")
    src = time_source(schema, time)
    _require(schema, src, (pl.Datetime,), "a Datetime")
    if need_arrival:
        _require(schema, arrival_column(schema), (pl.Datetime,), "a Datetime")
    for v in values:
        if v in (src, TIME_OBSERVED):  # time columns are aggregated (max, last), not checked as numbers
            continue
        _require(
            schema,
            v,
            (pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64),
            "numbers",
        )
    if SEQUENCE in schema and not schema[SEQUENCE].is_integer():
        raise ValidationError(f"events column '{SEQUENCE}' is {schema[SEQUENCE]}, expected an integer")
    return schema


def epoch_us(column: str) -> pl.Expr:
    """Microseconds since the epoch of a Datetime column (naive values are taken as UTC)."""
    return pl.col(column).dt.epoch("us")


class Normaliser:
    """Builds the normalising expressions once for a schema, then applies them per frame.

    Reading ``DataFrame.schema`` costs time when a column is an Enum with many
    categories, so the incremental engine checks the schema once and reuses this.
    """

    def __init__(self, schema: pl.Schema | dict, *, time: str, values: Sequence[str], need_arrival: bool) -> None:
        src = time_source(schema, time)
        arrival = arrival_column(schema) if need_arrival else src
        required = list(dict.fromkeys([DEVICE, src, arrival, *[v for v in values if v in schema]]))
        reason = pl.lit(None, dtype=pl.String)
        for col in reversed(required):
            bad = pl.col(col).is_null()
            if schema[col].is_float():
                bad = bad | pl.col(col).is_nan()
            reason = pl.when(bad).then(pl.lit(f"missing {col}")).otherwise(reason)
        part = pl.col(PARTITION).cast(pl.String).fill_null("") if PARTITION in schema else pl.lit("")
        seq = pl.col(SEQUENCE).cast(pl.Int64) if SEQUENCE in schema else pl.lit(None, dtype=pl.Int64)
        self.columns = list(schema)
        self.source = src
        self._exprs = [
            epoch_us(src).alias(E),
            epoch_us(arrival).alias(A),
            part.alias(P),
            seq.alias(SEQ),
            reason.alias(REASON),
        ]

    def __call__(self, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """``(valid, invalid)``; ``invalid`` is ``None`` when every row is valid (the usual case)."""
        df = events.with_columns(self._exprs)
        reason = df[REASON]
        if reason.null_count() == df.height:  # null counts are metadata: no pass over the data
            return df.drop(REASON), None
        bad = reason.is_not_null()
        return df.filter(~bad).drop(REASON), df.filter(bad).select([*self.columns, REASON])


def normalise(
    events: pl.DataFrame,
    *,
    time: str,
    values: Sequence[str],
    need_arrival: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add the internal columns and split off invalid rows.

    Returns ``(valid, invalid)``; ``invalid`` keeps the original columns plus
    ``reason`` naming the first missing field (``"missing <column>"``).
    """
    schema = check(events, time=time, values=values, need_arrival=need_arrival)
    valid, invalid = Normaliser(schema, time=time, values=values, need_arrival=need_arrival)(events)
    if invalid is None:
        invalid = events.clear().with_columns(pl.lit(None, dtype=pl.String).alias(REASON))
    return valid, invalid


def arrival_sorted(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in arrival order with a 0-based ``__order`` index."""
    ordered = df.sort([A, SEQ, P], nulls_last=True, maintain_order=True)
    return ordered.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER))


def public(df: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Only ``columns`` (the caller's own), dropping internal ones."""
    return df.select([c for c in columns if c in df.columns])
