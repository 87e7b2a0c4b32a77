"""What the processor received: one row per event, decoded, with where and when it arrived.

A partition's batch of ``EventData`` becomes a polars frame in one pass:
where the event sits in the hub (``partition_id``, ``sequence_number``,
``offset``), when it arrived (``enqueued_time``, the hub's clock), and its
body decoded by :func:`iotlib.fleet.events.decode_bodies` (``device_id``,
``time_observed``, ``temperature``). A body that does not decode, or an event
whose ``EventType`` property names another kind of event, keeps its raw bytes
in ``body`` and the reason in ``error``: it becomes a dead letter
(:mod:`iotlib.warm.deadletters`), never a silent loss.

:func:`from_hub_frame` gives the same shape for events read back with
:func:`iotlib.hub.read`, which is how a batch run sees exactly what the
stream saw.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from iotlib.fleet import events as _events

UTC_US = pl.Datetime("us", "UTC")

#: Columns of a received frame, in order.
SCHEMA: dict[str, pl.DataType] = {
    "partition_id": pl.String(),
    "sequence_number": pl.Int64(),
    "offset": pl.String(),
    "enqueued_time": UTC_US,
    "device_id": pl.String(),
    "time_observed": UTC_US,
    "temperature": pl.Float64(),
    "error": pl.String(),
    "body": pl.Binary(),
}
#: The columns the window job reads (the rest is bookkeeping).
EVENT_COLUMNS = ["device_id", "time_observed", "temperature", "enqueued_time", "partition_id", "sequence_number"]

_SEQUENCE = b"x-opt-sequence-number"
_OFFSET = b"x-opt-offset"
_ENQUEUED = b"x-opt-enqueued-time"
_EVENT_TYPE = (b"EventType", "EventType")


def _body_bytes(event: Any) -> tuple[bytes, str | None]:
    """The body as bytes, and a reason when it is not a data body (sequence or value bodies)."""
    body = event.body
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), None
    kind = str(getattr(event.body_type, "value", event.body_type))
    if kind == "data":
        return b"".join(body), None
    return repr(body).encode("utf-8", "replace"), f"an AMQP {kind} body, not JSON data"


def _event_type(properties: dict | None) -> str | None:
    if not properties:
        return None
    for key in _EVENT_TYPE:
        value = properties.get(key)
        if value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def from_events(partition_id: str, events: Sequence[Any]) -> pl.DataFrame:
    """One partition's received ``EventData`` batch as a received frame (see :data:`SCHEMA`)."""
    return from_batches({str(partition_id): events})


