"""The Event Hubs Capture file format, as Azure writes it: shared by the capture writer and the loader.

Everything a cold store written here has in common with one written by Azure lives in this
module, and nothing else does:

- :data:`SCHEMA` — the Avro schema of a Capture file (record ``EventData`` in namespace
  ``Microsoft.ServiceBus.Messaging``). Some real files lack the ``null`` branch of the
  ``Properties`` union (:data:`SCHEMA_WITHOUT_PROPERTIES_NULL`): readers must use the schema in
  each file's header.
- :class:`PathFormat` — blob names. The default is
  ``{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}`` plus
  ``.avro``; users may reorder the placeholders. The time in a name is the **start** of the
  capture window, zero-padded UTC; a window lasts at most :data:`MAX_WINDOW` (900 s), so a file
  named up to 900 s before a time range can hold events inside it.
- :func:`format_enqueued_time` / :func:`parse_enqueued_time` — ``EnqueuedTimeUtc`` text. Azure
  writes .NET invariant-culture text with whole seconds (``12/8/2017 3:03:17 AM``); the parser
  also takes ISO 8601 with up to 7 fractional digits.
- :func:`system_properties` — the ``SystemProperties`` map as the service fills it from the AMQP
  message annotations: ``x-opt-sequence-number`` (long), ``x-opt-offset`` (string),
  ``x-opt-enqueued-time`` (long, milliseconds since the Unix epoch) and ``x-opt-partition-key``
  (string) when the event was sent with one. It carries the millisecond enqueued time that the
  whole-second ``EnqueuedTimeUtc`` text loses.
- :func:`write_capture_file` — one Capture file from records, over fastavro, with the exact
  Azure schema text in its header; codec ``"null"`` (Azure's default ``Avro`` encoding) or
  ``"deflate"`` (``AvroDeflate``); no records gives the header-only file of an empty window.
  :func:`sync_marker_for` derives the sync marker from the blob name, so a window replayed after
  a crash is written byte for byte again (same name, same bytes: an overwrite, not a second copy).
- :func:`capture_header`, :func:`encode_record`, :func:`encode_block` — the same file built
  piece by piece, for a writer that streams it as blob blocks: the header, then Avro data
  blocks. With codec ``null``, ``capture_header(...) + encode_block(...) + ...`` is
  byte-identical to :func:`write_capture_file` cutting its blocks at the same records.

A capture writer needs: ``PathFormat(fmt).name(...)``, :func:`sync_marker_for`, and either
:func:`capture_record` + :func:`write_capture_file` (a whole file at once) or
:func:`capture_header` + :func:`encode_record` + :func:`encode_block` (block by block, as
:mod:`iotlib.capture` stages them; :func:`format_enqueued_time` and :func:`system_properties`
fill a record's fields). A reader needs ``PathFormat.parse``/``time_prefixes``/``may_overlap``
and :func:`parse_enqueued_time`; :func:`iter_records` is the plain fastavro reference reader.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypedDict, overload

import fastavro

from iotlib.durations import EPOCH
from iotlib.errors import ColdStoreError, ConfigurationError, ValidationError

__all__ = [
    "CODECS",
    "DEFAULT_PATH_FORMAT",
    "MAX_WINDOW",
    "SCHEMA",
    "SCHEMA_WITHOUT_PROPERTIES_NULL",
    "BlobPath",
    "CaptureRecord",
    "PathFormat",
    "capture_header",
    "capture_record",
    "encode_block",
    "encode_record",
    "format_enqueued_time",
    "iter_records",
    "parse_enqueued_time",
    "read_header_meta",
    "sync_marker_for",
    "system_properties",
    "time_slots",
    "write_capture_file",
]

NAMESPACE = "Microsoft.ServiceBus.Messaging"
SYSTEM_VALUES = ["long", "double", "string", "bytes"]

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "EventData",
    "namespace": NAMESPACE,
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": SYSTEM_VALUES}},
        {"name": "Properties", "type": {"type": "map", "values": [*SYSTEM_VALUES, "null"]}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
"""The Capture schema with the ``null`` branch in ``Properties`` (what Azure documents today)."""

SCHEMA_WITHOUT_PROPERTIES_NULL: dict[str, Any] = json.loads(json.dumps(SCHEMA))
SCHEMA_WITHOUT_PROPERTIES_NULL["fields"][4]["type"]["values"] = list(SYSTEM_VALUES)
"""The variant some real files carry: ``Properties`` values without ``null``."""

CODECS = ("null", "deflate")
MAX_WINDOW = timedelta(seconds=900)
"""Longest capture window Azure allows: a file's events are enqueued before name time + this."""

