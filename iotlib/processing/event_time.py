"""Event-time policies applied to a whole frame at once, vectorised.

:func:`windows_with_policy` answers "what would a stream job with these
policies have emitted for these events?" with polars window expressions and
a few numpy array operations — the fleet watermark as running maxima over
ticks, device watermarks as cumulative maxima over arrival order — and no
Python loop over events. The semantics are written down in
:mod:`iotlib.processing.policy`; :class:`~iotlib.processing.incremental.WindowEngine`
implements them micro-batch by micro-batch, and the two agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from iotlib.durations import Duration
from iotlib.errors import ConfigurationError
from iotlib.frames import Frame, as_polars
from iotlib.processing import columns as C
from iotlib.processing.aggregates import Agg, aggregate, columns_of
from iotlib.processing.batch import WINDOW_END, WINDOW_START, as_datetime, default_aggs
from iotlib.processing.dedupe import duplicate_reason
from iotlib.processing.policy import CLOCK_AHEAD, LATE, EventTimePolicy
from iotlib.processing.results import Counts, EventTimeResult
from iotlib.processing.watermarks import MAX_A, MAX_E, NONE, TICK, TickWatermarks, fleet_watermarks
from iotlib.processing.windows import END, Hopping, Window, fixed

CLOSED_AT = "closed_at"
ADJUSTED_TIME = "adjusted_time"
FRONTIER = "frontier"

# Per-row outcome columns.
DUP = "__dup"
AHEAD = "__ahead"
FATE = "__fate"  # accepted | late | clock_ahead (null for duplicates)
EFFECTIVE = "__t"  # the time that places the row in windows
REORDERED = "__reordered"
F_ROW = "__frontier"


def identity_columns(events_columns: Sequence[str], aggs: Sequence[Agg], time_column: str) -> list[str]:
    """The columns that identify an event for duplicate detection: device, event time, values."""
    observed = C.TIME_OBSERVED if C.TIME_OBSERVED in events_columns else time_column
    values = [c for c in columns_of(aggs) if c not in (observed, time_column) and c in events_columns]
    return [C.DEVICE, observed, *values]


def windows_with_policy(
    events: Frame,
    window: Window | Duration = "5s",
    *,
    by: Sequence[str] = (),
    aggs: Sequence[Agg] | None = None,
    policy: EventTimePolicy | None = None,
    time: str = C.TIME_OBSERVED,
    heartbeats: Sequence[datetime] | pl.Series | None = None,
) -> EventTimeResult:
    """What a stream job with ``policy`` emits for ``events`` (tumbling or hopping windows).

    Columns of ``windows``: ``by…, window_start, window_end``, the aggregates and
    ``closed_at`` (arrival time of the tick whose watermark closed the window;
    null if still open at the end of the input). Side outputs ``late``,
    ``adjusted``, ``dropped``, ``duplicates``, ``invalid`` keep the caller's
    columns plus ``reason``; ``watermarks``, ``devices`` and ``partitions``
    describe the watermarks. See :mod:`iotlib.processing.policy`.

    ``heartbeats``: arrival times at which the stream job also evaluated its
    watermark without an event (``WindowEngine.advance``), e.g. the
    ``tick_start`` column of a streaming run's watermarks — event ticks among
    them change nothing. With them the result equals that run's, ``closed_at``
    included.
    """
    events = as_polars(events, name="events")
    w = fixed(window)
    policy = policy or EventTimePolicy()
    aggs = tuple(aggs) if aggs is not None else default_aggs()
    by = list(by)
    valid, invalid = C.normalise(events, time=time, values=columns_of(aggs), need_arrival=True)
    src = C.time_source(events.schema, time)
    public = list(events.columns)
    df = C.arrival_sorted(valid)
    ident = identity_columns(public, aggs, src)
    beats = _heartbeat_ticks(heartbeats, policy.tick_us)
    df, marks = classify(df, w, policy, ident=ident, event_time=time != C.ARRIVAL, heartbeats=beats)
    return assemble(df, invalid, marks, w, policy, by=by, aggs=aggs, src=src, public=public)


def _heartbeat_ticks(heartbeats: Sequence[datetime] | pl.Series | None, tick_us: int) -> np.ndarray | None:
    if heartbeats is None:
        return None
    times = heartbeats if isinstance(heartbeats, pl.Series) else pl.Series(list(heartbeats), dtype=C.UTC_US)
    if not isinstance(times.dtype, pl.Datetime):
        raise ConfigurationError(f"heartbeats must be datetimes, got {times.dtype}")
    us = times.drop_nulls().dt.epoch("us").to_numpy()
    return np.unique(us // tick_us)


def classify(
    df: pl.DataFrame,
    w: Hopping,
    policy: EventTimePolicy,
    *,
    ident: Sequence[str],
    event_time: bool,
    heartbeats: np.ndarray | None = None,
) -> tuple[pl.DataFrame, TickWatermarks]:
    """Add each row's fate, effective time and frontier; compute the tick watermarks.

    ``heartbeats``: extra ticks at which the watermark was evaluated without an event.
    """
    p = policy
    df = df.with_columns(
        duplicate_reason(ident, p.dedupe_horizon_us).alias(DUP), (pl.col(C.A) // p.tick_us).alias(TICK)
    )
    fresh = pl.col(DUP).is_null()
    ahead = (pl.col(C.E) - pl.col(C.A) > p.clock_ahead_us) if event_time else pl.lit(False)
    df = df.with_columns((fresh & ahead).alias(AHEAD))
    eligible = fresh & ~pl.col(AHEAD)

    per_tick = (
        df.filter(eligible).group_by(C.P, TICK).agg(pl.col(C.E).max().alias(MAX_E), pl.col(C.A).max().alias(MAX_A))
    )
    ticks = df[TICK].unique().sort().to_numpy()
    if heartbeats is not None and len(heartbeats):
        ticks = np.union1d(ticks, heartbeats.astype(ticks.dtype if len(ticks) else np.int64))
    marks = fleet_watermarks(ticks, per_tick, p)
    frontiers = pl.DataFrame({TICK: marks.ticks, F_ROW: marks.frontier})
    df = df.join(frontiers, on=TICK, how="left", maintain_order="left")

    # Newest earlier eligible event time of the same device (NONE if none).
    prior = pl.when(eligible).then(pl.col(C.E)).otherwise(NONE).cum_max().shift(1, fill_value=NONE).over(C.DEVICE)
    late = w.first_end(pl.col(C.E)) < pl.col(F_ROW)
    fate = (
        pl.when(~fresh)
        .then(None)
        .when(pl.col(AHEAD))
        .then(pl.lit(CLOCK_AHEAD))
        .when(late)
        .then(pl.lit(LATE))
        .otherwise(pl.lit("accepted"))
    )
    df = df.with_columns(fate.alias(FATE), prior.alias("__prior"))
    adjusted = (
        pl.when(pl.col(FATE) == CLOCK_AHEAD)
        .then(pl.max_horizontal(pl.col(C.A), pl.col(F_ROW)))
        .otherwise(pl.col(F_ROW))
    )
    effective = (
        pl.when(pl.col(FATE) == "accepted")
        .then(pl.col(C.E))
        .when(pl.col(FATE).is_in([LATE, CLOCK_AHEAD]) & (p.late_policy == "adjust"))
        .then(adjusted)
        .otherwise(None)
    )
    df = df.with_columns(
        effective.alias(EFFECTIVE),
        ((pl.col(FATE) == "accepted") & (pl.col(C.E) < pl.col("__prior"))).alias(REORDERED),
    ).drop("__prior")
    return df, marks


def assemble(
    df: pl.DataFrame,
    invalid: pl.DataFrame,
    marks: TickWatermarks,
    w: Hopping,
    policy: EventTimePolicy,
    *,
    by: list[str],
    aggs: Sequence[Agg],
    src: str,
    public: list[str],
) -> EventTimeResult:
    """Windows, side outputs, counts and state from classified rows."""
    handled = pl.col(FATE).is_in([LATE, CLOCK_AHEAD])
    dups = df.filter(pl.col(DUP).is_not_null()).select(*public, pl.col(DUP).alias(C.REASON))
    routed = df.filter(handled)
    late, adjusted, dropped = route_late(routed, policy.late_policy, public)

    rows = df.filter(pl.col(EFFECTIVE).is_not_null())
    windows = window_rows(rows, w, by=by, aggs=aggs, src=src)
    windows = with_closed_at(windows, marks, policy.tick_us)

    n_fate = df.group_by(FATE).len()
    fates = dict(zip(n_fate[FATE].to_list(), n_fate["len"].to_list()))
    n_late, n_ahead = fates.get(LATE, 0), fates.get(CLOCK_AHEAD, 0)
    counts = Counts(
        events=df.height,
        invalid=invalid.height,
        duplicates=dups.height,
        accepted=fates.get("accepted", 0),
        reordered=int(df[REORDERED].sum() or 0),
        late=n_late,
        clock_ahead=n_ahead,
        adjusted=adjusted.height,
        dropped=dropped.height,
        side_output=late.height,
        windows=windows.height,
    )
    return EventTimeResult(
        windows=windows,
        late=late,
        adjusted=adjusted,
        dropped=dropped,
        duplicates=dups,
        invalid=invalid,
        watermarks=marks.frame(policy.tick_us),
        counts=counts,
        devices=device_state(df, policy),
        partitions=partition_state(df, policy),
    )


def window_rows(rows: pl.DataFrame, w: Hopping, *, by: list[str], aggs: Sequence[Agg], src: str) -> pl.DataFrame:
    """Aggregate rows (in arrival order, effective time in ``__t``) into their windows."""
    assigned = w.assign(rows, EFFECTIVE)
    out = aggregate(assigned, [*by, END], aggs, time=src, order=C.ORDER, exact=True)
    return out.sort([END, *by]).select(
        *by,
        as_datetime(pl.col(END) - w.size_us).alias(WINDOW_START),
        as_datetime(pl.col(END)).alias(WINDOW_END),
        *[a.name for a in aggs],
        pl.col(END),
    )


def route_late(routed: pl.DataFrame, late_policy: str, public: list[str]) -> tuple[pl.DataFrame, ...]:
    """``(late, adjusted, dropped)`` side outputs for rows the late policy handles."""
    reason = pl.col(FATE).alias(C.REASON)
    with_frontier = routed.select(*public, reason, as_datetime(pl.col(F_ROW)).alias(FRONTIER))
    with_adjusted = routed.select(*public, reason, as_datetime(pl.col(EFFECTIVE)).alias(ADJUSTED_TIME))
    if late_policy == "side_output":
        return with_frontier, with_adjusted.clear(), with_frontier.clear()
    if late_policy == "drop":
        return with_frontier.clear(), with_adjusted.clear(), with_frontier
    return with_frontier.clear(), with_adjusted, with_frontier.clear()


def with_closed_at(windows: pl.DataFrame, marks: TickWatermarks, tick_us: int) -> pl.DataFrame:
    """``closed_at``: start of the first evaluated tick whose frontier passed the window end."""
    j = np.searchsorted(marks.frontier, windows[END].to_numpy(), side="right")
    ticks = np.append(marks.ticks.astype(np.int64), 0)  # j == len(ticks): still open
    closed = pl.Series(ticks[j] * tick_us, dtype=pl.Int64)
    known = pl.Series(j < len(marks.ticks), dtype=pl.Boolean)
    return windows.with_columns(pl.when(known).then(closed).otherwise(None).cast(C.UTC_US).alias(CLOSED_AT)).drop(END)


def device_state(df: pl.DataFrame, policy: EventTimePolicy) -> pl.DataFrame:
    """Per device, over its non-duplicate events: counts, newest times, watermark, clock skew."""
    fresh = df.filter(pl.col(DUP).is_null())
    eligible = ~pl.col(AHEAD)
    out = fresh.group_by(C.DEVICE).agg(
        pl.len().cast(pl.Int64).alias("events"),
        pl.col(C.A).max().alias("last_arrival"),
        pl.col(C.E).filter(eligible).max().alias("newest_event_time"),
        pl.col(AHEAD).sum().cast(pl.Int64).alias("clock_ahead_events"),
        (pl.col(C.E) - pl.col(C.A)).max().alias("max_skew_us"),
    )
    return finish_device_state(out, policy)


def finish_device_state(out: pl.DataFrame, policy: EventTimePolicy) -> pl.DataFrame:
    return (
        out.with_columns(
            pl.col(C.DEVICE).cast(pl.String),
            as_datetime(pl.col("last_arrival")),
            as_datetime(pl.col("newest_event_time")),
            as_datetime(pl.col("newest_event_time") - policy.out_of_order_us).alias("watermark"),
            pl.duration(microseconds=pl.col("max_skew_us")).alias("max_skew"),
        )
        .drop("max_skew_us")
        .select(C.DEVICE, "events", "last_arrival", "newest_event_time", "watermark", "clock_ahead_events", "max_skew")
        .sort(C.DEVICE)
    )


def partition_state(df: pl.DataFrame, policy: EventTimePolicy) -> pl.DataFrame:
    """Per partition: non-duplicate events, newest eligible event time and arrival, watermark."""
    fresh = df.filter(pl.col(DUP).is_null())
    eligible = ~pl.col(AHEAD)
    out = fresh.group_by(C.P).agg(
        pl.len().cast(pl.Int64).alias("events"),
        pl.col(C.A).filter(eligible).max().alias("last_arrival"),
        pl.col(C.E).filter(eligible).max().alias("newest_event_time"),
    )
    return finish_partition_state(out, policy)


def finish_partition_state(out: pl.DataFrame, policy: EventTimePolicy) -> pl.DataFrame:
    return (
        out.with_columns(
            as_datetime(pl.col("last_arrival")),
            as_datetime(pl.col("newest_event_time")),
            as_datetime(pl.col("newest_event_time") - policy.out_of_order_us).alias("watermark"),
        )
        .rename({C.P: C.PARTITION})
        .select(C.PARTITION, "events", "last_arrival", "newest_event_time", "watermark")
        .sort(C.PARTITION)
    )
