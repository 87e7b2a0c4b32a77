"""Capture records for millions of thermostat events at once, by compiled code.

The twin of :mod:`iotlib.coldstore.fastdecode`: where :func:`iotlib.capture.format.encode_record`
encodes one record from Python values, :func:`encode_records` encodes a whole batch from
arrays in one compiled pass (numba, GIL released), byte for byte what the capture writer
(:mod:`iotlib.capture.records`) writes for the same event received from the hub:

- ``SequenceNumber``; ``Offset`` as decimal text; ``EnqueuedTimeUtc`` as .NET invariant text
  with whole seconds (``1/6/2025 12:05:09 AM``);
- ``SystemProperties``: ``x-opt-sequence-number``, ``x-opt-offset``, ``x-opt-enqueued-time``
  (milliseconds) and ``x-opt-partition-key``, in that order;
- ``Properties``: the application properties :mod:`iotlib.ingest` sends with every event —
  ``DeviceId`` (the partition key), ``EventType``, ``EventTypeVersion`` (strings);
- ``Body``: the bytes as sent.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from iotlib.capture import format as cf
from iotlib.errors import ValidationError
from iotlib.fleet.events import EVENT_TYPE, EVENT_TYPE_VERSION
from iotlib.fleet.fastjson import civil_from_days

_KEY_SEQ = b"x-opt-sequence-number"
_KEY_OFFSET = b"x-opt-offset"
_KEY_ENQUEUED = b"x-opt-enqueued-time"
_KEY_PARTITION = b"x-opt-partition-key"
_LONG, _STRING = b"\x00", b"\x04"  # union branches of the map values: long, string


def _text(raw: bytes) -> bytes:
    return cf._string(raw.decode())


def _constant_pieces(event_type: str, version: str) -> tuple[np.ndarray, ...]:
    """The bytes between the variable fields of a record, encoded once."""
    pieces = (
        cf._zigzag(4) + _text(_KEY_SEQ) + _LONG,  # SystemProperties: 4 entries, first the sequence number
        _text(_KEY_OFFSET) + _STRING,
        _text(_KEY_ENQUEUED) + _LONG,
        _text(_KEY_PARTITION) + _STRING,
        b"\x00" + cf._zigzag(3) + _text(b"DeviceId") + _STRING,  # end of SystemProperties; Properties: 3
        _text(b"EventType")
        + _STRING
        + cf._string(event_type)
        + _text(b"EventTypeVersion")
        + _STRING
        # end of Properties; Body: the bytes branch of [null, bytes]
        + cf._string(version)
        + b"\x00"
        + b"\x02",
    )
    return tuple(np.frombuffer(p, dtype=np.uint8) for p in pieces)


class RecordBatch:
    """``n`` events to encode as Capture records: sized at once, written range by range where wanted.

    ``sequence_number``, ``offset`` (the hub's offsets, as numbers), ``enqueued_ms`` (milliseconds
    since the epoch): int arrays of ``n``. ``key_index``: each event's index into ``keys`` =
    ``(bytes, starts)``, the distinct partition keys (device ids) as UTF-8 back to back with
    ``len + 1`` start offsets. ``bodies`` = ``(bytes, starts)``: the ``n`` bodies the same way.
    ``starts`` (optional, ``n + 1`` int64) receives the record offsets: pass a reused array.
    """

    def __init__(
        self,
        sequence_number: np.ndarray,
        offset: np.ndarray,
        enqueued_ms: np.ndarray,
        key_index: np.ndarray,
        keys: tuple[np.ndarray, np.ndarray],
        bodies: tuple[np.ndarray, np.ndarray],
        *,
        event_type: str = EVENT_TYPE,
        event_type_version: str = EVENT_TYPE_VERSION,
        starts: np.ndarray | None = None,
    ) -> None:
        n = len(sequence_number)
        for name, arr in (("offset", offset), ("enqueued_ms", enqueued_ms), ("key_index", key_index)):
            if len(arr) != n:
                raise ValidationError(f"encode_records: {name} has {len(arr)} values for {n} events")
        if len(bodies[1]) != n + 1:
            raise ValidationError(f"encode_records: {len(bodies[1]) - 1} bodies for {n} events")
        if n and (int(np.min(offset)) < 0 or int(np.min(enqueued_ms)) < 0 or int(np.min(sequence_number)) < 0):
            raise ValidationError("encode_records: sequence numbers, offsets and enqueued times must not be negative")
        self.n = n
        self.seq, self.offset, self.ms, self.key_index = (
            np.ascontiguousarray(a, dtype=np.int64) for a in (sequence_number, offset, enqueued_ms, key_index)
        )
        self.key_bytes, self.body_bytes = (np.ascontiguousarray(a, dtype=np.uint8) for a in (keys[0], bodies[0]))
        self.key_starts, self.body_starts = (np.ascontiguousarray(a, dtype=np.int64) for a in (keys[1], bodies[1]))
        self.pieces = _constant_pieces(event_type, event_type_version)
        self.starts = np.empty(n + 1, dtype=np.int64) if starts is None else starts[: n + 1]
        p0, p1, p2, p3, p4, p5 = self.pieces
        _sizes(
            self.seq, self.offset, self.ms, self.key_index, self.key_bytes, self.key_starts, self.body_bytes,
            self.body_starts, p0, p1, p2, p3, p4, p5, self.starts,
        )  # fmt: skip

    def __len__(self) -> int:
        return self.n

    @property
    def sizes(self) -> np.ndarray:
        """Each record's size in bytes."""
        return np.diff(self.starts)

    def nbytes(self, lo: int = 0, hi: int | None = None) -> int:
        """Bytes of records ``lo`` to ``hi`` (exclusive)."""
        return int(self.starts[self.n if hi is None else hi] - self.starts[lo])

    def write(self, dest: np.ndarray, at: int = 0, lo: int = 0, hi: int | None = None) -> int:
        """Write records ``lo`` to ``hi`` back to back into ``dest`` from byte ``at``; the end position."""
        hi = self.n if hi is None else hi
        end = at + self.nbytes(lo, hi)
        if end > len(dest):
            raise ValidationError(f"RecordBatch.write: {end - at} bytes do not fit {len(dest) - at}")
        p0, p1, p2, p3, p4, p5 = self.pieces
        _write(
            self.seq, self.offset, self.ms, self.key_index, self.key_bytes, self.key_starts, self.body_bytes,
            self.body_starts, p0, p1, p2, p3, p4, p5, self.starts, lo, hi, at - int(self.starts[lo]), dest,
        )  # fmt: skip
        return end


