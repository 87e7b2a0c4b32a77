"""Batch windows of every kind over a polars frame, without event-time policies.

:func:`windowed` is the plain analytical question — "what were the windows
over these events?" — with every valid event counted in the window(s) of its
time, however late it arrived. (For a stream's view of the same data, with
watermarks and late events, see :mod:`iotlib.processing.event_time`.)

Fixed windows (tumbling, hopping) assign each event to its window ends by
integer arithmetic and aggregate with a hash ``group_by`` (no sort needed);
sliding windows use ``DataFrame.rolling`` over the entry and exit instants;
sessions are found with vectorised gap detection. No Python loop touches an
event.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from iotlib.durations import Duration
from iotlib.errors import ConfigurationError
from iotlib.frames import Frame, as_polars
from iotlib.processing import columns as C
from iotlib.processing.aggregates import Agg, aggregate, columns_of, expressions, stats
from iotlib.processing.results import Counts, WindowOutput
from iotlib.processing.windows import END, Hopping, Session, Sliding, Window, parse

WINDOW_START = "window_start"
WINDOW_END = "window_end"


def as_datetime(us: pl.Expr) -> pl.Expr:
    return us.cast(C.UTC_US)


def default_aggs() -> tuple[Agg, ...]:
    return stats("temperature", "mean", "min", "max", "count", "last")


def prepare(events: pl.DataFrame, *, time: str, aggs: Sequence[Agg]) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """Valid rows in arrival order (input order without an arrival column), invalid rows, time column."""
    has_arrival = C.ENQUEUED in events.columns or C.SENT in events.columns
    values = columns_of(aggs)
    valid, invalid = C.normalise(events, time=time, values=values, need_arrival=has_arrival or time == C.ARRIVAL)
    return C.arrival_sorted(valid), invalid, C.time_source(events.schema, time)


def windowed(
    events: Frame,
    window: Window | Duration,
    *,
    by: Sequence[str] = (),
    aggs: Sequence[Agg] | None = None,
    time: str = C.TIME_OBSERVED,
) -> WindowOutput:
    """Aggregate ``events`` over ``window`` per group ``by``.

    ``window``: :class:`~iotlib.processing.windows.Tumbling`, ``Hopping``,
    ``Sliding``, ``Session``, or a duration string for a tumbling window.
    ``time``: the column that places events in windows — ``"time_observed"``
    (event time, ASA's ``TIMESTAMP BY``) or ``"arrival"`` (``enqueued_time``,
    else ``sent_at``). Result columns: ``by…, window_start, window_end`` and one
    per aggregate (default: temperature mean/min/max/last and ``events``).
    Rows with a missing device, time or value go to ``invalid``.
    """
    events = as_polars(events, name="events")
    w = parse(window)
    aggs = tuple(aggs) if aggs is not None else default_aggs()
    by = list(by)
    missing = [c for c in by if c not in events.columns]
    if missing:
        raise ConfigurationError(f"group-by columns {missing} are not in the events (columns: {events.columns})")
    valid, invalid, src = prepare(events, time=time, aggs=aggs)
    if isinstance(w, Hopping):
        out = _fixed(valid, w, by, aggs, src)
    elif isinstance(w, Sliding):
        out = _sliding(valid, w, by, aggs, src)
    else:
        out = _session(valid, w, by, aggs, src)
    out = out.sort([WINDOW_END, *by, WINDOW_START]).select(by + [WINDOW_START, WINDOW_END] + [a.name for a in aggs])
    counts = Counts(events=valid.height, invalid=invalid.height, accepted=valid.height, windows=out.height)
    return WindowOutput(windows=out, invalid=invalid, counts=counts)


def _fixed(valid: pl.DataFrame, w: Hopping, by: list[str], aggs: Sequence[Agg], src: str) -> pl.DataFrame:
    rows = w.assign(valid, C.E)
    out = aggregate(rows, [*by, END], aggs, time=src, order=C.ORDER)
    return out.with_columns(
        as_datetime(pl.col(END) - w.size_us).alias(WINDOW_START), as_datetime(pl.col(END)).alias(WINDOW_END)
    )


def _sliding(valid: pl.DataFrame, w: Sliding, by: list[str], aggs: Sequence[Agg], src: str) -> pl.DataFrame:
    keep = list(dict.fromkeys([*by, C.E, C.ORDER, src, *columns_of(aggs)]))
    real = valid.select(keep)
    # Exit instants carry no values: the aggregates skip them and counts ignore them.
    blank = [c for c in keep if c not in by and c != C.E]
    exits = real.with_columns(pl.col(C.E) + w.size_us, *[pl.lit(None, dtype=real.schema[c]).alias(c) for c in blank])
    points = pl.concat([real, exits]).sort([*by, C.E], maintain_order=True)
    out = (
        points.rolling(C.E, period=f"{w.size_us}i", closed="right", group_by=by or None)
        .agg(*expressions(aggs, time=src, order=C.ORDER), pl.col(src).count().alias("__n"))
        .unique([*by, C.E], keep="first", maintain_order=True)  # equal instants, equal windows
        .filter(pl.col("__n") > 0)
    )
    return out.with_columns(
        as_datetime(pl.col(C.E) - w.size_us).alias(WINDOW_START), as_datetime(pl.col(C.E)).alias(WINDOW_END)
    )


def _session(valid: pl.DataFrame, w: Session, by: list[str], aggs: Sequence[Agg], src: str) -> pl.DataFrame:
    rows = valid.sort([*by, C.E, C.ORDER])
    grp = by or None
    gap = pl.col(C.E) - pl.col(C.E).shift(1)
    if grp:
        gap = gap.over(grp)
    new = gap.is_null() | (gap > w.timeout_us)
    rows = rows.with_columns(new.cum_sum().alias("__sid"))  # sorted by group, so global numbering works
    rows = rows.with_columns(pl.col(C.E).first().over("__sid").alias("__s0"))
    d = w.max_duration_us
    if d is not None:
        first_check = -((-(pl.col("__s0") + d)) // d) * d  # first multiple of D at least D after the start
        rows = rows.with_columns(first_check.alias("__c1")).with_columns(
            pl.when(pl.col(C.E) <= pl.col("__c1"))
            .then(0)
            .otherwise(-((pl.col("__c1") - pl.col(C.E)) // d))
            .alias("__sub")
        )
    else:
        rows = rows.with_columns(pl.lit(0).alias("__sub"), pl.lit(None, dtype=pl.Int64).alias("__c1"))
    extra = (Agg("__s0", "min", "__s0"), Agg("__c1", "min", "__c1"), Agg("__last", "max", C.E))
    out = aggregate(rows, [*by, "__sid", "__sub"], (*aggs, *extra), time=src, order=C.ORDER)
    start = (
        pl.when(pl.col("__sub") == 0).then(pl.col("__s0")).otherwise(pl.col("__c1") + (pl.col("__sub") - 1) * (d or 0))
    )
    end = pl.col("__last") + w.timeout_us
    if d is not None:
        end = pl.min_horizontal(end, pl.col("__c1") + pl.col("__sub") * d)
    return out.with_columns(as_datetime(start).alias(WINDOW_START), as_datetime(end).alias(WINDOW_END))