DEFAULT_PATH_FORMAT = "{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}"
PLACEHOLDERS = ("Namespace", "EventHub", "PartitionId", "Year", "Month", "Day", "Hour", "Minute", "Second")
TIME_PLACEHOLDERS = ("Year", "Month", "Day", "Hour", "Minute", "Second")
_TIME_WIDTH = {"Year": 4, "Month": 2, "Day": 2, "Hour": 2, "Minute": 2, "Second": 2}
_NAME_FIELD = {"Namespace": "namespace", "EventHub": "eventhub", "PartitionId": "partition_id"}
SUFFIX = ".avro"


# --------------------------------------------------------------------------- blob names


@dataclass(frozen=True)
class BlobPath:
    """What a Capture blob's name says: where its events come from and when its window started."""

    namespace: str
    eventhub: str
    partition_id: str
    window_start: datetime  # UTC, aware


class PathFormat:
    """A Capture blob-name format: every placeholder exactly once, in any order.

    >>> fmt = PathFormat()
    >>> fmt.name("ns", "hub", "1", datetime(2017, 8, 31, 19, 11, 45, tzinfo=timezone.utc))
    'ns/hub/1/2017/08/31/19/11/45.avro'
    >>> fmt.parse("ns/hub/1/2017/08/31/19/11/45.avro").window_start.isoformat()
    '2017-08-31T19:11:45+00:00'
    """

    def __init__(self, fmt: str = DEFAULT_PATH_FORMAT) -> None:
        if fmt.endswith(SUFFIX):
            fmt = fmt[: -len(SUFFIX)]
        found = re.findall(r"\{([^{}]*)\}", fmt)
        missing = [p for p in PLACEHOLDERS if p not in found]
        unknown = [p for p in found if p not in PLACEHOLDERS]
        repeated = sorted({p for p in found if found.count(p) > 1})
        if missing or unknown or repeated:
            raise ConfigurationError(
                f"capture path format {fmt!r}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing {missing}" if missing else "",
                        f"unknown {unknown}" if unknown else "",
                        f"repeated {repeated}" if repeated else "",
                    )
                    if part
                )
                + f" (placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )
        if fmt.startswith("/") or "//" in fmt:
            raise ConfigurationError(f"capture path format {fmt!r} has an empty path segment")
        self.format = fmt
        self.segments: tuple[str, ...] = tuple(fmt.split("/"))
        self._regex = re.compile(self._pattern(fmt) + re.escape(SUFFIX) + r"\Z")
        self._segment_regex = tuple(re.compile(self._pattern(s) + r"\Z") for s in self.segments)

    @staticmethod
    def _pattern(text: str) -> str:
        out, pos = [], 0
        for m in re.finditer(r"\{([^{}]*)\}", text):
            out.append(re.escape(text[pos : m.start()]))
            name = m.group(1)
            if name in _TIME_WIDTH:
                out.append(f"(?P<{name}>\\d{{{_TIME_WIDTH[name]}}})")
            else:
                out.append(f"(?P<{name}>[^/]+?)")
            pos = m.end()
        out.append(re.escape(text[pos:]))
        return "".join(out)

    def __repr__(self) -> str:
        return f"PathFormat({self.format!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathFormat) and other.format == self.format

    def __hash__(self) -> int:
        return hash(self.format)

    def name(self, namespace: str, eventhub: str, partition_id: str | int, window_start: datetime) -> str:
        """The blob name of the window starting at ``window_start`` (UTC; naive means UTC)."""
        values = {"Namespace": namespace, "EventHub": eventhub, "PartitionId": str(partition_id)}
        for key, value in values.items():
            if not value or "/" in value:
                raise ConfigurationError(f"{key} {value!r} cannot be part of a blob name (empty or has '/')")
        return self.render({**values, **time_values(window_start)}) + SUFFIX

    def render(self, values: Mapping[str, str]) -> str:
        """The format with ``values`` (placeholder -> text) filled in; every one must be given."""
        return re.sub(r"\{([^{}]*)\}", lambda m: values[m.group(1)], self.format)

    def parse(self, name: str) -> BlobPath:
        """Namespace, hub, partition and window start from a blob name; ColdStoreError if it does not fit."""
        m = self._regex.match(name)
        if not m:
            raise ColdStoreError(f"blob {name!r} does not fit the capture path format {self.format!r}.avro")
        g = m.groupdict()
        try:
            start = datetime(
                int(g["Year"]), int(g["Month"]), int(g["Day"]),
                int(g["Hour"]), int(g["Minute"]), int(g["Second"]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError as exc:
            raise ColdStoreError(f"blob {name!r}: its time placeholders are not a valid date: {exc}") from None
        return BlobPath(g["Namespace"], g["EventHub"], g["PartitionId"], start)

    def try_parse(self, name: str) -> BlobPath | None:
        """Like :meth:`parse`, but None for a name that does not fit (other blobs in the container)."""
        try:
            return self.parse(name)
        except ColdStoreError:
            return None

    def match_segment(self, index: int, text: str) -> dict[str, str] | None:
        """The placeholders a single path segment (a 'folder' level) holds, or None if it does not fit."""
        m = self._segment_regex[index].match(text)
        return m.groupdict() if m else None

    def segment_placeholders(self, index: int) -> tuple[str, ...]:
        return tuple(re.findall(r"\{([^{}]*)\}", self.segments[index]))

    def prefix(self, values: Mapping[str, str]) -> str:
        """The longest leading part of a name fixed by ``values``: up to the first unknown placeholder."""
        out, pos = [], 0
        for m in re.finditer(r"\{([^{}]*)\}", self.format):
            out.append(self.format[pos : m.start()])
            if m.group(1) not in values:
                return "".join(out)
            out.append(values[m.group(1)])
            pos = m.end()
        out.append(self.format[pos:])
        return "".join(out)

    def time_prefixes(
        self,
        start: datetime,
        end: datetime,
        *,
        namespace: str,
        eventhub: str,
        partition_id: str | int,
        granularity: str = "Hour",
    ) -> list[str]:
        """Name prefixes that hold every blob whose window can overlap ``[start, end)``.

        Windows named up to :data:`MAX_WINDOW` before ``start`` are included. ``granularity``
        (``Hour``, ``Day``, ``Month`` or ``Year``) is the finest time placeholder fixed in a
        prefix; coarser ones mean fewer, larger listings for long ranges.
        """
        names = {"Namespace": namespace, "EventHub": eventhub, "PartitionId": str(partition_id)}
        out: dict[str, None] = {}
        for slot in time_slots(start, end, granularity=granularity):
            out[self.prefix({**names, **slot})] = None
        return list(out)

    def may_overlap(self, path: BlobPath, start: datetime | None, end: datetime | None) -> bool:
        """True if the window named by ``path`` can hold events enqueued in ``[start, end)``."""
        if end is not None and path.window_start >= _utc(end):
            return False
        if start is not None and path.window_start + MAX_WINDOW <= _utc(start):
            return False
        return True


_GRANULARITIES = ("Year", "Month", "Day", "Hour")


def time_values(moment: datetime) -> dict[str, str]:
    """Zero-padded UTC placeholders of a moment (``Year`` … ``Second``)."""
    t = _utc(moment)
    return {
        "Year": f"{t.year:04d}", "Month": f"{t.month:02d}", "Day": f"{t.day:02d}",
        "Hour": f"{t.hour:02d}", "Minute": f"{t.minute:02d}", "Second": f"{t.second:02d}",
    }  # fmt: skip


def time_slots(start: datetime, end: datetime, *, granularity: str = "Hour") -> list[dict[str, str]]:
    """The distinct time-placeholder values, down to ``granularity``, of windows that can overlap ``[start, end)``.

    The first slot is the one holding ``start - MAX_WINDOW``, the last the one holding the last
    instant before ``end``.
    """
    if granularity not in _GRANULARITIES:
        raise ConfigurationError(f"granularity {granularity!r} is not one of {', '.join(_GRANULARITIES)}")
    lo, hi = _utc(start) - MAX_WINDOW, _utc(end) - timedelta(microseconds=1)
    if hi < lo:
        return []
    keep = _GRANULARITIES[: _GRANULARITIES.index(granularity) + 1]
    slots: dict[tuple[str, ...], dict[str, str]] = {}
    t = _floor(lo, granularity)
    while t <= hi:
        vals = {k: v for k, v in time_values(t).items() if k in keep}
        slots[tuple(vals.values())] = vals
        t = _next(t, granularity)
    return list(slots.values())


def _floor(t: datetime, granularity: str) -> datetime:
    if granularity == "Hour":
        return t.replace(minute=0, second=0, microsecond=0)
    if granularity == "Day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "Month":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _next(t: datetime, granularity: str) -> datetime:
    if granularity == "Hour":
        return t + timedelta(hours=1)
    if granularity == "Day":
        return t + timedelta(days=1)
    if granularity == "Month":
        return t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1)
    return t.replace(year=t.year + 1)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --------------------------------------------------------------------------- EnqueuedTimeUtc text


def format_enqueued_time(moment: datetime) -> str:
    """``EnqueuedTimeUtc`` as Azure writes it: .NET invariant culture, whole seconds (``12/8/2017 3:03:17 AM``)."""
    t = _utc(moment)
    hour12 = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {hour12}:{t.minute:02d}:{t.second:02d} {'AM' if t.hour < 12 else 'PM'}"


_DOTNET = re.compile(
    r"\s*(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?(?: ?(AM|PM))?\s*\Z",
    re.IGNORECASE | re.ASCII,
)
_ISO = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,7}))?(Z|[+-]\d{2}:?\d{2})?\s*\Z",
    re.IGNORECASE | re.ASCII,
)


