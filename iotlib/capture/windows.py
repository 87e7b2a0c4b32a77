"""Capture windows on a fixed grid of enqueued time, so a replay cuts the same windows.

A window of ``length`` seconds starts at a multiple of ``length`` seconds since the Unix epoch
(UTC): with 300 s, at :00, :05, :10 … past each hour. Every event belongs to exactly one window
by its enqueued time, whichever process captures it, whenever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, order=True)
class Window:
    """``[start, start + length)`` in whole seconds since the epoch."""

    start: int
    length: int

    @classmethod
    def of(cls, enqueued_ms: int, length: int) -> Window:
        """The window holding an event enqueued at ``enqueued_ms`` (milliseconds since the epoch)."""
        second = enqueued_ms // 1000
        return cls(second - second % length, length)

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def start_time(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)

    @property
    def end_time(self) -> datetime:
        return datetime.fromtimestamp(self.end, UTC)

    def next(self) -> Window:
        return Window(self.end, self.length)

    def __str__(self) -> str:
        return f"[{self.start_time:%Y-%m-%d %H:%M:%S}, +{self.length}s)"


def utc_time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
