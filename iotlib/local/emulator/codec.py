"""AMQP 1.0 type system: encode values to bytes, decode bytes to values, skip values.

Encoding is explicit: each ``enc_*`` function returns the bytes of one typed
value, and compound values are built from already-encoded members, so the
server decides every byte it sends (the azure-eventhub client decodes
performatives by position and chokes on shortcuts such as ``list0``).

Decoding returns plain Python values: strings as ``str``, symbols as
:class:`Symbol` (a ``str``), binary as ``bytes``, described values as
:class:`Described`, timestamps as :class:`Timestamp` (milliseconds, an ``int``).
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, NamedTuple

from iotlib.errors import EmulatorError


class DecodeError(EmulatorError):
    """Bytes that are not valid AMQP 1.0 encoding."""


class Symbol(str):
    """An AMQP symbol (ASCII name), as distinct from a string."""


class Timestamp(int):
    """An AMQP timestamp: milliseconds since the Unix epoch."""


class Described(NamedTuple):
    descriptor: Any
    value: Any


class Encoded(bytes):
    """A value already encoded (echoed back as received): :func:`enc_any` writes it as it is."""


_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

NULL = b"\x40"
TRUE = b"\x41"
FALSE = b"\x42"

# --- encoding -----------------------------------------------------------------------


def enc_bool(value: bool | None) -> bytes:
    if value is None:
        return NULL
    return TRUE if value else FALSE


def enc_ubyte(value: int) -> bytes:
    return b"\x50" + _U8.pack(value)


def enc_ushort(value: int) -> bytes:
    return b"\x60" + _U16.pack(value)


def enc_uint(value: int | None) -> bytes:
    if value is None:
        return NULL
    if value == 0:
        return b"\x43"
    if value < 256:
        return b"\x52" + _U8.pack(value)
    return b"\x70" + _U32.pack(value)


def enc_ulong(value: int | None) -> bytes:
    if value is None:
        return NULL
    if value == 0:
        return b"\x44"
    if value < 256:
        return b"\x53" + _U8.pack(value)
    return b"\x80" + _U64.pack(value)


def enc_int(value: int) -> bytes:
    if -128 <= value <= 127:
        return b"\x54" + _I8.pack(value)
    return b"\x71" + _I32.pack(value)


def enc_long(value: int | None) -> bytes:
    if value is None:
        return NULL
    return b"\x81" + _I64.pack(value)


def enc_double(value: float) -> bytes:
    return b"\x82" + _F64.pack(value)


def enc_timestamp(ms: int | None) -> bytes:
    if ms is None:
        return NULL
    return b"\x83" + _I64.pack(ms)


def enc_uuid(value: uuid.UUID) -> bytes:
    return b"\x98" + value.bytes


def _variable(small: int, large: int, raw: bytes) -> bytes:
    n = len(raw)
    if n < 256:
        return bytes((small, n)) + raw
    return bytes((large,)) + _U32.pack(n) + raw


def enc_binary(value: bytes | None) -> bytes:
    if value is None:
        return NULL
    return _variable(0xA0, 0xB0, bytes(value))


def enc_string(value: str | None) -> bytes:
    if value is None:
        return NULL
    return _variable(0xA1, 0xB1, value.encode("utf-8"))


def enc_utf8(raw: bytes) -> bytes:
    """A string from its UTF-8 bytes (no decode and re-encode)."""
    return _variable(0xA1, 0xB1, raw)


def enc_symbol(value: str | bytes | None) -> bytes:
    if value is None:
        return NULL
    raw = value.encode("ascii") if isinstance(value, str) else value
    return _variable(0xA3, 0xB3, raw)


def enc_list(items: list[bytes]) -> bytes:
    """A list of already-encoded members; never the ``list0`` shortcut."""
    body = b"".join(items)
    if len(body) + 1 < 256 and len(items) < 256:
        return bytes((0xC0, len(body) + 1, len(items))) + body
    return b"\xd0" + _U32.pack(len(body) + 4) + _U32.pack(len(items)) + body


def enc_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A map of already-encoded (key, value) pairs."""
    body = b"".join(k + v for k, v in pairs)
    count = 2 * len(pairs)
    if len(body) + 1 < 256 and count < 256:
        return bytes((0xC1, len(body) + 1, count)) + body
    return b"\xd1" + _U32.pack(len(body) + 4) + _U32.pack(count) + body


