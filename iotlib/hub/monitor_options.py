"""What a lag monitor watches and how (its keywords, declared and checked once for the sync and async
twins), and the keywords of the slow consumer it is demonstrated on."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from iotlib.durations import Duration, to_seconds
from iotlib.errors import ConfigurationError
from iotlib.hub.lag import LagRule
from iotlib.hub.starting import StartingPosition

#: Where iotlib's own consumers keep their checkpoints, by consumer group.
DEFAULT_CHECKPOINTS = {"capture": "capture-checkpoints", "warm": "warm-checkpoints"}
#: The container a group not in :data:`DEFAULT_CHECKPOINTS` is looked for in, unless named.
FALLBACK_CONTAINER = "checkpoints"

ConsumerGroups = Sequence[str] | Mapping[str, str]
_CONTAINER = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


class MonitorParameters(TypedDict, total=False):
    """The keywords of ``LagMonitor`` (sync and ``.aio``), described on :class:`MonitorOptions`."""

    consumer_groups: ConsumerGroups
    lag_time: bool
    peek_consumer_group: str
    rule: LagRule | None
    clock: Callable[[], float]
    timeout: Duration


def checkpoint_containers(consumer_groups: ConsumerGroups) -> dict[str, str]:
    """Each group's checkpoint container: a mapping as given; a list by :data:`DEFAULT_CHECKPOINTS`.

    ``"group=container"`` in a list names the container too (the command line's spelling).
    """
    if isinstance(consumer_groups, str):
        consumer_groups = [consumer_groups]
    if isinstance(consumer_groups, Mapping):
        pairs = [(str(g), str(c)) for g, c in consumer_groups.items()]
    else:
        pairs = []
        for spec in consumer_groups:
            group, _, container = str(spec).partition("=")
            pairs.append((group, container or DEFAULT_CHECKPOINTS.get(group, FALLBACK_CONTAINER)))
    for group, container in pairs:
        if not group.strip() or not container.strip():
            raise ConfigurationError(
                f"consumer group {group!r} and its checkpoint container {container!r} must be named"
            )
        if not _CONTAINER.fullmatch(container) or "--" in container:
            raise ConfigurationError(
                f"checkpoint container {container!r} of consumer group {group!r} is not a Blob container name "
                "(3-63 lower-case letters, digits and single hyphens, starting with a letter or digit)"
            )
    if not pairs:
        raise ConfigurationError("no consumer group to monitor: name at least one")
    return dict(pairs)


@dataclass(frozen=True, kw_only=True)
class MonitorOptions:
    """``consumer_groups``: group → checkpoint container (or a list, see :func:`checkpoint_containers`);
    ``lag_time``: read each partition's oldest unprocessed event for ``lag_seconds`` (one receiver per
    partition with a backlog, on ``peek_consumer_group``); ``rule``: a :class:`~iotlib.hub.lag.LagRule`
    evaluated on every look; ``clock``: seconds since the epoch (``sampled_at``; tests pass their
    own); ``timeout``: how long one look may wait for the hub and storage."""

    consumer_groups: dict[str, str]
    lag_time: bool = True
    peek_consumer_group: str = "$Default"
    rule: LagRule | None = None
    clock: Callable[[], float] = time.time
    timeout: float = 30.0

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> MonitorOptions:
        unknown = set(values) - set(MonitorParameters.__annotations__)
        if unknown:
            raise ConfigurationError(f"unknown monitor option(s) {sorted(unknown)}")
        checked = dict(values)
        checked["consumer_groups"] = checkpoint_containers(values.get("consumer_groups", DEFAULT_CHECKPOINTS))
        if "timeout" in checked:
            checked["timeout"] = to_seconds(checked["timeout"], name="timeout", allow_zero=False)
        rule = checked.get("rule")
        if rule is not None and not isinstance(rule, LagRule):
            raise ConfigurationError(f"rule must be a LagRule, not {type(rule).__name__}")
        if not callable(checked.get("clock", time.time)):
            raise ConfigurationError("clock must be a callable returning seconds since the epoch")
        return cls(**checked)


class PacedParameters(TypedDict, total=False):
    """The keywords of :class:`~iotlib.hub.paced.PacedConsumer` (described there)."""

    consumer_group: str
    checkpoint_container: str
    rate: float
    starting_position: StartingPosition
    checkpoint_every: Duration
    max_batch_size: int
