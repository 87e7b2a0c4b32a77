"""The processor's options, checked once: :class:`ProcessorOptions`.

Every option has a sensible default; the ones a user meets first are the
consumer group (``warm``), the checkpoint container (``warm-checkpoints``, what
``iotlib monitor`` reads), the warm store file, the window (5 s tumbling, the
original's), the event-time policy and the alert rules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Unpack

from iotlib.durations import Duration, describe, to_seconds
from iotlib.errors import ConfigurationError
from iotlib.frames import Frame
from iotlib.hub.consumer import ConsumerOptions, ConsumerParameters, consumer_values
from iotlib.processing.event_time import EventTimePolicy
from iotlib.processing.reference import Registry
from iotlib.processing.windows import Window, fixed
from iotlib.warm.alerts import Rule, check_rules, default_rules
from iotlib.warm.job import TIMES
from iotlib.warm.store import default_path

DEFAULT_CONSUMER_GROUP = "warm"
DEFAULT_CHECKPOINT_CONTAINER = "warm-checkpoints"


class ProcessorParameters(ConsumerParameters, total=False):
    """The keywords a stream processor takes: ``registry`` (the device registry, default the
    shipped Fabrikam fleet) and the options of :class:`ProcessorOptions`."""

    registry: Frame | Registry | None
    warm_store: str | os.PathLike[str]
    window: Window | Duration
    policy: EventTimePolicy
    alerts: Sequence[Rule] | None
    alert_eventhub: str | None
    heartbeat: bool
    heartbeat_interval: Duration
    commit_interval: Duration
    time: str


@dataclass(frozen=True, kw_only=True)
class ProcessorOptions(ConsumerOptions):
    """How the stream processor reads, windows, stores and alerts.

    - ``consumer_group`` / ``checkpoint_container``: where it reads and checkpoints;
    - ``warm_store``: the SQLite file (default ``.iotlib/warm.sqlite``);
    - ``window``, ``policy``: the job (5 s tumbling, :class:`~iotlib.processing.EventTimePolicy`);
    - ``alerts``: rules (:mod:`iotlib.warm.alerts`; ``()`` for none); ``alert_eventhub``: also
      send each alert as an event to this hub (same namespace);
    - ``starting_position``: for partitions the warm store has never seen: ``"earliest"``
      (default), ``"latest"``, a datetime, a sequence number, one per partition, or a
      :func:`iotlib.hub.positions` snapshot (start after it): see :mod:`iotlib.hub.starting`;
    - ``heartbeat``: close windows and notice silent devices when nothing arrives (on);
    - ``heartbeat_interval``: how often (s) quiet partitions are checked against the hub's end;
    - ``commit_interval``: seconds from the end of one warm-store commit to the next (each writes
      what changed since the last: rows, progress, the partitions' state changes);
    - ``time``: windows by the devices' clocks (``"time_observed"``, event time, the original's
      ``TIMESTAMP BY``) or by arrival at the hub (``"arrival"``: nothing is late; for replays of old data);
    - ``max_batch_size``, ``max_wait_time``, ``prefetch``: the consumer's receive settings;
    - ``load_balancing_interval``, ``ownership_expiry``, ``load_balancing_strategy``: the client's
      partition ownership (``"greedy"`` by default: a processor takes every partition nobody holds at
      once, and a dead processor's partitions as soon as their ownership expires).
    """

    eventhub_name: str
    consumer_group: str = DEFAULT_CONSUMER_GROUP
    checkpoint_container: str = DEFAULT_CHECKPOINT_CONTAINER
    warm_store: Path = field(default_factory=default_path)
    window: Window | Duration = "5s"
    policy: EventTimePolicy = field(default_factory=EventTimePolicy)
    alerts: tuple[Rule, ...] = field(default_factory=default_rules)
    alert_eventhub: str | None = None
    heartbeat: bool = True
    heartbeat_interval: float = 1.0
    commit_interval: float = 1.0
    time: str = "time_observed"
    max_batch_size: int = 500

    @classmethod
    def create(cls, *, eventhub_name: str, **options: Unpack[ProcessorParameters]) -> ProcessorOptions:
        """Options from keywords, each checked; unknown names are an error (``registry`` is not an option)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown processor option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {
            k: v for k, v in options.items() if v is not None or k in ("alert_eventhub", "ownership_expiry")
        }
        if "warm_store" in values:
            values["warm_store"] = Path(os.fspath(values["warm_store"])).expanduser()
        if "alerts" in values:
            values["alerts"] = check_rules(values["alerts"])
        for name in ("heartbeat_interval", "commit_interval"):
            if name in values:
                values[name] = to_seconds(values[name], name=name)
        consumer_values(values)
        if "policy" in values and not isinstance(values["policy"], EventTimePolicy):
            raise ConfigurationError(f"policy must be an EventTimePolicy, got {type(values['policy']).__name__}")
        opts = cls(eventhub_name=eventhub_name, **values)
        opts._check()
        return opts

    def _check(self) -> None:
        fixed(self.window)
        if not self.eventhub_name:
            raise ConfigurationError("eventhub_name must not be empty")
        self.check_consumer()
        for name in ("heartbeat_interval", "commit_interval"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if self.time not in TIMES:
            raise ConfigurationError(f"time={self.time!r}: windows go by {' or '.join(map(repr, TIMES))}")

    def describe(self) -> Sequence[str]:
        """A few lines for reports."""
        w = fixed(self.window)
        return [
            f"consumer group {self.consumer_group!r}, checkpoints in {self.checkpoint_container!r}",
            f"warm store {self.warm_store}",
            f"window {'tumbling ' + describe(w.size_us) if w.hop_us == w.size_us else f'hopping {describe(w.size_us)} every {describe(w.hop_us)}'}; "
            f"{self.policy.describe()}",
            f"windows by {'arrival at the hub' if self.time == 'arrival' else 'event time (the devices’ clocks)'}; "
            f"heartbeat {'on' if self.heartbeat else 'off'}, commit every {self.commit_interval:g} s",
        ]
