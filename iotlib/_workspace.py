"""Named scratch arrays reused from one batch to the next.

A fresh large numpy array is page-faulted in and zeroed by the kernel the first time it is
written, which costs more than the work done in it (on a VM, 20-50 times a copy into memory
already mapped). Code that runs batch after batch over the same sizes takes its big arrays from
a :class:`Workspace` instead. Never hand a workspace array to code that keeps it: the next
batch overwrites it.
"""

from __future__ import annotations

import numpy as np


class Workspace:
    """Grow-only buffers by name: ``get(name, shape, dtype)`` is a view of the right shape."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != np.dtype(dtype):
            buf = np.empty(size + size // 4, dtype=dtype)  # headroom: batches vary a little in size
            self._buffers[name] = buf
        return buf[:size].reshape(shape)
