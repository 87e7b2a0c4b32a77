"""One partition of the warm job, without I/O: its own watermark, partial windows and device rules.

Each partition of the hub is a stream of its own, as in Stream Analytics with ``PARTITION BY
PartitionId`` or a keyed operator in Flink: its events arrive in order, its watermark follows its own
event times (:mod:`iotlib.processing.policy`, with the partition as the whole "fleet"), and it closes
a *partial* window per building — sum, count and latest observation — once its watermark has passed
the window's end. The warm store adds the partitions' partials up into the building window once every
partition has closed it (:mod:`iotlib.warm.merge`). So any process can run any partition, and a
partition's state moves with it.

Per received frame (:mod:`iotlib.warm.incoming`): undecodable events become dead letters; the rest are
joined with the registry (unknown devices → ``unmatched``) and windowed on event time by a
:class:`~iotlib.processing.incremental.WindowEngine`; the device rules (jumps, silences) watch the
readings. :meth:`PartitionJob.advance` is the heartbeat: the partition was read to the hub's end as of
a hub time, so its clock moves on (windows close, silences are noticed) without an event.
:meth:`PartitionJob.take` hands over what accumulated and the state's changes (a changelog), and
:meth:`PartitionJob.restore` rebuilds the job from what a store kept of them.

Devices are keyed to partitions (the partition key is the device id), so a device's watermark, its
duplicates and its alerts all live in one partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import polars as pl

from iotlib.processing import EventTimePolicy, WindowEngine
from iotlib.processing import columns as C
from iotlib.processing.building import BUILDING
from iotlib.processing.reference import Registry
from iotlib.processing.results import Counts, WindowOutput
from iotlib.processing.windows import Hopping
from iotlib.warm import deadletters, incoming
from iotlib.warm.alerts import AlertEngine, BuildingTooHot, Rule, no_alerts
from iotlib.warm.commit import END_OF_STREAM, PartitionStep, PartitionTotals, Position, StoredPartition
from iotlib.warm.merge import PARTIAL_AGGS
from iotlib.warm.store import SIDE_TABLES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


def enrichment(registry: Registry) -> list[str]:
    """What each reading gets from the registry: its building, and its room when the registry has rooms."""
    return [BUILDING] + (["room"] if "room" in registry.frame.columns else [])


@dataclass
class Received:
    """One partition's share of a received frame, split and joined with the registry (:func:`prepare`)."""

    size: int
    last: Position
    dead: pl.DataFrame
    events: pl.DataFrame
    matched: pl.DataFrame
    unmatched: pl.DataFrame
    behind: int


def prepare(received: pl.DataFrame, registry: Registry, policy: EventTimePolicy, time: str) -> dict[str, Received]:
    """A received frame (one or several partitions, each in its order) split per partition: dead letters
    off, the rest joined with the registry — once for the whole frame, which costs far less than per partition."""
    if received.height == 0:
        return {}
    key = C.PARTITION
    valid, dead = deadletters.split(received)
    events = valid.select(incoming.EVENT_COLUMNS)
    matched, unmatched = registry.enrich(events, enrichment(registry))
    summary = received.group_by(key, maintain_order=True).agg(
        pl.len().alias("n"), pl.col(C.SEQUENCE).last(), pl.col("offset").last(), pl.col(C.ENQUEUED).last(),
        _behind(policy, time).alias("behind"),
    )  # fmt: skip
    parts = [str(pid) for pid in summary[key].to_list()]
    split = [_by(frame, key, parts) for frame in (dead, events, matched, unmatched)]
    out = {}
    for i, row in enumerate(summary.iter_rows(named=True)):
        pid = parts[i]
        out[pid] = Received(
            size=row["n"], last=Position(row[C.SEQUENCE], row["offset"], row[C.ENQUEUED]),
            dead=split[0][pid], events=split[1][pid], matched=split[2][pid], unmatched=split[3][pid],
            behind=int(row["behind"] or 0),
        )  # fmt: skip
    return out


