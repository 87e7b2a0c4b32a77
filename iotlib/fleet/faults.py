"""Faults the simulator can inject, one small typed config each.

Pass any of these to :func:`iotlib.fleet.simulate.generate` (``faults=[...]``). Each
is off unless given; each leaves a ground-truth column in the simulated events
(see :data:`FAULT_COLUMNS`) so an analysis can be scored against what really
happened. Times are offsets from the simulation's start.

Devices for a device-level fault are picked by ``fraction`` (each device
independently, from the seed and its id) or listed by id in ``devices``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError
from iotlib.fleet.events import MALFORMED_KINDS

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance


def _normalise_durations(config: DataclassInstance) -> None:
    """Let every duration field take text or seconds too (``Offline(outage="3m")``, ``outage=900``)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if "timedelta" in str(f.type) and value is not None and not isinstance(value, timedelta):
            object.__setattr__(config, f.name, to_timedelta(value, name=f"{type(config).__name__}.{f.name}"))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{name} must be between 0 and 1, got {value}")


def _check_positive(name: str, value: timedelta, *, allow_zero: bool = False) -> None:
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise ConfigurationError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


def _normalise_devices(config: StuckSensors | ClockSkew | Offline) -> None:
    devices = config.devices
    if devices is not None:
        if isinstance(devices, str):
            devices = (devices,)
        object.__setattr__(config, "devices", tuple(str(d) for d in devices))


@dataclass(frozen=True)
class HeatEvent:
    """Buildings get hot: readings rise by ``rise`` °C, reached linearly over ``ramp``.

    From ``start`` for ``duration`` (``None``: to the end of the simulation).
    Ground truth: ``fault_heat``.
    """

    buildings: tuple[int, ...]
    start: timedelta = timedelta(0)
    duration: timedelta | None = None
    rise: float = 12.0
    ramp: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        _normalise_durations(self)
        object.__setattr__(self, "buildings", tuple(int(b) for b in self.buildings))
        if not self.buildings:
            raise ConfigurationError("HeatEvent needs at least one building id")
        _check_positive("HeatEvent.start", self.start, allow_zero=True)
        if self.duration is not None:
            _check_positive("HeatEvent.duration", self.duration)
        _check_positive("HeatEvent.ramp", self.ramp, allow_zero=True)


@dataclass(frozen=True)
class StuckSensors:
    """Sensors freeze: from ``since`` on, a stuck device repeats the value it read then.

    A stuck reading ignores heat and spikes. Ground truth: ``fault_stuck``.
    """

    fraction: float = 0.01
    devices: tuple[str, ...] | None = None
    since: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        _normalise_durations(self)
        _normalise_devices(self)
        _check_fraction("StuckSensors.fraction", self.fraction)
        _check_positive("StuckSensors.since", self.since, allow_zero=True)


@dataclass(frozen=True)
class Spikes:
    """Single readings jump by ``magnitude`` °C up or down, each with ``probability``.

    Ground truth: ``fault_spike``.
    """

    probability: float = 0.001
    magnitude: float = 40.0

    def __post_init__(self) -> None:
        _normalise_durations(self)
        _check_fraction("Spikes.probability", self.probability)


@dataclass(frozen=True)
class ClockSkew:
    """Device clocks are wrong by a fixed amount between ``min_skew`` and ``max_skew``.

    ``direction``: ``"ahead"``, ``"behind"`` or ``"both"``. ``time_observed``
    carries the skewed device clock; ``sent_at`` stays true. Ground truth:
    ``fault_clock_skew``.
    """

    fraction: float = 0.02
    devices: tuple[str, ...] | None = None
    min_skew: timedelta = timedelta(seconds=30)
    max_skew: timedelta = timedelta(hours=1)
    direction: str = "both"

    def __post_init__(self) -> None:
        _normalise_durations(self)
        _normalise_devices(self)
        _check_fraction("ClockSkew.fraction", self.fraction)
        _check_positive("ClockSkew.min_skew", self.min_skew, allow_zero=True)
        if self.max_skew < self.min_skew:
            raise ConfigurationError(f"ClockSkew.max_skew ({self.max_skew}) is below min_skew ({self.min_skew})")
        if self.direction not in ("ahead", "behind", "both"):
            raise ConfigurationError(f"ClockSkew.direction must be ahead, behind or both, got {self.direction!r}")


@dataclass(frozen=True)
class Offline:
    """Devices lose their connection for ``outage``, buffer readings, then send them in a burst.

    Each offline device's outage starts at a random time in the simulation;
    on reconnecting it sends the buffered readings ``spacing`` apart, so their
    ``sent_at`` is later than ``time_observed`` (possibly after the simulated
    stretch ends). Ground truth: ``fault_offline``.
    """

    fraction: float = 0.01
    devices: tuple[str, ...] | None = None
    outage: timedelta = timedelta(minutes=15)
    spacing: timedelta = timedelta(milliseconds=50)

    def __post_init__(self) -> None:
        _normalise_durations(self)
        _normalise_devices(self)
        _check_fraction("Offline.fraction", self.fraction)
        _check_positive("Offline.outage", self.outage)
        _check_positive("Offline.spacing", self.spacing, allow_zero=True)