def from_batches(batches: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
    """Several partitions' received ``EventData`` as one received frame (each partition's rows in order).

    One decode for all of them: a processor that receives small batches from many partitions pays
    the frame's fixed costs once per step, not once per batch.
    """
    pids, seqs, offsets, enqueued, bodies, problems = [], [], [], [], [], []
    for partition_id, events in batches.items():
        pids.extend([str(partition_id)] * len(events))
        for e in events:
            ann = e.raw_amqp_message.annotations or {}
            seqs.append(ann.get(_SEQUENCE))
            off = ann.get(_OFFSET)
            offsets.append(off.decode() if isinstance(off, bytes) else (None if off is None else str(off)))
            ms = ann.get(_ENQUEUED)
            enqueued.append(ms if isinstance(ms, int) else (None if ms is None else int(ms.timestamp() * 1000)))
            body, problem = _body_bytes(e)
            kind = _event_type(e.properties)
            if problem is None and kind is not None and kind != _events.EVENT_TYPE:
                problem = f"EventType {kind!r} is not {_events.EVENT_TYPE}"
            bodies.append(body)
            problems.append(problem)
    frame = pl.DataFrame(
        {
            "partition_id": pl.Series(pids, dtype=pl.String),
            "sequence_number": pl.Series(seqs, dtype=pl.Int64),
            "offset": pl.Series(offsets, dtype=pl.String),
            "enqueued_time": pl.Series(enqueued, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")).cast(UTC_US),
            "body": pl.Series(bodies, dtype=pl.Binary),
        }
    )
    return _decoded(frame, pl.Series("problem", problems, dtype=pl.String))


def from_hub_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Events read back with :func:`iotlib.hub.read` as a received frame, in arrival order."""
    problems = []
    for props in frame["properties"].to_list():
        kind = _event_type(json.loads(props)) if props else None
        problems.append(
            None if kind in (None, _events.EVENT_TYPE) else f"EventType {kind!r} is not {_events.EVENT_TYPE}"
        )
    base = frame.select("partition_id", "sequence_number", "offset", pl.col("enqueued_time").cast(UTC_US), "body")
    out = _decoded(base, pl.Series("problem", problems, dtype=pl.String))
    return out.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True)


def _decoded(frame: pl.DataFrame, problems: pl.Series) -> pl.DataFrame:
    decoded = _events.decode_bodies(frame["body"])
    error = pl.coalesce(pl.lit(problems), pl.col("error")).alias("error")
    out = pl.concat([frame, decoded], how="horizontal").with_columns(error)
    bad = pl.col("error").is_not_null()
    return out.select(
        "partition_id",
        "sequence_number",
        "offset",
        "enqueued_time",
        pl.when(bad).then(None).otherwise(pl.col("device_id")).alias("device_id"),
        pl.when(bad).then(None).otherwise(pl.col("time_observed")).alias("time_observed"),
        pl.when(bad).then(None).otherwise(pl.col("temperature")).alias("temperature"),
        "error",
        pl.when(bad).then(pl.col("body")).otherwise(None).alias("body"),  # raw bytes kept for dead letters only
    )


def empty() -> pl.DataFrame:
    """A received frame with no rows."""
    return pl.DataFrame(schema=SCHEMA)


def from_simulation(
    events: pl.DataFrame, *, partition_count: int = 8, delay_us: int = 20_000, send_malformed: bool = True
) -> pl.DataFrame:
    """What a hub would deliver for simulated events, without a hub: for tests and benchmarks.

    Bodies as :func:`iotlib.fleet.events.encode_frame` writes them (malformed ones
    too, unless ``send_malformed`` is false), partitions as Event Hubs hashes
    the device id, per-partition sequence numbers in send order, and
    ``enqueued_time = sent_at + delay_us`` (made strictly increasing per partition,
    as a hub's clock is).
    """
    from iotlib.ingest.partitioning import partition_index

    frame = events.sort("sent_at", maintain_order=True)
    if not send_malformed and "fault_malformed" in frame.columns:
        frame = frame.filter(pl.col("fault_malformed").is_null())
    devices = frame["device_id"].cast(pl.String)
    index = {d: str(partition_index(d, partition_count)) for d in devices.unique().to_list()}
    base = pl.DataFrame(
        {
            "partition_id": devices.replace_strict(index, return_dtype=pl.String),
            "arrival": frame["sent_at"].dt.epoch("us") + delay_us,
            "body": _events.encode_frame(frame).cast(pl.Binary),
        }
    )
    base = base.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("partition_id").alias("sequence_number"),
        # A partition's clock never goes back nor repeats: nudge ties forward by a microsecond.
        (pl.col("arrival").cum_max().over("partition_id") + pl.int_range(pl.len()).over("partition_id")).alias(
            "arrival"
        ),
    )
    base = base.select(
        "partition_id",
        "sequence_number",
        (pl.col("sequence_number") * 160).cast(pl.String).alias("offset"),
        pl.col("arrival").cast(UTC_US).alias("enqueued_time"),
        "body",
    )
    out = _decoded(base, pl.Series("problem", [None] * base.height, dtype=pl.String))
    return out.sort("enqueued_time", "sequence_number", "partition_id", maintain_order=True)
