"""The emulator's entity configuration, in the shape of the official emulator's ``Config.json``.

A file users already have for Microsoft's emulator works as it is::

    {"UserConfig": {"NamespaceConfig": [{"Type": "EventHub", "Name": "emulatorNs1",
        "Entities": [{"Name": "eh1", "PartitionCount": "2",
                      "ConsumerGroups": [{"Name": "cg1"}]}]}],
      "LoggingConfig": {"Type": "File"}}}

iotlib reads a few optional keys beside those (ignored by Microsoft's emulator):
per entity ``RetentionTimeInHours`` and ``RetentionSizeInMB`` (per partition;
default: keep everything, like Fabrikam's cold path wants), per namespace
``SharedAccessKeys`` (``[{"Name", "Key", "Rights": ["Manage", "Send", "Listen"]}]``,
default ``RootManageSharedAccessKey`` / ``SAS_KEY_VALUE`` with all rights, and the send-only
policy ``devices`` / ``DEVICE_SAS_KEY_VALUE`` that signs the device registry's publisher tokens) and
``ThroughputUnits`` (a whole number, 1 to 40: meter the namespace as that many of
Azure's standard-tier throughput units, each 1,000 events/s or 1 MiB/s in and
4,096 events/s or 2 MiB/s out; sends over budget are refused with
``com.microsoft:server-busy``, see :mod:`~iotlib.local.emulator.throughput`; default
``0``/absent: not metered, local runs are never throttled unless asked), and
``UserConfig.EmulatorConfig`` with ``SegmentSizeInMB``, ``MaxFrameSize``,
``Fsync`` (default ``true``: an event is acknowledged once it is on disk, so it
survives power loss; ``false`` acknowledges once the operating system has it,
which survives ``kill -9`` only) and ``RetentionCheckSeconds``.

Limits are Azure's standard tier: at most 32 partitions and 20 consumer groups
(``$Default`` included) per event hub.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotlib.errors import ConfigurationError
from iotlib.local.emulator.throughput import MAX_THROUGHPUT_UNITS

MAX_PARTITIONS = 32
MAX_CONSUMER_GROUPS = 20
DEFAULT_CONSUMER_GROUP = "$Default"
DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"
#: The send-only policy that signs devices' publisher tokens (iotlib.devices), well known like the root key.
DEVICE_KEY_NAME = "devices"
DEVICE_KEY = "DEVICE_SAS_KEY_VALUE"
ALL_RIGHTS = frozenset({"Manage", "Send", "Listen"})
_NAME = re.compile(r"^[A-Za-z0-9$][A-Za-z0-9._\-$]{0,255}$")


@dataclass(frozen=True)
class EntityConfig:
    """One event hub."""

    name: str
    partition_count: int = 8
    consumer_groups: tuple[str, ...] = (DEFAULT_CONSUMER_GROUP,)
    retention_hours: float | None = None
    retention_mb: float | None = None


@dataclass(frozen=True)
class KeyConfig:
    """A shared access policy: key name, key and rights."""

    name: str
    key: str
    rights: frozenset[str] = ALL_RIGHTS


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator serves: one namespace, its hubs and keys, storage settings."""

    namespace: str = "fabrikam"
    entities: tuple[EntityConfig, ...] = (
        EntityConfig("telemetry", 8, (DEFAULT_CONSUMER_GROUP, "capture", "warm", "monitor")),
    )
    keys: tuple[KeyConfig, ...] = (
        KeyConfig(DEFAULT_KEY_NAME, DEFAULT_KEY),
        KeyConfig(DEVICE_KEY_NAME, DEVICE_KEY, frozenset({"Send"})),
    )
    segment_bytes: int = 16 * 1024 * 1024
    max_frame_size: int = 65536
    fsync: bool = True  # acknowledged events survive power loss (benchmarks/emulator.py: ~1 % of send throughput)
    retention_check_seconds: float = 30.0
    throughput_units: int | None = None

    def __post_init__(self) -> None:
        _validate(self)
        if self.throughput_units == 0:
            object.__setattr__(self, "throughput_units", None)  # 0 means "not metered", like absent

    @classmethod
    def from_file(cls, path: str | Path) -> EmulatorConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigurationError(f"cannot read emulator config {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"emulator config {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "emulator config") -> EmulatorConfig:
        def need(obj: Any, key: str, where: str) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                raise ConfigurationError(f"{source}: {where} has no {key!r}")
            return obj[key]

        user = need(raw, "UserConfig", "the top level")
        namespaces = need(user, "NamespaceConfig", "UserConfig")
        if not isinstance(namespaces, list) or len(namespaces) != 1:
            raise ConfigurationError(f"{source}: UserConfig.NamespaceConfig must list exactly one namespace")
        ns = namespaces[0]
        if str(ns.get("Type", "EventHub")) != "EventHub":
            raise ConfigurationError(f"{source}: namespace Type must be 'EventHub', not {ns.get('Type')!r}")
        entities = []
        for i, ent in enumerate(need(ns, "Entities", "the namespace")):
            where = f"Entities[{i}]"
            name = str(need(ent, "Name", where))
            try:
                count = int(ent.get("PartitionCount", 1))
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{source}: {where}.PartitionCount must be a number") from exc
            groups = [DEFAULT_CONSUMER_GROUP]
            for g in ent.get("ConsumerGroups", []) or []:
                gname = str(need(g, "Name", f"{where}.ConsumerGroups[]"))
                if gname.lower() not in (x.lower() for x in groups):
                    groups.append(gname)
            entities.append(
                EntityConfig(
                    name,
                    count,
                    tuple(groups),
                    _opt_float(ent.get("RetentionTimeInHours"), f"{source}: {where}.RetentionTimeInHours"),
                    _opt_float(ent.get("RetentionSizeInMB"), f"{source}: {where}.RetentionSizeInMB"),
                )
            )
        keys = (
            tuple(
                KeyConfig(
                    str(need(k, "Name", "SharedAccessKeys[]")),
                    str(need(k, "Key", "SharedAccessKeys[]")),
                    frozenset(k.get("Rights", ALL_RIGHTS)),
                )
                for k in ns.get("SharedAccessKeys", [])
            )
            or EmulatorConfig.keys
        )
        emu = user.get("EmulatorConfig", {}) or {}
        return cls(
            namespace=str(ns.get("Name", "fabrikam")),
            entities=tuple(entities),
            keys=keys,
            segment_bytes=int(float(emu.get("SegmentSizeInMB", 16)) * 1024 * 1024),
            max_frame_size=int(emu.get("MaxFrameSize", 65536)),
            fsync=_boolean(emu.get("Fsync", True), f"{source}: EmulatorConfig.Fsync"),
            retention_check_seconds=float(emu.get("RetentionCheckSeconds", 30.0)),
            throughput_units=_throughput_units(ns.get("ThroughputUnits"), f"{source}: ThroughputUnits"),
        )

    def to_dict(self) -> dict[str, Any]:
        """This configuration in the official file's shape (plus iotlib's optional keys)."""
        entities = []
        for e in self.entities:
            item: dict[str, Any] = {
                "Name": e.name,
                "PartitionCount": str(e.partition_count),
                "ConsumerGroups": [{"Name": g} for g in e.consumer_groups if g != DEFAULT_CONSUMER_GROUP],
            }
            if e.retention_hours is not None:
                item["RetentionTimeInHours"] = e.retention_hours
            if e.retention_mb is not None:
                item["RetentionSizeInMB"] = e.retention_mb
            entities.append(item)
        namespace: dict[str, Any] = {
            "Type": "EventHub",
            "Name": self.namespace,
            "Entities": entities,
            "SharedAccessKeys": [{"Name": k.name, "Key": k.key, "Rights": sorted(k.rights)} for k in self.keys],
        }
        if self.throughput_units:
            namespace["ThroughputUnits"] = self.throughput_units
        return {
            "UserConfig": {
                "NamespaceConfig": [namespace],
                "EmulatorConfig": {
                    "SegmentSizeInMB": self.segment_bytes / (1024 * 1024),
                    "MaxFrameSize": self.max_frame_size,
                    "Fsync": self.fsync,
                    "RetentionCheckSeconds": self.retention_check_seconds,
                },
                "LoggingConfig": {"Type": "Console"},
            }
        }


def _boolean(value: Any, what: str) -> bool:
    """A JSON boolean (or the strings the official file uses for values: "true"/"false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigurationError(f"{what} must be true or false, not {value!r}")


def _opt_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what} must be a number") from exc
    if result <= 0:
        raise ConfigurationError(f"{what} must be positive")
    return result


def _throughput_units(value: Any, what: str) -> int | None:
    """``ThroughputUnits`` as a whole number (``"2"`` as in the official file's strings); 0 = not metered."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a whole number of throughput units, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what} must be a whole number of throughput units, not {value!r}") from exc
    if not number.is_integer():
        raise ConfigurationError(f"{what} must be a whole number of throughput units, not {value!r}")
    return int(number) or None


def _validate(cfg: EmulatorConfig) -> None:
    if not _NAME.match(cfg.namespace):
        raise ConfigurationError(f"namespace name {cfg.namespace!r} is not valid")
    if not cfg.entities:
        raise ConfigurationError("the emulator config defines no event hub (Entities is empty)")
    seen = set()
    for e in cfg.entities:
        if not _NAME.match(e.name) or e.name.startswith("$"):
            raise ConfigurationError(f"event hub name {e.name!r} is not valid")
        if e.name.lower() in seen:
            raise ConfigurationError(f"event hub {e.name!r} is defined twice")
        seen.add(e.name.lower())
        if not 1 <= e.partition_count <= MAX_PARTITIONS:
            raise ConfigurationError(
                f"event hub {e.name!r} asks for {e.partition_count} partitions; "
                f"the standard tier allows 1 to {MAX_PARTITIONS}"
            )
        if len(e.consumer_groups) > MAX_CONSUMER_GROUPS:
            raise ConfigurationError(
                f"event hub {e.name!r} has {len(e.consumer_groups)} consumer groups ($Default included); "
                f"the standard tier allows at most {MAX_CONSUMER_GROUPS}"
            )
        for g in e.consumer_groups:
            if not _NAME.match(g):
                raise ConfigurationError(f"consumer group name {g!r} of {e.name!r} is not valid")
    if not cfg.keys:
        raise ConfigurationError("the emulator config defines no shared access key")
    for k in cfg.keys:
        unknown = set(k.rights) - ALL_RIGHTS
        if unknown:
            raise ConfigurationError(
                f"key {k.name!r} has unknown rights {sorted(unknown)}; known: {sorted(ALL_RIGHTS)}"
            )
    if cfg.segment_bytes < 4096:
        raise ConfigurationError("SegmentSizeInMB is too small (at least 4 KiB)")
    if not 4096 <= cfg.max_frame_size <= 1 << 24:
        raise ConfigurationError("MaxFrameSize must be between 4096 and 16 MiB")
    units = cfg.throughput_units
    if units is not None and (
        isinstance(units, bool) or not isinstance(units, int) or not 0 <= units <= MAX_THROUGHPUT_UNITS
    ):
        raise ConfigurationError(
            f"ThroughputUnits is {units!r}; Azure's standard tier allows 1 to {MAX_THROUGHPUT_UNITS} "
            "(0 or absent: not metered)"
        )
