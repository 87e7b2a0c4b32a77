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

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from iotlib.errors import ConfigurationError
from iotlib.events import EVENT_TYPE, EVENT_TYPE_VERSION, MALFORMED_KINDS
from iotlib.faults import (
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
    parse_duration,
    parse_fault,
)
from iotlib.scenario import validate_registry

__all__ = [
    "ClockSkew", "Duplicates", "EVENT_COLUMNS", "FIRMWARES", "Fault", "HeatEvent", "MalformedPayloads",
    "Offline", "SCENARIOS", "Simulation", "Spikes", "StuckSensors", "DEFAULT_START", "FAULT_COLUMNS",
    "events_per_second", "generate", "parse_duration", "parse_fault", "parse_start", "simulation",
    "write_parquet",
]

SCENARIOS = ("NoErrorsExpected", "ThirtyDegreeReadings")
FIRMWARES = ("staggered", "synchronized")
#: A fixed default start (a Monday), so runs without ``--start`` are reproducible.
DEFAULT_START = datetime(2025, 1, 6, tzinfo=timezone.utc)

EVENT_TYPE_DTYPE = pl.Enum([EVENT_TYPE])
EVENT_TYPE_VERSION_DTYPE = pl.Enum([EVENT_TYPE_VERSION])
MALFORMED_DTYPE = pl.Enum(list(MALFORMED_KINDS))
_FLAG_COLUMNS = [c for c in FAULT_COLUMNS.values() if c != "fault_malformed"]
#: Output columns, in order.
EVENT_COLUMNS = (
    "device_id", "time_observed", "temperature", "sent_at", "event_type", "event_type_version",
    *_FLAG_COLUMNS, "fault_malformed",
)

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NEVER = np.iinfo(np.int64).max
# Slices must fit their time offsets in 31 bits of the sort key (about 35 minutes).
_MAX_SLICE_US = 30 * 60 * _US
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place: turns counters into well-spread 64-bit hashes."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def _stream(name: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little"))