def parse_enqueued_time(text: str) -> datetime:
    """A UTC datetime from ``EnqueuedTimeUtc`` text; ``ValueError`` naming the text if it is neither style.

    Accepts Azure's .NET invariant style (``12/8/2017 3:03:17 AM``, also with a fraction or a
    24-hour clock) and ISO 8601 (``2017-12-08T03:03:17.1234567Z``, ``T`` or space, ``Z``, an
    offset, or none meaning UTC). Fractions beyond microseconds (the 7th digit, .NET ticks) are
    truncated.
    """
    m = _DOTNET.match(text)
    if m:
        month, day, year, hour, minute, second, frac, ampm = m.groups()
        h = int(hour)
        if ampm:
            if not 1 <= h <= 12:
                raise ValidationError(f"EnqueuedTimeUtc {text!r}: hour {h} with {ampm}")
            h = h % 12 + (12 if ampm.upper() == "PM" else 0)
        return _build(text, int(year), int(month), int(day), h, int(minute), int(second), frac, None)
    m = _ISO.match(text)
    if m:
        year, month, day, hour, minute, second, frac, zone = m.groups()
        return _build(text, int(year), int(month), int(day), int(hour), int(minute), int(second), frac, zone)
    raise ValidationError(f"EnqueuedTimeUtc {text!r} is neither .NET invariant text (M/d/yyyy h:mm:ss AM) nor ISO 8601")


