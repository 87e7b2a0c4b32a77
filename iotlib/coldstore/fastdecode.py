"""The fast path: Capture records decoded straight from Avro blocks by compiled code.

The Capture schema is fixed and simple (zig-zag varints, length-prefixed strings and bytes,
maps as counted blocks, small unions), so one compiled loop (numba, GIL released) walks a
run of blocks and writes flat arrays: numbers, and (start, length) pairs pointing into the
block bytes. :mod:`iotlib.coldstore.columns` turns those into Arrow/polars columns without a
Python object per record. Works for the two header variants of the schema (``Properties``
union with or without ``null``); other schemas go to :mod:`iotlib.coldstore.generic`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from iotlib.coldstore.container import ContainerFile, CorruptFile
from iotlib.coldstore.timestamps import NOT_HANDLED, enqueued_text_micros

KEY_ENQUEUED = np.frombuffer(b"x-opt-enqueued-time", dtype=np.uint8)
KEY_PARTITION = np.frombuffer(b"x-opt-partition-key", dtype=np.uint8)

# Map entry columns in the int64 table: key start, key length, branch, value start, value length, long value.
K_S, K_L, TAG, V_S, V_L, LONG = range(6)
TAG_LONG, TAG_DOUBLE, TAG_STRING, TAG_BYTES, TAG_NULL = range(5)

ERRORS = {
    1: "truncated or malformed varint",
    2: "a string, bytes or map entry runs past its block",
    3: "negative length",
    4: "union branch out of range",
    5: "records do not fill their block exactly (wrong record count or trailing bytes)",
}


@dataclass
class RawRecords:
    """Flat arrays for ``n`` records; (start, length) pairs point into ``buf`` (length -1 = null)."""

    buf: np.ndarray
    sequence_number: np.ndarray
    offset: np.ndarray  # (n, 2)
    enqueued_text: np.ndarray  # (n, 2)
    enqueued_us: np.ndarray  # µs since epoch, NOT_HANDLED where the text needs the Python parser
    partition_key: np.ndarray  # (n, 2), length -1 when absent
    body: np.ndarray  # (n, 2), length -1 for a null body
    sys_offsets: np.ndarray  # (n + 1,) into sys_entries
    sys_entries: np.ndarray  # (m, 6) int64, columns K_S … LONG
    sys_doubles: np.ndarray  # (m,)
    prop_offsets: np.ndarray
    prop_entries: np.ndarray
    prop_doubles: np.ndarray

    def __len__(self) -> int:
        return self.sequence_number.shape[0]


def decode(f: ContainerFile, first_block: int = 0, last_block: int | None = None) -> RawRecords:
    """Decode blocks ``[first_block, last_block)`` of a Capture file; :class:`CorruptFile` on bad bytes."""
    if f.props_branches is None:
        raise ValueError("not a Capture schema variant: use the generic decoder")
    if f.compressed:
        raise ValueError("inflate the blocks first (ContainerFile.inflate)")
    hi = len(f.counts) if last_block is None else last_block
    out = _decode(f.data, f.counts, f.starts, f.sizes, first_block, hi, f.props_branches, KEY_ENQUEUED, KEY_PARTITION)
    err, at = out[-2], out[-1]
    if err:
        raise CorruptFile(f"{ERRORS[err]} at byte {at} of the (inflated) block data")
    return RawRecords(f.data, *out[:-2])


@nb.njit(cache=True)
def _varint(buf, pos, end):
    result = np.uint64(0)
    shift = np.uint64(0)
    while True:
        if pos >= end or shift > np.uint64(63):
            return np.int64(0), np.int64(-1)
        b = buf[pos]
        pos += 1
        result |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            break
        shift += np.uint64(7)
    return np.int64(result >> np.uint64(1)) ^ -np.int64(result & np.uint64(1)), np.int64(pos)


@nb.njit(cache=True)
def _same(buf, s, n, key):
    if n != key.shape[0]:
        return False
    for i in range(n):
        if buf[s + i] != key[i]:
            return False
    return True


@nb.njit(cache=True)
def _grow(ent, dbl, need):
    """``ent``/``dbl`` with room for ``need`` entries (kept rows copied)."""
    if need <= ent.shape[0]:
        return ent, dbl
    cap = max(need, ent.shape[0] * 2)
    e2 = np.empty((cap, 6), np.int64)
    d2 = np.empty(cap, np.float64)
    for i in range(ent.shape[0]):  # plain loops: 2-D slice assignment is slow to compile
        for j in range(6):
            e2[i, j] = ent[i, j]
        d2[i] = dbl[i]
    return e2, d2


@nb.njit(cache=True)
def _map(buf, pos, end, branches, ent, dbl, k, bits, bitsf):
    """Decode one Avro map of union values at ``pos``; returns (pos, k, error).

    The caller made room: a block of ``size`` bytes holds at most ``size // 2`` entries.
    """
    while True:
        count, pos = _varint(buf, pos, end)
        if pos < 0:
            return pos, k, 1
        if count == 0:
            return pos, k, 0
        if count < 0:
            count = -count
            _, pos = _varint(buf, pos, end)  # block size in bytes: not needed
            if pos < 0:
                return pos, k, 1
        for _ in range(count):
            klen, pos = _varint(buf, pos, end)
            if pos < 0:
                return pos, k, 1
            if klen < 0:
                return pos, k, 3
            if pos + klen > end:
                return pos, k, 2
            ent[k, 0] = pos
            ent[k, 1] = klen
            pos += klen
            branch, pos = _varint(buf, pos, end)
            if pos < 0:
                return pos, k, 1
            if branch < 0 or branch >= branches:
                return pos, k, 4
            ent[k, 2] = branch
            ent[k, 3] = pos
            ent[k, 4] = -1
            ent[k, 5] = 0
            dbl[k] = 0.0
            if branch == 0:  # long
                v, pos = _varint(buf, pos, end)
                if pos < 0:
                    return pos, k, 1
                ent[k, 5] = v
            elif branch == 1:  # double, 8 bytes little-endian
                if pos + 8 > end:
                    return pos, k, 2
                u = np.uint64(0)
                for i in range(7, -1, -1):
                    u = (u << np.uint64(8)) | np.uint64(buf[pos + i])
                bits[0] = u
                dbl[k] = bitsf[0]
                pos += 8
            elif branch == 2 or branch == 3:  # string, bytes
                n, pos = _varint(buf, pos, end)
                if pos < 0:
                    return pos, k, 1
                if n < 0:
                    return pos, k, 3
                if pos + n > end:
                    return pos, k, 2
                ent[k, 3] = pos
                ent[k, 4] = n
                pos += n
            # branch 4: null, no bytes
            k += 1


@nb.njit(nogil=True, cache=True)
def _decode(buf, counts, starts, sizes, lo, hi, prop_branches, key_enq, key_pk):
    n = 0
    for b in range(lo, hi):
        n += counts[b]
    seq = np.empty(n, np.int64)
    off = np.empty((n, 2), np.int64)
    etxt = np.empty((n, 2), np.int64)
    eus = np.empty(n, np.int64)
    pk = np.empty((n, 2), np.int64)
    body = np.empty((n, 2), np.int64)
    soff = np.zeros(n + 1, np.int64)
    poff = np.zeros(n + 1, np.int64)
    # Room for what Azure writes (4 system, a few application properties per event) plus one block's
    # worst case, so that the tables rarely grow.
    block_room = 16
    for b in range(lo, hi):
        block_room = max(block_room, sizes[b] // 2 + 1)
    sent = np.empty((4 * n + block_room, 6), np.int64)
    sdbl = np.empty(4 * n + block_room, np.float64)
    pent = np.empty((4 * n + block_room, 6), np.int64)
    pdbl = np.empty(4 * n + block_room, np.float64)
    bits = np.zeros(1, np.uint64)
    bitsf = bits.view(np.float64)
    ks = 0
    kp = 0
    r = 0
    err = 0
    pos = np.int64(0)
    rstart = np.int64(0)
    for b in range(lo, hi):
        pos = starts[b]
        end = starts[b] + sizes[b]
        room = sizes[b] // 2 + 1  # every map entry takes at least two bytes
        sent, sdbl = _grow(sent, sdbl, ks + room)
        pent, pdbl = _grow(pent, pdbl, kp + room)
        for _ in range(counts[b]):
            rstart = pos
            v, pos = _varint(buf, pos, end)
            if pos < 0:
                err = 1
                break
            seq[r] = v
            for f in range(2):  # Offset, EnqueuedTimeUtc: strings
                ln, pos = _varint(buf, pos, end)
                if pos < 0:
                    err = 1
                    break
                if ln < 0:
                    err = 3
                    break
                if pos + ln > end:
                    err = 2
                    break
                if f == 0:
                    off[r, 0] = pos
                    off[r, 1] = ln
                else:
                    etxt[r, 0] = pos
                    etxt[r, 1] = ln
                pos += ln
            if err:
                break
            k0 = ks
            pos, ks, err = _map(buf, pos, end, 4, sent, sdbl, ks, bits, bitsf)
            if err:
                break
            soff[r + 1] = ks
            pos, kp, err = _map(buf, pos, end, prop_branches, pent, pdbl, kp, bits, bitsf)
            if err:
                break
            poff[r + 1] = kp
            branch, pos = _varint(buf, pos, end)
            if pos < 0:
                err = 1
                break
            if branch == 0:
                body[r, 0] = pos
                body[r, 1] = -1
            elif branch == 1:
                ln, pos = _varint(buf, pos, end)
                if pos < 0:
                    err = 1
                    break
                if ln < 0:
                    err = 3
                    break
                if pos + ln > end:
                    err = 2
                    break
                body[r, 0] = pos
                body[r, 1] = ln
                pos += ln
            else:
                err = 4
                break
            # The service's millisecond enqueued time wins over the whole-second text; partition key.
            eus[r] = NOT_HANDLED
            pk[r, 0] = 0
            pk[r, 1] = -1
            for e in range(k0, ks):
                if sent[e, 2] == 0 and _same(buf, sent[e, 0], sent[e, 1], key_enq):
                    eus[r] = sent[e, 5] * 1000
                elif sent[e, 2] == 2 and _same(buf, sent[e, 0], sent[e, 1], key_pk):
                    pk[r, 0] = sent[e, 3]
                    pk[r, 1] = sent[e, 4]
            if eus[r] == NOT_HANDLED:
                eus[r] = enqueued_text_micros(buf, etxt[r, 0], etxt[r, 1])
            r += 1
        if err:
            pos = rstart
            break
        if pos != end:
            err = 5
            break
    return seq, off, etxt, eus, pk, body, soff, sent[:ks], sdbl[:ks], poff, pent[:kp], pdbl[:kp], err, pos