@dataclass(frozen=True)
class Duplicates:
    """Events are sent twice (a retry after a lost acknowledgement), ``delay`` apart.

    The second copy is marked in ``fault_duplicate``.
    """

    probability: float = 0.001
    delay: timedelta = timedelta(seconds=2)

    def __post_init__(self) -> None:
        _normalise_durations(self)
        _check_fraction("Duplicates.probability", self.probability)
        _check_positive("Duplicates.delay", self.delay, allow_zero=True)


@dataclass(frozen=True)
class MalformedPayloads:
    """Events whose JSON body will be broken, each with ``probability``, kind drawn from ``kinds``.

    The events themselves stay whole; ``fault_malformed`` names the kind and
    :func:`iotlib.fleet.events.encode_frame` writes the broken body.
    """

    probability: float = 0.001
    kinds: tuple[str, ...] = MALFORMED_KINDS

    def __post_init__(self) -> None:
        _normalise_durations(self)
        _check_fraction("MalformedPayloads.probability", self.probability)
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = [k for k in self.kinds if k not in MALFORMED_KINDS]
        if unknown or not self.kinds:
            raise ConfigurationError(
                f"MalformedPayloads.kinds must be among {', '.join(MALFORMED_KINDS)}, got {self.kinds}"
            )


Fault = HeatEvent | StuckSensors | Spikes | ClockSkew | Offline | Duplicates | MalformedPayloads

#: Ground-truth column for each fault kind (Boolean, except fault_malformed: the kind or null).
FAULT_COLUMNS: dict[type, str] = {
    HeatEvent: "fault_heat",
    StuckSensors: "fault_stuck",
    Spikes: "fault_spike",
    ClockSkew: "fault_clock_skew",
    Offline: "fault_offline",
    Duplicates: "fault_duplicate",
    MalformedPayloads: "fault_malformed",
}

#: Names used by :func:`parse_fault` (and ``iotlib simulate --fault``).
FAULT_NAMES: dict[str, type] = {
    "heat": HeatEvent,
    "stuck": StuckSensors,
    "spikes": Spikes,
    "skew": ClockSkew,
    "offline": Offline,
    "duplicates": Duplicates,
    "malformed": MalformedPayloads,
}


def _convert(name: str, text: str, kind: object) -> object:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if text.lower() in ("none", ""):
            return None
        return _convert(name, text, inner[0])
    if origin is tuple:
        return tuple(_convert(name, part, args[0]) for part in text.split("+") if part)
    if kind is timedelta:
        return to_timedelta(text, name=name)
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise ConfigurationError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    raise ConfigurationError(f"cannot set {name} from text")


def parse_fault(spec: str) -> Fault:
    """A fault from text: ``kind`` or ``kind:field=value,field=value``.

    Kinds: heat, stuck, spikes, skew, offline, duplicates, malformed. Lists use
    ``+`` (``heat:buildings=25+26,start=10m,duration=30m``); durations read like
    ``90s``, ``15m``, ``1h``.
    """
    kind, _, rest = spec.partition(":")
    cls = FAULT_NAMES.get(kind.strip().lower())
    if cls is None:
        raise ConfigurationError(f"unknown fault {kind!r}; known: {', '.join(FAULT_NAMES)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in names:
            raise ConfigurationError(f"fault {kind}: cannot read {item!r}; fields are {', '.join(sorted(names))}")
        values[key] = _convert(f"{kind}.{key}", value.strip(), hints[key])
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigurationError(f"fault {kind}: {exc}") from None


def check_faults(faults: Sequence[Fault]) -> list[Fault]:
    """The faults as a list; at most one of each kind except HeatEvent (one per heat wave)."""
    seen: dict[type, int] = {}
    for f in faults:
        if type(f) not in FAULT_COLUMNS:
            raise ConfigurationError(f"not a fault config: {f!r}")
        seen[type(f)] = seen.get(type(f), 0) + 1
    repeated = [c.__name__ for c, n in seen.items() if n > 1 and c is not HeatEvent]
    if repeated:
        raise ConfigurationError(f"give at most one of each fault (repeated: {', '.join(repeated)})")
    return list(faults)


__all__ = [
    "ClockSkew",
    "Duplicates",
    "FAULT_COLUMNS",
    "FAULT_NAMES",
    "Fault",
    "HeatEvent",
    "MalformedPayloads",
    "Offline",
    "Spikes",
    "StuckSensors",
    "check_faults",
    "parse_fault",
]
