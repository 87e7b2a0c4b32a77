"""What a processor run did: :class:`ProcessReport`, live while it runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from iotlib.processing.results import Counts


@dataclass
class ProcessReport:
    """Counts and state of one :meth:`StreamProcessor.run`, updated as it goes.

    ``received``: events read from the hub (replays of events already stored are
    skipped and not counted); ``released``: of those, events past the partition
    merger into the job; ``counts``: the window job's totals since the warm store
    began (late, duplicates, windows, …); ``dead_letters`` and ``alerts`` likewise
    since the warm store began; ``windows``/``commits`` in this run.
    """

    eventhub_name: str
    consumer_group: str
    warm_store: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    stopped: datetime | None = None
    stop_reason: str = ""
    received: int = 0
    released: int = 0
    windows: int = 0
    commits: int = 0
    heartbeats: int = 0
    dead_letters: int = 0
    alerts: int = 0
    alerts_sent: int = 0
    counts: Counts = field(default_factory=Counts)
    partitions: set[str] = field(default_factory=set)
    positions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        end = self.stopped.timestamp() if self.stopped else time.time()
        return max(end - self.started.timestamp(), 1e-9)

    @property
    def events_per_second(self) -> float:
        """Events received per second of the run."""
        return self.received / self.elapsed

    @property
    def late(self) -> int:
        """Events the late policy handled (late or clock ahead), since the warm store began."""
        return self.counts.late + self.counts.clock_ahead

    def add_error(self, text: str) -> None:
        if text not in self.errors:
            self.errors.append(text)

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"hub {self.eventhub_name!r}, consumer group {self.consumer_group!r} → {self.warm_store}",
            f"  {self.received:,} events received in {self.elapsed:.1f} s ({self.events_per_second:,.0f}/s), "
            f"{self.windows:,} windows written in {self.commits} commits",
            f"  warm store totals: {c.accepted:,} accepted, {self.late:,} late (policy {c.side_output:,} side output, "
            f"{c.adjusted:,} adjusted, {c.dropped:,} dropped), {c.duplicates:,} duplicates, {c.unmatched:,} unknown devices, "
            f"{self.dead_letters:,} dead letters, {self.alerts:,} alerts",
            f"  stopped: {self.stop_reason or 'running'}",
        ]
        if self.errors:
            lines.append(f"  errors: {'; '.join(self.errors[:5])}")
        return "\n".join(lines)
