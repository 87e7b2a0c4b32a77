"""Fabrikam's device registry: which thermostat sits in which building, floor and apartment.

The registry is reference data, as in the original journey (where Stream
Analytics joined events to it to group them by building). It is a polars
DataFrame with exactly these columns:

============  =========  ==================================================
column        dtype      meaning
============  =========  ==================================================
device_id     String     the device's id, GUID text (``"3f2a...-..."``)
building_id   Int32      1..N, so "building 25" is ``building_id == 25``
floor         Int16      1..floors of the building
room          String     apartment number, floor then apartment: ``"1204"``
time_zone     String     the building's IANA time zone (local-day grouping)
============  =========  ==================================================

Everything is deterministic from a seed. :func:`build_registry` makes the
default Fabrikam fleet (100,000 devices over a few hundred buildings of 10-30
floors, a few thermostats per apartment, time zones across North America);
:func:`original_registry` makes the original journey's shape (1,000 devices
over 10 buildings, 100 each). Both ship in ``data/`` (see :data:`DEFAULT_REGISTRY_PATH`
and :data:`ORIGINAL_REGISTRY_PATH`), and a test keeps the files equal to what
this code generates.
"""

from __future__ import annotations

import json
import zoneinfo
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

from iotlib.errors import ConfigurationError, ValidationError

#: The registry's columns and their dtypes, in order.
SCHEMA = pl.Schema(
    {
        "device_id": pl.String(),
        "building_id": pl.Int32(),
        "floor": pl.Int16(),
        "room": pl.String(),
        "time_zone": pl.String(),
    }
)

DEFAULT_DEVICES = 100_000
DEFAULT_SEED = 0
ORIGINAL_DEVICES = 1_000
ORIGINAL_BUILDINGS = 10

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
#: The default fleet (100,000 devices, seed 0), as shipped.
DEFAULT_REGISTRY_PATH = DATA_DIR / "fabrikam-registry.parquet"
#: The original journey's shape (1,000 devices, 10 buildings of 100, seed 0), as shipped.
ORIGINAL_REGISTRY_PATH = DATA_DIR / "fabrikam-registry-original.json"

# Building layout: floors and apartments per floor are drawn per building;
# a building's share of the devices follows its number of apartments.
FLOORS = (10, 30)
APARTMENTS_PER_FLOOR = (4, 8)
DEVICES_PER_APARTMENT = 2  # on average: thermostats in the living room and a bedroom or two
MEAN_DEVICES_PER_BUILDING = 20 * 6 * DEVICES_PER_APARTMENT  # 240 -> ~417 buildings for 100,000

# Where Fabrikam's customers are, with rough weights (share of buildings).
TIME_ZONES: dict[str, float] = {
    "America/New_York": 0.30,
    "America/Chicago": 0.22,
    "America/Los_Angeles": 0.18,
    "America/Toronto": 0.07,
    "America/Denver": 0.06,
    "America/Phoenix": 0.04,
    "America/Vancouver": 0.04,
    "America/Mexico_City": 0.03,
    "America/Edmonton": 0.02,
    "America/Winnipeg": 0.01,
    "America/Halifax": 0.01,
    "America/Anchorage": 0.01,
    "Pacific/Honolulu": 0.01,
}


def _rng(seed: int, purpose: str) -> np.random.Generator:
    # One independent stream per purpose, so changing how floors are drawn
    # does not change the device ids of the same seed.
    tag = int.from_bytes(purpose.encode(), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, tag]))


