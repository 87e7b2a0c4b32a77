"""The incremental window engine: event-time windows one micro-batch at a time, no I/O.

Feed it decoded events as they arrive; it returns the windows that closed and
every side output, and keeps state you can inspect (watermarks, devices,
partitions, open windows). It implements :mod:`iotlib.processing.policy`
exactly as :func:`~iotlib.processing.event_time.windows_with_policy` does for a
whole frame: fed the same events in arrival order, cut into any micro-batches,
the concatenated outputs equal the batch result (including ``closed_at``,
counts and the final device/partition state).

    engine = WindowEngine("5s", by=["building_id"], aggs=..., policy=EventTimePolicy())
    for batch in batches:            # polars frames in arrival order
        out = engine.feed(batch)     # WindowOutput: windows + side outputs + counts
        store(out.windows)
    store(engine.flush().windows)    # end of stream: emit windows still open

Per batch, work that needs no order (validation, window assignment,
aggregation) is vectorised; the sequential part — duplicate memory, device
watermarks, the fleet watermark at tick boundaries — is a tight loop over the
batch's events. The engine pickles, so a streaming job can snapshot it with
its checkpoint. ``advance(now)`` lets a live job move the arrival clock when
no event comes (a heartbeat), so quiet streams still close windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from iotlib.errors import ProcessingError
from iotlib.processing import columns as C
from iotlib.processing.aggregates import Agg, aggregate, columns_of, expressions
from iotlib.processing.dedupe import DuplicateFilter
from iotlib.processing.durations import Duration
from iotlib.processing.event_time import (
    AHEAD,
    CLOSED_AT,
    DUP,
    EFFECTIVE,
    F_ROW,
    FATE,
    REORDERED,
    finish_device_state,
    finish_partition_state,
    identity_columns,
    route_late,
)
from iotlib.processing.policy import CLOCK_AHEAD, DUPLICATE_EVENT, DUPLICATE_SEQUENCE, LATE, EventTimePolicy
from iotlib.processing.results import Counts, WindowOutput
from iotlib.processing.watermarks import NONE, FleetClock
from iotlib.processing.windowing import WINDOW_END, WINDOW_START, as_datetime, default_aggs
from iotlib.processing.windows import END, Window, fixed

_ACCEPTED = "accepted"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class WindowEngine:
    """Incremental tumbling/hopping windows with event-time policies.

    ``window``: a :class:`~iotlib.processing.windows.Tumbling`/``Hopping`` or a
    duration (tumbling). ``by``: grouping columns present in every batch.
    ``aggs``: what to compute (default temperature mean/min/max/last, events).
    ``policy``: :class:`~iotlib.processing.policy.EventTimePolicy`.
    ``time``: ``"time_observed"`` (event time) or ``"arrival"``.
    """

    def __init__(
        self,
        window: Window | Duration = "5s",
        *,
        by: Sequence[str] = (),
        aggs: Sequence[Agg] | None = None,
        policy: EventTimePolicy | None = None,
        time: str = C.TIME_OBSERVED,
    ) -> None:
        self.window = fixed(window)
        self.by = list(by)
        self.aggs = tuple(aggs) if aggs is not None else default_aggs()
        self.policy = policy or EventTimePolicy()
        self.time = time
        self.totals = Counts()
        self._clock = FleetClock(self.policy)
        self._dedupe = DuplicateFilter(self.policy.dedupe_horizon_us)
        # device -> [events, last arrival, newest eligible event time, clock-ahead events, max skew]
        self._devices: dict[str, list[int]] = {}
        self._partition_events: dict[str, int] = {}
        self._buffer: list[pl.DataFrame] = []  # rows of open windows, in arrival order
        self._next_order = 0
        self._columns: list[str] | None = None
        self._src: str | None = None
        self._ident: list[str] | None = None
        self._finished = False

    # -- state ---------------------------------------------------------------------------

    @property
    def watermark(self) -> datetime | None:
        """The fleet watermark (event time), ``None`` before the first event."""
        return _dt(self._clock.watermark)

    @property
    def frontier(self) -> datetime | None:
        """Windows ending before this instant are closed; events for them are late."""
        return _dt(self._clock.frontier)

    @property
    def arrival_index(self) -> int:
        """How many valid events have been fed (the next event's arrival-order index)."""
        return self._next_order

    @property
    def buffered_rows(self) -> int:
        """Event×window rows held for open windows."""
        return sum(f.height for f in self._buffer)

    @property
    def dedupe_entries(self) -> int:
        """Identities remembered for duplicate detection (bounded by the horizon)."""
        return len(self._dedupe)

    def devices(self) -> pl.DataFrame:
        """Per-device state: events, last arrival, newest event time, watermark, clock skew."""
        rows = [(d, *v) for d, v in self._devices.items()]
        out = pl.DataFrame(
            rows,
            schema={
                C.DEVICE: pl.String,
                "events": pl.Int64,
                "last_arrival": pl.Int64,
                "newest_event_time": pl.Int64,
                "clock_ahead_events": pl.Int64,
                "max_skew_us": pl.Int64,
            },
            orient="row",
        ).with_columns(pl.col("newest_event_time").replace(NONE, None))
        return finish_device_state(out, self.policy)

    def partitions(self) -> pl.DataFrame:
        """Per-partition state: events, last arrival, newest event time, watermark."""
        parts = list(self._partition_events)
        out = pl.DataFrame(
            {
                C.P: parts,
                "events": [self._partition_events[p] for p in parts],
                "last_arrival": [self._clock.latest.get(p) for p in parts],
                "newest_event_time": [self._clock.newest.get(p) for p in parts],
            },
            schema={C.P: pl.String, "events": pl.Int64, "last_arrival": pl.Int64, "newest_event_time": pl.Int64},
        )
        return finish_partition_state(out, self.policy)

    def open_windows(self) -> pl.DataFrame:
        """The windows still open, aggregated so far (they may still change)."""
        if not self._buffer:
            return pl.DataFrame()
        rows = pl.concat(self._buffer)
        out = rows.group_by([*self.by, END]).agg(expressions(self.aggs, time=self._src, order=C.ORDER))
        return self._shape(out.sort([END, *self.by]), closed_at=None)

    # -- input ---------------------------------------------------------------------------

    def feed(self, events: pl.DataFrame) -> WindowOutput:
        """Process one micro-batch (in arrival order); returns what it closed and rejected."""
        if self._finished:
            raise ProcessingError("this engine was flushed (end of stream); create a new one to go on")
        if self._columns is None:
            self._start(events)
        elif events.columns != self._columns:
            raise ProcessingError(
                f"batch columns {events.columns} differ from the first batch's {self._columns}; "
                "every micro-batch must have the same columns"
            )
        valid, invalid = self._normalise(events)
        df = valid.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).add(self._next_order).alias(C.ORDER))
        self._next_order += df.height
        fates, transitions = self._classify(df)
        return self._route(df, fates, transitions, invalid)

    def advance(self, arrival_time: datetime) -> WindowOutput:
        """Move the arrival clock to ``arrival_time`` with no event (a heartbeat).

        Evaluates the watermark at that tick and emits windows it closes. Use the
        hub's time base (e.g. the partition's last enqueued time plus elapsed time).
        """
        if self._finished:
            raise ProcessingError("this engine was flushed (end of stream)")
        if arrival_time.tzinfo is None:
            arrival_time = arrival_time.replace(tzinfo=timezone.utc)
        tick = ((arrival_time - _EPOCH) // timedelta(microseconds=1)) // self.policy.tick_us
        transitions = []
        if self._clock.tick is None or tick > self._clock.tick:
            transitions.append((tick, self._clock.evaluate(tick)))
        return self._route(None, None, transitions, None)

    def flush(self) -> WindowOutput:
        """End of stream: emit every window still open (``closed_at`` null)."""
        if self._finished:
            raise ProcessingError("this engine was already flushed")
        self._finished = True
        out = self._route(None, None, [], None)
        if self._buffer:
            rows = pl.concat(self._buffer)
            self._buffer = []
            out.windows = self._aggregate(rows, closed_at=None)
            extra = Counts(windows=out.windows.height)
            out.counts = out.counts + extra
            self.totals = self.totals + extra
        return out

    # -- internals -----------------------------------------------------------------------

    def _start(self, events: pl.DataFrame) -> None:
        schema = C.check(events, time=self.time, values=columns_of(self.aggs), need_arrival=True)
        missing = [c for c in self.by if c not in schema]
        if missing:
            raise ProcessingError(f"group-by columns {missing} are not in the events (columns: {list(schema)})")
        self._columns = list(schema)
        self._normalise = C.Normaliser(schema, time=self.time, values=columns_of(self.aggs), need_arrival=True)
        self._src = C.time_source(schema, self.time)
        ident = identity_columns(self._columns, self.aggs, self._src)
        # Identity of an event for duplicate detection, as plain Python values.
        self._ident_exprs = [pl.col(ident[0]).cast(pl.String)] + [
            C.epoch_us(c) if schema[c].is_temporal() else pl.col(c) for c in ident[1:]
        ]
        # Empty frames of every output shape, so that empty outputs concatenate with full ones.
        template, _ = self._normalise(events.clear())
        template = template.with_columns(
            pl.lit(0, dtype=pl.Int64).alias(C.ORDER),
            pl.col(C.E).alias(EFFECTIVE),
            pl.lit(None, dtype=pl.String).alias(FATE),
            pl.lit(None, dtype=pl.String).alias(DUP),
            pl.col(C.E).alias(F_ROW),
        )
        rows = self.window.assign(template, EFFECTIVE).select(self._buffer_columns())
        self._no_windows = self._aggregate(rows, closed_at=None)
        self._no_late = route_late(template, self.policy.late_policy, self._columns)
        self._no_duplicates = template.select(*self._columns, pl.col(DUP).alias(C.REASON))
        self._no_invalid = template.select(*self._columns, pl.col(DUP).alias(C.REASON))

    def _buffer_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.by, END, C.ORDER, self._src, *columns_of(self.aggs)]))

    def _classify(self, df: pl.DataFrame) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Fate of each event, one by one; returns fates and the watermark transitions crossed.

        Fate codes: see ``_FATES``. Also fills ``self._frontier`` and ``self._reordered``.
        """
        p = self.policy
        n = df.height
        arrays = df.select(
            *[e.alias(f"k{i}") for i, e in enumerate(self._ident_exprs)],
            pl.col(C.E),
            pl.col(C.A),
            pl.col(C.P),
            pl.col(C.SEQ),
            self.window.first_end(pl.col(C.E)).alias("__first_end"),
        )
        keys = list(zip(*[arrays[f"k{i}"].to_list() for i in range(len(self._ident_exprs))]))
        e = arrays[C.E].to_numpy()
        a = arrays[C.A].to_numpy()
        parts = arrays[C.P].to_list()
        seqs = arrays[C.SEQ].to_list()
        first_end = arrays["__first_end"].to_numpy()
        ticks = a // p.tick_us
        if self.time != C.ARRIVAL:
            ahead = e - a > p.clock_ahead_us
        else:
            ahead = np.zeros(n, dtype=bool)

        fate = np.zeros(n, dtype=np.int8)
        frontier = np.empty(n, dtype=np.int64)
        reordered = np.zeros(n, dtype=bool)
        transitions: list[tuple[int, int]] = []
        clock, dedupe, dev_state, part_events = self._clock, self._dedupe, self._devices, self._partition_events
        late_us = p.late_arrival_us
        cur = clock.tick
        f = clock.frontier
        for i in range(n):
            k = int(ticks[i])
            if cur is None or k > cur:  # first event of a new tick: evaluate the fleet watermark
                w = clock.evaluate(k)
                transitions.append((k, w))
                cur, f = k, w - late_us
            frontier[i] = f
            key = keys[i]
            ai, ei, part, seq = int(a[i]), int(e[i]), parts[i], seqs[i]
            reason = dedupe.check(ai, key, None if seq is None else (part, seq))
            if reason is not None:
                fate[i] = _DUP_SEQ if reason == DUPLICATE_SEQUENCE else _DUP_EVENT
                continue
            st = dev_state.get(key[0])
            if st is None:
                st = dev_state[key[0]] = [0, NONE, NONE, 0, NONE]
            st[0] += 1
            if ai > st[1]:
                st[1] = ai
            if ei - ai > st[4]:
                st[4] = ei - ai
            part_events[part] = part_events.get(part, 0) + 1
            if ahead[i]:
                st[3] += 1
                fate[i] = _AHEAD
                continue
            prior = st[2]
            if ei > prior:
                st[2] = ei
            clock.observe(part, ei, ai)
            if first_end[i] < f:
                fate[i] = _LATE
            elif ei < prior:
                reordered[i] = True
        self._frontier, self._reordered, self._e, self._a = frontier, reordered, e, a
        return fate, transitions

    def _route(
        self,
        df: pl.DataFrame | None,
        fate: np.ndarray | None,
        transitions: list[tuple[int, int]],
        invalid: pl.DataFrame | None,
    ) -> WindowOutput:
        """Buffer accepted rows, close windows, build the side outputs and counts."""
        counts = Counts()
        out = WindowOutput(
            windows=self._no_windows,
            late=self._no_late[0],
            adjusted=self._no_late[1],
            dropped=self._no_late[2],
            duplicates=self._no_duplicates,
            invalid=self._no_invalid if invalid is None else invalid,
        )
        if df is not None and fate is not None and df.height:
            n_by = np.bincount(fate, minlength=len(_FATES))
            handled = (fate == _LATE) | (fate == _AHEAD)
            adjust = self.policy.late_policy == "adjust"
            if adjust:
                adjusted = np.where(fate == _AHEAD, np.maximum(self._a, self._frontier), self._frontier)
                effective = np.where(fate == _ACCEPTED_CODE, self._e, np.where(handled, adjusted, NONE))
            else:
                effective = np.where(fate == _ACCEPTED_CODE, self._e, NONE)
            used = effective != NONE
            if used.any():
                rows = df.with_columns(pl.Series(EFFECTIVE, effective)).filter(pl.Series(used))
                self._buffer.append(self.window.assign(rows, EFFECTIVE).select(self._buffer_columns()))
            if handled.any():
                routed = df.with_columns(
                    pl.Series(FATE, _FATES.take(fate), dtype=pl.String),
                    pl.Series(F_ROW, self._frontier),
                    pl.Series(EFFECTIVE, effective),
                ).filter(pl.Series(handled))
                out.late, out.adjusted, out.dropped = route_late(routed, self.policy.late_policy, self._columns)
            dups = fate >= _DUP_EVENT
            if dups.any():
                out.duplicates = (
                    df.with_columns(pl.Series(DUP, _FATES.take(fate), dtype=pl.String))
                    .filter(pl.Series(dups))
                    .select(*self._columns, pl.col(DUP).alias(C.REASON))
                )
            counts = Counts(
                events=df.height,
                duplicates=int(n_by[_DUP_EVENT] + n_by[_DUP_SEQ]),
                accepted=int(n_by[_ACCEPTED_CODE]),
                reordered=int(self._reordered.sum()),
                late=int(n_by[_LATE]),
                clock_ahead=int(n_by[_AHEAD]),
                adjusted=out.adjusted.height,
                dropped=out.dropped.height,
                side_output=out.late.height,
            )
        if transitions:
            out.windows = self._close(transitions)
            out.watermarks = self._watermarks(transitions)
        else:
            out.watermarks = self._watermarks([])
        counts = counts + Counts(windows=out.windows.height, invalid=0 if invalid is None else invalid.height)
        out.counts = counts
        self.totals = self.totals + counts
        return out

    def _close(self, transitions: list[tuple[int, int]]) -> pl.DataFrame:
        """Emit buffered windows whose end the new frontiers passed."""
        if not self._buffer:
            return self._no_windows
        frontiers = np.array([w - self.policy.late_arrival_us for _, w in transitions], dtype=np.int64)
        rows = pl.concat(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        ends = rows[END].to_numpy()
        j = np.searchsorted(frontiers, ends, side="right")  # first transition whose frontier passed the end
        closing = j < len(transitions)
        if not closing.any():
            self._buffer = [rows]
            return self._no_windows
        mask = pl.Series(closing)
        self._buffer = [rows.filter(~mask)] if not closing.all() else []
        tick_start = np.array([t for t, _ in transitions], dtype=np.int64) * self.policy.tick_us
        done = rows.filter(mask).with_columns(pl.Series("__closed", tick_start[j[closing]]))
        return self._aggregate(done, closed_at="__closed")

    def _aggregate(self, rows: pl.DataFrame, *, closed_at: str | None) -> pl.DataFrame:
        group = [*self.by, END] + ([closed_at] if closed_at else [])
        out = aggregate(rows, group, self.aggs, time=self._src, order=C.ORDER, exact=True)
        return self._shape(out.sort([END, *self.by]), closed_at=closed_at)

    def _shape(self, out: pl.DataFrame, *, closed_at: str | None) -> pl.DataFrame:
        closed = pl.col(closed_at).cast(C.UTC_US) if closed_at else pl.lit(None, dtype=C.UTC_US)
        return out.select(
            *self.by,
            as_datetime(pl.col(END) - self.window.size_us).alias(WINDOW_START),
            as_datetime(pl.col(END)).alias(WINDOW_END),
            *[a.name for a in self.aggs],
            closed.alias(CLOSED_AT),
        )

    def _watermarks(self, transitions: list[tuple[int, int]]) -> pl.DataFrame:
        tick_us, late_us = self.policy.tick_us, self.policy.late_arrival_us
        return pl.DataFrame(
            {
                "tick_start": [t * tick_us for t, _ in transitions],
                "watermark": [w for _, w in transitions],
                "frontier": [w - late_us for _, w in transitions],
            },
            schema={"tick_start": pl.Int64, "watermark": pl.Int64, "frontier": pl.Int64},
        ).with_columns(pl.all().cast(C.UTC_US))


# Fate codes used inside the engine, and their side-output names.
_ACCEPTED_CODE, _LATE, _AHEAD, _DUP_EVENT, _DUP_SEQ = 0, 1, 2, 3, 4
_FATES = np.array([_ACCEPTED, LATE, CLOCK_AHEAD, DUPLICATE_EVENT, DUPLICATE_SEQUENCE], dtype=object)


def _dt(us: int | None) -> datetime | None:
    if us is None:
        return None
    return pl.Series([us], dtype=pl.Int64).cast(C.UTC_US)[0]