def encode_records(
    sequence_number: np.ndarray,
    offset: np.ndarray,
    enqueued_ms: np.ndarray,
    key_index: np.ndarray,
    keys: tuple[np.ndarray, np.ndarray],
    bodies: tuple[np.ndarray, np.ndarray],
    *,
    event_type: str = EVENT_TYPE,
    event_type_version: str = EVENT_TYPE_VERSION,
) -> tuple[np.ndarray, np.ndarray]:
    """All ``n`` records back to back, and their ``n + 1`` start offsets (see :class:`RecordBatch`)."""
    batch = RecordBatch(
        sequence_number, offset, enqueued_ms, key_index, keys, bodies,
        event_type=event_type, event_type_version=event_type_version,
    )  # fmt: skip
    data = np.empty(batch.nbytes(), dtype=np.uint8)
    batch.write(data)
    return data, batch.starts


# --------------------------------------------------------------------------- compiled code


@nb.njit(cache=True, nogil=True, inline="always")
def _varint_len(v):
    z = (v << 1) ^ (v >> 63)
    n = 1
    z = np.uint64(z)
    while z >= np.uint64(0x80):
        z >>= np.uint64(7)
        n += 1
    return n


@nb.njit(cache=True, nogil=True, inline="always")
def _put_varint(out, pos, v):
    z = np.uint64((v << 1) ^ (v >> 63))
    while z >= np.uint64(0x80):
        out[pos] = np.uint8((z & np.uint64(0x7F)) | np.uint64(0x80))
        z >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(z)
    return pos + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _digits(v):
    n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


@nb.njit(cache=True, nogil=True, inline="always")
def _put_decimal(out, pos, v, n):
    for k in range(n - 1, -1, -1):
        out[pos + k] = 48 + v % 10
        v //= 10
    return pos + n


@nb.njit(cache=True, nogil=True, inline="always")
def _put_bytes(out, pos, src, a, b):
    out[pos : pos + b - a] = src[a:b]
    return pos + b - a


@nb.njit(cache=True, nogil=True, inline="always")
def _civil(ms):
    """(year, month, day, hour, minute, second) of a UTC time in ms."""
    secs = ms // 1000
    days = secs // 86400
    rem = secs - days * 86400
    y, m, d = civil_from_days(days)
    return y, m, d, rem // 3600, (rem // 60) % 60, rem % 60