def _build(text: str, y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str | None, zone: str | None) -> datetime:
    micro = int((frac or "").ljust(6, "0")[:6])
    try:
        t = datetime(y, mo, d, h, mi, s, micro, tzinfo=UTC)
    except ValueError as exc:
        raise ValidationError(f"EnqueuedTimeUtc {text!r}: {exc}") from None
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        t -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return t


# --------------------------------------------------------------------------- records


class CaptureRecord(TypedDict):
    """One ``EventData`` record, as fastavro writes and reads it."""

    SequenceNumber: int
    Offset: str
    EnqueuedTimeUtc: str
    SystemProperties: dict[str, int | float | str | bytes]
    Properties: dict[str, int | float | str | bytes | None]
    Body: bytes | None


def system_properties(
    sequence_number: int, offset: str | int, enqueued_time: datetime | int, partition_key: str | None = None
) -> dict[str, int | float | str | bytes]:
    """``SystemProperties`` as Event Hubs fills them from the message annotations of a received event.

    ``enqueued_time`` is a datetime or, as the annotation carries it, milliseconds since the epoch.
    """
    props: dict[str, int | float | str | bytes] = {
        "x-opt-sequence-number": int(sequence_number),
        "x-opt-offset": str(offset),
        "x-opt-enqueued-time": enqueued_time if isinstance(enqueued_time, int) else epoch_millis(enqueued_time),
    }
    if partition_key is not None:
        props["x-opt-partition-key"] = partition_key
    return props


def epoch_millis(moment: datetime) -> int:
    t = _utc(moment)
    return (t - EPOCH) // timedelta(milliseconds=1)


