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
batch's events (about 3 ms of CPU per 300-event batch, ~100,000 events/s).

Wrapping it in a streaming job (Event Hubs)
-------------------------------------------
- **Order**: results are defined on the global arrival order. Put each
  partition's received batch into an
  :class:`~iotlib.processing.arrival.ArrivalMerger` (declared with the hub's
  partition ids) and feed the engine what ``pop()`` releases.
- **Quiet streams**: call ``advance(now)`` now and then with the hub's notion of
  the current time (e.g. the newest ``last_enqueued_time`` from partition
  properties) so windows close even when no event comes. Heartbeats change
  when windows close (``closed_at``), not what they contain — unless an event
  then arrives for a window a heartbeat already closed: it is late.
- **Restarts**: the engine pickles. Store a snapshot in the same transaction as
  the windows it emitted, checkpoint the hub after that commit, and on restart
  restore the snapshot and replay from the checkpoint: the output continues
  exactly as if nothing had happened. (Should the checkpoint lag the snapshot,
  replayed events the snapshot already saw are caught as
  ``duplicate_sequence`` within the horizon instead of being counted twice.)
  Without a snapshot, a restart starts with empty windows and watermarks.
- **Memory**: open windows (a few seconds of events) plus the duplicate memory
  (``dedupe_horizon`` of events, ~400 bytes each) plus one small record per
  device and partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from sys import intern

import numpy as np
import polars as pl

from iotlib.durations import Duration, epoch_us
from iotlib.errors import ConfigurationError, ProcessingError, ValidationError
from iotlib.processing import columns as C
from iotlib.processing.aggregates import Agg, aggregate, columns_of, expressions
from iotlib.processing.batch import WINDOW_END, WINDOW_START, as_datetime, default_aggs
from iotlib.processing.dedupe import DuplicateFilter
from iotlib.processing.event_time import (
    ADJUSTED_TIME,
    CLOSED_AT,
    DUP,
    EFFECTIVE,
    F_ROW,
    FATE,
    FRONTIER,
    finish_device_state,
    finish_partition_state,
    identity_columns,
    route_late,
)
from iotlib.processing.policy import CLOCK_AHEAD, DUPLICATE_EVENT, DUPLICATE_SEQUENCE, LATE, EventTimePolicy
from iotlib.processing.results import Counts, WindowOutput
from iotlib.processing.watermarks import NONE, FleetClock
from iotlib.processing.windows import END, Window, fixed

