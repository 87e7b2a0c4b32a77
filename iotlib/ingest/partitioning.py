"""Which partition a partition key lands in.

Event Hubs hashes a partition key with Bob Jenkins' lookup3 (``hashlittle2``),
folds the two 32-bit results into a signed 16-bit code and takes it modulo the
partition count. The azure-eventhub client does the same when its buffered
producer routes keyed events itself; the emulator routes keyed sends the same
way, and ingestion uses it to batch events per partition while each event
keeps its own key. Keys are hashed as UTF-8 bytes (identical to the client's
own hashing for ASCII keys such as device GUIDs).
"""

from __future__ import annotations

from functools import lru_cache

from iotlib.errors import ConfigurationError

_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _MASK
    a ^= _rot(c, 4)
    c = (c + b) & _MASK  # noqa: E702
    b = (b - a) & _MASK
    b ^= _rot(a, 6)
    a = (a + c) & _MASK  # noqa: E702
    c = (c - b) & _MASK
    c ^= _rot(b, 8)
    b = (b + a) & _MASK  # noqa: E702
    a = (a - c) & _MASK
    a ^= _rot(c, 16)
    c = (c + b) & _MASK  # noqa: E702
    b = (b - a) & _MASK
    b ^= _rot(a, 19)
    a = (a + c) & _MASK  # noqa: E702
    c = (c - b) & _MASK
    c ^= _rot(b, 4)
    b = (b + a) & _MASK  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> tuple[int, int, int]:
    c ^= b
    c = (c - _rot(b, 14)) & _MASK  # noqa: E702
    a ^= c
    a = (a - _rot(c, 11)) & _MASK  # noqa: E702
    b ^= a
    b = (b - _rot(a, 25)) & _MASK  # noqa: E702
    c ^= b
    c = (c - _rot(b, 16)) & _MASK  # noqa: E702
    a ^= c
    a = (a - _rot(c, 4)) & _MASK  # noqa: E702
    b ^= a
    b = (b - _rot(a, 14)) & _MASK  # noqa: E702
    c ^= b
    c = (c - _rot(b, 24)) & _MASK  # noqa: E702
    return a, b, c


def lookup3(data: bytes, seed_c: int = 0, seed_b: int = 0) -> tuple[int, int]:
    """Jenkins' ``hashlittle2`` over ``data``: the two 32-bit results ``(c, b)``."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n + seed_c) & _MASK
    c = (c + seed_b) & _MASK
    pos = 0
    while n - pos > 12:
        a = (a + int.from_bytes(data[pos : pos + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[pos + 4 : pos + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[pos + 8 : pos + 12], "little")) & _MASK
        a, b, c = _mix(a, b, c)
        pos += 12
    tail = data[pos:]
    if not tail:
        return c, b
    tail = tail + bytes(12 - len(tail))  # the short tail adds as if zero-padded
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    a, b, c = _final(a, b, c)
    return c, b


def hash_code(partition_key: str) -> int:
    """The signed 16-bit hash code Event Hubs derives from a partition key."""
    if not partition_key:
        return 0
    c, b = lookup3(partition_key.encode("utf-8"))
    folded = (c ^ b) & 0xFFFF
    return folded - 0x10000 if folded >= 0x8000 else folded


@lru_cache(maxsize=262_144)
def partition_index(partition_key: str, partition_count: int) -> int:
    """Index (0-based) of the partition a key maps to among ``partition_count``."""
    if partition_count < 1:
        raise ConfigurationError(f"partition_count must be at least 1, got {partition_count}")
    return abs(hash_code(partition_key) % partition_count)


def partition_for_key(partition_key: str, partition_ids: list[str]) -> str:
    """The id of the partition, among ``partition_ids``, that ``partition_key`` maps to."""
    return partition_ids[partition_index(partition_key, len(partition_ids))]
