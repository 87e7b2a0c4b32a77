"""AMQP messages at the byte level: split batches, locate annotations, splice on delivery.

An event is stored exactly as the producer encoded it. Ingest walks its
sections once to find the message-annotations section (``ma_pos``/``ma_end``
and where its entries start), which the log keeps beside the bytes; delivery
then builds the outgoing message from slices — the event's own bytes with a
rebuilt message-annotations header and the service entries
(``x-opt-sequence-number``, ``x-opt-offset``, ``x-opt-enqueued-time``,
``x-opt-partition-key``) put in front of the user's own entries — with no
decode and re-encode of the event in Python.

A message of format ``0x80013700`` is a batch: each data section is one
complete encoded event. A message of format 0 is itself the event, whatever
its body (several data sections, amqp-sequence, amqp-value).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from iotlib.local.emulator import codec as c
from iotlib.local.emulator.codec import DecodeError
from iotlib.local.emulator.performatives import Properties

BATCH_FORMAT = 0x80013700

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES = 0x70, 0x71, 0x72, 0x73
APPLICATION_PROPERTIES, DATA, SEQUENCE, VALUE, FOOTER = 0x74, 0x75, 0x76, 0x77, 0x78

_SECTION_NAMES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": SEQUENCE,
    "amqp:amqp-value:*": VALUE,
    "amqp:footer:map": FOOTER,
}

SEQUENCE_KEY = "x-opt-sequence-number"
OFFSET_KEY = "x-opt-offset"
ENQUEUED_KEY = "x-opt-enqueued-time"
PARTITION_KEY = "x-opt-partition-key"
_SERVICE_KEYS = frozenset((SEQUENCE_KEY, OFFSET_KEY, ENQUEUED_KEY))

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_LONG = struct.Struct(">q")

# Pre-encoded annotation keys and value constructors for the delivery path.
_K_SEQ = c.enc_symbol(SEQUENCE_KEY) + b"\x81"
_K_OFF = c.enc_symbol(OFFSET_KEY)
_K_TIME = c.enc_symbol(ENQUEUED_KEY) + b"\x83"
_K_KEY = c.enc_symbol(PARTITION_KEY)
_MA_DESC = b"\x00\x53\x72"
_DA_DESC = b"\x00\x53\x71"


class Layout(NamedTuple):
    """Where an event's message annotations are: the log stores these five numbers."""

    ma_pos: int  # start of the section, or where to insert one
    ma_end: int  # end of the section (== ma_pos when absent)
    entries_pos: int  # start of the map's entries; -1 when there is no section
    entries_count: int  # keys + values already in the map
    flags: int  # 1: the event carries delivery annotations of its own


