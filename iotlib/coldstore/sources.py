"""Where Capture files are read from: a Blob container (Azure or Azurite) or a local directory.

Both expose the same three operations the loader needs, and count what they did so callers
(and tests) can see what pruning saved:

- ``walk(prefix)`` — one level below ``prefix`` (a "folder" listing with delimiter ``/``);
- ``list(prefix)`` — every blob whose name starts with ``prefix``;
- ``read(name)`` — a blob's bytes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from iotlib.errors import ColdStoreError, ConfigurationError


@dataclass(frozen=True)
class BlobInfo:
    """A listed blob: its name, size and version tag (ETag, or mtime for local files)."""

    name: str
    size: int
    version: str


@dataclass
class SourceStats:
    """What a source was asked to do: listings by prefix, and blobs downloaded."""

    walked: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_download(self, name: str, size: int) -> None:
        with self._lock:
            self.downloaded.append(name)


class Source(Protocol):
    description: str
    stats: SourceStats

    def walk(self, prefix: str) -> tuple[list[str], list[BlobInfo]]: ...
    def list(self, prefix: str) -> list[BlobInfo]: ...
    def read(self, name: str) -> bytes: ...


class LocalDirectory:
    """A directory holding the Capture layout (``<root>/<namespace>/<hub>/<partition>/…/SS.avro``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigurationError(f"cold-store directory {str(self.root)!r} does not exist")
        self.description = f"directory {self.root}"
        self.stats = SourceStats()

    def _info(self, path: Path) -> BlobInfo:
        st = path.stat()
        return BlobInfo(path.relative_to(self.root).as_posix(), st.st_size, str(st.st_mtime_ns))

    def walk(self, prefix: str) -> tuple[list[str], list[BlobInfo]]:
        self.stats.walked.append(prefix)
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        dirs, files = [], []
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:
            return [], []
        for e in entries:
            if not e.name.startswith(start):
                continue
            if e.is_dir():
                dirs.append((f"{folder}/" if folder else "") + e.name + "/")
            elif e.is_file():
                files.append(self._info(Path(e.path)))
        return dirs, files

    def list(self, prefix: str) -> list[BlobInfo]:
        self.stats.listed.append(prefix)
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                info = self._info(Path(dirpath) / name)
                if info.name.startswith(prefix):
                    out.append(info)
            if dirpath == str(base):
                dirnames[:] = [d for d in dirnames if d.startswith(start)]
        return sorted(out, key=lambda b: b.name)

    def read(self, name: str) -> bytes:
        try:
            data = (self.root / name).read_bytes()
        except OSError as exc:
            raise ColdStoreError(f"cannot read {name!r} from {self.description}: {exc}") from None
        self.stats.add_download(name, len(data))
        return data


class LocalFile:
    """One Capture file on disk, whatever its name (Azure's 2016 Archive wrote names without ``.avro``).

    Its name says where its events came from only when its path ends in the path format (e.g.
    ``…/fabrikam/telemetry/3/2025/01/06/00/05/00.avro``); otherwise namespace, event hub and
    partition are null.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigurationError(f"cold-store file {str(self.path)!r} does not exist")
        self.description = f"file {self.path}"
        self.stats = SourceStats()

    def info(self) -> BlobInfo:
        st = self.path.stat()
        return BlobInfo(self.path.name, st.st_size, str(st.st_mtime_ns))

    def walk(self, prefix: str) -> tuple[list[str], list[BlobInfo]]:
        self.stats.walked.append(prefix)
        return [], [self.info()] if self.path.name.startswith(prefix) else []

    def list(self, prefix: str) -> list[BlobInfo]:
        self.stats.listed.append(prefix)
        return [self.info()] if self.path.name.startswith(prefix) else []

    def read(self, name: str) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ColdStoreError(f"cannot read {self.description}: {exc}") from None
        self.stats.add_download(name, len(data))
        return data


class BlobContainer:
    """A Blob Storage container, reached with a ``ContainerClient`` (sync)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.description = f"container {client.container_name!r} at {client.url}"
        self.stats = SourceStats()

    @classmethod
    def from_connection_string(cls, conn_str: str, container: str) -> BlobContainer:
        from azure.storage.blob import ContainerClient

        return cls(ContainerClient.from_connection_string(conn_str, container))

    def walk(self, prefix: str) -> tuple[list[str], list[BlobInfo]]:
        from azure.storage.blob import BlobPrefix

        self.stats.walked.append(prefix)
        dirs, files = [], []
        for item in self._call(lambda: list(self.client.walk_blobs(name_starts_with=prefix or None, delimiter="/"))):
            if isinstance(item, BlobPrefix):
                dirs.append(item.name)
            else:
                files.append(BlobInfo(item.name, item.size, str(item.etag)))
        return dirs, files

    def list(self, prefix: str) -> list[BlobInfo]:
        self.stats.listed.append(prefix)
        items = self._call(lambda: list(self.client.list_blobs(name_starts_with=prefix or None)))
        return [BlobInfo(b.name, b.size, str(b.etag)) for b in items]

    def read(self, name: str) -> bytes:
        data = self._call(lambda: self.client.download_blob(name, max_concurrency=4).readall())
        self.stats.add_download(name, len(data))
        return data

    def _call(self, fn: Any) -> Any:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return fn()
        except ResourceNotFoundError as exc:
            raise ColdStoreError(f"{self.description}: not found ({exc.reason or exc.message})") from None
        except AzureError as exc:
            raise ColdStoreError(f"{self.description}: {type(exc).__name__}: {exc.message}") from None


def open_source(source: Any, container: str | None = None) -> Source:
    """A :class:`Source` from what a user passes to ``load``.

    ``source`` is a local directory (str or path) or one Avro file, a storage connection string
    with ``container``, a sync ``ContainerClient``, or already a source; ``None`` is the storage
    account of :func:`iotlib.settings` (``container`` default: the capture writer's, ``capture``).
    A container named by a connection string is checked first (:mod:`iotlib.preflight`): an
    account that does not answer or refuses the key, or a container that does not exist, raises
    :class:`~iotlib.errors.EndpointError` at once.
    """
    if source is None:
        from iotlib.capture.options import DEFAULT_CONTAINER
        from iotlib.connections import settings

        return _checked_container(settings().storage_connection_string, container or DEFAULT_CONTAINER)
    if hasattr(source, "walk") and hasattr(source, "read") and hasattr(source, "stats"):
        return source
    if hasattr(source, "walk_blobs") and hasattr(source, "download_blob"):
        return BlobContainer(source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if "AccountName=" in text or "BlobEndpoint=" in text or "UseDevelopmentStorage" in text:
            if not container:
                raise ConfigurationError("a storage connection string needs container=<name>")
            return _checked_container(text, container)
        if container:
            raise ConfigurationError(f"container={container!r} given, but {text!r} is not a storage connection string")
        if Path(text).is_file():
            return LocalFile(text)
        if not Path(text).exists():
            raise ConfigurationError(
                f"{text!r} does not exist: give a directory in the Capture layout, or one Avro file"
            )
        return LocalDirectory(text)
    raise ConfigurationError(
        f"cannot read Capture files from {type(source).__name__}: pass a directory, "
        "a connection string with container=, or a ContainerClient"
    )


def _checked_container(connection_string: str, container: str) -> BlobContainer:
    from iotlib import preflight
    from iotlib.connections import StorageConnection

    preflight.check_storage(StorageConnection.parse(connection_string), container=container)
    return BlobContainer.from_connection_string(connection_string, container)
