"""What passes between the warm job and the warm store: a commit's steps, and a partition's stored state.

A :class:`Commit` holds one :class:`PartitionStep` per partition that changed: the rows it produced
(partial windows the partition closed, side outputs, dead letters, device alerts, watermark
evaluations), how far it got (:class:`Position`) and its state as a changelog — the engine's
:class:`~iotlib.processing.changelog.EngineChanges` and the device rules' touched devices. The store
writes it all in one transaction (:meth:`iotlib.warm.store.WarmStore.commit`); a process that takes a
partition over gets its state back as a :class:`StoredPartition` (:meth:`~iotlib.warm.store.WarmStore.claim`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import polars as pl

from iotlib.processing.changelog import DeviceRecord, EngineChanges
from iotlib.processing.dedupe import Sighting
from iotlib.processing.results import Counts
from iotlib.warm.alerts import DeviceAlertState

#: A flushed partition's frontier: past every window (end of stream).
END_OF_STREAM = 2**62


@dataclass(frozen=True)
class Position:
    """Where a partition stands: the last event whose effects are stored (or the start, exclusive)."""

    sequence_number: int
    offset: str
    enqueued_time: datetime | None = None


@dataclass
class PartitionTotals:
    """What one partition's job has done since the warm store began."""

    received: int = 0
    dead_letters: int = 0
    alerts: int = 0
    heartbeats: int = 0
    #: Events observed longer before they reached the hub than the idle timeout (a historical replay?).
    behind: int = 0
    counts: Counts = field(default_factory=Counts)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, object]) -> PartitionTotals:
        counts = Counts(**data.pop("counts"))  # type: ignore[arg-type]
        return cls(**data, counts=counts)  # type: ignore[arg-type]

    def __add__(self, other: PartitionTotals) -> PartitionTotals:
        return PartitionTotals(
            self.received + other.received,
            self.dead_letters + other.dead_letters,
            self.alerts + other.alerts,
            self.heartbeats + other.heartbeats,
            self.behind + other.behind,
            self.counts + other.counts,
        )


@dataclass
class PartitionStep:
    """One partition's share of a commit (see the module text)."""

    partition_id: str
    position: Position | None
    partials: pl.DataFrame
    side_outputs: dict[str, pl.DataFrame]
    dead_letters: pl.DataFrame
    alerts: pl.DataFrame
    watermarks: pl.DataFrame
    watermark: int | None
    frontier: int | None
    flushed: bool
    totals: PartitionTotals
    engine: EngineChanges
    alert_devices: list[DeviceAlertState]
    events: int = 0
    #: The device records are every device's (a compaction): the store drops the older ones.
    compact: bool = False


@dataclass
class Commit:
    """Everything a process's partitions produced since its last commit, stored in one transaction.

    ``owner``: the run that holds the partitions (the store refuses the steps of a partition another
    run has claimed since). ``snapshot``: the whole job pickled, as iotlib stored it before changelogs —
    only the freshness benchmark's baseline sets it.
    """

    steps: list[PartitionStep] = field(default_factory=list)
    owner: str | None = None
    snapshot: bytes | None = None

    @property
    def events(self) -> int:
        return sum(s.events for s in self.steps)


@dataclass
class StoredPartition:
    """A partition's state as the warm store holds it: enough to rebuild its job exactly."""

    partition_id: str
    position: Position | None
    core: bytes
    devices: list[DeviceRecord]
    rows: list[pl.DataFrame]
    sightings: list[Sighting]
    alert_devices: list[DeviceAlertState]
    totals: PartitionTotals
    flushed: bool
    #: Device records kept in the store's log for this partition (for when to compact it).
    logged: int = 0


@dataclass
class CommitResult:
    """What a commit stored: its id, the windows that became final, the too-hot alerts they raised,
    the partitions refused (claimed by another run since), and the seconds it took."""

    commit_id: int
    windows: pl.DataFrame
    alerts: pl.DataFrame
    refused: list[str]
    seconds: float