_ACCEPTED = "accepted"


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
        self._started = False  # the first batch sets the columns and the time source
        self._columns: list[str] = []
        self._src = ""
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
        if not self._started:
            self._start(events)
        elif events.columns != self._columns:
            raise ValidationError(
                f"batch columns {events.columns} differ from the first batch's {self._columns}; "
                "every micro-batch must have the same columns"
            )
        df, invalid = self._normalise(events)
        fates, transitions = self._classify(df)
        return self._route(df, fates, transitions, invalid)

    def advance(self, arrival_time: datetime) -> WindowOutput:
        """Move the arrival clock to ``arrival_time`` with no event (a heartbeat).

        Evaluates the watermark at that tick and emits windows it closes. Use the
        hub's time base (e.g. the partition's last enqueued time plus elapsed time).
        """
        if self._finished:
            raise ProcessingError("this engine was flushed (end of stream)")
        if not self._started:
            return WindowOutput(windows=pl.DataFrame())  # nothing fed yet: nothing to close
        if arrival_time.tzinfo is None:
            arrival_time = arrival_time.replace(tzinfo=UTC)
        tick = epoch_us(arrival_time) // self.policy.tick_us
        transitions = []
        if self._clock.tick is None or tick > self._clock.tick:
            transitions.append((tick, self._clock.evaluate(tick)))
        return self._route(None, None, transitions, None)

    def flush(self) -> WindowOutput:
        """End of stream: emit every window still open (``closed_at`` null)."""
        if self._finished:
            raise ProcessingError("this engine was already flushed")
        self._finished = True
        if not self._started:
            return WindowOutput(windows=pl.DataFrame())
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
            raise ConfigurationError(f"group-by columns {missing} are not in the events (columns: {list(schema)})")
        self._started = True
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
        self._no_watermarks = self._watermarks([])
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

        Fate codes: see ``_FATES``. Also keeps the batch's frontiers, reordered
        flags and times for :meth:`_route`.
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
        cols = arrays.get_columns()
        devices = [intern(d) for d in cols[0].to_list()]  # one string per device (null ids went to invalid)
        keys = list(zip(devices, *[c.to_list() for c in cols[1 : len(self._ident_exprs)]]))
        e_np = cols[-5].to_numpy()
        a_np = cols[-4].to_numpy()
        e, a = e_np.tolist(), a_np.tolist()
        parts, seqs, first_end = cols[-3].to_list(), cols[-2].to_list(), cols[-1].to_list()
        dup = self._dedupe.check(a, keys, [None if q is None else (p_, q) for p_, q in zip(parts, seqs)])
        ahead_us = p.clock_ahead_us if self.time != C.ARRIVAL else None

        fate = [0] * n
        frontier: list[int | None] = [0] * n  # ints: the clock has a watermark once it has a tick
        reordered = [False] * n
        transitions: list[tuple[int, int]] = []
        clock, dev_state, part_events = self._clock, self._devices, self._partition_events
        newest_p, latest_p = clock.newest, clock.latest
        tick_us, late_us = p.tick_us, p.late_arrival_us
        cur = clock.tick
        f = clock.frontier
        for i in range(n):
            ai = a[i]
            if cur is None or ai // tick_us > cur:  # first event of a new tick: evaluate the fleet watermark
                k = ai // tick_us
                w = clock.evaluate(k)
                transitions.append((k, w))
                cur, f = k, w - late_us
            frontier[i] = f
            reason = dup[i]
            if reason is not None:
                fate[i] = _DUP_SEQ if reason == DUPLICATE_SEQUENCE else _DUP_EVENT
                continue
            ei, part, device = e[i], parts[i], devices[i]
            st = dev_state.get(device)
            if st is None:
                st = dev_state[device] = [0, NONE, NONE, 0, NONE]
            st[0] += 1
            if ai > st[1]:
                st[1] = ai
            if ei - ai > st[4]:
                st[4] = ei - ai
            part_events[part] = part_events.get(part, 0) + 1
            if ahead_us is not None and ei - ai > ahead_us:
                st[3] += 1
                fate[i] = _AHEAD
                continue
            prior = st[2]
            if ei > prior:
                st[2] = ei
            # The partition's watermark inputs (FleetClock.observe, inlined: this loop is the hot path).
            if ei > newest_p.get(part, NONE):
                newest_p[part] = ei
            if ai > latest_p.get(part, NONE):
                latest_p[part] = ai
            if first_end[i] < f:
                fate[i] = _LATE
            elif ei < prior:
                reordered[i] = True
        self._frontier = np.array(frontier, dtype=np.int64)
        self._reordered = np.array(reordered, dtype=bool)
        self._e, self._a = e_np, a_np
        return np.array(fate, dtype=np.int8), transitions

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
            order = pl.int_range(pl.len(), dtype=pl.Int64).add(self._next_order).alias(C.ORDER)
            self._next_order += df.height
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
                self._buffer.append(self._rows_for_windows(df, effective, used, order))
            if handled.any():
                self._side_output(out, df, fate, np.flatnonzero(handled), effective)
            dups = np.flatnonzero(fate >= _DUP_EVENT)
            if len(dups):
                out.duplicates = df.select(pl.col(self._columns).gather(dups)).hstack(
                    [pl.Series(C.REASON, _FATES[fate[dups]], dtype=pl.String)]
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
            out.watermarks = self._no_watermarks
        counts = counts + Counts(windows=out.windows.height, invalid=0 if invalid is None else invalid.height)
        out.counts = counts
        self.totals = self.totals + counts
        return out

    def _rows_for_windows(
        self, df: pl.DataFrame, effective: np.ndarray, used: np.ndarray, order: pl.Expr
    ) -> pl.DataFrame:
        """The buffer rows for this batch: one eager select (cheaper than a lazy plan at this size)."""
        if not used.all():
            keep = pl.Series(used)
            df = df.with_columns(order).filter(keep)
            effective = effective[used]
            order = pl.col(C.ORDER)
        t = pl.lit(pl.Series(EFFECTIVE, effective))
        w = self.window
        end = (w.first_end(t) if w.hop_us == w.size_us else w.ends(t)).alias(END)
        exprs = {c: pl.col(c) for c in self._buffer_columns()}
        exprs[END], exprs[C.ORDER] = end, order
        rows = df.select(list(exprs.values()))
        return rows if w.hop_us == w.size_us else rows.explode(END)

    def _side_output(
        self, out: WindowOutput, df: pl.DataFrame, fate: np.ndarray, idx: np.ndarray, effective: np.ndarray
    ) -> None:
        """Late and clock-ahead rows to ``late``, ``adjusted`` or ``dropped`` (same shape as the batch job)."""
        rows = df.select(pl.col(self._columns).gather(idx))
        reason = pl.Series(C.REASON, _FATES[fate[idx]], dtype=pl.String)
        policy = self.policy.late_policy
        if policy == "adjust":
            out.adjusted = rows.hstack([reason, pl.Series(ADJUSTED_TIME, effective[idx]).cast(C.UTC_US)])
            return
        routed = rows.hstack([reason, pl.Series(FRONTIER, self._frontier[idx]).cast(C.UTC_US)])
        if policy == "drop":
            out.dropped = routed
        else:
            out.late = routed

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