def _guids(count: int, rng: np.random.Generator) -> list[str]:
    """Random (version 4) GUIDs as lower-case text, drawn from ``rng``."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    out = []
    for h in (row.tobytes().hex() for row in raw):
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder)."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def build_registry(
    devices: int = DEFAULT_DEVICES,
    *,
    buildings: int | None = None,
    equal_buildings: bool = False,
    seed: int = DEFAULT_SEED,
) -> pl.DataFrame:
    """A Fabrikam device registry, the same for the same arguments.

    ``buildings`` defaults to about one per 240 devices (a few hundred for the
    default 100,000). Buildings have 10-30 floors and 4-8 apartments a floor;
    devices go to buildings in proportion to their apartments, or evenly with
    ``equal_buildings=True`` (the original's shape: 100 devices a building).
    Within a building, devices fill the floors evenly and each apartment gets
    one or more of its floor's devices. Rows are ordered by building, floor,
    room.
    """
    if devices < 1:
        raise ConfigurationError(f"a registry needs at least one device, got devices={devices}")
    if buildings is None:
        buildings = max(1, round(devices / MEAN_DEVICES_PER_BUILDING))
    if not 1 <= buildings <= devices:
        raise ConfigurationError(f"buildings must be between 1 and devices ({devices}), got {buildings}")

    layout = _rng(seed, "layout")
    floors = layout.integers(FLOORS[0], FLOORS[1] + 1, size=buildings)
    apartments = layout.integers(APARTMENTS_PER_FLOOR[0], APARTMENTS_PER_FLOOR[1] + 1, size=buildings)
    if equal_buildings:
        counts = np.full(buildings, devices // buildings, dtype=np.int64)
        counts[: devices % buildings] += 1
    else:
        counts = _apportion(devices, (floors * apartments).astype(np.float64))

    zones = list(TIME_ZONES)
    weights = np.array([TIME_ZONES[z] for z in zones])
    zone_of = _rng(seed, "time_zone").choice(len(zones), size=buildings, p=weights / weights.sum())

    building_col, floor_col, room_col = [], [], []
    for b in range(buildings):
        count = int(counts[b])
        used_floors = min(int(floors[b]), count)
        per_floor = np.full(used_floors, count // used_floors, dtype=np.int64)
        per_floor[: count % used_floors] += 1
        floor_of = np.repeat(np.arange(1, used_floors + 1), per_floor)
        # Each apartment on a floor gets at least one device, the rest are spread at random.
        apt_of = np.empty(count, dtype=np.int64)
        pos = 0
        for n in per_floor.tolist():
            k = min(int(apartments[b]), n)
            extra = layout.multinomial(n - k, np.full(k, 1.0 / k))
            apt_of[pos : pos + n] = np.repeat(np.arange(1, k + 1), 1 + extra)
            pos += n
        building_col.append(np.full(count, b + 1, dtype=np.int32))
        floor_col.append(floor_of)
        room_col.append(floor_of * 100 + apt_of)

    floor_arr = np.concatenate(floor_col)
    registry = pl.DataFrame(
        {
            "device_id": _guids(devices, _rng(seed, "device_id")),
            "building_id": np.concatenate(building_col),
            "floor": floor_arr.astype(np.int16),
            "room": np.concatenate(room_col),
            "time_zone": np.array(zones)[zone_of][np.concatenate(building_col) - 1],
        }
    )
    return registry.with_columns(pl.col("room").cast(pl.String)).cast(SCHEMA)


def original_registry(*, seed: int = DEFAULT_SEED) -> pl.DataFrame:
    """The original journey's reference-data shape: 1,000 devices over 10 buildings, 100 each."""
    return build_registry(ORIGINAL_DEVICES, buildings=ORIGINAL_BUILDINGS, equal_buildings=True, seed=seed)


@cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_registry(registry: pl.DataFrame) -> pl.DataFrame:
    """Check a registry and return it with the canonical dtypes (extra columns are kept).

    Raises :class:`~iotlib.errors.ValidationError` naming every problem found:
    missing columns, values that do not fit a column's dtype, nulls or empty
    device ids, duplicate device ids, building ids below 1, unknown time zones.
    """
    if not isinstance(registry, pl.DataFrame):
        raise ConfigurationError(f"a registry is a polars DataFrame, got {type(registry).__name__}")
    missing = [c for c in SCHEMA if c not in registry.columns]
    if missing:
        raise ValidationError(f"registry lacks column(s) {', '.join(missing)}; expected {', '.join(SCHEMA)}")
    problems: list[str] = []
    casts = []
    for name, dtype in SCHEMA.items():
        col = registry[name]
        if col.dtype == dtype:
            casts.append(col)
            continue
        try:
            casts.append(col.cast(dtype, strict=True))
        except Exception:
            problems.append(f"column {name} has dtype {col.dtype}, which does not convert to {dtype}")
    if problems:
        raise ValidationError("invalid registry: " + "; ".join(problems))
    reg = registry.with_columns(casts)

    for name in SCHEMA:
        nulls = reg[name].null_count()
        if nulls:
            problems.append(f"{nulls} null value(s) in column {name}")
    empty = int((reg["device_id"].str.len_bytes() == 0).sum())
    if empty:
        problems.append(f"{empty} empty device id(s)")
    dup = reg["device_id"].filter(reg["device_id"].is_duplicated()).unique(maintain_order=True)
    if len(dup):
        shown = ", ".join(dup.head(5).to_list())
        problems.append(f"{len(dup)} duplicate device id(s), e.g. {shown}")
    low = int((reg["building_id"] < 1).sum())
    if low:
        problems.append(f"{low} building id(s) below 1 (building ids start at 1)")
    zones = reg["time_zone"].drop_nulls().unique().to_list()
    unknown = sorted(z for z in zones if z not in _known_time_zones())
    if unknown:
        problems.append(f"unknown IANA time zone(s): {', '.join(unknown[:5])}")
    if problems:
        raise ValidationError("invalid registry: " + "; ".join(problems))
    return reg


def save_registry(registry: pl.DataFrame, path: str | Path) -> Path:
    """Write a registry as Parquet (``.parquet``) or JSON (``.json``: an array of records)."""
    path = Path(path)
    reg = validate_registry(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        reg.write_parquet(path, compression="zstd", statistics=False)
    elif path.suffix == ".json":
        # One record per line: readable, and diffs stay small.
        lines = (json.dumps(row, separators=(",", ":")) for row in reg.iter_rows(named=True))
        path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    else:
        raise ConfigurationError(f"registry files end in .parquet or .json, got {path.name}")
    return path


def load_registry(path: str | Path) -> pl.DataFrame:
    """Read and validate a registry saved by :func:`save_registry` (``.parquet`` or ``.json``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(f"no registry file at {path}")
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif path.suffix == ".json":
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValidationError(f"{path} should hold a JSON array of records")
        frame = pl.DataFrame(records, infer_schema_length=None)
    else:
        raise ConfigurationError(f"registry files end in .parquet or .json, got {path.name}")
    try:
        return validate_registry(frame)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from None


def default_registry() -> pl.DataFrame:
    """The default Fabrikam fleet: the shipped file, or the same thing generated if it is absent."""
    if DEFAULT_REGISTRY_PATH.exists():
        return load_registry(DEFAULT_REGISTRY_PATH)
    return build_registry()


def registry_summary(registry: pl.DataFrame) -> dict[str, object]:
    """Headline numbers of a registry: devices, buildings, floors, apartments, time zones."""
    per_building = registry.group_by("building_id").agg(
        pl.len().alias("devices"), pl.col("floor").max().alias("floors"), pl.col("room").n_unique().alias("rooms")
    )
    floors_min, floors_max, devices_min, devices_max = per_building.select(
        pl.col("floors").min().alias("floors_min"),
        pl.col("floors").max().alias("floors_max"),
        pl.col("devices").min().alias("devices_min"),
        pl.col("devices").max().alias("devices_max"),
    ).row(0)
    return {
        "devices": registry.height,
        "buildings": per_building.height,
        "apartments": int(per_building["rooms"].sum()),
        "floors_min": int(floors_min),
        "floors_max": int(floors_max),
        "devices_per_building_min": int(devices_min),
        "devices_per_building_max": int(devices_max),
        "time_zones": registry["time_zone"].n_unique(),
    }


def write_shipped_registries() -> list[Path]:
    """Regenerate the registries shipped in ``data/`` (after a deliberate change to the generator)."""
    return [
        save_registry(build_registry(), DEFAULT_REGISTRY_PATH),
        save_registry(original_registry(), ORIGINAL_REGISTRY_PATH),
    ]
