"""Dead letters: events the processor received but could not use, kept with the reason and raw body.

The original job's input stage dropped what it could not parse. Here every
such event — a body that is not valid JSON, lacks a field, has a field of the
wrong type or an unreadable timestamp, is not a data body, or is another kind
of event — is written to the warm store's ``dead_letters`` table with where it
sat in the hub, when it arrived, why it was refused and its bytes as
received, in the same transaction that moves the consumer past it.
"""

from __future__ import annotations

import polars as pl

#: Columns of the dead-letter table.
COLUMNS = ["partition_id", "sequence_number", "offset", "enqueued_time", "reason", "body"]


def split(received: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(valid, dead_letters)`` from a received frame (:mod:`iotlib.warm.incoming`)."""
    errors = received["error"]
    if errors.null_count() == received.height:  # metadata: no pass over the data
        return received, received.clear().select(COLUMNS[:4], pl.col("error").alias("reason"), "body")
    bad = errors.is_not_null()
    dead = received.filter(bad).select(*COLUMNS[:4], pl.col("error").alias("reason"), "body")
    return received.filter(~bad), dead