@nb.njit(cache=True, nogil=True, inline="always")
def _dotnet_len(ms):
    y, m, d, hh, mi, ss = _civil(ms)
    h12 = hh % 12
    if h12 == 0:
        h12 = 12
    # M/d/yyyy h:mm:ss AM
    return _digits(m) + 1 + _digits(d) + 1 + _digits(y) + 1 + _digits(h12) + 1 + 2 + 1 + 2 + 3


@nb.njit(cache=True, nogil=True, inline="always")
def _put_dotnet(out, pos, ms):
    y, m, d, hh, mi, ss = _civil(ms)
    h12 = hh % 12
    if h12 == 0:
        h12 = 12
    pos = _put_decimal(out, pos, m, _digits(m))
    out[pos] = 47  # /
    pos = _put_decimal(out, pos + 1, d, _digits(d))
    out[pos] = 47
    pos = _put_decimal(out, pos + 1, y, _digits(y))
    out[pos] = 32
    pos = _put_decimal(out, pos + 1, h12, _digits(h12))
    out[pos] = 58  # :
    pos = _put_decimal(out, pos + 1, mi, 2)
    out[pos] = 58
    pos = _put_decimal(out, pos + 1, ss, 2)
    out[pos] = 32
    out[pos + 1] = 65 if hh < 12 else 80  # A / P
    out[pos + 2] = 77  # M
    return pos + 3


@nb.njit(cache=True, nogil=True)
def _sizes(seq, offset, ms, key_index, key_buf, key_starts, body_buf, body_starts, p0, p1, p2, p3, p4, p5, starts):
    const = len(p0) + len(p1) + len(p2) + len(p3) + len(p4) + len(p5)
    pos = 0
    second = -1
    tl = 0
    for i in range(len(seq)):
        starts[i] = pos
        od = _digits(offset[i])
        if ms[i] // 1000 != second:  # events come in runs of the same second: text once per second
            second = ms[i] // 1000
            tl = _dotnet_len(ms[i])
        k = key_index[i]
        kl = key_starts[k + 1] - key_starts[k]
        bl = body_starts[i + 1] - body_starts[i]
        size = _varint_len(seq[i]) + _varint_len(od) + od + _varint_len(tl) + tl
        size += _varint_len(seq[i]) + _varint_len(od) + od + _varint_len(ms[i]) + 2 * (_varint_len(kl) + kl)
        size += _varint_len(bl) + bl + const
        pos += size
    starts[len(seq)] = pos


@nb.njit(cache=True, nogil=True)
def _write(
    seq,
    offset,
    ms,
    key_index,
    key_buf,
    key_starts,
    body_buf,
    body_starts,
    p0,
    p1,
    p2,
    p3,
    p4,
    p5,
    starts,
    lo,
    hi,
    shift,
    out,
):
    text = np.empty(32, dtype=np.uint8)  # the EnqueuedTimeUtc string (length prefix and text) of `second`
    text_len = 0
    second = -1
    for i in range(lo, hi):
        pos = starts[i] + shift
        od = _digits(offset[i])
        k = key_index[i]
        ka, kb = key_starts[k], key_starts[k + 1]
        ba, bb = body_starts[i], body_starts[i + 1]
        pos = _put_varint(out, pos, seq[i])
        pos = _put_varint(out, pos, od)
        pos = _put_decimal(out, pos, offset[i], od)
        if ms[i] // 1000 != second:
            second = ms[i] // 1000
            text_len = _put_dotnet(text, _put_varint(text, 0, _dotnet_len(ms[i])), ms[i])
        out[pos : pos + text_len] = text[:text_len]
        pos += text_len
        pos = _put_bytes(out, pos, p0, 0, len(p0))
        pos = _put_varint(out, pos, seq[i])
        pos = _put_bytes(out, pos, p1, 0, len(p1))
        pos = _put_varint(out, pos, od)
        pos = _put_decimal(out, pos, offset[i], od)
        pos = _put_bytes(out, pos, p2, 0, len(p2))
        pos = _put_varint(out, pos, ms[i])
        pos = _put_bytes(out, pos, p3, 0, len(p3))
        pos = _put_varint(out, pos, kb - ka)
        pos = _put_bytes(out, pos, key_buf, ka, kb)
        pos = _put_bytes(out, pos, p4, 0, len(p4))
        pos = _put_varint(out, pos, kb - ka)
        pos = _put_bytes(out, pos, key_buf, ka, kb)
        pos = _put_bytes(out, pos, p5, 0, len(p5))
        pos = _put_varint(out, pos, bb - ba)
        pos = _put_bytes(out, pos, body_buf, ba, bb)
