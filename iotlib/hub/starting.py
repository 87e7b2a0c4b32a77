"""Where a reader starts in a partition it has no checkpoint for: one vocabulary for every engine.

- ``"earliest"``: the oldest event the hub retains;
- ``"latest"``: after the last event enqueued when the run starts (only what comes later);
- a timezone-aware ``datetime``: after that enqueued time;
- an ``int``: after that sequence number;
- per partition: a mapping of partition id to any of the above, or a
  :func:`iotlib.hub.positions` snapshot (after each partition's last event at the snapshot).
  Partitions the mapping does not name start at ``"earliest"``.

A bare ``"-1"`` or ``"@latest"`` (the SDK's own spellings) and anything else is refused with a
:class:`~iotlib.errors.ConfigurationError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal, cast

from iotlib.errors import ConfigurationError
from iotlib.hub.partitions import EMPTY, PartitionPosition

#: One partition's start.
Start = Literal["earliest", "latest"] | datetime | int
#: What engines accept: one start for every partition, or one per partition.
StartingPosition = Start | Mapping[str, Start | PartitionPosition]

WORDS = ("earliest", "latest")
_HELP = "use 'earliest', 'latest', a timezone-aware datetime (enqueued time), an int (sequence number)"


def check_starting_position(value: object, *, name: str = "starting_position") -> StartingPosition:
    """``value`` if it is in the vocabulary (a snapshot's keys become text); a clear error otherwise."""
    if isinstance(value, Mapping):
        return {str(pid): _check_one(v, f"{name}[{pid!r}]", snapshot=True) for pid, v in value.items()}
    one = _check_one(value, name, snapshot=False)
    assert not isinstance(one, PartitionPosition)  # only a snapshot's values are positions
    return one


def _check_one(value: object, name: str, *, snapshot: bool) -> Start | PartitionPosition:
    if isinstance(value, PartitionPosition) and snapshot:
        return value
    if isinstance(value, bool):
        raise ConfigurationError(f"{name}={value!r}: {_HELP}, or a hub.positions() snapshot")
    if isinstance(value, int):
        if value < EMPTY:
            raise ConfigurationError(f"{name}={value}: a sequence number is -1 (before the first event) or more")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{name}={value!r}: give the datetime a time zone (e.g. UTC)")
        return value
    if isinstance(value, str) and value in WORDS:
        return cast(Start, value)  # one of WORDS
    raise ConfigurationError(f"{name}={value!r}: {_HELP}, or a hub.positions() snapshot")


def parse_starting_position(text: str) -> StartingPosition:
    """The command line's spelling: ``earliest``, ``latest``, an ISO 8601 time or a sequence number."""
    text = text.strip()
    if text in WORDS:
        return cast(Start, text)  # one of WORDS
    if text.lstrip("-").isdigit():
        return check_starting_position(int(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"starting position {text!r}: use earliest, latest, an ISO 8601 time or a sequence number"
        ) from None
    return check_starting_position(when)


def needs_positions(start: StartingPosition) -> bool:
    """Whether :func:`resolve` needs the hub's positions at the start (for ``"latest"``)."""
    values = start.values() if isinstance(start, Mapping) else [start]
    return any(isinstance(v, str) and v == "latest" for v in values)


SdkPosition = str | int | datetime


def resolve(
    start: StartingPosition, positions: Mapping[str, PartitionPosition] | None = None
) -> SdkPosition | dict[str, SdkPosition]:
    """``start`` as the SDK's ``receive_batch`` takes it (``starting_position``, exclusive).

    ``"earliest"`` becomes the SDK's ``"-1"``; ``"latest"`` and snapshots become sequence numbers,
    ``positions`` (needed when :func:`needs_positions`) being the hub's state at the start.
    """
    if not isinstance(start, Mapping) and not needs_positions(start):
        return _sdk(start, None)
    if positions is None:
        if not isinstance(start, Mapping):
            raise ConfigurationError("starting_position='latest' needs the hub's positions at the start")
        return {pid: _sdk(one, None) for pid, one in start.items()}
    return {
        pid: _sdk(start.get(pid, "earliest") if isinstance(start, Mapping) else start, now)
        for pid, now in positions.items()
    }


def _sdk(one: Start | PartitionPosition, now: PartitionPosition | None) -> SdkPosition:
    if isinstance(one, str) and one == "latest":
        if now is None:
            raise ConfigurationError("starting_position='latest' needs the hub's positions at the start")
        one = now
    if isinstance(one, PartitionPosition):
        one = EMPTY if one.is_empty else one.last_enqueued_sequence_number
    if isinstance(one, str) or one == EMPTY:  # "earliest"
        return "-1"
    return one
