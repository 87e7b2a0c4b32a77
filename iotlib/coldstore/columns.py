"""The loader's columns, and building them from decoded records without a Python object per row.

Both decoders end here, so the fast and the generic path produce the same frame:

========================  =========================================================================
``namespace``             String — from the blob name
``eventhub``              String — from the blob name
``partition_id``          String — from the blob name
``sequence_number``       Int64
``offset``                String
``enqueued_time``         Datetime(us, UTC): ``x-opt-enqueued-time`` (ms) when the file has it,
                          else the ``EnqueuedTimeUtc`` text (Azure writes whole seconds)
``partition_key``         String — ``x-opt-partition-key``, null when the event had none
``properties``            List(Struct(key, long, double, string, bytes)): the application
                          properties; one of the value fields is set per entry (none for null)
``system_properties``     same shape, the service's ``SystemProperties``
``body``                  Binary, null for a null body
========================  =========================================================================

:func:`property_value` is the expression to pull one key out of the two map columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

from iotlib.capture import format as cf
from iotlib.coldstore.container import CorruptFile
from iotlib.coldstore.fastdecode import RawRecords
from iotlib.coldstore.timestamps import NOT_HANDLED, to_micros

UTC_US = pl.Datetime("us", "UTC")
ENTRY = pl.Struct({"key": pl.String, "long": pl.Int64, "double": pl.Float64, "string": pl.String, "bytes": pl.Binary})
MAP = pl.List(ENTRY)
RAW_SCHEMA = pl.Schema(
    {
        "namespace": pl.String(),
        "eventhub": pl.String(),
        "partition_id": pl.String(),
        "sequence_number": pl.Int64(),
        "offset": pl.String(),
        "enqueued_time": UTC_US,
        "partition_key": pl.String(),
        "properties": MAP,
        "system_properties": MAP,
        "body": pl.Binary(),
    }
)
_ARROW_ENTRY = pa.struct(
    [
        ("key", pa.large_string()),
        ("long", pa.int64()),
        ("double", pa.float64()),
        ("string", pa.large_string()),
        ("bytes", pa.large_binary()),
    ]
)


def property_value(column: str, key: str, field: str = "string") -> pl.Expr:
    """Expression: the ``field`` value (``long``, ``double``, ``string``, ``bytes``) of ``key`` in a map column.

    >>> df.with_columns(device=property_value("properties", "DeviceId"))  # doctest: +SKIP
    """
    return (
        pl.col(column)
        .list.eval(pl.element().filter(pl.element().struct.field("key") == key).struct.field(field))
        .list.first()
        .alias(key)
    )


def empty_raw() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_SCHEMA)


# --------------------------------------------------------------------------- from the fast decoder


@nb.njit(nogil=True, cache=True)
def _gather(buf, pairs, check_ascii):
    """Concatenate byte ranges (start, length; length -1 = null) → data, int64 offsets, all-ASCII flag."""
    n = pairs.shape[0]
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    total = 0
    for i in range(n):
        if pairs[i, 1] > 0:
            total += pairs[i, 1]
        offsets[i + 1] = total
    data = np.empty(total, np.uint8)
    for i in range(n):
        ln = pairs[i, 1]
        if ln > 0:
            j = offsets[i]
            data[j : j + ln] = buf[pairs[i, 0] : pairs[i, 0] + ln]
    high = 0
    if check_ascii:
        for j in range(total):
            high |= data[j]
    return data, offsets, high < 128


def _validity(pairs: np.ndarray) -> tuple[pa.Buffer | None, int]:
    valid = pairs[:, 1] >= 0
    nulls = int(len(valid) - valid.sum())
    if nulls == 0:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def _bytes_array(buf: np.ndarray, pairs: np.ndarray, *, text: bool, what: str) -> pa.Array:
    data, offsets, ascii_only = _gather(buf, np.ascontiguousarray(pairs), text)  # one compiled layout
    validity, nulls = _validity(pairs)
    arr = pa.Array.from_buffers(
        pa.large_string() if text else pa.large_binary(),
        len(pairs),
        [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=nulls,
    )
    if text and not ascii_only:
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid:
            raise CorruptFile(f"{what} is not valid UTF-8") from None
    return arr


@nb.njit(nogil=True, cache=True)
def _map_columns(buf, entries):
    """One pass over a map's entries → keys, string and bytes values as (data, offsets), and branch masks."""
    m = entries.shape[0]
    key_off = np.empty(m + 1, np.int64)
    str_off = np.empty(m + 1, np.int64)
    bin_off = np.empty(m + 1, np.int64)
    key_off[0] = 0
    str_off[0] = 0
    bin_off[0] = 0
    for e in range(m):
        tag = entries[e, 2]
        key_off[e + 1] = key_off[e] + entries[e, 1]
        str_off[e + 1] = str_off[e] + (entries[e, 4] if tag == 2 else 0)
        bin_off[e + 1] = bin_off[e] + (entries[e, 4] if tag == 3 else 0)
    keys = np.empty(key_off[m], np.uint8)
    strs = np.empty(str_off[m], np.uint8)
    bins = np.empty(bin_off[m], np.uint8)
    tags = np.empty(m, np.int8)
    longs = np.empty(m, np.int64)
    high = 0
    for e in range(m):
        tag = entries[e, 2]
        tags[e] = tag
        longs[e] = entries[e, 5]
        j = key_off[e]
        s = entries[e, 0]
        for k in range(entries[e, 1]):
            c = buf[s + k]
            keys[j + k] = c
            high |= c
        if tag == 2:
            j = str_off[e]
            s = entries[e, 3]
            for k in range(entries[e, 4]):
                c = buf[s + k]
                strs[j + k] = c
                high |= c
        elif tag == 3:
            j = bin_off[e]
            s = entries[e, 3]
            for k in range(entries[e, 4]):
                bins[j + k] = buf[s + k]
    return keys, key_off, strs, str_off, bins, bin_off, tags, longs, high < 128


