"""The warm job without I/O: the partitions a process holds, received frames in, commits out.

:class:`WarmJob` is what a processor runs between the hub and the warm store::

    partition p's frames ──► PartitionJob p ──► dead letters | registry join ──► WindowEngine ──► partial windows
                             (its own watermark)                (unmatched)       (event time)   side outputs, device alerts
                                                      … one per partition held …
    warm store: partials of every partition ──► building windows, once every partition's watermark passed them

Each partition is a :class:`~iotlib.warm.partition.PartitionJob` on its own timeline, so partitions
can be held by different processes and move between them; the warm store merges their partial
windows (:mod:`iotlib.warm.merge`) and evaluates the building rule (too hot) on the merged windows.

``claim`` a partition (fresh, or restored from what the store kept of it), ``push`` its received
frames in order, ``mark`` it read to the hub's end as of a hub time (with ``heartbeat``: its clock
moves on, so windows close and silent devices are noticed when nothing comes), and ``take`` what
accumulated: a :class:`~iotlib.warm.commit.Commit` with one step per partition that changed — rows,
progress, and the state's changes — for :meth:`iotlib.warm.store.WarmStore.commit`. ``finish`` is the
end of the stream: every held partition emits the windows still open.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import polars as pl

from iotlib.durations import Duration, describe
from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.processing import EventTimePolicy
from iotlib.processing import columns as C
from iotlib.processing.reference import Registry
from iotlib.processing.windows import Window, fixed
from iotlib.warm.alerts import Rule, check_rules, describe_rules
from iotlib.warm.commit import Commit, PartitionTotals, Position, StoredPartition
from iotlib.warm.partition import PartitionJob, prepare

TIMES = (C.TIME_OBSERVED, C.ARRIVAL)


class WarmJob:
    """The building-average job with dead letters, alerts and heartbeats, for the partitions held (no I/O)."""

    def __init__(
        self,
        registry: pl.DataFrame | Registry,
        *,
        window: Window | Duration = "5s",
        policy: EventTimePolicy | None = None,
        rules: Sequence[Rule] | None = (),
        heartbeat: bool = True,
        time: str = C.TIME_OBSERVED,
    ) -> None:
        if time not in TIMES:
            raise ConfigurationError(f"time={time!r}: windows go by {' or '.join(map(repr, TIMES))}")
        self.registry = Registry.of(registry)
        self.window = fixed(window)
        self.policy = policy or EventTimePolicy()
        self.rules = check_rules(rules)
        self.heartbeat = heartbeat
        self.time = time
        self.partitions: dict[str, PartitionJob] = {}

    def settings(self) -> dict[str, object]:
        """What the warm store was built with; every process that writes it must use the same."""
        w = self.window
        return {
            "window": f"hop {describe(w.hop_us)} size {describe(w.size_us)} closed {w.closed}",
            "time": self.time,
            "policy": self.policy.describe(),
            "policy_tick": describe(self.policy.tick_us),
            "rules": describe_rules(self.rules),
        }

    def check_settings(self, stored: dict[str, object] | None) -> None:
        """Refuse a warm store built with other settings."""
        if stored is not None and stored != self.settings():
            raise ConfigurationError(
                "the warm store was built with other settings; use the same ones or a new warm store.\n"
                f"  stored: {stored}\n  given:  {self.settings()}"
            )

    # -- partitions held ---------------------------------------------------------------------

    def claim(
        self, partition_id: str, stored: StoredPartition | None = None, *, start: Position | None = None
    ) -> PartitionJob:
        """Hold a partition: restored from ``stored``, or fresh (starting after ``start`` when given)."""
        kw = {"window": self.window, "policy": self.policy, "rules": self.rules, "time": self.time}
        if stored is not None:
            job = PartitionJob.restore(stored, self.registry, **kw)  # type: ignore[arg-type]
        else:
            job = PartitionJob(partition_id, self.registry, **kw)  # type: ignore[arg-type]
            if start is not None:
                job.start_at(start)
        self.partitions[str(partition_id)] = job
        return job

    def release(self, partition_id: str) -> None:
        """Stop holding a partition (what was not taken is dropped: it is read again by the next holder)."""
        self.partitions.pop(str(partition_id), None)

    # -- input -----------------------------------------------------------------------------

    def push(self, partition_id: str, frame: pl.DataFrame) -> None:
        """One held partition's received frame, in its order."""
        self.push_all(frame.with_columns(pl.lit(str(partition_id)).alias(C.PARTITION)))

    def push_all(self, frame: pl.DataFrame) -> None:
        """A received frame of several held partitions (each partition's rows in its order)."""
        for pid, part in prepare(frame, self.registry, self.policy, self.time).items():
            job = self._held(pid)
            if job.flushed:
                raise ProcessingError(f"partition {pid} was flushed (end of stream)")
            job.feed_prepared(part)

    def mark(self, partition_id: str, hub_us: int) -> bool:
        """The partition is read to the hub's end as of hub time ``hub_us``; with heartbeats its clock moves on."""
        job = self.partitions.get(str(partition_id))
        if job is None or job.flushed or not self.heartbeat:
            return False
        return job.advance(hub_us)

    def finish(self) -> None:
        """End of stream for every partition held: emit the windows still open (``closed_at`` null)."""
        for job in self.partitions.values():
            job.flush()

    # -- output ----------------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        return any(job.has_output for job in self.partitions.values())

    def take(self, *, owner: str | None = None, snapshot: bool = False) -> Commit:
        """What every held partition produced since the last take (``snapshot``: also the whole job pickled,
        as a baseline for benchmarks)."""
        whole = None
        if snapshot:
            state = {pid: (job.engine, job.alerts, job.totals) for pid, job in self.partitions.items()}
            whole = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        # The store logs device records; a partition whose log is due is compacted (a full dump of its
        # devices replaces the log) — one per commit, so no commit pays for every partition at once.
        due = max(self.partitions.values(), key=lambda job: job.log_excess, default=None)
        compact = due.partition_id if due is not None and due.log_excess > 0 else None
        steps = [job.take(compact=job.partition_id == compact) for job in self.partitions.values()
                 if job.has_output or job.partition_id == compact]  # fmt: skip
        return Commit(steps=steps, owner=owner, snapshot=whole)

    @property
    def totals(self) -> PartitionTotals:
        """Totals of the partitions held."""
        out = PartitionTotals()
        for job in self.partitions.values():
            out = out + job.totals
        return out

    @property
    def finished(self) -> bool:
        return bool(self.partitions) and all(job.flushed for job in self.partitions.values())

    def _held(self, partition_id: str) -> PartitionJob:
        job = self.partitions.get(str(partition_id))
        if job is None:
            raise ProcessingError(f"partition {partition_id} is not held by this job; claim it first")
        return job
