"""The warm job without I/O: received batches in, warm-store commits out.

:class:`WarmJob` is what the processor runs between the hub and the warm store::

    partition batches ──► ArrivalMerger ──► dead letters | registry join ──► WindowEngine ──► windows, side outputs
                          (arrival order)                  (unmatched)        (event time)     alerts (rules)

The window part is :mod:`iotlib.processing.building`'s job — the same
registry join, aggregates and policies as ``BuildingAverager`` — kept one
step lower so that each window keeps its ``closed_at``, and each reading its
room (in the side outputs: which apartment's thermostat was late).

``push`` a partition's received frame (:mod:`iotlib.warm.incoming`), ``step``
to release what the merger can and run it through the window engine and the alert
rules, ``mark`` a partition read to the hub's end, and ``take`` what
accumulated since the last commit: the rows for every warm-store table, the
per-partition progress they cover and the snapshot that restores the job to
exactly that point (:mod:`iotlib.warm.store`).

Heartbeats: with ``heartbeat=True`` each step also moves the window engine's
arrival clock to the merger's :attr:`~iotlib.processing.arrival.ArrivalMerger.released_until`
(a time before which everything has been seen), so windows close and silent
devices are noticed when no event comes. Those evaluations are stored in the
``watermarks`` table; given them, :func:`iotlib.processing.building_averages`
reproduces the job exactly (``heartbeats=...``).

Partition order: the merger waits for every declared partition (results are
defined on the global arrival order), so a partition with nothing to say must
be ``mark``-ed as read to the hub's end — the processor does that — or, with
``merge_timeout``, stops holding the others back once it is that far behind in
arrival time (the merger's idle rule: convenient without marks, but a
partition that is merely *behind* — a backlog being read — would then be
overtaken and its events processed out of order).

The merger's buffer is not part of the snapshot: events still in it are not
covered by the progress either, so after a restart they are read again.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from iotlib.durations import Duration, describe
from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.processing import EventTimePolicy, WindowEngine
from iotlib.processing.arrival import ArrivalMerger
from iotlib.processing.building import BUILDING, BUILDING_AGGS
from iotlib.processing.reference import Registry
from iotlib.processing.results import Counts, WindowOutput
from iotlib.processing.windows import Window, fixed
from iotlib.warm import deadletters, incoming
from iotlib.warm.alerts import AlertEngine, Rule, check_rules, describe_rules, no_alerts
from iotlib.warm.store import SIDE_TABLES, Commit, Position

SNAPSHOT_VERSION = 1
_FOREVER = "36500d"  # a merge timeout that never fires


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


@dataclass
class JobTotals:
    """What the job has done since it started (or since its snapshot was first taken)."""

    received: int = 0
    released: int = 0
    dead_letters: int = 0
    alerts: int = 0
    heartbeats: int = 0
    counts: Counts = field(default_factory=Counts)


class WarmJob:
    """The building-average job with dead letters, alerts and heartbeats, one step at a time (no I/O)."""

    def __init__(
        self,
        registry: pl.DataFrame | Registry,
        *,
        window: Window | Duration = "5s",
        policy: EventTimePolicy | None = None,
        rules: Sequence[Rule] | None = (),
        partitions: Sequence[str] = (),
        heartbeat: bool = True,
        merge_timeout: Duration | None = None,
    ) -> None:
        self.registry = Registry.of(registry)
        self.window = fixed(window)
        self.policy = policy or EventTimePolicy()
        self.rules = check_rules(rules)
        self.heartbeat = heartbeat
        self.engine = WindowEngine(self.window, by=[BUILDING], aggs=BUILDING_AGGS, policy=self.policy)
        self._unmatched = Counts()
        self.alerts = AlertEngine(self.rules, self.registry) if self.rules else None
        self.merger = ArrivalMerger(partitions, idle_timeout=merge_timeout or _FOREVER)
        self.positions: dict[str, Position] = {}
        self.totals = JobTotals()
        self.finished = False
        self._tick: int | None = None  # newest arrival tick the engine has seen (events or heartbeats)
        self._changed: set[str] = set()
        self._reset_pending()

    # -- settings --------------------------------------------------------------------------

    def settings(self) -> dict[str, object]:
        """What a snapshot was made with; restoring needs the same."""
        w = self.window
        return {
            "window": f"hop {describe(w.hop_us)} size {describe(w.size_us)} closed {w.closed}",
            "policy": self.policy.describe(),
            "policy_tick": describe(self.policy.tick_us),
            "rules": describe_rules(self.rules),
        }

    # -- input -----------------------------------------------------------------------------

    def start_at(self, partition_id: str, position: Position) -> None:
        """Where a partition starts (exclusive): the first progress to store for it."""
        self.positions[str(partition_id)] = position
        self._changed.add(str(partition_id))

    def push(self, partition_id: str, frame: pl.DataFrame) -> None:
        """One partition's received frame, in its order."""
        if self.finished:
            raise ProcessingError("this job was flushed (end of stream)")
        if frame.height:
            self.merger.push(str(partition_id), frame)
            self.totals.received += frame.height

    def mark(self, partition_id: str, arrival_us: int) -> None:
        """The partition is read to the hub's end as of hub time ``arrival_us``."""
        self.merger.mark(str(partition_id), arrival_us)

    def step(self) -> int:
        """Release what the merger can, process it, and heartbeat; returns the events released."""
        released = self.merger.pop()
        if released.height:
            self._process(released)
        if self.heartbeat:
            self._beat()
        return released.height

    def finish(self) -> int:
        """End of stream: release everything buffered and emit the windows still open (``closed_at`` null)."""
        rest = self.merger.drain()
        if rest.height:
            self._process(rest)
        self._collect(self.engine.flush())
        self.finished = True
        return rest.height

    @property
    def pending(self) -> int:
        """Events received but not yet released by the merger."""
        return self.merger.pending

    # -- output ----------------------------------------------------------------------------

    def take(self, *, snapshot: bool = True) -> Commit:
        """Everything produced since the last ``take``, with the progress and snapshot that go with it."""
        p = self._p
        side = {name: _cat(frames) for name, frames in p["side"].items()}
        commit = Commit(
            windows=_cat(p["windows"]),
            side_outputs={k: v for k, v in side.items() if v.height},
            dead_letters=_cat(p["dead"]),
            alerts=_cat(p["alerts"]) if p["alerts"] else no_alerts(),
            watermarks=_cat(p["watermarks"]),
            progress={pid: self.positions[pid] for pid in sorted(self._changed)},
            snapshot=self.snapshot() if snapshot else None,
            events=p["events"],
        )
        self._changed = set()
        self._reset_pending()
        return commit

    @property
    def has_output(self) -> bool:
        """Anything to commit: rows, or progress."""
        p = self._p
        return bool(self._changed or p["events"] or p["windows"] or p["watermarks"] or p["alerts"])

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The job's state (not the merger's buffer, not the registry) as bytes."""
        state = {
            "version": SNAPSHOT_VERSION,
            "settings": self.settings(),
            "engine": self.engine,
            "unmatched": self._unmatched,
            "alerts": self.alerts,
            "tick": self._tick,
            "finished": self.finished,
            "totals": self.totals,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes, positions: dict[str, Position]) -> None:
        """Continue from a snapshot and the progress stored with it."""
        state = pickle.loads(blob)
        if state.get("version") != SNAPSHOT_VERSION:
            raise ProcessingError(
                f"the warm store's snapshot has version {state.get('version')}, this code reads {SNAPSHOT_VERSION}"
            )
        if state["settings"] != self.settings():
            raise ConfigurationError(
                "the warm store was built with other settings; use the same ones or a new warm store.\n"
                f"  stored: {state['settings']}\n  given:  {self.settings()}"
            )
        self.engine = state["engine"]
        self._unmatched = state["unmatched"]
        self.alerts = state["alerts"]
        if self.alerts is not None:
            self.alerts.attach(self.registry)
        self._tick = state["tick"]
        self.finished = state["finished"]
        self.totals = state["totals"]
        self.positions = dict(positions)

    # -- internals -------------------------------------------------------------------------

    def _reset_pending(self) -> None:
        self._p: dict = {"windows": [], "side": {k: [] for k in SIDE_TABLES}, "dead": [], "alerts": [],
                         "watermarks": [], "events": 0}  # fmt: skip

    def _process(self, released: pl.DataFrame) -> None:
        p = self._p
        p["events"] += released.height
        self.totals.released += released.height
        last = released.group_by("partition_id", maintain_order=True).agg(
            pl.col("sequence_number").last(), pl.col("offset").last(), pl.col("enqueued_time").last()
        )
        for pid, seq, offset, enqueued in last.iter_rows():
            self.positions[pid] = Position(seq, offset, enqueued)
            self._changed.add(pid)
        valid, dead = deadletters.split(released)
        if dead.height:
            p["dead"].append(dead)
            self.totals.dead_letters += dead.height
        if valid.height == 0:
            return
        events = valid.select(incoming.EVENT_COLUMNS)
        matched, unmatched = self.registry.enrich(events, enrichment(self.registry))
        out = self.engine.feed(matched)
        if unmatched.height:
            out.unmatched = unmatched
            self._unmatched = self._unmatched + Counts(unmatched=unmatched.height)
        self._collect(out)
        newest = events["enqueued_time"].dt.epoch("us").max()
        assert isinstance(newest, int)  # valid events have an enqueued time
        tick = newest // self.policy.tick_us
        self._tick = tick if self._tick is None else max(self._tick, tick)
        if self.alerts is not None:
            readings = events
            if out.duplicates.height:
                readings = events.join(out.duplicates.select("partition_id", "sequence_number"),
                                       on=["partition_id", "sequence_number"], how="anti")  # fmt: skip
            self._alert(self.alerts.on_readings(readings))

    def _beat(self) -> None:
        until = self.merger.released_until
        if until is None or self._tick is None:  # nothing fed yet: nothing to close
            return
        tick = until // self.policy.tick_us
        if tick <= self._tick:
            return
        out = self.engine.advance(_dt(until))
        self._tick = tick
        self.totals.heartbeats += 1
        self._collect(out)
        if self.alerts is not None and self.alerts.watching_time:
            self._alert(self.alerts.on_time(until))

    def _collect(self, out: WindowOutput) -> None:
        p = self._p
        if out.windows.height:
            p["windows"].append(out.windows)
            if self.alerts is not None:
                self._alert(self.alerts.on_windows(out.windows))
        for name in SIDE_TABLES:
            frame = getattr(out, name)
            if frame.height:
                p["side"][name].append(frame)
        if out.watermarks.height:
            p["watermarks"].append(out.watermarks)
        self.totals.counts = self.engine.totals + self._unmatched

    def _alert(self, rows: pl.DataFrame) -> None:
        if rows.height:
            self._p["alerts"].append(rows)
            self.totals.alerts += rows.height


def enrichment(registry: Registry) -> list[str]:
    """What each reading gets from the registry: its building, and its room when the registry has rooms."""
    return [BUILDING] + (["room"] if "room" in registry.frame.columns else [])


def _cat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame()
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
