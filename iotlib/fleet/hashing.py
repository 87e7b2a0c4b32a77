"""Counter-based randomness for the simulation and the delivery model: SplitMix64, vectorised.

Every random draw is a hash of *what* it is for (a device, a reading, a salt naming the draw)
rather than a step of a shared generator, so a device's readings do not depend on which other
devices are simulated, and a run is reproducible from its seed. Salts are text hashed with
BLAKE2b (:func:`key`); changing a salt's text changes every simulation that uses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
LOW32 = np.uint64(0xFFFFFFFF)


def mix(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64's finaliser, **in place**: well-spread 64-bit hashes from any 64-bit input.

    ``z`` (uint64) is overwritten and returned; pass a fresh array (``a ^ b`` is one) and, in hot
    loops, a ``scratch`` array of the same shape to avoid an allocation.
    """
    t = np.empty_like(z) if scratch is None else scratch
    np.right_shift(z, np.uint64(30), out=t)
    z ^= t
    z *= M1
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= M2
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    return z


def key(text: str) -> np.uint64:
    """A 64-bit salt from text (the first 8 bytes of its BLAKE2b digest, little-endian)."""
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def keys(prefix: str, names: Iterable[str]) -> np.ndarray:
    """:func:`key` of ``prefix + name`` for each name, as one uint64 array."""
    head = prefix.encode()
    digests = b"".join(hashlib.blake2b(head + n.encode(), digest_size=8).digest() for n in names)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def unit(h: np.ndarray) -> np.ndarray:
    """Hashes to floats uniform in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def scaled(h: np.ndarray, span: int) -> np.ndarray:
    """Hashes to integers uniform in [0, span) (multiply-shift on the low 32 bits; span < 2**32)."""
    return (((h & LOW32) * np.uint64(span)) >> np.uint64(32)).astype(np.int64)
