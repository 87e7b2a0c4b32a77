"""The namespace the emulator serves: event hubs, their partitions and consumer groups.

Partition keys map to partitions with :mod:`iotlib.ingest.partitioning` (the hash the
service and azure-eventhub's buffered producer use), so a key lands on the
same partition whether the client or the emulator chooses. Events without key
or partition go round-robin, one batch at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from iotlib.errors import EmulatorError
from iotlib.ingest.partitioning import partition_index
from iotlib.local.emulator.config import EmulatorConfig, EntityConfig
from iotlib.local.emulator.log import PartitionLog
from iotlib.local.emulator.ownership import ReaderSlot

_LOG = logging.getLogger("iotlib.local.emulator.namespace")


class Partition:
    """One partition: its log and the delivery links waiting for new events."""

    def __init__(self, hub: EventHub, pid: str, log: PartitionLog) -> None:
        self.hub = hub
        self.id = pid
        self.log = log
        self.waiters: set[Callable[[], None]] = set()

    def notify(self) -> None:
        for wake in list(self.waiters):
            wake()


class EventHub:
    """One event hub: partitions, consumer groups and who reads what."""

    def __init__(self, config: EntityConfig, directory: Path, *, segment_bytes: int, fsync: bool) -> None:
        self.config = config
        self.name = config.name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        meta_path = directory / "hub.json"
        meta = {}
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}
        self.created_at = int(meta.get("created_at") or time.time() * 1000)
        meta_path.write_text(json.dumps({"created_at": self.created_at, "partition_count": config.partition_count}))
        self.partitions = [
            Partition(self, str(i), PartitionLog(directory / str(i), segment_bytes=segment_bytes, fsync=fsync))
            for i in range(config.partition_count)
        ]
        self.partition_ids = [p.id for p in self.partitions]
        self._groups = {g.lower(): g for g in config.consumer_groups}
        self._slots: dict[tuple[str, str], ReaderSlot] = {}
        self._round_robin = 0

    def partition(self, pid: str) -> Partition | None:
        try:
            index = int(pid)
        except ValueError:
            return None
        if str(index) != pid.strip() or not 0 <= index < len(self.partitions):
            return None
        return self.partitions[index]

    def consumer_group(self, name: str) -> str | None:
        return self._groups.get(name.lower())

    def slot(self, group: str, pid: str) -> ReaderSlot:
        key = (group.lower(), pid)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = ReaderSlot(f"partition {pid} of consumer group {group} of {self.name}")
        return slot

    def route(self, key: str | None) -> Partition:
        """The partition for a batch without an explicit partition."""
        if key:
            return self.partitions[partition_index(key, len(self.partitions))]
        self._round_robin = (self._round_robin + 1) % len(self.partitions)
        return self.partitions[self._round_robin]

    def enforce_retention(self, now_ms: int) -> int:
        age = int(self.config.retention_hours * 3600_000) if self.config.retention_hours else None
        size = int(self.config.retention_mb * 1024 * 1024) if self.config.retention_mb else None
        if age is None and size is None:
            return 0
        return sum(p.log.enforce_retention(now_ms=now_ms, max_age_ms=age, max_bytes=size) for p in self.partitions)

    def close(self) -> None:
        for p in self.partitions:
            p.log.close()


class Namespace:
    """Every event hub of the configuration, opened over ``data_dir`` (which it locks)."""

    def __init__(self, config: EmulatorConfig, data_dir: Path) -> None:
        self.config = config
        self.name = config.namespace
        self.data_dir = Path(data_dir)
        self.hubs: dict[str, EventHub] = {}
        self._lock = _lock_folder(self.data_dir)
        try:
            for entity in config.entities:
                self.hubs[entity.name.lower()] = EventHub(
                    entity, self.data_dir / entity.name, segment_bytes=config.segment_bytes, fsync=config.fsync
                )
        except OSError as exc:
            self.close()
            raise EmulatorError(f"cannot open the event log under {self.data_dir}: {exc}") from exc

    def hub(self, name: str) -> EventHub | None:
        return self.hubs.get(name.lower())

    def enforce_retention(self, now_ms: int) -> int:
        deleted = sum(h.enforce_retention(now_ms) for h in self.hubs.values())
        if deleted:
            _LOG.info("retention deleted %d old segment(s)", deleted)
        return deleted

    def close(self) -> None:
        for hub in self.hubs.values():
            hub.close()
        self.hubs = {}
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _lock_folder(folder: Path) -> int | None:
    """Hold an exclusive lock on ``folder`` so that two emulators never share one log."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one emulator per folder is up to the user
        return None
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EmulatorError(
            f"{folder} is in use by another emulator (pid {holder}); stop it, or give this one another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
