"""Avro object-container files at the byte level: header, schema variant, blocks, codec.

Splitting a file into blocks is cheap and codec-aware; the records inside are decoded by
:mod:`iotlib.coldstore.fastdecode` (Capture schema) or :mod:`iotlib.coldstore.generic`
(anything else). Problems raise :class:`CorruptFile` with what was wrong; the loader adds the
blob's name.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numba as nb
import numpy as np
from fastavro.schema import parse_schema, to_parsing_canonical_form

from iotlib.capture import format as cf

_inflater: ModuleType  # isal_zlib or zlib: the same decompress() and error
try:  # ISA-L inflates deflate blocks ~1.7x faster than zlib, with the same results
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps working without it
    _inflater = zlib


class CorruptFile(ValueError):
    """A file is truncated or corrupted; the message says where and how."""


def _canonical(schema: Any) -> str:
    return to_parsing_canonical_form(parse_schema(schema, _write_hint=False))


# Props union branches of the two schema variants the fast decoder knows.
FAST_VARIANTS = {
    _canonical(cf.SCHEMA): 5,
    _canonical(cf.SCHEMA_WITHOUT_PROPERTIES_NULL): 4,
}


@dataclass
class ContainerFile:
    """One Avro file split into blocks: block ``i`` is ``data[starts[i]:starts[i]+sizes[i]]``.

    For deflate files the blocks are still compressed: :meth:`inflate` a run of them first.
    """

    schema: dict[str, Any]
    codec: str
    data: np.ndarray  # uint8: the file (null codec) or its decompressed blocks (deflate)
    counts: np.ndarray  # int64 records per block
    starts: np.ndarray  # int64
    sizes: np.ndarray  # int64
    props_branches: int | None  # 5 or 4 for the Capture schema variants (fast path), None otherwise
    raw: bytes = b""

    @property
    def records(self) -> int:
        return int(self.counts.sum())

    @property
    def compressed(self) -> bool:
        return self.codec == "deflate"

    def inflate(self, lo: int = 0, hi: int | None = None) -> ContainerFile:
        """Blocks ``[lo, hi)`` with their records in plain bytes (a no-op view for the null codec)."""
        hi = len(self.counts) if hi is None else hi
        if not self.compressed:
            return ContainerFile(
                self.schema,
                "null",
                self.data,
                self.counts[lo:hi],
                self.starts[lo:hi],
                self.sizes[lo:hi],
                self.props_branches,
                self.raw,
            )
        data, starts, sizes = _inflate(self.raw, self.starts[lo:hi], self.sizes[lo:hi])
        return ContainerFile(self.schema, "null", data, self.counts[lo:hi], starts, sizes, self.props_branches)


def open_container(raw: bytes | bytearray | memoryview) -> ContainerFile:
    """Parse header and blocks of an Avro container file held in memory."""
    raw = bytes(raw) if not isinstance(raw, bytes) else raw
    try:
        meta, sync, pos = cf.read_header_meta(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"bad Avro header: {exc}") from None
    try:
        schema = json.loads(meta["avro.schema"])
    except (KeyError, ValueError) as exc:
        raise CorruptFile(f"Avro header has no readable schema: {exc}") from None
    codec = meta.get("avro.codec", b"null").decode() or "null"
    if codec not in cf.CODECS:
        raise CorruptFile(f"Avro codec {codec!r} is not supported (only null and deflate)")
    buf = np.frombuffer(raw, dtype=np.uint8)
    counts, starts, sizes, err, at = _scan_blocks(buf, pos, np.frombuffer(sync, dtype=np.uint8))
    if err:
        raise CorruptFile(f"{_SCAN_ERRORS[err]} at byte {at} of {len(raw)}")
    try:
        variant = FAST_VARIANTS.get(_canonical(schema))
    except Exception as exc:  # fastavro raises several types for bad schemas
        raise CorruptFile(f"Avro header schema is not valid: {exc}") from None
    return ContainerFile(schema, codec, buf, counts, starts, sizes, variant, raw)


def _inflate(raw: bytes, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = []
    for s, n in zip(starts.tolist(), sizes.tolist()):
        try:
            parts.append(_inflater.decompress(raw[s : s + n], -15))
        except _inflater.error as exc:
            raise CorruptFile(f"deflate block at byte {s} does not inflate: {exc}") from None
    new_sizes = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    new_starts = np.zeros(len(parts), dtype=np.int64)
    if len(parts) > 1:
        np.cumsum(new_sizes[:-1], out=new_starts[1:])
    return np.frombuffer(b"".join(parts), dtype=np.uint8), new_starts, new_sizes


_SCAN_ERRORS = {
    1: "truncated block header",
    2: "negative block count or size",
    3: "block runs past the end of the file (truncated)",
    4: "sync marker mismatch after block (corrupted)",
}


@nb.njit(nogil=True, cache=True)
def _scan_blocks(buf, pos, sync):
    n = buf.shape[0]
    cap = 64
    counts = np.empty(cap, np.int64)
    starts = np.empty(cap, np.int64)
    sizes = np.empty(cap, np.int64)
    k = 0
    while pos < n:
        vals = np.zeros(2, np.int64)
        for f in range(2):
            result = np.uint64(0)
            shift = np.uint64(0)
            while True:
                if pos >= n or shift > 63:
                    return counts[:k], starts[:k], sizes[:k], 1, pos
                b = buf[pos]
                pos += 1
                result |= np.uint64(b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += np.uint64(7)
            vals[f] = np.int64(result >> np.uint64(1)) ^ -np.int64(result & np.uint64(1))
        count, size = vals[0], vals[1]
        if count < 0 or size < 0:
            return counts[:k], starts[:k], sizes[:k], 2, pos
        if pos + size + 16 > n:
            return counts[:k], starts[:k], sizes[:k], 3, pos
        for i in range(16):
            if buf[pos + size + i] != sync[i]:
                return counts[:k], starts[:k], sizes[:k], 4, pos + size
        if k == cap:
            cap *= 2
            counts = np.concatenate((counts, np.empty(cap - k, np.int64)))
            starts = np.concatenate((starts, np.empty(cap - k, np.int64)))
            sizes = np.concatenate((sizes, np.empty(cap - k, np.int64)))
        counts[k] = count
        starts[k] = pos
        sizes[k] = size
        k += 1
        pos += size + 16
    return counts[:k], starts[:k], sizes[:k], 0, pos
