"""Looking at a cold store: the blob layout as a tree, files per window, what is inside one Avro file.

Helpers for notebook 03 and for anyone checking what a capture wrote (theirs or Azure's):

- :func:`list_files` — the Capture blobs of a container with what their names and metadata say;
- :func:`blob_tree` — the container's layout as an indented text tree;
- :func:`describe` — one file taken apart: header, schema, Avro blocks, first records;
- :func:`file_sizes` — a figure of file sizes and event counts per window and partition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from azure.storage.blob import ContainerClient
from matplotlib.figure import Figure

from iotlib.capture import format as cf
from iotlib.errors import ConfigurationError


def _container(container: ContainerClient | str, name: str | None) -> ContainerClient:
    if isinstance(container, str):
        if name is None:
            raise ConfigurationError("give container= with a connection string")
        return ContainerClient.from_connection_string(container, name)
    return container


def list_files(
    container: ContainerClient | str, *, name: str | None = None, path_format: str = cf.DEFAULT_PATH_FORMAT
) -> pl.DataFrame:
    """One row per Capture blob: name, partition, window start, bytes, events and sequence range (metadata)."""
    cc = _container(container, name)
    fmt = cf.PathFormat(path_format)
    rows = []
    for b in cc.list_blobs(include=["metadata"]):
        path = fmt.try_parse(b.name)
        if path is None:
            continue
        meta = {k.lower(): v for k, v in (b.metadata or {}).items()}

        def number(key: str, meta: dict[str, str] = meta) -> int | None:
            value = meta.get(key)
            return int(value) if value not in (None, "", "-1") else None

        rows.append({
            "name": b.name, "namespace": path.namespace, "eventhub": path.eventhub, "partition_id": path.partition_id,
            "window_start": path.window_start, "bytes": b.size, "events": number("eventcount"),
            "first_sequence_number": number("firstsequencenumber"), "last_sequence_number": number("lastsequencenumber"),
        })  # fmt: skip
    schema = {
        "name": pl.String(), "namespace": pl.String(), "eventhub": pl.String(), "partition_id": pl.String(),
        "window_start": pl.Datetime("us", "UTC"), "bytes": pl.Int64(), "events": pl.Int64(),
        "first_sequence_number": pl.Int64(), "last_sequence_number": pl.Int64(),
    }  # fmt: skip
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return df.sort("partition_id", "window_start", "name")


def blob_tree(
    container: ContainerClient | str, *, name: str | None = None, max_children: int = 3, prefix: str = ""
) -> str:
    """The container's blobs as a folder tree; each folder shows its first ``max_children`` entries
    and how many more it holds, files their size."""
    cc = _container(container, name)
    root: dict[str, Any] = {}
    for b in cc.list_blobs(name_starts_with=prefix or None):
        node = root
        parts = b.name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part + "/", {})
        node[parts[-1]] = b.size
    lines = [f"{cc.container_name}/"]

    def walk(node: dict[str, Any], indent: str) -> None:
        keys = sorted(node)
        shown = keys[:max_children]
        for i, key in enumerate(shown):
            last = i == len(shown) - 1 and len(keys) <= max_children
            branch = "└── " if last else "├── "
            value = node[key]
            if isinstance(value, dict):
                files, folders = _count(value)
                lines.append(f"{indent}{branch}{key}" + (f"  ({files} files)" if folders else ""))
                walk(value, indent + ("    " if last else "│   "))
            else:
                lines.append(f"{indent}{branch}{key}  {_size(value)}")
        if len(keys) > max_children:
            lines.append(f"{indent}└── … {len(keys) - max_children} more")

    walk(root, "")
    return "\n".join(lines)


def _count(node: dict[str, Any]) -> tuple[int, int]:
    files = folders = 0
    for value in node.values():
        if isinstance(value, dict):
            f, d = _count(value)
            files, folders = files + f, folders + d + 1
        else:
            files += 1
    return files, folders


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


@dataclass
class CaptureFileAnatomy:
    """One Capture file taken apart: its header and its Avro data blocks."""

    size: int
    magic: bytes
    codec: str
    schema: dict[str, Any]
    sync_marker: bytes
    header_size: int
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (records, bytes) per data block
    records: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def events(self) -> int:
        return sum(n for n, _ in self.blocks)

    def summary(self) -> str:
        names = ", ".join(f"{f['name']}: {_type(f['type'])}" for f in self.schema["fields"])
        blocks = ", ".join(f"{n} records/{_size(b)}" for n, b in self.blocks[:4]) + (
            " …" if len(self.blocks) > 4 else ""
        )
        return "\n".join([
            f"{_size(self.size)}: magic {self.magic!r}, codec {self.codec}, sync marker {self.sync_marker.hex()}",
            f"header {self.header_size} bytes; schema {self.schema['namespace']}.{self.schema['name']} {{{names}}}",
            f"{len(self.blocks)} data blocks ({blocks}), {self.events:,} records",
        ])  # fmt: skip


def _type(t: Any) -> str:
    if isinstance(t, list):
        return "|".join(_type(x) for x in t)
    if isinstance(t, dict):
        return f"map<{_type(t['values'])}>" if t.get("type") == "map" else str(t.get("type"))
    return str(t)


def describe(data: bytes, *, records: int = 3) -> CaptureFileAnatomy:
    """Take a Capture file apart: header metadata, schema, block sizes, and the first ``records`` records
    (read with plain fastavro and the schema in the file's header)."""
    meta, sync, end = cf.read_header_meta(data)
    blocks: list[tuple[int, int]] = []
    pos = end
    while pos < len(data):
        count, pos = cf._read_long(data, pos)  # noqa: SLF001 - the format's own varint reader
        size, pos = cf._read_long(data, pos)  # noqa: SLF001
        blocks.append((count, size))
        pos += size + 16
    rows = []
    for i, rec in enumerate(cf.iter_records(data)):
        if i >= records:
            break
        rows.append({
            "SequenceNumber": rec["SequenceNumber"], "Offset": rec["Offset"], "EnqueuedTimeUtc": rec["EnqueuedTimeUtc"],
            "SystemProperties": json.dumps(rec["SystemProperties"], default=str),
            "Properties": json.dumps(rec["Properties"], default=str),
            "Body": (rec["Body"] or b"").decode("utf-8", "replace"),
        })  # fmt: skip
    return CaptureFileAnatomy(
        size=len(data), magic=data[:4], codec=meta.get("avro.codec", b"null").decode(),
        schema=json.loads(meta["avro.schema"]), sync_marker=sync, header_size=end, blocks=blocks,
        records=pl.DataFrame(rows),
    )  # fmt: skip


def file_sizes(files: pl.DataFrame) -> Figure:
    """Two panels: bytes per file and events per file, by window start, one line per partition."""
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    a, b = fig.subplots(1, 2, sharex=True)
    for (pid,), part in files.sort("window_start").group_by("partition_id", maintain_order=True):
        x = part["window_start"].to_list()
        a.plot(x, (part["bytes"] / 1024).to_list(), marker="o", ms=3, lw=1, label=f"partition {pid}")
        b.plot(x, part["events"].fill_null(0).to_list(), marker="o", ms=3, lw=1)
    a.set(title="Capture file size per window", ylabel="KiB", xlabel="window start (UTC)")
    b.set(title="Events per file", ylabel="events", xlabel="window start (UTC)")
    if files["partition_id"].n_unique() <= 8:
        a.legend(fontsize=7, ncols=2)
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return fig