def _section_at(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(section code, position of its value) for the section starting at ``pos``."""
    n = len(buf)
    if pos + 3 > n or buf[pos] != 0x00:
        raise DecodeError(f"expected a described message section at byte {pos}")
    d = buf[pos + 1]
    if d == 0x53:
        return buf[pos + 2], pos + 3
    if d == 0x80:
        if pos + 10 > n:
            raise DecodeError(f"truncated section descriptor at byte {pos}")
        return _U64.unpack_from(buf, pos + 2)[0], pos + 10
    if d in (0xA3, 0xB3):
        name, vpos = c.decode(buf, pos + 1)
        code = _SECTION_NAMES.get(name)
        if code is None:
            raise DecodeError(f"unknown message section {name!r}")
        return code, vpos
    raise DecodeError(f"message section descriptor 0x{d:02x} is not a section code")


def _map_entries(buf: bytes | memoryview, vpos: int) -> tuple[int, int]:
    """(entries position, entries count) of the map (or null) at ``vpos``, already skipped whole."""
    ctor = buf[vpos]
    if ctor == 0xC1 and buf[vpos + 1] >= 1:
        return vpos + 3, buf[vpos + 2]
    if ctor == 0xD1 and _U32.unpack_from(buf, vpos + 1)[0] >= 4:
        return vpos + 9, _U32.unpack_from(buf, vpos + 5)[0]
    if ctor == 0x40:
        return vpos + 1, 0
    raise DecodeError(f"annotations are not a map (constructor 0x{ctor:02x})")


def scan_event(body: bytes | memoryview) -> tuple[bytes | memoryview, Layout, str | None]:
    """Validate an event's sections and find its annotations.

    Returns the event (rewritten only if it carried service annotations of its
    own, which the service always overwrites), its :class:`Layout`, and the
    partition key found in its annotations.
    """
    n = len(body)
    if n == 0:
        raise DecodeError("an event must have at least one section")
    pos = 0
    insert_at = 0
    leading = True
    ma = None
    flags = 0
    while pos < n:
        code, vpos = _section_at(body, pos)
        end = c.skip(body, vpos)
        if code == MESSAGE_ANNOTATIONS:
            ma = (pos, end, vpos)
        elif code == DELIVERY_ANNOTATIONS:
            flags |= 1
        if leading and code in (HEADER, DELIVERY_ANNOTATIONS):
            insert_at = end
        else:
            leading = False
        pos = end
    if ma is None:
        return body, Layout(insert_at, insert_at, -1, 0, flags), None
    start, end, vpos = ma
    entries_pos, count = _map_entries(body, vpos)
    key = None
    p = entries_pos
    clash = False
    for _ in range(count // 2):
        name, q = c.decode(body, p)
        if name == PARTITION_KEY:
            value, _ = c.decode(body, q)
            key = value if isinstance(value, str) else None
        elif isinstance(name, str) and name in _SERVICE_KEYS:  # keys may be of any type, even unhashable
            clash = True
        p = c.skip(body, q)
    if p != end or count % 2:
        raise DecodeError("the message-annotations map does not hold the entries it counts")
    if clash:
        body = _drop_service_keys(body, start, end, entries_pos, count)
        return scan_event(body)
    return body, Layout(start, end, entries_pos, count, flags), key


def _drop_service_keys(body: bytes | memoryview, start: int, end: int, entries_pos: int, count: int) -> bytes:
    kept = []
    kept_count = 0
    p = entries_pos
    for _ in range(count // 2):
        name, q = c.decode(body, p)
        r = c.skip(body, q)
        if not (isinstance(name, str) and name in _SERVICE_KEYS):
            kept.append(bytes(body[p:r]))
            kept_count += 2
        p = r
    section = _MA_DESC + c.enc_map_raw(b"".join(kept), kept_count)
    return bytes(body[:start]) + section + bytes(body[end:])


def split_batch(payload: bytes | memoryview) -> tuple[list[memoryview], str | None]:
    """The events (data sections) of a batch message and the batch's partition key."""
    view = memoryview(payload)
    n = len(view)
    pos = 0
    events = []
    key = None
    while pos < n:
        code, vpos = _section_at(view, pos)
        end = c.skip(view, vpos)
        if code == DATA:
            ctor = view[vpos]
            if ctor == 0xA0:
                events.append(view[vpos + 2 : end])
            elif ctor == 0xB0:
                events.append(view[vpos + 5 : end])
            else:
                raise DecodeError("a data section must hold binary")
        elif code == MESSAGE_ANNOTATIONS:
            annotations, _ = c.decode(view, vpos)
            if isinstance(annotations, dict):
                value = annotations.get(PARTITION_KEY)
                key = value if isinstance(value, str) else None
        elif code in (SEQUENCE, VALUE):
            raise DecodeError("a batch message must carry its events as data sections")
        pos = end
    return events, key


def service_entries(seq: int, offset: int, enqueued_ms: int, key: bytes | memoryview) -> tuple[bytes, int]:
    """Encoded service annotation entries and their count (keys + values)."""
    off = str(offset).encode()
    entries = _K_SEQ + _LONG.pack(seq) + _K_OFF + b"\xa1" + bytes((len(off),)) + off + _K_TIME + _LONG.pack(enqueued_ms)
    if key:
        entries += _K_KEY + c.enc_utf8(bytes(key))
        return entries, 8
    return entries, 6


def deliverable(
    body: memoryview,
    layout: Layout,
    *,
    seq: int,
    offset: int,
    enqueued_ms: int,
    key: bytes | memoryview,
    delivery_annotations: bytes = b"",
) -> list[bytes | memoryview]:
    """The outgoing message as a list of byte chunks (join or write them in order)."""
    entries, count = service_entries(seq, offset, enqueued_ms, key)
    ma_pos = layout.ma_pos
    if layout.entries_pos < 0:
        section = _MA_DESC + c.enc_map_raw(entries, count)
        return [body[:ma_pos], delivery_annotations, section, body[ma_pos:]]
    user = body[layout.entries_pos : layout.ma_end]
    size = len(entries) + len(user)
    count += layout.entries_count
    if size + 1 < 256 and count < 256:
        head = _MA_DESC + bytes((0xC1, size + 1, count))
    else:
        head = _MA_DESC + b"\xd1" + _U32.pack(size + 4) + _U32.pack(count)
    return [body[:ma_pos], delivery_annotations, head, entries, user, body[layout.ma_end :]]


def merge_delivery_annotations(chunks: list[bytes | memoryview], ours: dict[str, bytes]) -> bytes:
    """Slow path: the event has delivery annotations of its own; merge ours into them."""
    message = b"".join(bytes(x) for x in chunks)
    out = []
    pos = 0
    n = len(message)
    while pos < n:
        code, vpos = _section_at(message, pos)
        end = c.skip(message, vpos)
        if code == DELIVERY_ANNOTATIONS:
            entries_pos, count = _map_entries(message, vpos)
            kept = []
            p = entries_pos
            for _ in range(count // 2):
                name, q = c.decode(message, p)
                r = c.skip(message, q)
                if not (isinstance(name, str) and name in ours):
                    kept.append(message[p:r])
                p = r
            body = b"".join(c.enc_symbol(k) + v for k, v in ours.items()) + b"".join(kept)
            out.append(_DA_DESC + c.enc_map_raw(body, 2 * (len(ours) + len(kept))))
        else:
            out.append(message[pos:end])
        pos = end
    return b"".join(out)


def delivery_annotations_section(values: dict[str, bytes]) -> bytes:
    body = b"".join(c.enc_symbol(k) + v for k, v in values.items())
    return _DA_DESC + c.enc_map_raw(body, 2 * len(values))


# --- whole messages for $cbs and $management ----------------------------------------------


class Request(NamedTuple):
    """A ``$cbs`` or ``$management`` request, decoded whole."""

    properties: Properties
    message_id: bytes  # as encoded: the answer's correlation-id must be the same value of the same type
    application_properties: dict[Any, Any]
    body: Any


def decode_request(payload: bytes | memoryview) -> Request:
    """Decode a (small) request message fully; anything malformed is a :class:`DecodeError`."""
    pos = 0
    n = len(payload)
    properties = Properties()
    message_id = c.NULL
    app: dict[Any, Any] = {}
    body: Any = None
    while pos < n:
        code, vpos = _section_at(payload, pos)
        end = c.skip(payload, vpos)
        if code == PROPERTIES:
            values, _ = c.decode_list(payload, vpos)
            properties = Properties.from_fields(values)
            if values:
                first = vpos + (9 if payload[vpos] == 0xD0 else 3)
                message_id = bytes(payload[first : c.skip(payload, first)])
        elif code == APPLICATION_PROPERTIES:
            value, _ = c.decode(payload, vpos)
            app = value if isinstance(value, dict) else {}
        elif code in (VALUE, DATA, SEQUENCE):
            body, _ = c.decode(payload, vpos)
        pos = end
    return Request(properties, message_id, app, body)


def encode_response(
    correlation_id: bytes, application_properties: list[tuple[bytes, bytes]], body: bytes | None
) -> bytes:
    """A response message: properties (every field, correlation-id set), application properties, value body."""
    out = Properties(correlation_id=c.Encoded(correlation_id)).encode()
    out += c.enc_described(APPLICATION_PROPERTIES, c.enc_map(application_properties))
    if body is not None:
        out += c.enc_described(VALUE, body)
    return out