def capture_record(
    *,
    sequence_number: int,
    offset: str | int,
    enqueued_time: datetime,
    body: bytes | None,
    properties: Mapping[str, int | float | str | bytes | None] | None = None,
    partition_key: str | None = None,
) -> CaptureRecord:
    """The record Capture writes for one received event."""
    return {
        "SequenceNumber": int(sequence_number),
        "Offset": str(offset),
        "EnqueuedTimeUtc": format_enqueued_time(enqueued_time),
        "SystemProperties": system_properties(sequence_number, offset, enqueued_time, partition_key),
        "Properties": dict(properties or {}),
        "Body": body,
    }


# --------------------------------------------------------------------------- writing


def schema_json(schema: Mapping[str, Any] = SCHEMA) -> str:
    """The schema text that goes into the file header, compact and with Azure's short name + namespace."""
    return json.dumps(schema, separators=(",", ":"))


@overload
def write_capture_file(
    fo: None,
    records: Iterable[dict[str, Any]],
    *,
    codec: str = ...,
    schema: Mapping[str, Any] = ...,
    sync_marker: bytes | None = ...,
    block_records: int | None = ...,
) -> bytes: ...
@overload
def write_capture_file(
    fo: BinaryIO,
    records: Iterable[dict[str, Any]],
    *,
    codec: str = ...,
    schema: Mapping[str, Any] = ...,
    sync_marker: bytes | None = ...,
    block_records: int | None = ...,
) -> None: ...
def write_capture_file(
    fo: BinaryIO | None,
    records: Iterable[dict[str, Any]],
    *,
    codec: str = "null",
    schema: Mapping[str, Any] = SCHEMA,
    sync_marker: bytes | None = None,
    block_records: int | None = None,
) -> bytes | None:
    """Write one Capture file; return its bytes when ``fo`` is None.

    ``codec`` is ``"null"`` (Azure's default ``Avro`` encoding) or ``"deflate"`` (``AvroDeflate``).
    No records gives a header-only file, as Azure writes for an empty window. ``sync_marker``
    (16 bytes) makes the output reproducible, e.g. derived from the blob name with
    :func:`sync_marker_for`; random otherwise. ``block_records`` caps the records per Avro block
    (default: fastavro's ~16 KB blocks).
    """
    if codec not in CODECS:
        raise ConfigurationError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
    if sync_marker is not None and len(sync_marker) != 16:
        raise ConfigurationError("sync_marker must be 16 bytes")
    parsed = fastavro.parse_schema(dict(schema))
    marker = sync_marker or b""  # fastavro draws a random marker for b""
    buf = io.BytesIO()
    if block_records:
        w = fastavro.write.Writer(buf, parsed, codec=codec, sync_interval=1 << 30, sync_marker=marker)
        n = 0
        for rec in records:
            w.write(rec)
            n += 1
            if n % block_records == 0:
                w.dump()
        w.flush()
    else:
        fastavro.writer(buf, parsed, records, codec=codec, sync_marker=marker)
    data = _with_header_schema(buf.getvalue(), schema_json(schema))
    if fo is None:
        return data
    fo.write(data)
    return None


def sync_marker_for(name: str) -> bytes:
    """A 16-byte sync marker derived from a blob name: a replayed window writes identical bytes."""
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


def _with_header_schema(data: bytes, text: str) -> bytes:
    """Swap the header's schema text (fastavro writes full names) for ``text``; blocks are untouched."""
    meta, sync, end = read_header_meta(data)
    meta["avro.schema"] = text.encode()
    return header_bytes(meta, sync) + data[end:]


def header_bytes(meta: Mapping[str, bytes], sync: bytes) -> bytes:
    """An Avro object-container header: magic, metadata map, sync marker."""
    out = bytearray(b"Obj\x01")
    if meta:
        out += _zigzag(len(meta))
        for key, value in meta.items():
            k = key.encode()
            out += _zigzag(len(k)) + k + _zigzag(len(value)) + value
    out += b"\x00" + sync
    return bytes(out)


def read_header_meta(data: bytes) -> tuple[dict[str, bytes], bytes, int]:
    """Metadata, sync marker and the offset of the first block of an Avro object-container file.

    Raises :class:`ValueError` on anything that is not a complete header.
    """
    if data[:4] != b"Obj\x01":
        raise ValidationError("not an Avro object container file (bad magic)")
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            break
        if count < 0:
            _, pos = _read_long(data, pos)  # block byte size, unused
            count = -count
        for _ in range(count):
            klen, pos = _read_long(data, pos)
            key = data[pos : pos + klen]
            pos += klen
            vlen, pos = _read_long(data, pos)
            value = data[pos : pos + vlen]
            pos += vlen
            if klen < 0 or vlen < 0 or pos > len(data):
                raise ValidationError("truncated Avro header")
            meta[key.decode()] = bytes(value)
    sync = data[pos : pos + 16]
    if len(sync) != 16:
        raise ValidationError("truncated Avro header (no sync marker)")
    return meta, bytes(sync), pos + 16


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValidationError("truncated Avro header")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValidationError("malformed varint in Avro header")
    return (result >> 1) ^ -(result & 1), pos