def _unit(h: np.ndarray) -> np.ndarray:
    """Hashes to floats uniform in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _below(h: np.ndarray, probability: float) -> np.ndarray:
    """True with ``probability`` for each hash."""
    return (h >> np.uint64(11)) < np.uint64(min(int(probability * (1 << 53)), 1 << 53))


def _scaled(h: np.ndarray, span: int) -> np.ndarray:
    """Hashes to integers uniform in [0, span) (multiply-shift on the low 32 bits; span < 2**32)."""
    return (((h & _LOW32) * np.uint64(span)) >> np.uint64(32)).astype(np.int64)


def _to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _td_us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def parse_start(value: datetime | str | None) -> datetime:
    """A simulation start: an aware datetime or RFC 3339/ISO text (``Z`` allowed); None = DEFAULT_START."""
    if value is None:
        return DEFAULT_START
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"cannot read start time {value!r}: use e.g. 2025-01-06T00:00:00Z") from None
    if not isinstance(value, datetime):
        raise ConfigurationError(f"start must be a datetime or ISO text, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ConfigurationError(
            f"start {value.isoformat()} has no time zone: add one (text: a 'Z' or '+00:00'; "
            "datetime: tzinfo=timezone.utc)"
        )
    return value.astimezone(timezone.utc)


def _enum_from_codes(codes: np.ndarray, dtype: pl.Enum) -> pl.Series:
    """An Enum Series from its physical codes, without going through strings."""
    series = pl.Series(codes)
    to = getattr(series, "cat", None)
    if to is not None and hasattr(to, "to"):  # polars >= 2
        return series.cat.to(dtype, strict=False)
    return series.cast(dtype)  # polars 1.x casts integer codes directly


@dataclass
class _Events:
    """A batch of events as parallel numpy arrays (the engine's working form)."""

    device: np.ndarray  # uint32 index into the registry
    observed: np.ndarray  # int64 µs, device clock
    temperature: np.ndarray  # float32
    sent: np.ndarray  # int64 µs, true time
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # bool per fault column
    malformed: np.ndarray | None = None  # int8 kind code, -1 = well-formed

    def __len__(self) -> int:
        return len(self.sent)

    def take(self, index: np.ndarray) -> _Events:
        sent = self.sent[index]
        observed = sent if self.observed is self.sent else self.observed[index]
        return _Events(
            self.device[index], observed, self.temperature[index], sent,
            {k: v[index] for k, v in self.flags.items()},
            None if self.malformed is None else self.malformed[index],
        )

    @staticmethod
    def concat(parts: Sequence[_Events]) -> _Events:
        parts = [p for p in parts if len(p)] or list(parts[:1])
        if len(parts) == 1:
            return parts[0]
        return _Events(
            np.concatenate([p.device for p in parts]),
            np.concatenate([p.observed for p in parts]),
            np.concatenate([p.temperature for p in parts]),
            np.concatenate([p.sent for p in parts]),
            {k: np.concatenate([p.flags[k] for p in parts]) for k in parts[0].flags},
            None if parts[0].malformed is None else np.concatenate([p.malformed for p in parts]),  # type: ignore[misc]
        )


class Simulation:
    """One simulation run, produced slice by slice in time (iterate it for DataFrame chunks).

    Use :func:`generate` for the whole result at once, or :func:`simulation`
    to stream chunks (each sorted by ``sent_at``, chunks in order) to a file
    or a sender with a progress bar: ``len(sim)`` is the number of chunks.
    """

    def __init__(
        self,
        registry: pl.DataFrame,
        *,
        start: datetime | str | None,
        duration: timedelta | str,
        scenario: str = "NoErrorsExpected",
        seed: int = 0,
        firmware: str = "staggered",
        faults: Sequence[Fault | str] = (),
        period: timedelta | str = timedelta(seconds=60),
        jitter: float = 0.1,
        warmup: timedelta | str | None = None,
        chunk_events: int = 2_000_000,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ConfigurationError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        if firmware not in FIRMWARES:
            raise ConfigurationError(f"unknown firmware {firmware!r}; known: {', '.join(FIRMWARES)}")
        if not 0.0 <= jitter < 1.0:
            raise ConfigurationError(f"jitter is a fraction of the period in [0, 1), got {jitter}")
        self.registry = validate_registry(registry)
        self.scenario = scenario
        self.firmware = firmware
        self.seed = int(seed)
        self.start = parse_start(start)
        self.duration = parse_duration(duration)
        self.period = parse_duration(period)
        self.jitter = float(jitter)
        self.warmup = self.period if warmup is None else parse_duration(warmup)
        if self.duration <= timedelta(0):
            raise ConfigurationError(f"duration must be positive, got {self.duration}")
        if self.period < timedelta(milliseconds=1):
            raise ConfigurationError(f"period must be at least 1 ms, got {self.period}")
        if self.warmup < timedelta(0):
            raise ConfigurationError(f"warmup must not be negative, got {self.warmup}")
        self.faults = check_faults([parse_fault(f) if isinstance(f, str) else f for f in faults])

        self.ids: list[str] = self.registry["device_id"].to_list()
        self.device_dtype = pl.Enum(self.ids)
        # Gathering from this Series makes Enum columns without converting the dtype per chunk.
        self._id_series = pl.Series("device_id", self.ids, dtype=self.device_dtype)
        self.n = len(self.ids)
        self.t0 = _to_us(self.start)
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
        self._prepare_faults()

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @property
    def expected_events(self) -> int:
        """Roughly how many readings the run will produce (before duplicates)."""
        return int(self.n * (self.end - self.t0) / self.period_us)

    # --- randomness --------------------------------------------------------------------------
    def _device_keys(self) -> np.ndarray:
        prefix = f"iotlib.simulate/{self.seed}/".encode()
        digests = b"".join(hashlib.blake2b(prefix + d.encode(), digest_size=8).digest() for d in self.ids)
        return np.frombuffer(digests, dtype="<u8").astype(np.uint64)

    def _device_hash(self, stream: str) -> np.ndarray:
        """One hash per device for a named purpose."""
        return _mix(self._keys ^ _stream(stream))

    def _event_hash(self, stream: str, device: np.ndarray, reading: np.ndarray) -> np.ndarray:
        """One hash per (device, reading number) for a named purpose."""
        key = self._keys ^ _stream(stream)
        return _mix(key[device] + reading.astype(np.uint64) * _GOLDEN)

    def _pick_devices(self, name: str, fraction: float, devices: tuple[str, ...] | None) -> np.ndarray:
        if devices is not None:
            index = {d: i for i, d in enumerate(self.ids)}
            unknown = [d for d in devices if d not in index]
            if unknown:
                raise ConfigurationError(f"{name}: device(s) not in the registry: {', '.join(unknown[:5])}")
            chosen = np.zeros(self.n, dtype=bool)
            chosen[[index[d] for d in devices]] = True
            return chosen
        return _below(self._device_hash(f"pick/{name}"), fraction)

    # --- faults ------------------------------------------------------------------------------
    def _prepare_faults(self) -> None:
        n = self.n
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
                amount = lo + (_unit(self._device_hash("skew/amount")) * (hi - lo)).astype(np.int64)
                if f.direction == "behind":
                    amount = -amount
                elif f.direction == "both":
                    amount = np.where(self._device_hash("skew/sign") & np.uint64(1), amount, -amount)
                self.skew = np.where(chosen, amount, 0)
                self.skewed = chosen
            elif isinstance(f, Offline):
                chosen = self._pick_devices("offline", f.fraction, f.devices)
                outage = _td_us(f.outage)
                begin = self.t0 + (_unit(self._device_hash("offline/start")) * max(span - outage, 0)).astype(np.int64)
                self.offline = (
                    np.where(chosen, begin, _NEVER),
                    np.where(chosen, begin + outage, _NEVER),
                    _td_us(f.spacing),
                )
            elif isinstance(f, Duplicates):
                self.duplicates = f
            elif isinstance(f, MalformedPayloads):
                self.malformed = f
        self.flag_columns = [FAULT_COLUMNS[type(f)] for f in self.faults if type(f) is not MalformedPayloads]
        self.flag_columns = [c for c in _FLAG_COLUMNS if c in self.flag_columns]

        # Per-device state carried from slice to slice.
        self.k_next = np.zeros(n, dtype=np.int64)
        if self.firmware == "staggered":
            self.t_next = self.t0 + (_unit(self._device_hash("phase")) * _td_us(self.warmup)).astype(np.int64)
        else:
            self.t_next = np.full(n, self.t0, dtype=np.int64)
        self.level = (_scaled(self._device_hash("start"), 25)).astype(np.int32)  # whole 0..24 °C
        self.frozen = np.full(n, np.nan, dtype=np.float32)
        self.offline_first = np.full(n, -1, dtype=np.int64)
        self.carry: _Events | None = None

    # --- the engine --------------------------------------------------------------------------
    def _readings(self, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every device's readings with true time < ``limit``: (device, reading no., time, walk level)."""
        n = self.n
        min_step = self.period_us - self.jitter_us if self.firmware == "staggered" else self.period_us
        span = max(int(limit - self.t_next.min()), 0)
        m = span // max(min_step, 1) + 2
        reading = self.k_next[:, None] + np.arange(m, dtype=np.int64)[None, :]
        h = _mix(((self._keys ^ _stream("reading"))[:, None] + reading.astype(np.uint64) * _GOLDEN))
        if self.firmware == "staggered":
            step = _scaled(h, 2 * self.jitter_us + 1) + (self.period_us - self.jitter_us)
            times = np.empty((n, m), dtype=np.int64)
            times[:, 0] = self.t_next
            np.cumsum(step[:, :-1], axis=1, out=times[:, 1:])
            times[:, 1:] += self.t_next[:, None]
        else:
            # A shared clock: reading k at start + k·period, somewhere in that second.
            times = self.t0 + reading * self.period_us + _scaled(h, _US)
        valid = times < limit
        counts = valid.sum(axis=1)
        walk = (((h >> np.uint64(32)) * np.uint64(5)) >> np.uint64(32)).astype(np.int8) - np.int8(2)
        walk[self.k_next == 0, 0] = 0  # the first reading is the start temperature
        level = np.cumsum(walk, axis=1, dtype=np.int32)
        level += self.level[:, None]

        rows = np.arange(n)
        read_any = counts > 0
        self.level[read_any] = level[rows[read_any], counts[read_any] - 1]
        self.t_next = times[rows, counts]
        self.k_next += counts
        device = np.repeat(np.arange(n, dtype=np.uint32), counts)
        return device, reading[valid], times[valid], level[valid]

    def _slice(self, lo: int, hi: int, last: bool) -> _Events:
        device, reading, true_time, level = self._readings(hi)
        if self.scenario == "ThirtyDegreeReadings":
            temperature = np.full(len(device), 30.0, dtype=np.float32)
        else:
            temperature = level.astype(np.float32)
        flags: dict[str, np.ndarray] = {}

        if self.heat:
            hot = np.zeros(len(device), dtype=bool)
            for in_building, a, b, rise, ramp in self.heat:
                hit = in_building[device] & (true_time >= a) & (true_time < b)
                strength = np.ones(int(hit.sum())) if ramp == 0 else np.clip((true_time[hit] - a) / ramp, 0.0, 1.0)
                temperature[hit] += (rise * strength).astype(np.float32)
                hot |= hit
            flags["fault_heat"] = hot
        if self.stuck_since is not None:
            stuck = true_time >= self.stuck_since[device]
            if stuck.any():
                where = np.flatnonzero(stuck)
                dev = device[where]
                # Events are grouped by device in reading order: the first of a group is its earliest.
                first = np.r_[True, dev[1:] != dev[:-1]]
                unset = first & np.isnan(self.frozen[dev])
                self.frozen[dev[unset]] = temperature[where[unset]]
                temperature[where] = self.frozen[dev]
                if "fault_heat" in flags:
                    flags["fault_heat"] &= ~stuck
            flags["fault_stuck"] = stuck
        if self.spikes is not None:
            h = self._event_hash("spike", device, reading)
            spike = _below(h, self.spikes.probability)
            if "fault_stuck" in flags:
                spike &= ~flags["fault_stuck"]
            sign = np.where((h[spike] >> np.uint64(10)) & np.uint64(1), 1.0, -1.0)
            temperature[spike] += (sign * self.spikes.magnitude).astype(np.float32)
            flags["fault_spike"] = spike

        # Healthy devices transmit as they observe: one array serves both columns until a fault splits them.
        observed = sent = true_time
        if self.skew is not None:
            observed = true_time + self.skew[device]
            flags["fault_clock_skew"] = self.skewed[device]
        if self.offline is not None:
            sent = true_time.copy()
            begin, end, spacing = self.offline
            away = (true_time >= begin[device]) & (true_time < end[device])
            if away.any():
                where = np.flatnonzero(away)
                dev = device[where]
                first = np.r_[True, dev[1:] != dev[:-1]]
                unset = first & (self.offline_first[dev] < 0)
                self.offline_first[dev[unset]] = reading[where[unset]]
                queued = reading[where] - self.offline_first[dev]
                sent[where] = end[dev] + queued * spacing
            flags["fault_offline"] = away
        malformed = None
        if self.malformed is not None:
            h = self._event_hash("malformed", device, reading)
            broken = _below(h, self.malformed.probability)
            codes = np.array([MALFORMED_KINDS.index(k) for k in self.malformed.kinds], dtype=np.int8)
            malformed = np.where(broken, codes[_scaled(h, len(codes))], np.int8(-1))
        if self.duplicates is not None:
            flags["fault_duplicate"] = np.zeros(len(device), dtype=bool)
        events = _Events(device, observed, temperature, sent, flags, malformed)

        if self.duplicates is not None:
            again = np.flatnonzero(_below(self._event_hash("duplicate", device, reading), self.duplicates.probability))
            copies = events.take(again)
            copies.sent = copies.sent + _td_us(self.duplicates.delay)
            copies.flags["fault_duplicate"] = np.ones(len(again), dtype=bool)
            events = _Events.concat([events, copies])

        if self.carry is not None:
            events = _Events.concat([self.carry, events])
        if last:
            self.carry = None
            return events
        due = events.sent < hi
        if due.all():
            self.carry = None
            return events
        self.carry = events.take(np.flatnonzero(~due))
        return events.take(np.flatnonzero(due))

    def _frame(self, events: _Events, lo: int) -> pl.DataFrame:
        count = len(events)
        offset = events.sent - lo
        # Sort by sent_at (ties: generation order) with one SIMD value sort of packed keys.
        if count and offset.min() >= 0 and offset.max() < (1 << 31) and count < (1 << 32):
            packed = (offset << 32) | np.arange(count, dtype=np.int64)
            packed.sort()
            order = packed & np.int64(0xFFFFFFFF)
            sent = (packed >> 32) + lo
        else:
            order = np.argsort(events.sent, kind="stable")
            sent = events.sent[order]
        sent_at = pl.Series(sent).cast(pl.Datetime("us", "UTC"))
        if events.observed is events.sent:
            time_observed = sent_at
        else:
            time_observed = pl.Series(events.observed[order]).cast(pl.Datetime("us", "UTC"))
        ev = _Events(events.device[order], events.observed, events.temperature[order], events.sent,
                     {k: v[order] for k, v in events.flags.items()},
                     None if events.malformed is None else events.malformed[order])
        columns: dict[str, pl.Series] = {
            "device_id": self._id_series.gather(pl.Series(ev.device)),
            "time_observed": time_observed,
            "temperature": pl.Series(ev.temperature),
            "sent_at": sent_at,
        }
        frame = pl.DataFrame(columns)
        extra: list[pl.Expr | pl.Series] = [
            pl.lit(EVENT_TYPE, dtype=EVENT_TYPE_DTYPE).alias("event_type"),
            pl.lit(EVENT_TYPE_VERSION, dtype=EVENT_TYPE_VERSION_DTYPE).alias("event_type_version"),
        ]
        for name in _FLAG_COLUMNS:
            if name in ev.flags:
                extra.append(pl.Series(name, ev.flags[name]))
            else:
                extra.append(pl.lit(False).alias(name))
        if ev.malformed is None:
            extra.append(pl.lit(None, dtype=MALFORMED_DTYPE).alias("fault_malformed"))
        else:
            kinds = _enum_from_codes(np.maximum(ev.malformed, 0).astype(np.uint8), MALFORMED_DTYPE)
            extra.append(kinds.set(pl.Series(ev.malformed < 0), None).alias("fault_malformed"))  # type: ignore[arg-type]
        return frame.with_columns(extra)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        """DataFrame chunks, each sorted by ``sent_at`` and later than the one before."""
        slices = list(zip(self.bounds[:-1], self.bounds[1:]))
        for i, (lo, hi) in enumerate(slices):
            yield self._frame(self._slice(lo, hi, last=i == len(slices) - 1), lo)


def simulation(registry: pl.DataFrame, **options: object) -> Simulation:
    """A :class:`Simulation` to iterate chunk by chunk; takes the same options as :func:`generate`."""
    return Simulation(registry, **options)  # type: ignore[arg-type]


def generate(
    registry: pl.DataFrame,
    *,
    start: datetime | str | None,
    duration: timedelta | str,
    scenario: str = "NoErrorsExpected",
    seed: int = 0,
    firmware: str = "staggered",
    faults: Sequence[Fault | str] = (),
    period: timedelta | str = timedelta(seconds=60),
    jitter: float = 0.1,
    warmup: timedelta | str | None = None,
    chunk_events: int = 2_000_000,
    progress: bool = False,
) -> pl.DataFrame:
    """Simulate every device of ``registry`` from ``start`` for ``duration``; events sorted by ``sent_at``.

    ``scenario``: ``NoErrorsExpected`` or ``ThirtyDegreeReadings``.
    ``firmware``: ``staggered`` (devices start at random over ``warmup``,
    default one period) or ``synchronized`` (all on the same second).
    ``faults``: fault configs from :mod:`iotlib.faults` (or their text form,
    e.g. ``"spikes:probability=0.01"``). ``period`` and ``jitter`` set the
    reading interval, ``chunk_events`` the working-set size (not the result),
    ``progress`` shows a tqdm bar. The frame is made of one chunk per slice of
    time (no rechunking: a full day stays within memory).
    """
    sim = Simulation(
        registry, start=start, duration=duration, scenario=scenario, seed=seed, firmware=firmware,
        faults=faults, period=period, jitter=jitter, warmup=warmup, chunk_events=chunk_events,
    )
    chunks: Iterator[pl.DataFrame] = iter(sim)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, total=len(sim), desc="simulating", unit="chunk")
    frames = list(chunks)
    return pl.concat(frames, rechunk=False, how="vertical")


def events_per_second(events: pl.DataFrame, *, column: str = "sent_at") -> pl.DataFrame:
    """Events per whole second of ``column``: columns ``second`` and ``events`` (empty seconds included)."""
    counts = (
        events.select(pl.col(column).dt.truncate("1s").alias("second"))
        .group_by("second")
        .agg(pl.len().alias("events"))
        .sort("second")
    )
    if counts.is_empty():
        return counts
    full = pl.DataFrame(
        {"second": pl.datetime_range(counts["second"].min(), counts["second"].max(), "1s", eager=True)}
    )
    return full.join(counts, on="second", how="left").with_columns(pl.col("events").fill_null(0).cast(pl.UInt32))


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
