"""The device registry as reference data: which building (floor, room, time zone) a device is in.

The original job joined telemetry with this reference data inside Stream
Analytics (an inner join: readings from unknown devices vanished). Here
:meth:`Registry.enrich` returns the readings it could place *and* the ones it
could not, with reason ``unknown_device``.

Large frames are enriched vectorised — through the Enum's physical codes when
``device_id`` is an Enum (a gather, no string hashing), otherwise a join;
small micro-batches through a dictionary, which is far cheaper per call.
Both give the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from iotlib.errors import ValidationError
from iotlib.frames import Frame, as_polars
from iotlib.processing import columns as C
from iotlib.processing.policy import UNKNOWN_DEVICE

REGISTRY_COLUMNS = ("device_id", "building_id", "floor", "room", "time_zone")
_SMALL = 20_000  # rows below which a dictionary lookup beats a join


class Registry:
    """A validated device registry (``device_id`` unique, ``building_id`` present)."""

    def __init__(self, registry: Frame) -> None:
        registry = as_polars(registry, name="registry")
        if C.DEVICE not in registry.columns or "building_id" not in registry.columns:
            raise ValidationError(f"the registry needs columns '{C.DEVICE}' and 'building_id' (has {registry.columns})")
        frame = registry.with_columns(pl.col(C.DEVICE).cast(pl.String))
        if frame[C.DEVICE].null_count() or frame["building_id"].null_count():
            raise ValidationError("the registry has rows without a device_id or building_id")
        dup = frame.filter(pl.col(C.DEVICE).is_duplicated())[C.DEVICE].unique().sort().head(3).to_list()
        if dup:
            raise ValidationError(f"the registry lists some devices more than once, e.g. {dup}")
        self.frame = frame
        self._index: dict[str, int] | None = None

    @classmethod
    def of(cls, registry: Frame | Registry) -> Registry:
        return registry if isinstance(registry, Registry) else cls(registry)

    def __len__(self) -> int:
        return self.frame.height

    def enrich(
        self, events: pl.DataFrame, columns: Sequence[str] = ("building_id",)
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``(matched, unmatched)``: events with ``columns`` added, and events of unknown devices.

        Events with no device id at all pass through (with null ``columns``) so
        that the processing job reports them as invalid, not unknown.
        """
        columns = list(columns)
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise ValidationError(f"the registry has no column(s) {missing}")
        if C.DEVICE not in events.columns:
            raise ValidationError(f"events have no '{C.DEVICE}' column to look up (columns: {events.columns})")
        clash = [c for c in columns if c in events.columns]
        if clash:
            events = events.drop(clash)
        if events.height < _SMALL:
            return self._by_dictionary(events, columns)
        device_type = events.schema[C.DEVICE]
        if isinstance(device_type, pl.Enum):
            looked_up = self._by_codes(events, device_type.categories, columns)
        else:
            looked_up = events.join(
                self.frame.select(C.DEVICE, *columns).with_columns(pl.col(C.DEVICE).cast(events.schema[C.DEVICE])),
                on=C.DEVICE,
                how="left",
                maintain_order="left",
            )
        unknown = pl.col(C.DEVICE).is_not_null() & pl.col(columns[0]).is_null()
        flags = looked_up.select(unknown.alias("u"))["u"]
        return self._split(events, looked_up, flags)

    def _split(
        self, events: pl.DataFrame, looked_up: pl.DataFrame, flags: pl.Series
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        if not flags.any():
            return looked_up, self._no_unmatched(events)
        return (
            looked_up.filter(~flags),
            events.filter(flags).with_columns(pl.lit(UNKNOWN_DEVICE).alias(C.REASON)),
        )

    @staticmethod
    def _no_unmatched(events: pl.DataFrame) -> pl.DataFrame:
        return events.clear().with_columns(pl.lit(None, dtype=pl.String).alias(C.REASON))

    def _by_dictionary(self, events: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.frame[C.DEVICE].to_list())}
        get = self._index.get
        devices = events[C.DEVICE].cast(pl.String).to_list()
        rows = [get(d) for d in devices]
        table = self.frame.select(columns)
        if table.height == 0:  # an empty registry knows nobody
            table = pl.DataFrame([pl.Series(c, [None], dtype=table.schema[c]) for c in columns])
        found = table.select(pl.all().gather(pl.Series(rows, dtype=pl.Int64)))  # null index: null values
        looked_up = events.hstack(found.get_columns())
        if None not in rows:
            return looked_up, self._no_unmatched(events)
        flags = pl.Series([r is None and d is not None for r, d in zip(rows, devices)], dtype=pl.Boolean)
        return self._split(events, looked_up, flags)

    def _by_codes(self, events: pl.DataFrame, cats: pl.Series, columns: list[str]) -> pl.DataFrame:
        # An Enum's physical code is the category's position: lay the registry out by it.
        table = pl.DataFrame({C.DEVICE: cats}).join(
            self.frame.select(C.DEVICE, *columns), on=C.DEVICE, how="left", maintain_order="left"
        )
        codes = pl.col(C.DEVICE).to_physical()
        return events.with_columns(pl.lit(table[c]).gather(codes).alias(c) for c in columns)


def enrich(
    events: Frame, registry: Frame | Registry, columns: Sequence[str] = ("building_id",)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Shorthand for ``Registry.of(registry).enrich(events, columns)``."""
    return Registry.of(registry).enrich(as_polars(events, name="events"), columns)