def _behind(policy: EventTimePolicy, time: str) -> pl.Expr:
    """Events observed longer before they arrived than the idle timeout (never, on arrival time)."""
    if time == C.ARRIVAL:
        return pl.lit(0, dtype=pl.Int64).first()
    gap = (pl.col(C.ENQUEUED) - pl.col(C.TIME_OBSERVED)).dt.total_microseconds()
    return (gap > policy.idle_timeout_us).sum().cast(pl.Int64)


def _by(frame: pl.DataFrame, key: str, parts: list[str]) -> dict[str, pl.DataFrame]:
    if frame.height == 0:
        return dict.fromkeys(parts, frame)
    if len(parts) == 1:
        return {parts[0]: frame}
    found = {str(k[0]): f for k, f in frame.partition_by(key, as_dict=True, maintain_order=True).items()}
    empty = frame.clear()
    return {pid: found.get(pid, empty) for pid in parts}


def device_rules(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """The rules a partition evaluates (those about one device; building rules need every partition)."""
    return tuple(r for r in rules if not isinstance(r, BuildingTooHot))


class PartitionJob:
    """The building-average job for one partition, one received frame at a time (see the module text)."""

    #: Device records the store's log may hold beyond four times the devices before a full dump replaces it.
    compact_slack: ClassVar[int] = 1000

    def __init__(
        self,
        partition_id: str,
        registry: Registry,
        *,
        window: Hopping,
        policy: EventTimePolicy,
        rules: Sequence[Rule] = (),
        time: str = C.TIME_OBSERVED,
    ) -> None:
        self.partition_id = str(partition_id)
        self.registry = registry
        self.policy = policy
        self.time = time
        self.engine = WindowEngine(window, by=[BUILDING], aggs=PARTIAL_AGGS, policy=policy, time=time)
        rules = device_rules(rules)
        self.alerts = AlertEngine(rules, registry) if rules else None
        self.position: Position | None = None
        self.totals = PartitionTotals()
        self.flushed = False
        self._moved = False
        self._logged = 0  # device records in the store's log since its last compaction
        self._reset()

    @classmethod
    def restore(
        cls,
        stored: StoredPartition,
        registry: Registry,
        *,
        window: Hopping,
        policy: EventTimePolicy,
        rules: Sequence[Rule] = (),
        time: str = C.TIME_OBSERVED,
    ) -> PartitionJob:
        """The job again from what a store kept of its changes: it goes on exactly where it was."""
        job = cls(stored.partition_id, registry, window=window, policy=policy, rules=rules, time=time)
        job.engine = WindowEngine.rebuild(stored.core, stored.devices, stored.rows, stored.sightings)
        if job.alerts is not None:
            job.alerts.load_devices(stored.alert_devices)
        job.position = stored.position
        job.totals = stored.totals
        job.flushed = stored.flushed
        job._logged = stored.logged
        return job

    # -- input -----------------------------------------------------------------------------

    def start_at(self, position: Position) -> None:
        """Where the partition starts (exclusive), stored with the first commit."""
        self.position = position
        self._moved = True

    def feed(self, received: pl.DataFrame) -> None:
        """The partition's next received frame (:data:`iotlib.warm.incoming.SCHEMA`), in its order."""
        for part in prepare(received, self.registry, self.policy, self.time).values():
            self.feed_prepared(part)

    def feed_prepared(self, part: Received) -> None:
        """The partition's next received events, already split and joined (:func:`prepare`)."""
        if part.size == 0:
            return
        self.position = part.last
        self._moved = True
        p = self._p
        p["events"] += part.size
        t = self.totals
        t.received += part.size
        t.behind += part.behind
        if part.dead.height:
            p["dead"].append(part.dead)
            t.dead_letters += part.dead.height
        if part.events.height == 0:
            return
        out = self.engine.feed(part.matched) if part.matched.height else WindowOutput(windows=pl.DataFrame())
        out.unmatched = part.unmatched
        self._collect(out)
        if self.alerts is not None:
            readings = part.events
            if out.duplicates.height:
                readings = readings.join(out.duplicates.select(C.PARTITION, C.SEQUENCE), on=[C.PARTITION, C.SEQUENCE],
                                         how="anti")  # fmt: skip
            self._alert(self.alerts.on_readings(readings))

    def advance(self, hub_us: int) -> bool:
        """Heartbeat: everything that arrived before hub time ``hub_us`` has been fed. True if the clock moved."""
        out = self.engine.advance(_dt(hub_us))
        if out.watermarks.height == 0:
            return False
        self.totals.heartbeats += 1
        self._collect(out)
        if self.alerts is not None and self.alerts.watching_time:
            self._alert(self.alerts.on_time(hub_us))
        return True

    def flush(self) -> None:
        """End of stream: the windows still open are emitted (``closed_at`` null) and the partition is done."""
        if not self.flushed:
            self._collect(self.engine.flush())
            self.flushed = True

    # -- output ----------------------------------------------------------------------------

    @property
    def frontier(self) -> int | None:
        """Windows of this partition ending before this (µs) are closed; past everything once flushed."""
        return END_OF_STREAM if self.flushed else self.engine._clock.frontier  # noqa: SLF001

    @property
    def has_output(self) -> bool:
        p = self._p
        return bool(self._moved or p["events"] or p["windows"] or p["watermarks"] or p["alerts"] or p["dead"])

    @property
    def log_excess(self) -> float:
        """How far the store's log of device records is past due for a compaction (> 0: due)."""
        return self._logged - 4 * len(self.engine._devices) - self.compact_slack  # noqa: SLF001

    def take(self, *, compact: bool = False) -> PartitionStep:
        """What accumulated since the last take, with the state's changes (``compact``: every device's record,
        so that the store can drop its older records; see :attr:`log_excess`)."""
        p = self._p
        side = {name: _cat(frames) for name, frames in p["side"].items()}
        windows = _cat(p["windows"])
        if windows.height:
            windows = windows.with_columns(pl.lit(self.partition_id).alias(C.PARTITION))
        clock = self.engine._clock  # noqa: SLF001
        changes = self.engine.changes(all_devices=compact)
        alerting = self.alerts.device_changes(all_devices=compact) if self.alerts is not None else []
        self._logged = (0 if compact else self._logged) + len(changes.devices) + len(alerting)
        step = PartitionStep(
            partition_id=self.partition_id,
            position=self.position,
            partials=windows,
            side_outputs={k: v for k, v in side.items() if v.height},
            dead_letters=_cat(p["dead"]),
            alerts=_cat(p["alerts"]) if p["alerts"] else no_alerts(),
            watermarks=_cat(p["watermarks"]),
            watermark=clock.watermark,
            frontier=self.frontier,
            flushed=self.flushed,
            totals=self.totals,
            engine=changes,
            alert_devices=alerting,
            events=p["events"],
            compact=compact,
        )
        self._moved = False
        self._reset()
        return step

    # -- internals -------------------------------------------------------------------------

    def _reset(self) -> None:
        self._p: dict = {"windows": [], "side": {k: [] for k in SIDE_TABLES}, "dead": [], "alerts": [],
                         "watermarks": [], "events": 0}  # fmt: skip

    def _collect(self, out: WindowOutput) -> None:
        p = self._p
        if out.windows.height:
            p["windows"].append(out.windows)
        for name in SIDE_TABLES:
            frame = getattr(out, name)
            if frame.height:
                p["side"][name].append(frame)
        if out.watermarks.height:
            p["watermarks"].append(out.watermarks)
        # The engine counts what it saw; unknown devices never reach it.
        self.totals.counts = self.engine.totals + Counts(unmatched=self.totals.counts.unmatched + out.unmatched.height)

    def _alert(self, rows: pl.DataFrame) -> None:
        if rows.height:
            self._p["alerts"].append(rows)
            self.totals.alerts += rows.height


def _cat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame()
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