def enc_map_raw(body: bytes, count: int) -> bytes:
    """A map from already-concatenated entries (``count`` = keys + values)."""
    if len(body) + 1 < 256 and count < 256:
        return bytes((0xC1, len(body) + 1, count)) + body
    return b"\xd1" + _U32.pack(len(body) + 4) + _U32.pack(count) + body


def enc_symbol_array(values: list[str]) -> bytes:
    """An undescribed array of symbols (the client cannot decode described arrays)."""
    return _array(0xA3, 0xB3, [v.encode("ascii") for v in values])


def enc_string_array(values: list[str]) -> bytes:
    return _array(0xA1, 0xB1, [v.encode("utf-8") for v in values])


def _array(small: int, large: int, raws: list[bytes]) -> bytes:
    wide = any(len(r) > 255 for r in raws)
    if wide:
        body = bytes((large,)) + b"".join(_U32.pack(len(r)) + r for r in raws)
    else:
        body = bytes((small,)) + b"".join(bytes((len(r),)) + r for r in raws)
    if len(body) + 1 < 256 and len(raws) < 256:
        return bytes((0xE0, len(body) + 1, len(raws))) + body
    return b"\xf0" + _U32.pack(len(body) + 4) + _U32.pack(len(raws)) + body


def enc_described(code: int, value: bytes) -> bytes:
    """A value described by a numeric descriptor (``code`` as smallulong when it fits)."""
    if code < 256:
        return bytes((0x00, 0x53, code)) + value
    return b"\x00\x80" + _U64.pack(code) + value


def enc_described_symbol(name: str, value: bytes) -> bytes:
    return b"\x00" + enc_symbol(name) + value