def iter_records(data: bytes) -> Iterator[dict[str, Any]]:
    """Records of a Capture file read with plain fastavro and the file's own header schema."""
    for record in fastavro.reader(io.BytesIO(data)):
        if not isinstance(record, dict):
            raise ValueError(f"not a Capture file: its records are {type(record).__name__}, not Avro records")
        yield record


# --------------------------------------------------------------------------- streaming writer pieces


def capture_header(*, codec: str = "null", sync_marker: bytes, schema: Mapping[str, Any] = SCHEMA) -> bytes:
    """The header of a Capture file (magic, ``avro.codec``, ``avro.schema``, sync marker).

    It is also the whole header-only file Azure writes for an empty window (about 500 bytes).
    """
    data = write_capture_file(None, [], codec=codec, schema=schema, sync_marker=sync_marker)
    assert data is not None
    return data


def encode_block(data: bytes, count: int, *, codec: str, sync_marker: bytes) -> bytes:
    """One Avro data block: record count, byte size, the (deflated) records, the sync marker.

    ``data`` is the concatenation of ``count`` records from :func:`encode_record`.
    """
    if codec == "deflate":
        # Raw deflate (RFC 1951), as the Avro spec says: no zlib header, no checksum. (fastavro leaves
        # three bytes of the zlib checksum behind; readers ignore them, so only the null codec is
        # byte-identical to write_capture_file.)
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = packer.compress(data) + packer.flush()
    elif codec != "null":
        raise ConfigurationError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
    return _zigzag(count) + _zigzag(len(data)) + data + sync_marker


def encode_record(
    sequence_number: int,
    offset: str,
    enqueued_time_utc: str,
    system_properties: Mapping[str, Any],
    properties: Mapping[str, Any],
    body: bytes | None,
) -> bytes:
    """One ``EventData`` record in Avro binary, for the schema :data:`SCHEMA` (with the ``null`` branch).

    The same bytes fastavro writes for the same record, several times faster: the schema is fixed,
    so the encoder is written out by hand. Map values take the first union branch that fits:
    ``int`` → long, ``float`` → double, ``str`` → string, ``bytes`` → bytes, ``None`` → null
    (``Properties`` only); ``bool`` and anything else must be converted by the caller.
    """
    out = [_zigzag(sequence_number), _string(offset), _string(enqueued_time_utc)]
    _map(out, system_properties, False)
    _map(out, properties, True)
    if body is None:
        out.append(b"\x00")
    else:
        out.append(b"\x02")
        out.append(_zigzag(len(body)))
        out.append(body)
    return b"".join(out)


_PACK_DOUBLE = struct.Struct("<d").pack
_SMALL = [_zigzag(n) for n in range(-64, 64)]


def _string(text: str) -> bytes:
    raw = text.encode()
    n = len(raw)
    return (_SMALL[n + 64] if n < 64 else _zigzag(n)) + raw


def _map(out: list[bytes], values: Mapping[str, Any], nullable: bool) -> None:
    if not values:
        out.append(b"\x00")
        return
    out.append(_zigzag(len(values)))
    for key, value in values.items():
        out.append(_string(key))
        kind = type(value)
        if kind is str:
            out.append(b"\x04")
            out.append(_string(value))
        elif kind is int:
            out.append(b"\x00")
            out.append(_SMALL[value + 64] if -64 <= value < 64 else _zigzag(value))
        elif kind is bytes:
            out.append(b"\x06")
            out.append(_zigzag(len(value)))
            out.append(value)
        elif kind is float:
            out.append(b"\x02")
            out.append(_PACK_DOUBLE(value))
        elif value is None and nullable:
            out.append(b"\x08")
        else:
            raise ValidationError(
                f"map value {value!r} of {key!r} has type {kind.__name__}, which the Capture schema's union "
                "(long, double, string, bytes" + (", null" if nullable else "") + ") cannot hold"
            )
    out.append(b"\x00")