def _bitmap(valid: np.ndarray) -> tuple[pa.Buffer | None, int]:
    nulls = int(len(valid) - np.count_nonzero(valid))
    return (pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None), nulls


def _map_array(buf: np.ndarray, offsets: np.ndarray, entries: np.ndarray, doubles: np.ndarray, what: str) -> pa.Array:
    keys, key_off, strs, str_off, bins, bin_off, tags, longs, ascii_only = _map_columns(buf, entries)
    m = len(tags)

    def arr(typ: pa.DataType, valid: np.ndarray | None, *bufs: np.ndarray) -> pa.Array:
        bitmap, nulls = _bitmap(valid) if valid is not None else (None, 0)
        return pa.Array.from_buffers(typ, m, [bitmap, *(pa.py_buffer(b) for b in bufs)], null_count=nulls)

    key_arr = arr(pa.large_string(), None, key_off, keys)
    str_arr = arr(pa.large_string(), tags == 2, str_off, strs)
    if not ascii_only:
        try:
            key_arr.validate(full=True)
            str_arr.validate(full=True)
        except pa.ArrowInvalid:
            raise CorruptFile(f"a {what} key or string value is not valid UTF-8") from None
    struct = pa.StructArray.from_arrays(
        [
            key_arr,
            arr(pa.int64(), tags == 0, longs),
            arr(pa.float64(), tags == 1, np.ascontiguousarray(doubles)),
            str_arr,
            arr(pa.large_binary(), tags == 3, bin_off, bins),
        ],
        fields=list(_ARROW_ENTRY),
    )
    return pa.LargeListArray.from_arrays(pa.array(offsets - offsets[0]), struct)


def raw_frame(raw: RawRecords, path: cf.BlobPath, want: frozenset[str] | None = None) -> pl.DataFrame:
    """The raw columns (see module doc) of records decoded by the fast path.

    ``want`` limits the work to some columns (the map columns are the costly ones); the others
    come back as nulls of the right type, so frames from every path still line up.
    """
    n = len(raw)
    buf = raw.buf
    enq = raw.enqueued_us
    todo = np.flatnonzero(enq == NOT_HANDLED)
    if len(todo):  # unusual EnqueuedTimeUtc text: the tolerant Python parser decides
        enq = enq.copy()
        for i in todo.tolist():
            s, ln = raw.enqueued_text[i]
            text = bytes(buf[s : s + ln]).decode("utf-8", "replace")
            enq[i] = _parse_enqueued(text, int(raw.sequence_number[i]))
    build = {
        "sequence_number": lambda: pa.array(raw.sequence_number),
        "offset": lambda: _bytes_array(buf, raw.offset, text=True, what="an Offset"),
        "enqueued_time": lambda: pa.array(enq, type=pa.timestamp("us", "UTC")),
        "partition_key": lambda: _bytes_array(buf, raw.partition_key, text=True, what="a partition key"),
        "properties": lambda: _map_array(buf, raw.prop_offsets, raw.prop_entries, raw.prop_doubles, "Properties"),
        "system_properties": lambda: _map_array(
            buf, raw.sys_offsets, raw.sys_entries, raw.sys_doubles, "SystemProperties"
        ),
        "body": lambda: _bytes_array(buf, raw.body, text=False, what="a Body"),
    }
    table = pa.table(
        {name: fn() if want is None or name in want else pa.nulls(n, _ARROW_TYPES[name]) for name, fn in build.items()}
    )
    return _with_path(frame_from_arrow(table), path, n)