def enc_any(value: Any) -> bytes:
    """Encode a plain Python value by its type (management bodies, maps echoed back to the client)."""
    if value is None:
        return NULL
    if isinstance(value, Encoded):
        return bytes(value)
    if isinstance(value, bool):
        return enc_bool(value)
    if isinstance(value, Timestamp):
        return enc_timestamp(int(value))
    if isinstance(value, Symbol):
        return enc_symbol(value)
    if isinstance(value, int):
        return enc_long(value)
    if isinstance(value, float):
        return enc_double(value)
    if isinstance(value, str):
        return enc_string(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return enc_binary(bytes(value))
    if isinstance(value, uuid.UUID):
        return enc_uuid(value)
    if isinstance(value, Described):  # before tuples: a Described is one
        descriptor = value.descriptor
        head = enc_ulong(descriptor) if isinstance(descriptor, int) else enc_any(descriptor)
        return b"\x00" + head + enc_any(value.value)
    if isinstance(value, dict):
        return enc_map([(enc_any(k), enc_any(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return enc_list([enc_any(v) for v in value])
    raise TypeError(f"cannot encode {type(value).__name__} as AMQP")


# --- skipping -------------------------------------------------------------------------

# Width of fixed-size encodings by constructor (after the constructor byte).
_FIXED: dict[int, int] = {
    0x40: 0,
    0x41: 0,
    0x42: 0,
    0x43: 0,
    0x44: 0,
    0x45: 0,
    0x50: 1,
    0x51: 1,
    0x52: 1,
    0x53: 1,
    0x54: 1,
    0x55: 1,
    0x56: 1,
    0x60: 2,
    0x61: 2,
    0x70: 4,
    0x71: 4,
    0x72: 4,
    0x73: 4,
    0x74: 4,
    0x80: 8,
    0x81: 8,
    0x82: 8,
    0x83: 8,
    0x84: 8,
    0x94: 16,
    0x98: 16,
}
_SIZE1 = frozenset((0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0))
_SIZE4 = frozenset((0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0))
MAX_DEPTH = 32  # nesting of described values and compounds; real messages use 3 or 4
_MAX_EMPTY_ELEMENTS = 4096  # arrays of zero-width elements (nulls, list0) take no bytes: bound them


def skip(buf: bytes | memoryview, pos: int) -> int:
    """The position just after the value that starts at ``pos``."""
    descriptors = 0
    try:
        while buf[pos] == 0x00:  # described: skip the descriptor, then the value
            descriptors += 1
            if descriptors > MAX_DEPTH:
                raise DecodeError(f"descriptors nested more than {MAX_DEPTH} deep at byte {pos}")
            pos = skip(buf, pos + 1)
        code = buf[pos]
        width = _FIXED.get(code)
        if width is not None:
            end = pos + 1 + width
        elif code in _SIZE1:
            end = pos + 2 + buf[pos + 1]
        elif code in _SIZE4:
            end = pos + 5 + _U32.unpack_from(buf, pos + 1)[0]
        else:
            raise DecodeError(f"unknown AMQP constructor 0x{code:02x} at byte {pos}")
    except (IndexError, struct.error) as exc:
        raise DecodeError(f"truncated AMQP value at byte {pos}") from exc
    if end > len(buf):
        raise DecodeError(f"truncated AMQP value at byte {pos}")
    return end


# --- decoding -------------------------------------------------------------------------


def decode(buf: bytes | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Decode one value at ``pos``; return it and the position after it.

    Any malformation (truncation, unknown constructor, bad UTF-8, a compound
    whose members overrun it, nesting deeper than :data:`MAX_DEPTH`) is a
    :class:`DecodeError`; nothing else escapes.
    """
    try:
        return _decode(buf, pos, 0)
    except DecodeError:
        raise
    except (IndexError, struct.error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise DecodeError(f"malformed AMQP value at byte {pos}: {exc}") from exc


def decode_list(buf: bytes | memoryview, pos: int) -> tuple[list[Any], int]:
    """Decode the list at ``pos`` (a performative's or section's fields); return it and its end."""
    value, end = decode(buf, pos)
    if not isinstance(value, list) or buf[pos] not in (0x45, 0xC0, 0xD0):
        raise DecodeError(f"expected a list at byte {pos}, found constructor 0x{buf[pos]:02x}")
    return value, end


def _decode(buf: bytes | memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise DecodeError(f"AMQP values nested more than {MAX_DEPTH} deep at byte {pos}")
    code = buf[pos]
    p = pos + 1
    if code == 0x00:
        descriptor, p = _decode(buf, p, depth + 1)
        value, p = _decode(buf, p, depth + 1)
        return Described(descriptor, value), p
    width = _FIXED.get(code)
    if width is not None and p + width > len(buf):
        raise DecodeError(f"truncated AMQP value at byte {pos}")
    if code == 0x40:
        return None, p
    if code == 0x41:
        return True, p
    if code == 0x42:
        return False, p
    if code in (0x43, 0x44):
        return 0, p
    if code == 0x45:
        return [], p
    if code == 0x56:
        return buf[p] != 0, p + 1
    if code in (0x50, 0x52, 0x53):
        return buf[p], p + 1
    if code in (0x51, 0x54, 0x55):
        return _I8.unpack_from(buf, p)[0], p + 1
    if code == 0x60:
        return _U16.unpack_from(buf, p)[0], p + 2
    if code == 0x61:
        return _I16.unpack_from(buf, p)[0], p + 2
    if code == 0x70:
        return _U32.unpack_from(buf, p)[0], p + 4
    if code == 0x71:
        return _I32.unpack_from(buf, p)[0], p + 4
    if code == 0x72:
        return _F32.unpack_from(buf, p)[0], p + 4
    if code == 0x80:
        return _U64.unpack_from(buf, p)[0], p + 8
    if code == 0x81:
        return _I64.unpack_from(buf, p)[0], p + 8
    if code == 0x82:
        return _F64.unpack_from(buf, p)[0], p + 8
    if code == 0x83:
        return Timestamp(_I64.unpack_from(buf, p)[0]), p + 8
    if code == 0x98:
        end = p + 16
        return uuid.UUID(bytes=bytes(buf[p:end])), end
    if code in (0x73, 0x74):  # char, decimal32: keep raw
        return bytes(buf[p : p + 4]), p + 4
    if code == 0x84:
        return bytes(buf[p : p + 8]), p + 8
    if code == 0x94:
        return bytes(buf[p : p + 16]), p + 16
    if code in (0xA0, 0xA1, 0xA3):
        n = buf[p]
        start, end = p + 1, p + 1 + n
    elif code in (0xB0, 0xB1, 0xB3):
        n = _U32.unpack_from(buf, p)[0]
        start, end = p + 4, p + 4 + n
    elif code in (0xC0, 0xC1, 0xE0):
        size, count = buf[p], buf[p + 1]
        if size < 1:
            raise DecodeError(f"compound at byte {pos} is too small to hold its count")
        return _compound(buf, code, p + 2, p + 1 + size, count, depth)
    elif code in (0xD0, 0xD1, 0xF0):
        size, count = _U32.unpack_from(buf, p)[0], _U32.unpack_from(buf, p + 4)[0]
        if size < 4:
            raise DecodeError(f"compound at byte {pos} is too small to hold its count")
        return _compound(buf, code, p + 8, p + 4 + size, count, depth)
    else:
        raise DecodeError(f"unknown AMQP constructor 0x{code:02x} at byte {pos}")
    if end > len(buf):
        raise DecodeError(f"truncated AMQP value at byte {pos}")
    raw = bytes(buf[start:end])
    if code in (0xA0, 0xB0):
        return raw, end
    if code in (0xA1, 0xB1):
        return raw.decode("utf-8"), end
    return Symbol(raw.decode("ascii")), end


def _compound(buf: bytes | memoryview, code: int, p: int, end: int, count: int, depth: int) -> tuple[Any, int]:
    if end > len(buf):
        raise DecodeError("truncated AMQP compound value")
    if code in (0xC0, 0xD0, 0xC1, 0xD1) and count > end - p:  # every member takes at least a byte
        raise DecodeError(f"a compound of {end - p} bytes cannot hold {count} members")
    if code in (0xC0, 0xD0):
        items = []
        for _ in range(count):
            item, p = _decode(buf, p, depth + 1)
            items.append(item)
        return items, _within(p, end)
    if code in (0xC1, 0xD1):
        if count % 2:
            raise DecodeError(f"a map has an odd number of members ({count})")
        result: dict[Any, Any] = {}
        for _ in range(count // 2):
            key, p = _decode(buf, p, depth + 1)
            value, p = _decode(buf, p, depth + 1)
            try:
                result[key] = value
            except TypeError:  # unhashable key: keep it readable
                result[repr(key)] = value
        return result, _within(p, end)
    # array: one constructor (possibly described) shared by every element
    if count == 0:
        return [], end
    elem_pos = p
    descriptor = None
    if buf[elem_pos] == 0x00:
        descriptor, elem_pos = _decode(buf, elem_pos + 1, depth + 1)
    ctor = buf[elem_pos]
    p = elem_pos + 1
    width = _FIXED.get(ctor)
    if (width == 0 and count > _MAX_EMPTY_ELEMENTS) or (width != 0 and count > end - p):
        raise DecodeError(f"an array of {end - p} bytes cannot hold {count} elements")
    items = []
    for _ in range(count):
        item, p = _decode_element(buf, ctor, p, depth)
        items.append(Described(descriptor, item) if descriptor is not None else item)
    return items, _within(p, end)


def _within(p: int, end: int) -> int:
    if p > end:
        raise DecodeError("the members of a compound value run past its end")
    return end


def _decode_element(buf: bytes | memoryview, ctor: int, p: int, depth: int) -> tuple[Any, int]:
    """Decode an array element whose constructor was given once for the array."""
    scratch = bytes((ctor,))
    width = _FIXED.get(ctor)
    if width is not None:
        total = width
    elif ctor in _SIZE1:
        total = 1 + buf[p]
    elif ctor in _SIZE4:
        total = 4 + _U32.unpack_from(buf, p)[0]
    else:
        raise DecodeError(f"unknown AMQP array constructor 0x{ctor:02x}")
    if p + total > len(buf):
        raise DecodeError("truncated AMQP array element")
    value, _ = _decode(scratch + bytes(buf[p : p + total]), 0, depth + 1)
    return value, p + total
