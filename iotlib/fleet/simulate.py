"""Simulated Fabrikam telemetry: every thermostat's readings over a stretch of time, vectorised.

:func:`generate` returns a polars DataFrame with one row per event sent,
sorted by ``sent_at``:

====================  ========================  ==============================================
column                dtype                     meaning
====================  ========================  ==============================================
device_id             Enum(registry's ids)      the sending device (4 bytes a row, not a string)
time_observed         Datetime(us, UTC)         the reading's time on the device's clock
temperature           Float32                   degrees Celsius
sent_at               Datetime(us, UTC)         true time the device transmits the event
event_type            Enum                      ``UpdateTemperatureEvent``
event_type_version    Enum                      ``"1"``
fault_heat            Boolean                   ground truth: reading raised by a heat event
fault_stuck           Boolean                   ground truth: frozen sensor value
fault_spike           Boolean                   ground truth: one-off spike
fault_clock_skew      Boolean                   ground truth: device clock wrong
fault_offline         Boolean                   ground truth: buffered while offline, sent late
fault_duplicate       Boolean                   ground truth: second copy of an event
fault_malformed       Enum(kinds), nullable     ground truth: the body will be broken this way
====================  ========================  ==============================================

A healthy device observes and transmits at once, so ``sent_at ==
time_observed``; clock skew moves ``time_observed``, buffering while offline
delays ``sent_at``. Columns of faults that are off (and the two constant
columns) are broadcast scalars: they cost no memory.

The model follows the original journey's simulator. Scenario
``NoErrorsExpected``: each device starts at a random whole temperature 0-24 °C
and random-walks by a whole -2..+2 °C per reading (unbounded, as in the
original). ``ThirtyDegreeReadings``: every reading is 30 °C. A device reads
every ``period`` (60 s) with ±``jitter`` (10 %) on each interval. Firmware
``staggered`` starts devices at random moments over ``warmup`` (time-based load
levelling); ``synchronized`` fires every device on a shared clock, within the
same second of ``start + k·period``: a burst mode to stress ingestion.

Determinism: every random choice comes from a hash of (seed, device id,
reading number), so the same seed gives the same events whatever the chunk
size, and a device's readings do not depend on which other devices are
simulated. Readings cover ``[start, start + duration)`` of true time;
buffered ones may be sent after the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Required, TypedDict, Unpack

import numpy as np
import polars as pl

from iotlib._workspace import Workspace
from iotlib.durations import epoch_us, to_timedelta
from iotlib.errors import ConfigurationError
from iotlib.fleet.events import EVENT_TYPE, EVENT_TYPE_VERSION, MALFORMED_KINDS
from iotlib.fleet.faults import (
    FAULT_COLUMNS,
    ClockSkew,
    Duplicates,
    Fault,
    HeatEvent,
    MalformedPayloads,
    Offline,
    Spikes,
    StuckSensors,
    check_faults,
    parse_fault,
)
from iotlib.fleet.hashing import GOLDEN, LOW32, key, keys, mix, scaled, unit
from iotlib.fleet.scenario import validate_registry
from iotlib.frames import Frame, as_polars

__all__ = [
    "ClockSkew",
    "Duplicates",
    "EVENT_COLUMNS",
    "FIRMWARES",
    "Fault",
    "HeatEvent",
    "MalformedPayloads",
    "Offline",
    "SCENARIOS",
    "Simulation",
    "Spikes",
    "StuckSensors",
    "DEFAULT_START",
    "FAULT_COLUMNS",
    "events_per_second",
    "generate",
    "parse_fault",
    "parse_start",
    "simulation",
    "write_parquet",
]

SCENARIOS = ("NoErrorsExpected", "ThirtyDegreeReadings")
FIRMWARES = ("staggered", "synchronized")
#: A fixed default start (a Monday), so runs without ``--start`` are reproducible.
DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)

EVENT_TYPE_DTYPE = pl.Enum([EVENT_TYPE])
EVENT_TYPE_VERSION_DTYPE = pl.Enum([EVENT_TYPE_VERSION])
MALFORMED_DTYPE = pl.Enum(list(MALFORMED_KINDS))
_FLAG_COLUMNS = [c for c in FAULT_COLUMNS.values() if c != "fault_malformed"]
#: Output columns, in order.
EVENT_COLUMNS = (
    "device_id",
    "time_observed",
    "temperature",
    "sent_at",
    "event_type",
    "event_type_version",
    *_FLAG_COLUMNS,
    "fault_malformed",
)

_US = 1_000_000
_NEVER = np.iinfo(np.int64).max
# Slices must fit their time offsets in 31 bits of the sort key (about 35 minutes).
_MAX_SLICE_US = 30 * 60 * _US
_SENTINEL = (1 << 31) - 1  # a sort key past any slice (marks events held for a later one)


def _td_us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def parse_start(value: datetime | str | None, *, now: datetime | None = None) -> datetime:
    """A simulation start: an aware datetime, RFC 3339/ISO text (``Z`` allowed), or ``"now"``.

    ``"now"`` is the current UTC time to the second (``now`` overrides the clock); ``"now-10m"`` and
    ``"now+1h"`` shift it by a duration (:mod:`iotlib.durations`). None = :data:`DEFAULT_START`.
    """
    if value is None:
        return DEFAULT_START
    if isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("now"):
            return _relative_to_now(value, text[3:], now)
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"cannot read start time {value!r}: use e.g. 2025-01-06T00:00:00Z, now, or now-10m"
            ) from None
    if not isinstance(value, datetime):
        raise ConfigurationError(f"start must be a datetime or ISO text, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ConfigurationError(
            f"start {value.isoformat()} has no time zone: add one (text: a 'Z' or '+00:00'; "
            "datetime: tzinfo=timezone.utc)"
        )
    return value.astimezone(UTC)


def _relative_to_now(value: str, shift: str, now: datetime | None) -> datetime:
    """``now``, ``now-<duration>`` or ``now+<duration>``, to the second."""
    base = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    shift = shift.replace(" ", "")
    if not shift:
        return base
    if shift[0] not in "+-":
        raise ConfigurationError(f"cannot read start time {value!r}: use now, now-10m or now+1h")
    offset = to_timedelta(shift[1:], name=f"start {value!r}")
    return base - offset if shift[0] == "-" else base + offset


def _enum_from_codes(codes: np.ndarray, dtype: pl.Enum) -> pl.Series:
    """An Enum Series from its physical codes, without going through strings."""
    series = pl.Series(codes)
    to = getattr(series, "cat", None)
    if to is not None and hasattr(to, "to"):  # polars >= 2
        return series.cat.to(dtype, strict=False)
    return series.cast(dtype)  # polars 1.x casts integer codes directly


@dataclass
class _Events:
    """A few events as full parallel arrays: carried-over and duplicate sends."""

    device: np.ndarray  # uint32 index into the registry
    observed: np.ndarray  # int64 µs, device clock
    temperature: np.ndarray  # float32
    sent: np.ndarray  # int64 µs, true time of sending
    flags: np.ndarray | None = None  # uint8, bit i = _FLAG_COLUMNS[i]
    malformed: np.ndarray | None = None  # int8 kind code, -1 = well-formed

    def __len__(self) -> int:
        return len(self.sent)

    def take(self, index: np.ndarray) -> _Events:
        return _Events(
            self.device[index],
            self.observed[index],
            self.temperature[index],
            self.sent[index],
            None if self.flags is None else self.flags[index],
            None if self.malformed is None else self.malformed[index],
        )

    @staticmethod
    def concat(parts: Sequence[_Events]) -> _Events:
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        def cat_optional(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        return _Events(
            cat("device"),
            cat("observed"),
            cat("temperature"),
            cat("sent"),
            cat_optional("flags"),
            cat_optional("malformed"),
        )


@dataclass
class _Batch:
    """A slice's readings, grouped by device in reading order (millions of rows).

    Kept lean: ``observed`` and ``sent`` default to the true time, and the few
    events sent late (buffered while offline) are patches, not a full copy.
    """

    device: np.ndarray  # uint32
    true_time: np.ndarray  # int64 µs
    temperature: np.ndarray  # float32
    flags: np.ndarray | None
    malformed: np.ndarray | None
    observed: np.ndarray | None = None  # None: the true time (no clock skew)
    late: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # indices sent late, ascending
    late_sent: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.true_time)

    def sent_of(self, index: np.ndarray) -> np.ndarray:
        sent = self.true_time[index]
        if len(self.late) and len(index):
            pos = np.minimum(np.searchsorted(self.late, index), len(self.late) - 1)
            hit = self.late[pos] == index
            sent[hit] = self.late_sent[pos[hit]]
        return sent

    def take(self, index: np.ndarray) -> _Events:
        return _Events(
            self.device[index],
            (self.true_time if self.observed is None else self.observed)[index],
            self.temperature[index],
            self.sent_of(index),
            None if self.flags is None else self.flags[index],
            None if self.malformed is None else self.malformed[index],
        )


def _flag(name: str) -> np.uint8:
    return np.uint8(1 << _FLAG_COLUMNS.index(name))


def _ranges(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Indices ``first[i] .. first[i] + counts[i] - 1`` for every i, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.repeat(first - (np.cumsum(counts) - counts), counts)
    return np.arange(total, dtype=np.int64) + starts


def _gather(main: np.ndarray, extra: np.ndarray | None, order: np.ndarray, spill: np.ndarray) -> np.ndarray:
    """``concat(main, extra)[order]`` without building the concatenation (``spill``: positions >= len(main))."""
    if len(order) == 0:
        return main[:0].copy()
    if extra is None:  # every position is in main
        return main.take(order, mode="clip")
    if len(main) == 0:
        return extra[order]
    out = main.take(order, mode="clip")
    if len(spill):
        out[spill] = extra[order[spill] - len(main)]
    return out


class Simulation:
    """One simulation run, produced slice by slice in time (iterate it for DataFrame chunks).

    Use :func:`generate` for the whole result at once, or :func:`simulation`
    to stream chunks (each sorted by ``sent_at``, chunks in order) to a file
    or a sender with a progress bar: ``len(sim)`` is the number of chunks.
    """

    def __init__(
        self,
        registry: Frame,
        *,
        start: datetime | str | None = None,
        duration: timedelta | str,
        scenario: str = "NoErrorsExpected",
        seed: int = 0,
        firmware: str = "staggered",
        faults: Sequence[Fault | str] = (),
        period: timedelta | str = timedelta(seconds=60),
        jitter: float = 0.1,
        warmup: timedelta | str | None = None,
        temperature_range: tuple[int, int] | None = None,
        chunk_events: int = 2_000_000,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ConfigurationError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        if firmware not in FIRMWARES:
            raise ConfigurationError(f"unknown firmware {firmware!r}; known: {', '.join(FIRMWARES)}")
        if not 0.0 <= jitter < 1.0:
            raise ConfigurationError(f"jitter is a fraction of the period in [0, 1), got {jitter}")
        self.registry = validate_registry(as_polars(registry, name="registry"))
        self.scenario = scenario
        self.firmware = firmware
        self.seed = int(seed)
        self.start = parse_start(start)
        self.duration = to_timedelta(duration, name="duration")
        self.period = to_timedelta(period, name="period")
        self.jitter = float(jitter)
        self.warmup = self.period if warmup is None else to_timedelta(warmup, name="warmup")
        if self.duration <= timedelta(0):
            raise ConfigurationError(f"duration must be positive, got {self.duration}")
        if self.period < timedelta(milliseconds=1):
            raise ConfigurationError(f"period must be at least 1 ms, got {self.period}")
        if self.warmup < timedelta(0):
            raise ConfigurationError(f"warmup must not be negative, got {self.warmup}")
        self.faults = check_faults([parse_fault(f) if isinstance(f, str) else f for f in faults])
        if temperature_range is not None:
            low, high = (int(v) for v in temperature_range)
            if not (low < high and low <= 0 and high >= 24):
                raise ConfigurationError(
                    f"temperature_range must be whole degrees low < high covering the 0-24 °C starts, got {temperature_range}"
                )
            temperature_range = (low, high)
        self.temperature_range = temperature_range

        self.ids: list[str] = self.registry["device_id"].to_list()
        self.device_dtype = pl.Enum(self.ids)
        # Gathering from this Series makes Enum columns without converting the dtype per chunk.
        self._id_series = pl.Series("device_id", self.ids, dtype=self.device_dtype)
        self.n = len(self.ids)
        self.t0 = epoch_us(self.start)
        self.end = self.t0 + _td_us(self.duration)
        self.period_us = _td_us(self.period)
        self.jitter_us = int(self.period_us * self.jitter)
        if 2 * self.jitter_us + 1 >= 1 << 32 or self.period_us >= 1 << 40:
            raise ConfigurationError("period too long: keep it under about 35 minutes with jitter")

        # Slices of true time, sized for about chunk_events events each.
        rate = self.n / (self.period_us / _US)
        slice_us = int(max(chunk_events, 1) / rate * _US)
        self.slice_us = min(max(slice_us, self.period_us * 2, _US), _MAX_SLICE_US)
        self.bounds = list(range(self.t0, self.end, self.slice_us)) + [self.end]

        self._keys = self._device_keys()
        self._reading_keys = self._keys ^ key("reading")
        self._ws = Workspace()
        self._counter = np.empty(0, dtype=np.int64)
        self._prepare_faults()
        self._reset()

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @property
    def expected_events(self) -> int:
        """Roughly how many readings the run will produce (before duplicates)."""
        return int(self.n * (self.end - self.t0) / self.period_us)

    # --- randomness --------------------------------------------------------------------------
    def _device_keys(self) -> np.ndarray:
        # a salt: renaming it would change every simulation
        return keys(f"iotlib.simulate/{self.seed}/", self.ids)

    def _device_hash(self, stream: str) -> np.ndarray:
        """One hash per device for a named purpose."""
        return mix(self._keys ^ key(stream))

    def _pick_devices(self, name: str, fraction: float, devices: tuple[str, ...] | None) -> np.ndarray:
        if devices is not None:
            index = {d: i for i, d in enumerate(self.ids)}
            unknown = [d for d in devices if d not in index]
            if unknown:
                raise ConfigurationError(f"{name}: device(s) not in the registry: {', '.join(unknown[:5])}")
            chosen = np.zeros(self.n, dtype=bool)
            chosen[[index[d] for d in devices]] = True
            return chosen
        return unit(self._device_hash(f"pick/{name}")) < fraction

    # --- faults ------------------------------------------------------------------------------
    def _prepare_faults(self) -> None:
        span = self.end - self.t0
        buildings = self.registry["building_id"].to_numpy()
        self.heat: list[tuple[np.ndarray, int, int, float, int]] = []
        self.stuck_since: np.ndarray | None = None
        self.spikes: Spikes | None = None
        self.skew: np.ndarray | None = None
        self.offline: tuple[np.ndarray, np.ndarray, int] | None = None
        self.duplicates: Duplicates | None = None
        self.malformed: MalformedPayloads | None = None
        for f in self.faults:
            if isinstance(f, HeatEvent):
                unknown = sorted(set(f.buildings) - set(np.unique(buildings).tolist()))
                if unknown:
                    raise ConfigurationError(f"HeatEvent: building(s) not in the registry: {unknown[:5]}")
                a = self.t0 + _td_us(f.start)
                b = self.end if f.duration is None else a + _td_us(f.duration)
                self.heat.append((np.isin(buildings, f.buildings), a, b, f.rise, _td_us(f.ramp)))
            elif isinstance(f, StuckSensors):
                chosen = self._pick_devices("stuck", f.fraction, f.devices)
                self.stuck_since = np.where(chosen, self.t0 + _td_us(f.since), _NEVER)
            elif isinstance(f, Spikes):
                self.spikes = f
            elif isinstance(f, ClockSkew):
                chosen = self._pick_devices("skew", f.fraction, f.devices)
                lo, hi = _td_us(f.min_skew), _td_us(f.max_skew)
                amount = lo + (unit(self._device_hash("skew/amount")) * (hi - lo)).astype(np.int64)
                if f.direction == "behind":
                    amount = -amount
                elif f.direction == "both":
                    amount = np.where(self._device_hash("skew/sign") & np.uint64(1), amount, -amount)
                self.skew = np.where(chosen, amount, 0)
                self.skewed = chosen
            elif isinstance(f, Offline):
                chosen = self._pick_devices("offline", f.fraction, f.devices)
                outage = _td_us(f.outage)
                begin = self.t0 + (unit(self._device_hash("offline/start")) * max(span - outage, 0)).astype(np.int64)
                self.offline = (
                    np.where(chosen, begin, _NEVER),
                    np.where(chosen, begin + outage, _NEVER),
                    _td_us(f.spacing),
                )
            elif isinstance(f, Duplicates):
                self.duplicates = f
            elif isinstance(f, MalformedPayloads):
                self.malformed = f
        on = {FAULT_COLUMNS[type(f)] for f in self.faults}
        self.flag_columns = [c for c in _FLAG_COLUMNS if c in on]

    def _reset(self) -> None:
        """Per-device state carried from slice to slice, as at the start of the run."""
        n = self.n
        self.k_next = np.zeros(n, dtype=np.int64)
        if self.firmware == "staggered":
            self.t_next = self.t0 + (unit(self._device_hash("phase")) * _td_us(self.warmup)).astype(np.int64)
        else:
            self.t_next = np.full(n, self.t0, dtype=np.int64)
        self.level = (scaled(self._device_hash("start"), 25)).astype(np.int32)  # whole 0..24 °C
        self.frozen = np.full(n, np.nan, dtype=np.float32)
        self.offline_first = np.full(n, -1, dtype=np.int64)
        self.carry: _Events | None = None

    # --- the engine --------------------------------------------------------------------------
    def _readings(self, limit: int) -> tuple[np.ndarray, ...]:
        """Every device's readings with true time < ``limit``.

        Returns (readings per device, device, reading number, true time, walk
        level, reading hash), events grouped by device in reading order.
        Works on a devices x readings grid in reused scratch arrays (see
        :class:`iotlib._workspace.Workspace`).
        """
        n, ws = self.n, self._ws
        min_step = self.period_us - self.jitter_us if self.firmware == "staggered" else self.period_us
        span = max(int(limit - self.t_next.min()), 0)
        m = span // max(min_step, 1) + 2
        shape = (n, m)
        reading = ws.get("reading", shape, np.int64)
        np.add(self.k_next[:, None], np.arange(m, dtype=np.int64)[None, :], out=reading)
        h = ws.get("hash", shape, np.uint64)
        np.multiply(reading.view(np.uint64), GOLDEN, out=h)
        h += self._reading_keys[:, None]
        scratch = ws.get("scratch", shape, np.uint64)
        mix(h, scratch)

        # Low 32 bits of the hash: the timing. scratch ends up holding an int64 offset per reading.
        np.bitwise_and(h, LOW32, out=scratch)
        times = ws.get("times", shape, np.int64)
        if self.firmware == "staggered":
            scratch *= np.uint64(2 * self.jitter_us + 1)
            scratch >>= np.uint64(32)
            step = scratch.view(np.int64)
            step += self.period_us - self.jitter_us  # each interval: period ± jitter
            times[:, 0] = self.t_next
            np.cumsum(step[:, :-1], axis=1, out=times[:, 1:])
            times[:, 1:] += self.t_next[:, None]
        else:
            # A shared clock: reading k at start + k·period, somewhere in that second.
            scratch *= np.uint64(_US)
            scratch >>= np.uint64(32)
            np.multiply(reading, self.period_us, out=times)
            times += scratch.view(np.int64)
            times += self.t0
        valid = ws.get("valid", shape, np.bool_)
        np.less(times, limit, out=valid)
        counts = valid.sum(axis=1)

        # High 32 bits: the random walk's step, a whole -2..+2 (multiply-shift onto 0..4).
        np.right_shift(h, np.uint64(32), out=scratch)
        scratch *= np.uint64(5)
        scratch >>= np.uint64(32)
        walk = ws.get("walk", shape, np.int8)
        np.copyto(walk, scratch, casting="unsafe")
        walk -= np.int8(2)
        walk[self.k_next == 0, 0] = 0  # the first reading is the start temperature
        level = ws.get("level", shape, np.int32)
        np.cumsum(walk, axis=1, dtype=np.int32, out=level)
        level += self.level[:, None]

        rows = np.arange(n)
        read_any = counts > 0
        self.level[read_any] = level[rows[read_any], counts[read_any] - 1]
        self.t_next = times[rows, counts]
        self.k_next += counts
        device = np.repeat(np.arange(n, dtype=np.uint32), counts)
        total = len(device)
        flat = valid.ravel()

        def pick(grid: np.ndarray, name: str) -> np.ndarray:
            return np.compress(flat, grid.ravel(), out=ws.get(name, (total,), grid.dtype.type))

        need_reading = self.offline is not None
        need_hash = self.spikes is not None or self.duplicates is not None or self.malformed is not None
        return (
            counts,
            device,
            pick(reading, "event_reading") if need_reading else np.empty(0, np.int64),
            pick(times, "event_time"),
            pick(level, "event_level"),
            pick(h, "event_hash") if need_hash else np.empty(0, np.uint64),
        )

    def _slice(self, hi: int) -> tuple[_Batch, _Events | None]:
        """Readings observed before ``hi`` with their faults, and the duplicate sends they cause."""
        counts, device, reading, true_time, level, h = self._readings(hi)
        count = len(device)
        first = np.cumsum(counts) - counts  # each device's first event in the batch
        # The batch's arrays are scratch (reused next slice): _frame copies out what it keeps.
        temperature = self._ws.get("event_temperature", (count,), np.float32)
        if self.scenario == "ThirtyDegreeReadings":
            temperature.fill(30.0)
        elif self.temperature_range is None:
            np.copyto(temperature, level, casting="unsafe")
        else:
            # Reflect the free walk into [low, high]: folding keeps every step within -2..+2.
            low, high = self.temperature_range
            width = high - low
            folded = np.mod(level - low, 2 * width)
            np.copyto(temperature, low + np.minimum(folded, 2 * width - folded), casting="unsafe")
        flags = self._ws.get("event_flags", (count,), np.uint8)  # the faults below set their bits
        flags.fill(0)
        batch = _Batch(device, true_time, temperature, flags if self.flag_columns else None, None)

        def events_of(devices: np.ndarray) -> np.ndarray:
            """Indices of the events of the chosen devices (device-level faults touch only those)."""
            chosen = np.flatnonzero(devices)
            return _ranges(first[chosen], counts[chosen])

        if self.heat:
            for in_building, a, b, rise, ramp in self.heat:
                where = events_of(in_building)
                when = true_time[where]
                where = where[(when >= a) & (when < b)]
                strength = np.clip((true_time[where] - a) / ramp, 0.0, 1.0) if ramp else 1.0
                temperature[where] += np.float32(rise) * np.asarray(strength, dtype=np.float32)
                flags[where] |= _flag("fault_heat")
        stuck = np.empty(0, dtype=np.int64)
        if self.stuck_since is not None:
            where = events_of(self.stuck_since != _NEVER)
            stuck = where[true_time[where] >= self.stuck_since[device[where]]]
            if len(stuck):
                dev = device[stuck]
                # Events are grouped by device in reading order: the first of a group is its earliest.
                head = np.r_[True, dev[1:] != dev[:-1]]
                unset = head & np.isnan(self.frozen[dev])
                self.frozen[dev[unset]] = temperature[stuck[unset]]
                temperature[stuck] = self.frozen[dev]
                flags[stuck] = (flags[stuck] & ~_flag("fault_heat")) | _flag("fault_stuck")
        if self.spikes is not None or self.duplicates is not None:
            # Event-level faults draw from a hash of the reading's own hash: fixed per (seed, device, reading).
            fault_hash = self._ws.get("fault_hash", (count,), np.uint64)
            np.bitwise_xor(h, key("event-faults"), out=fault_hash)
            mix(fault_hash, self._ws.get("fault_scratch", (count,), np.uint64))
        if self.spikes is not None:
            spike = np.flatnonzero(self._below(fault_hash, self.spikes.probability, shift=0))
            spike = np.setdiff1d(spike, stuck, assume_unique=True)  # a frozen sensor does not spike
            up = (fault_hash[spike] >> np.uint64(32)) & np.uint64(1)
            temperature[spike] += np.where(up, self.spikes.magnitude, -self.spikes.magnitude).astype(np.float32)
            flags[spike] |= _flag("fault_spike")
        if self.skew is not None:
            where = events_of(self.skewed)
            batch.observed = self._ws.get("event_observed", (count,), np.int64)
            np.copyto(batch.observed, true_time)
            batch.observed[where] += self.skew[device[where]]
            flags[where] |= _flag("fault_clock_skew")
        if self.offline is not None:
            begin, end, spacing = self.offline
            where = events_of(begin != _NEVER)
            when, dev = true_time[where], device[where]
            away = (when >= begin[dev]) & (when < end[dev])
            where, dev = where[away], dev[away]
            if len(where):
                head = np.r_[True, dev[1:] != dev[:-1]]
                unset = head & (self.offline_first[dev] < 0)
                self.offline_first[dev[unset]] = reading[where[unset]]
                queued = reading[where] - self.offline_first[dev]
                batch.late, batch.late_sent = where, end[dev] + queued * spacing
                flags[where] |= _flag("fault_offline")
        if self.malformed is not None:
            hm = self._ws.get("malformed_hash", (count,), np.uint64)
            np.bitwise_xor(h, key("malformed"), out=hm)
            mix(hm, self._ws.get("fault_scratch", (count,), np.uint64))
            broken = np.flatnonzero(self._below(hm, self.malformed.probability, shift=0))
            codes = np.array([MALFORMED_KINDS.index(k) for k in self.malformed.kinds], dtype=np.int8)
            kind = ((hm[broken] >> np.uint64(32)) * np.uint64(len(codes))) >> np.uint64(32)
            batch.malformed = self._ws.get("event_malformed", (count,), np.int8)
            batch.malformed.fill(-1)
            batch.malformed[broken] = codes[kind.astype(np.intp)]

        copies = None
        if self.duplicates is not None:
            again = np.flatnonzero(self._below(fault_hash, self.duplicates.probability, shift=33))
            copies = batch.take(again)
            copies.sent += _td_us(self.duplicates.delay)
            assert copies.flags is not None  # a duplicate fault has its flag column
            copies.flags |= _flag("fault_duplicate")
        return batch, copies

    def _below(self, h: np.ndarray, probability: float, *, shift: int) -> np.ndarray:
        """True with ``probability``, decided by the 31 bits of ``h`` from ``shift`` up."""
        bits = self._ws.get("below", h.shape, np.uint64)
        np.right_shift(h, np.uint64(shift), out=bits)
        bits &= np.uint64((1 << 31) - 1)
        return bits < np.uint64(min(int(probability * (1 << 31)), 1 << 31))

    def _frame(self, batch: _Batch, extra: _Events | None, lo: int, hi: int | None) -> pl.DataFrame:
        """The events sent before ``hi`` (all if None) as a DataFrame sorted by ``sent_at``.

        Events due later are kept in ``self.carry`` for the next slice.
        """
        size, more = len(batch), 0 if extra is None else len(extra)
        other = extra if more else None
        total = size + more
        key = self._ws.get("key", (total,), np.int64)
        np.subtract(batch.true_time, lo, out=key[:size])
        key[batch.late] = batch.late_sent - lo
        if other is not None:
            np.subtract(other.sent, lo, out=key[size:])

        self.carry = None
        held = np.empty(0, dtype=np.int64)
        if hi is not None:
            # Only late sends (offline buffers, duplicates, carried events) can fall after this slice.
            late_main = batch.late[batch.late_sent >= hi]
            late_extra = np.flatnonzero(other.sent >= hi) if other is not None else np.empty(0, np.int64)
            if len(late_main) or len(late_extra):
                parts = [batch.take(late_main)] + ([other.take(late_extra)] if other is not None else [])
                self.carry = _Events.concat(parts)
                held = np.concatenate([late_main, late_extra + size])
                key[held] = _SENTINEL  # sorts after every due event, then cut off

        kept = total - len(held)
        if total and key.max() < (1 << 31) and total < (1 << 32):
            # Sort by sent_at (ties: generation order) with one SIMD value sort of packed keys.
            key <<= 32
            key |= self._arange(total)
            key.sort()
            order = key[:kept] & np.int64(0xFFFFFFFF)
            sent = key[:kept] >> 32
        else:  # only the final flush can reach this far past its slice start
            order = np.argsort(key, kind="stable")[:kept]
            sent = key[order]
        sent += lo
        spill = np.flatnonzero(order >= size) if more else np.empty(0, np.int64)

        def gather(main: np.ndarray, name: str) -> np.ndarray:
            return _gather(main, None if other is None else getattr(other, name), order, spill)

        sent_at = pl.Series(sent).cast(pl.Datetime("us", "UTC"))
        if batch.observed is None and not len(batch.late) and other is None:
            time_observed = sent_at  # nobody sent late or with a wrong clock: one array serves both
        else:
            observed = gather(batch.true_time if batch.observed is None else batch.observed, "observed")
            time_observed = pl.Series(observed).cast(pl.Datetime("us", "UTC"))
        frame = pl.DataFrame(
            {
                "device_id": self._id_series.gather(pl.Series(gather(batch.device, "device"))),
                "time_observed": time_observed,
                "temperature": pl.Series(gather(batch.temperature, "temperature")),
                "sent_at": sent_at,
            }
        )
        columns: list[pl.Expr | pl.Series] = [
            pl.lit(EVENT_TYPE, dtype=EVENT_TYPE_DTYPE).alias("event_type"),
            pl.lit(EVENT_TYPE_VERSION, dtype=EVENT_TYPE_VERSION_DTYPE).alias("event_type_version"),
        ]
        flags = None if batch.flags is None else gather(batch.flags, "flags")
        for name in _FLAG_COLUMNS:
            if flags is not None and name in self.flag_columns:
                columns.append(pl.Series(name, (flags & _flag(name)) != 0))
            else:
                columns.append(pl.lit(False).alias(name))  # off: a broadcast scalar, no memory
        if batch.malformed is None:
            columns.append(pl.lit(None, dtype=MALFORMED_DTYPE).alias("fault_malformed"))
        else:
            codes = gather(batch.malformed, "malformed")
            kinds = _enum_from_codes(np.maximum(codes, 0).astype(np.uint8), MALFORMED_DTYPE)
            columns.append(kinds.set(pl.Series(codes < 0), None).alias("fault_malformed"))
        return frame.with_columns(columns)

    def _arange(self, size: int) -> np.ndarray:
        if len(self._counter) < size:
            self._counter = np.arange(size + size // 4, dtype=np.int64)
        return self._counter[:size]

    def __iter__(self) -> Iterator[pl.DataFrame]:
        """DataFrame chunks, each sorted by ``sent_at`` and later than the one before.

        Each iteration runs the simulation from its start, with the same result.
        """
        self._reset()
        slices = list(zip(self.bounds[:-1], self.bounds[1:]))
        for i, (lo, hi) in enumerate(slices):
            batch, copies = self._slice(hi)
            extra = [e for e in (self.carry, copies) if e is not None and len(e)]
            merged = _Events.concat(extra) if len(extra) > 1 else (extra[0] if extra else None)
            last = i == len(slices) - 1  # the last slice flushes everything still buffered
            yield self._frame(batch, merged, lo, None if last else hi)


class SimulationOptions(TypedDict, total=False):
    """The keywords of :func:`generate`, :func:`simulation` and :class:`Simulation`, described on :func:`generate`."""

    start: datetime | str | None
    duration: Required[timedelta | str]
    scenario: str
    seed: int
    firmware: str
    faults: Sequence[Fault | str]
    period: timedelta | str
    jitter: float
    warmup: timedelta | str | None
    temperature_range: tuple[int, int] | None
    chunk_events: int


def simulation(registry: Frame, **options: Unpack[SimulationOptions]) -> Simulation:
    """A :class:`Simulation` to iterate chunk by chunk; takes the same options as :func:`generate`."""
    return Simulation(registry, **options)


def generate(registry: Frame, *, progress: bool = False, **options: Unpack[SimulationOptions]) -> pl.DataFrame:
    """Simulate every device of ``registry`` from ``start`` for ``duration``; events sorted by ``sent_at``.

    ``start`` (default :data:`DEFAULT_START`) and ``duration``: the stretch simulated.
    ``scenario``: ``NoErrorsExpected`` or ``ThirtyDegreeReadings``.
    ``firmware``: ``staggered`` (devices start at random over ``warmup``,
    default one period) or ``synchronized`` (all on the same second).
    ``faults``: fault configs from :mod:`iotlib.fleet.faults` (or their text form,
    e.g. ``"spikes:probability=0.01"``). ``period`` (default 60 s) and ``jitter`` (0.1) set the
    reading interval. ``temperature_range=(low, high)`` reflects the random
    walk off those bounds (the original's walk, the default, is unbounded and
    drifts far from room temperature over hours). ``seed`` makes it reproducible.
    ``chunk_events`` sets the working-set size (not the result),
    ``progress`` shows a tqdm bar. The frame is made of one chunk per slice of
    time (no rechunking: a full day stays within memory).
    """
    sim = Simulation(registry, **options)
    chunks: Iterator[pl.DataFrame] = iter(sim)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, total=len(sim), desc="simulating", unit="chunk")
    frames = list(chunks)
    return pl.concat(frames, rechunk=False, how="vertical")


def events_per_second(
    events: pl.DataFrame,
    *,
    column: str = "sent_at",
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pl.DataFrame:
    """Events per whole second of ``column``: columns ``second`` and ``events``, empty seconds included.

    The seconds run from ``start`` (default: the first event's) up to, not
    including, ``end`` (default: just after the last event's); give both to
    compare runs over the same window. Events outside it are not counted.
    """
    seconds = events.select(pl.col(column).dt.truncate("1s").alias("second"))
    counts = seconds.group_by("second").agg(pl.len().alias("events"))
    lo = parse_start(start) if start is not None else counts["second"].min()
    hi = parse_start(end) if end is not None else counts["second"].max()
    if not isinstance(lo, datetime) or not isinstance(hi, datetime):  # no events: polars gave None
        return pl.DataFrame(schema={"second": pl.Datetime("us", "UTC"), "events": pl.UInt32})
    grid = pl.datetime_range(
        lo, hi, "1s", closed="left" if end is not None else "both", eager=True, time_unit="us", time_zone="UTC"
    )
    return (
        pl.DataFrame({"second": grid})
        .join(counts, on="second", how="left")
        .with_columns(pl.col("events").fill_null(0).cast(pl.UInt32))
        .sort("second")
    )


def write_parquet(sim: Simulation, path: str | Path, *, progress: bool = True) -> int:
    """Stream a simulation to one Parquet file, a row group per chunk; returns the number of events.

    Memory stays at one chunk whatever the duration; the file reads back with
    ``pl.read_parquet`` with the same dtypes (``device_id`` stays an Enum).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sim.expected_events, unit="event", unit_scale=True, desc="simulating", smoothing=0.1)
    written = 0
    writer = None
    try:
        for chunk in sim:
            table = chunk.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            written += chunk.height
            if bar is not None:
                bar.update(chunk.height)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    tmp.replace(path)  # only a complete file takes the name
    return written
