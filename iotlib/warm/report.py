"""What a processor run did: :class:`ProcessReport`, live while it runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from iotlib.processing.results import Counts

#: Above this share of events observed long before they arrived, a run looks like a historical replay.
REPLAY_SHARE = 0.5


@dataclass
class ProcessReport:
    """Counts and state of one :meth:`StreamProcessor.run`, updated as it goes.

    ``received``: events this run read from the hub and processed (replays of events already stored
    are skipped and not counted); ``windows``/``commits``: written in this run. Since the warm store
    began (every partition, whichever process ran it): ``counts``, the window job's totals (late,
    duplicates, …), ``dead_letters``, ``alerts``, ``heartbeats``, and ``behind``: events observed
    longer before they reached the hub than the idle timeout — when most are, the events are a
    historical replay (see :attr:`replay_hint`). ``partitions``: those this run holds now;
    ``handed_over``: partitions it held and another processor took.
    """

    eventhub_name: str
    consumer_group: str
    warm_store: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    stopped: datetime | None = None
    stop_reason: str = ""
    received: int = 0
    windows: int = 0
    commits: int = 0
    last_commit_seconds: float = 0.0
    heartbeats: int = 0
    dead_letters: int = 0
    alerts: int = 0
    alerts_sent: int = 0
    behind: int = 0
    counts: Counts = field(default_factory=Counts)
    partitions: set[str] = field(default_factory=set)
    handed_over: int = 0
    positions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    idle_timeout: str = "30s"

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

    @property
    def replay_hint(self) -> str | None:
        """What to do when most events were observed long before they reached the hub, else ``None``."""
        seen = self.counts.events + self.counts.unmatched
        if seen < 100 or self.behind < REPLAY_SHARE * seen:
            return None
        return (
            f"{self.behind:,} of {seen:,} events were observed more than {self.idle_timeout} (the idle timeout) "
            "before they reached the hub: a historical replay? On event time their windows closed before they "
            "arrived, so they are late. Process them by arrival time (--time arrival), or let late events into the "
            "open windows (--late-policy adjust), or send them live from now (iotlib ingest --start now)."
        )

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
            f"{self.dead_letters:,} dead letters, {self.alerts:,} alerts; {self.behind:,} observed more than "
            f"{self.idle_timeout} before they arrived",
            f"  stopped: {self.stop_reason or 'running'}",
        ]
        if self.handed_over:
            lines.append(f"  partitions handed over to other processors: {self.handed_over}")
        hint = self.replay_hint
        if hint:
            lines.append(f"  note: {hint}")
        if self.errors:
            lines.append(f"  errors: {'; '.join(self.errors[:5])}")
        return "\n".join(lines)
