"""Turning a frame of events into what goes on the wire: bodies, partitions and send times.

No I/O here: the clients in :mod:`iotlib.ingest.client` and :mod:`iotlib.ingest.aio`
call these functions and do the sending.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import polars as pl

from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet import events as _events
from iotlib.frames import Frame, as_polars, is_pandas
from iotlib.ingest.partitioning import partition_index
from iotlib.ingest.report import Failure

MODES = ("replay", "live")
REQUIRED = ("device_id", "time_observed", "temperature")


@dataclass
class Outgoing:
    """Events bound for one partition, in send order."""

    partition_id: str
    bodies: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    malformed: list[bool] = field(default_factory=list)
    observed: list[datetime | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.bodies)

    def extend(self, other: Outgoing) -> None:
        self.bodies += other.bodies
        self.keys += other.keys
        self.malformed += other.malformed
        self.observed += other.observed

    def by_key(self) -> dict[str, Outgoing]:
        """The events of each partition key (device), each in send order."""
        out: dict[str, Outgoing] = {}
        for body, key, malformed, observed in zip(self.bodies, self.keys, self.malformed, self.observed):
            own = out.get(key)
            if own is None:
                own = out[key] = Outgoing(self.partition_id)
            own.bodies.append(body)
            own.keys.append(key)
            own.malformed.append(malformed)
            own.observed.append(observed)
        return out


def as_frame(events: Frame | Iterable[_events.UpdateTemperatureEvent]) -> pl.DataFrame:
    """The events as a frame sorted by ``sent_at`` (taken from ``time_observed`` when absent)."""
    if isinstance(events, pl.DataFrame) or is_pandas(events):
        events = as_polars(events, name="events")
    else:
        rows = list(cast(Iterable[object], events))
        bad = [type(r).__name__ for r in rows if not isinstance(r, _events.UpdateTemperatureEvent)]
        if bad:
            raise ValidationError(
                f"events must be a polars or pandas DataFrame or UpdateTemperatureEvent objects, got {sorted(set(bad))}"
            )
        readings = cast(list[_events.UpdateTemperatureEvent], rows)
        events = pl.DataFrame(
            {
                "device_id": [r.device_id for r in readings],
                "time_observed": [r.time_observed.astimezone(UTC) for r in readings],
                "temperature": [float(r.temperature) for r in readings],
            },
            schema={"device_id": pl.String, "time_observed": pl.Datetime("us", "UTC"), "temperature": pl.Float64},
        )
    missing = [c for c in REQUIRED if c not in events.columns]
    if missing:
        raise ValidationError(f"cannot send events: missing column(s) {', '.join(missing)}")
    if "sent_at" not in events.columns:
        events = events.with_columns(sent_at=pl.col("time_observed"))
    if not isinstance(events.schema["sent_at"], pl.Datetime):
        raise ValidationError(f"sent_at must be a Datetime column, got {events.schema['sent_at']}")
    return events.sort("sent_at", maintain_order=True)


def chunks(frame: pl.DataFrame, size: int, *, first: int | None = None) -> Iterator[pl.DataFrame]:
    """Replay: consecutive slices of ``size`` rows; with ``first``, they start at ``first`` rows and
    double up to ``size``, so the first sends go out while the next, larger slices are prepared."""
    step = max(1, min(first, size)) if first else size
    offset = 0
    while offset < frame.height:
        yield frame.slice(offset, step)
        offset += step
        step = min(size, step * 2)


def frames(events: Iterable[Any]) -> tuple[Iterator[pl.DataFrame], int | None]:
    """The input as frames in send order, and the event count when known up front.

    Accepts a DataFrame (polars or pandas), a :class:`iotlib.fleet.simulate.Simulation`
    (streamed chunk by chunk), an iterable of DataFrames, or an iterable of ``UpdateTemperatureEvent``.
    """
    if isinstance(events, pl.DataFrame) or is_pandas(events):
        frame = as_frame(events)
        return iter([frame]), frame.height
    from iotlib.fleet.simulate import Simulation

    if isinstance(events, Simulation):
        return (as_frame(f) for f in events), events.expected_events
    items = iter(events)
    first = next(items, None)
    if first is None:
        return iter([]), 0
    if isinstance(first, pl.DataFrame):
        return (as_frame(f) for f in (first, *items)), None
    frame = as_frame([first, *items])
    return iter([frame]), frame.height


def ticks(
    frame: pl.DataFrame, *, speed: float, tick: float, origin: datetime | None = None
) -> Iterator[tuple[float, pl.DataFrame]]:
    """Live: (seconds after ``origin`` at which to send, events due then), ``tick`` seconds apart.

    ``origin`` is the ``sent_at`` that maps to the start of the run (default: the frame's first).
    """
    if speed <= 0:
        raise ConfigurationError(f"speed must be positive, got {speed}")
    if frame.height == 0:
        return
    first = frame["sent_at"][0] if origin is None else origin
    due = frame.select(
        due=((pl.col("sent_at") - first).dt.total_microseconds() / 1e6 / speed / tick).floor().cast(pl.Int64)
    )["due"]
    framed = frame.with_columns(_tick=due)
    for (index,), group in framed.group_by("_tick", maintain_order=True):
        yield float(index) * tick, group.drop("_tick")


def encode(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with its JSON ``_body`` and validator ``_reason`` (null when valid), vectorised once."""
    bodies = _events.encode_frame(frame, malformed=True)
    return frame.with_columns(_body=bodies, _reason=_events.validate_bodies(bodies))


def route(
    chunk: pl.DataFrame, partition_ids: list[str], *, send_malformed: bool
) -> tuple[dict[str, Outgoing], list[Failure]]:
    """Group an :func:`encode`-d chunk by the partition each device's key maps to.

    Malformed bodies (the simulator's ``fault_malformed`` rows, or anything the
    validator rejects) are held back with their reason, unless ``send_malformed``.
    """
    out: dict[str, Outgoing] = {}
    held: list[Failure] = []
    count = len(partition_ids)
    columns = (chunk["_body"], chunk["device_id"].cast(pl.String), chunk["_reason"], chunk["time_observed"])
    for body, device, reason, when in zip(*columns):
        pid = partition_ids[partition_index(device, count)]
        if reason is not None and not send_malformed:
            held.append(Failure(device, when, f"malformed payload held back: {reason}", pid))
            continue
        group = out.get(pid)
        if group is None:
            group = out[pid] = Outgoing(pid)
        group.bodies.append(body.encode())
        group.keys.append(device)
        group.malformed.append(reason is not None)
        group.observed.append(when)
    return out, held