_ARROW_TYPES = {
    "sequence_number": pa.int64(),
    "offset": pa.large_string(),
    "enqueued_time": pa.timestamp("us", "UTC"),
    "partition_key": pa.large_string(),
    "properties": pa.large_list(_ARROW_ENTRY),
    "system_properties": pa.large_list(_ARROW_ENTRY),
    "body": pa.large_binary(),
}


def _parse_enqueued(text: str, seq: int) -> int:
    try:
        return to_micros(cf.parse_enqueued_time(text))
    except ValueError as exc:
        raise CorruptFile(f"record {seq}: {exc}") from None


def _with_path(df: pl.DataFrame, path: cf.BlobPath, n: int) -> pl.DataFrame:
    return df.select(
        pl.lit(path.namespace, pl.String).alias("namespace"),
        pl.lit(path.eventhub, pl.String).alias("eventhub"),
        pl.lit(path.partition_id, pl.String).alias("partition_id"),
        pl.all(),
    ).cast(RAW_SCHEMA)


def frame_from_arrow(table: pa.Table) -> pl.DataFrame:
    """``pl.from_arrow`` of a table, which is a frame (polars types the result as frame or series)."""
    return cast(pl.DataFrame, pl.from_arrow(table))


# --------------------------------------------------------------------------- from Python records (generic path)


class _MapBuilder:
    """Flat Arrow columns for a map column, filled record by record (no dict per entry)."""

    def __init__(self) -> None:
        self.offsets = [0]
        self.keys: list[str] = []
        self.longs: list[int | None] = []
        self.doubles: list[float | None] = []
        self.strings: list[str | None] = []
        self.blobs: list[bytes | None] = []

    def add(self, m: Mapping[str, Any] | None) -> None:
        for key, v in (m or {}).items():
            self.keys.append(key)
            lv = dv = sv = bv = None
            if isinstance(v, bool):  # not a Capture branch: keep it readable rather than lose it
                lv = int(v)
            elif isinstance(v, int):
                lv = v
            elif isinstance(v, float):
                dv = v
            elif isinstance(v, str):
                sv = v
            elif isinstance(v, (bytes, bytearray)):
                bv = bytes(v)
            elif v is not None:
                sv = str(v)
            self.longs.append(lv)
            self.doubles.append(dv)
            self.strings.append(sv)
            self.blobs.append(bv)
        self.offsets.append(len(self.keys))

    def array(self) -> pa.Array:
        struct = pa.StructArray.from_arrays(
            [
                pa.array(self.keys, pa.large_string()),
                pa.array(self.longs, pa.int64()),
                pa.array(self.doubles, pa.float64()),
                pa.array(self.strings, pa.large_string()),
                pa.array(self.blobs, pa.large_binary()),
            ],
            fields=list(_ARROW_ENTRY),
        )
        return pa.LargeListArray.from_arrays(pa.array(self.offsets, pa.int64()), struct)


def raw_frame_from_records(records: Sequence[Mapping[str, Any]], path: cf.BlobPath) -> pl.DataFrame:
    """The raw columns of records read by fastavro (the generic path), same rules as the fast path."""
    seq, off, enq, pk, body = [], [], [], [], []
    props, sysp = _MapBuilder(), _MapBuilder()
    for rec in records:
        sp = rec.get("SystemProperties") or {}
        s = rec["SequenceNumber"]
        seq.append(s)
        off.append(rec.get("Offset"))
        ms = sp.get("x-opt-enqueued-time")
        if isinstance(ms, int) and not isinstance(ms, bool):
            enq.append(ms * 1000)
        else:
            enq.append(_parse_enqueued(str(rec.get("EnqueuedTimeUtc")), s))
        key = sp.get("x-opt-partition-key")
        pk.append(key if isinstance(key, str) else None)
        props.add(rec.get("Properties"))
        sysp.add(sp)
        b = rec.get("Body")
        body.append(bytes(b) if isinstance(b, (bytes, bytearray)) else (b.encode() if isinstance(b, str) else None))
    table = pa.table(
        {
            "sequence_number": pa.array(seq, pa.int64()),
            "offset": pa.array(off, pa.large_string()),
            "enqueued_time": pa.array(np.array(enq, dtype=np.int64), type=pa.timestamp("us", "UTC")),
            "partition_key": pa.array(pk, pa.large_string()),
            "properties": props.array(),
            "system_properties": sysp.array(),
            "body": pa.array(body, pa.large_binary()),
        }
    )
    return _with_path(frame_from_arrow(table), path, len(seq))
