"""The original warm-path job: average temperature per building over 5-second windows.

The IoT Journey's Stream Analytics query, restated::

    SELECT r.BuildingId, AVG(i.Temperature), MAX(i.TimeObserved), COUNT(*)
    FROM input i TIMESTAMP BY TimeObserved
    JOIN reference r ON i.DeviceId = r.DeviceId
    GROUP BY r.BuildingId, TumblingWindow(second, 5)

:func:`building_averages` returns ``building_id, window_start, window_end,
avg_temperature, last_observed_time, events`` — windows ``(start, end]``
aligned to the epoch, as ASA's are — plus the events of devices the registry
does not know (``unmatched``; the original's inner join dropped them silently)
and invalid rows. Without a policy it counts every event in the window of its
event time (the complete answer); with an
:class:`~iotlib.processing.policy.EventTimePolicy` it answers what a stream
job with those tolerances emits (late events, watermarks, ``closed_at``).
:class:`BuildingAverager` is the same job one micro-batch at a time, for the
streaming job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl

from iotlib.durations import Duration
from iotlib.errors import ConfigurationError
from iotlib.frames import Frame, as_polars
from iotlib.processing import columns as C
from iotlib.processing.aggregates import Agg
from iotlib.processing.batch import WINDOW_END, WINDOW_START, as_datetime
from iotlib.processing.event_time import windows_with_policy
from iotlib.processing.incremental import WindowEngine
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.reference import Registry
from iotlib.processing.results import Counts, WindowOutput
from iotlib.processing.windows import END, Window, fixed

BUILDING = "building_id"
TEMPERATURE = "temperature"
BUILDING_AGGS = (
    Agg("avg_temperature", "mean", TEMPERATURE),
    Agg("last_observed_time", "max", C.TIME_OBSERVED),
    Agg("events", "count", C.TIME_OBSERVED),
)
BUILDING_COLUMNS = [BUILDING, WINDOW_START, WINDOW_END, "avg_temperature", "last_observed_time", "events"]


def building_averages(
    events: Frame,
    registry: Frame | Registry,
    *,
    window: Window | Duration = "5s",
    policy: EventTimePolicy | None = None,
    time: str = C.TIME_OBSERVED,
    heartbeats: Sequence[datetime] | pl.Series | None = None,
) -> WindowOutput:
    """Per building and window: mean temperature, newest ``time_observed``, event count.

    ``window``: ``"5s"`` (tumbling, the original) or any Tumbling/Hopping spec.
    ``policy=None``: every valid event counts, however late (fast path, for
    analysis at full scale); with a policy: the stream's view, see
    :mod:`iotlib.processing.policy` (the result then also has ``devices``,
    ``partitions`` and ``watermarks``). ``time``: ``"time_observed"`` or ``"arrival"``.
    ``heartbeats`` (with a policy): the arrival times at which a stream job also
    evaluated its watermark, see :func:`~iotlib.processing.event_time.windows_with_policy`.
    """
    reg = Registry.of(registry)
    events = as_polars(events, name="events")
    if heartbeats is not None and policy is None:
        raise ConfigurationError("heartbeats only mean something with an event-time policy (policy=...)")
    if policy is not None:
        matched, unmatched = reg.enrich(events, [BUILDING])
        res = windows_with_policy(
            matched, window, by=[BUILDING], aggs=BUILDING_AGGS, policy=policy, time=time, heartbeats=heartbeats
        )
        res.windows = res.windows.select(BUILDING_COLUMNS)
        res.unmatched = unmatched
        res.counts = res.counts + Counts(unmatched=unmatched.height)
        return res
    return _complete(events, reg, fixed(window), time)


def _complete(events: pl.DataFrame, reg: Registry, w, time: str) -> WindowOutput:
    """Every valid event in the window(s) of its time: one hash group-by on a packed key."""
    C.check(events, time=time, values=[TEMPERATURE], need_arrival=time == C.ARRIVAL)
    src = C.time_source(events.schema, time)
    # Null counts are metadata; only NaN needs a pass over the data.
    nulls = any(events[c].null_count() for c in (C.DEVICE, src, TEMPERATURE))
    nans = events.schema[TEMPERATURE].is_float() and bool(events[TEMPERATURE].is_nan().any())
    invalid = events.clear().with_columns(pl.lit(None, dtype=pl.String).alias(C.REASON))
    if nulls or nans:
        valid, invalid = C.normalise(events, time=time, values=[TEMPERATURE], need_arrival=time == C.ARRIVAL)
        valid = valid.drop(C.E, C.A, C.P, C.SEQ)
    else:
        valid = events
    matched, unmatched = reg.enrich(valid, [BUILDING])
    lf = matched.lazy().with_columns(C.epoch_us(src).alias(C.E))
    lf = w.assign(lf, C.E)
    # Pack (window, building) into one Int64 so the group-by hashes a single column,
    # and sorting by it orders by window end, then building.
    span = matched.select(
        pl.col(BUILDING).min().alias("b0"),
        pl.col(BUILDING).max().alias("b1"),
        C.epoch_us(src).min().alias("t0"),
        C.epoch_us(src).max().alias("t1"),
    ).row(0, named=True)
    if span["b0"] is None:  # nothing matched
        out = pl.DataFrame(schema={c: t for c, t in _schema(events, src).items()})
    else:
        b0, nb = span["b0"], span["b1"] - span["b0"] + 1
        e0 = w.first_end_of(span["t0"])
        n_windows = (span["t1"] + w.size_us - e0) // w.hop_us + 2
        if n_windows * nb < 2**62:
            key = ((pl.col(END) - e0) // w.hop_us) * nb + (pl.col(BUILDING).cast(pl.Int64) - b0)
            # The streaming engine aggregates (and sorts) this shape faster than the in-memory one.
            grouped = (
                lf.group_by(key.alias("__key")).agg(_exprs()).sort("__key").collect(engine="streaming").lazy()
            ).with_columns(
                ((pl.col("__key") % nb) + b0).cast(matched.schema[BUILDING]).alias(BUILDING),
                ((pl.col("__key") // nb) * w.hop_us + e0).alias(END),
            )
        else:
            grouped = lf.group_by(END, BUILDING).agg(_exprs()).sort(END, BUILDING)
        out = grouped.select(
            BUILDING,
            as_datetime(pl.col(END) - w.size_us).alias(WINDOW_START),
            as_datetime(pl.col(END)).alias(WINDOW_END),
            "avg_temperature",
            "last_observed_time",
            "events",
        ).collect()
    counts = Counts(
        events=matched.height,
        invalid=invalid.height,
        unmatched=unmatched.height,
        accepted=matched.height,
        windows=out.height,
    )
    return WindowOutput(windows=out, invalid=invalid, unmatched=unmatched, counts=counts)


def _exprs() -> list[pl.Expr]:
    return [
        pl.col(TEMPERATURE).cast(pl.Float64).mean().alias("avg_temperature"),
        pl.col(C.TIME_OBSERVED).max().alias("last_observed_time"),
        pl.len().cast(pl.Int64).alias("events"),
    ]


def _schema(events: pl.DataFrame, src: str) -> dict[str, pl.DataType]:
    return {
        BUILDING: pl.Int32(),
        WINDOW_START: C.UTC_US,
        WINDOW_END: C.UTC_US,
        "avg_temperature": pl.Float64(),
        "last_observed_time": events.schema[C.TIME_OBSERVED],
        "events": pl.Int64(),
    }


class BuildingAverager:
    """The building-average job one micro-batch at a time (no I/O).

    Wraps a :class:`~iotlib.processing.incremental.WindowEngine`: each batch is
    joined with the registry (unknown devices → ``unmatched``), then windowed
    under ``policy``. Outputs concatenated over a run equal
    ``building_averages(all_events, registry, window=..., policy=...)``.
    """

    def __init__(
        self,
        registry: pl.DataFrame | Registry,
        *,
        window: Window | Duration = "5s",
        policy: EventTimePolicy | None = None,
        time: str = C.TIME_OBSERVED,
    ) -> None:
        self.registry = Registry.of(registry)
        self.engine = WindowEngine(window, by=[BUILDING], aggs=BUILDING_AGGS, policy=policy, time=time)
        self._unmatched_empty: pl.DataFrame | None = None
        self._unmatched_total = Counts()

    @property
    def totals(self) -> Counts:
        """Counts over everything fed so far."""
        return self.engine.totals + self._unmatched_total

    def feed(self, events: pl.DataFrame) -> WindowOutput:
        """One micro-batch in arrival order → closed windows, side outputs (incl. ``unmatched``)."""
        matched, unmatched = self.registry.enrich(events, [BUILDING])
        out = self.engine.feed(matched)
        self._unmatched_empty = unmatched.clear()
        return self._shape(out, unmatched)

    def advance(self, arrival_time: datetime) -> WindowOutput:
        """Heartbeat: move the arrival clock without events (see ``WindowEngine.advance``)."""
        return self._shape(self.engine.advance(arrival_time), self._unmatched_empty)

    def flush(self) -> WindowOutput:
        """End of stream: emit the windows still open."""
        return self._shape(self.engine.flush(), self._unmatched_empty)

    def _shape(self, out: WindowOutput, unmatched: pl.DataFrame | None) -> WindowOutput:
        out.windows = out.windows.select(BUILDING_COLUMNS) if out.windows.width else out.windows
        if unmatched is not None:
            out.unmatched = unmatched
            extra = Counts(unmatched=unmatched.height)
            out.counts = out.counts + extra
            self._unmatched_total = self._unmatched_total + extra
        return out
