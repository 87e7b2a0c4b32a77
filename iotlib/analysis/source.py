"""What the analysis questions run on: events (a LazyFrame or a Parquet cache) and the device registry.

:func:`events` wraps any of these into :class:`Events`:

- a :class:`~iotlib.analysis.day.SimulatedDay` (its Parquet cache and registry);
- a Parquet cache folder (hive-partitioned, as :func:`iotlib.coldstore.to_parquet` and
  :func:`~iotlib.analysis.day.build_day` write it) and a registry;
- a polars LazyFrame or DataFrame of cold-store events (``coldstore.load``/``scan`` columns) and a registry.

A day's cache also carries ``device_key``, the device's row in the registry it was built with:
grouping 144 million rows by a small integer is several times faster than by GUID text, so the
questions use it when it is there (:attr:`Events.keyed`) and the device id otherwise.

Times: ``start``/``end`` take aware datetimes or ISO 8601 text (``Z`` or an offset; naive means
UTC). A range that holds no events gives an empty result and an :class:`EmptyRangeWarning`
naming the range and the span the store holds.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from iotlib.errors import ConfigurationError

UTC_US = pl.Datetime("us", "UTC")


class EmptyRangeWarning(UserWarning):
    """A time range with no events in it (the message names the range and the span the store holds)."""


@dataclass(frozen=True)
class Events:
    """Events to analyse and the registry that places their devices.

    ``frame``: the events (cold-store columns); ``registry``: ``device_id``, ``building_id``,
    ``floor``, ``room``, ``time_zone`` plus ``device_key`` (row number); ``keyed``: the frame's
    ``device_key`` matches the registry's; ``parquet``: the files' glob when the events are a
    Parquet cache (DuckDB and Spark read them directly).
    """

    frame: pl.LazyFrame
    registry: pl.DataFrame
    keyed: bool = False
    parquet: str | None = None

    @property
    def device(self) -> str:
        """The column that names a device in :attr:`frame`: ``device_key`` when keyed, else ``device_id``."""
        return "device_key" if self.keyed else "device_id"

    def devices(self, *columns: str) -> pl.LazyFrame:
        """The registry's ``columns`` keyed by :attr:`device` (to join with :attr:`frame`)."""
        return self.registry.lazy().select(self.device, *[c for c in columns if c != self.device])

    def with_devices(self, *columns: str, frame: pl.LazyFrame | None = None) -> pl.LazyFrame:
        """The events (or ``frame``) with the registry's ``columns``; events of unknown devices are dropped."""
        return (self.frame if frame is None else frame).join(self.devices(*columns), on=self.device, how="inner")

    def named(self, found: pl.DataFrame) -> pl.DataFrame:
        """``found`` (an answer grouped by :attr:`device`) with ``device_id``: over a day's cache the
        ids are joined back by ``device_key``."""
        if not self.keyed:
            return found
        return found.with_columns(pl.col("device_key").cast(pl.UInt32)).join(
            self.registry.select("device_key", "device_id"), on="device_key", how="left"
        )

    def buckets(self, start: datetime, end: datetime, *, rows: int = 20_000_000, period_seconds: int = 60) -> int:
        """How many buckets of devices keep a per-device sort of ``[start, end)`` to about ``rows`` readings
        each (1 unless keyed: only a day's cache can be split by ``device_key``)."""
        if not self.keyed:
            return 1
        readings = self.registry.height * (end - start).total_seconds() / period_seconds
        return max(1, -(-int(readings) // rows))

    def span(self) -> tuple[datetime | None, datetime | None]:
        """The first and last ``time_observed`` in the store (a scan of one column)."""
        lo, hi = (
            self.frame.select(pl.col("time_observed").min().alias("first"), pl.col("time_observed").max().alias("last"))
            .collect()
            .row(0)
        )
        return lo, hi


def events(source: Any, registry: pl.DataFrame | None = None) -> Events:
    """:class:`Events` from a simulated day, a Parquet cache folder, or a polars frame (see the module text)."""
    if isinstance(source, Events):
        return source if registry is None else Events(source.frame, _keyed_registry(registry), False, source.parquet)
    from iotlib.analysis.day import SimulatedDay, open_day

    if isinstance(source, (str, os.PathLike)):
        folder = Path(os.fspath(source))
        for candidate in (folder, folder.parent):
            if (candidate / "_day.json").exists() and (folder == candidate or folder.name == "cache"):
                source = open_day(candidate)
                break
        else:
            if registry is None:
                raise ConfigurationError(f"events from {folder} need the device registry: pass registry=")
            if not folder.is_dir():
                raise ConfigurationError(f"{folder} is not a folder of Parquet files")
            glob = str(folder / "**" / "*.parquet")
            return Events(pl.scan_parquet(glob, hive_partitioning=True), _keyed_registry(registry), False, glob)
    if isinstance(source, SimulatedDay):
        own = _keyed_registry(source.registry)
        if registry is not None and not registry.equals(source.registry):
            return Events(source.scan(), _keyed_registry(registry), False, source.cache_glob)
        return Events(source.scan(), own, True, source.cache_glob)
    if isinstance(source, pl.DataFrame):
        source = source.lazy()
    if isinstance(source, pl.LazyFrame):
        if registry is None:
            raise ConfigurationError("events from a frame need the device registry: pass registry=")
        return Events(source, _keyed_registry(registry), False, None)
    raise ConfigurationError(
        f"cannot analyse a {type(source).__name__}: pass a SimulatedDay, a Parquet cache folder or a polars frame"
    )


def _keyed_registry(registry: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(registry, pl.DataFrame):
        raise ConfigurationError(f"registry must be a polars DataFrame, got {type(registry).__name__}")
    missing = [c for c in ("device_id", "building_id") if c not in registry.columns]
    if missing:
        raise ConfigurationError(f"the registry has no {', '.join(missing)} column; columns: {registry.columns}")
    if "device_key" in registry.columns:
        registry = registry.drop("device_key")
    return registry.with_row_index("device_key").with_columns(pl.col("device_key").cast(pl.UInt32))


# --------------------------------------------------------------------------- checks


def check_buildings(ev: Events, buildings: Any) -> list[int] | None:
    """``buildings`` (one id or several) as a list, each known to the registry; None for all."""
    if buildings is None:
        return None
    wanted = [buildings] if isinstance(buildings, int) else list(buildings)
    known = set(ev.registry["building_id"].to_list())
    unknown = [b for b in wanted if b not in known]
    if unknown:
        raise ConfigurationError(
            f"unknown building(s) {unknown}: the registry has buildings {min(known)}-{max(known)} ({len(known)} in all)"
        )
    return wanted


def check_rooms(ev: Events, building: int, rooms: Any) -> list[str] | None:
    """``rooms`` of ``building`` as a list of room numbers, each in the registry; None for all."""
    if rooms is None:
        return None
    if "room" not in ev.registry.columns:
        raise ConfigurationError("the registry has no 'room' column")
    wanted = [str(rooms)] if isinstance(rooms, (str, int)) else [str(r) for r in rooms]
    known = set(ev.registry.filter(pl.col("building_id") == building)["room"].to_list())
    unknown = [r for r in wanted if r not in known]
    if unknown:
        some = ", ".join(sorted(known, key=lambda r: (len(r), r))[:8])
        raise ConfigurationError(f"unknown room(s) {unknown} in building {building}; its rooms include {some} …")
    return wanted


def check_time_zones(ev: Events) -> None:
    """A clear error when the registry cannot say each building's local time."""
    if "time_zone" not in ev.registry.columns:
        raise ConfigurationError(
            "the registry has no 'time_zone' column: local days need each building's IANA time zone "
            f"(columns: {', '.join(c for c in ev.registry.columns if c != 'device_key')})"
        )
    missing = ev.registry.filter(pl.col("time_zone").is_null() | (pl.col("time_zone") == ""))
    if missing.height:
        raise ConfigurationError(
            f"the registry's 'time_zone' column is empty for {missing.height} device(s) "
            f"(buildings {sorted(set(missing['building_id'].to_list()))[:5]})"
        )


# --------------------------------------------------------------------------- times


def utc(moment: datetime | str, what: str = "time") -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (naive means UTC)."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"{what}={moment!r} is not an ISO 8601 time") from None
    if not isinstance(moment, datetime):
        raise ConfigurationError(f"{what} must be a datetime or ISO 8601 text, not {type(moment).__name__}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def time_range(start: datetime | str | None, end: datetime | str | None) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` in UTC; a ConfigurationError when end is not after start."""
    lo = None if start is None else utc(start, "start")
    hi = None if end is None else utc(end, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigurationError(f"end {hi.isoformat()} is not after start {lo.isoformat()}")
    return lo, hi


def between(column: str, start: datetime | None, end: datetime | None) -> pl.Expr:
    """``start <= column < end`` (either bound may be None)."""
    cond = pl.lit(True)
    if start is not None:
        cond = cond & (pl.col(column) >= start)
    if end is not None:
        cond = cond & (pl.col(column) < end)
    return cond


def warn_if_empty(result: pl.DataFrame, ev: Events, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """``result`` as it is; when it is empty, an :class:`EmptyRangeWarning` naming the range and the store's span."""
    if result.height == 0:
        lo, hi = ev.span()
        held = "no events at all" if lo is None else f"events observed from {_text(lo)} to {_text(hi)}"
        warnings.warn(
            EmptyRangeWarning(f"no events in [{_text(start)}, {_text(end)}): the store holds {held}"), stacklevel=3
        )
    return result


def _text(t: datetime | None) -> str:
    return "…" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def hours(start: datetime, end: datetime) -> pl.Series:
    """The whole UTC hours that overlap ``[start, end)``."""
    first = start.replace(minute=0, second=0, microsecond=0)
    last = (end - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
    return pl.datetime_range(first, last, "1h", time_unit="us", time_zone="UTC", eager=True).alias("hour")


def hour_of(column: str) -> pl.Expr:
    """The UTC hour a time falls in, by integer arithmetic (cheaper than truncating an aware datetime)."""
    return ((pl.col(column).dt.epoch("us") // 3_600_000_000) * 3_600_000_000).cast(UTC_US)
