"""Window kinds as Azure Stream Analytics defines them.

- :class:`Tumbling` ``(size)``: fixed, contiguous, non-overlapping windows.
- :class:`Hopping` ``(size, hop)``: fixed windows that start every ``hop``
  and last ``size`` (a tumbling window is a hopping one with ``hop == size``);
  an event belongs to ``size / hop`` windows.
- :class:`Sliding` ``(size)``: every window ``(T - size, T]``, reported only
  at the instants ``T`` its content changes — when an event enters (``T`` =
  its own time) or leaves (``T`` = its time + ``size``) — and not empty.
- :class:`Session` ``(timeout, max_duration)``: starts at an event, extends
  while the next event comes within ``timeout`` of the last one, ends
  ``timeout`` after the last event; if it is still running at a multiple of
  ``max_duration`` (checks at 0, D, 2D… since the epoch) and has lasted at
  least ``max_duration``, it ends there and a new one starts at that instant,
  so a session lasts at most twice ``max_duration``.

Like ASA, fixed windows are aligned to the Unix epoch (plus ``offset``) and by
default **exclude their start and include their end** — ``(start, end]``, so
an event at exactly 12:00:05 belongs to the window 12:00:00-12:00:05 and the
window's timestamp is its end. ``closed="left"`` gives ``[start, end)``.

This module holds the window specifications and the integer arithmetic that
assigns an event time (microseconds) to fixed windows; it is shared by the
batch functions and the incremental engine, so both assign identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

import polars as pl

from iotlib.durations import Duration, describe, to_us
from iotlib.errors import ConfigurationError

Closed = Literal["right", "left"]
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

END = "__end"  # window end, microseconds


def _closed(value: str) -> Closed:
    if value not in ("right", "left"):
        raise ConfigurationError(f"closed={value!r}: use 'right' (ASA: (start, end]) or 'left' ([start, end))")
    return cast(Closed, value)  # checked above


@dataclass(frozen=True)
class Hopping:
    """Windows of ``size`` starting every ``hop`` (``hop <= size``), ends at ``offset + k*hop``."""

    size: Duration
    hop: Duration
    offset: Duration = 0
    closed: Closed = "right"
    size_us: int = field(init=False, repr=False)
    hop_us: int = field(init=False, repr=False)
    offset_us: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        size = to_us(self.size, name="window size", allow_zero=False)
        hop = to_us(self.hop, name="hop", allow_zero=False)
        if hop > size:
            raise ConfigurationError(
                f"hop {describe(hop)} is longer than the window {describe(size)}: events between windows would belong to none"
            )
        object.__setattr__(self, "size_us", size)
        object.__setattr__(self, "hop_us", hop)
        object.__setattr__(self, "offset_us", to_us(self.offset, name="offset") % hop)
        _closed(self.closed)

    @property
    def kind(self) -> str:
        return "tumbling" if self.hop_us == self.size_us else "hopping"

    def first_end(self, t: pl.Expr) -> pl.Expr:
        """End of the earliest window that contains time ``t`` (microseconds)."""
        h, o = self.hop_us, self.offset_us
        if self.closed == "right":  # smallest end >= t
            return -((o - t) // h) * h + o
        return (t - o) // h * h + h + o  # smallest end > t

    def first_end_of(self, t: int) -> int:
        """:meth:`first_end` for one integer time (plain Python arithmetic)."""
        h, o = self.hop_us, self.offset_us
        if self.closed == "right":
            return -((o - t) // h) * h + o
        return (t - o) // h * h + h + o

    def ends(self, t: pl.Expr) -> pl.Expr:
        """A list of the ends of every window containing ``t``."""
        stop = t + self.size_us + (0 if self.closed == "right" else 1)
        return pl.int_ranges(self.first_end(t), stop, self.hop_us, dtype=pl.Int64)

    def assign(self, df: FrameT, t: str) -> FrameT:
        """One row per (event, window) with the window end in ``__end``."""
        if self.hop_us == self.size_us:
            return df.with_columns(self.first_end(pl.col(t)).alias(END))
        return df.with_columns(self.ends(pl.col(t)).alias(END)).explode(END)

    def contains(self, end: pl.Expr, t: pl.Expr) -> pl.Expr:
        """Whether the window ending at ``end`` contains ``t``."""
        if self.closed == "right":
            return (end - self.size_us < t) & (t <= end)
        return (end - self.size_us <= t) & (t < end)


class Tumbling(Hopping):
    """Contiguous windows of ``size``: a hopping window whose hop is its size."""

    def __init__(self, size: Duration, offset: Duration = 0, closed: Closed = "right") -> None:
        super().__init__(size=size, hop=size, offset=offset, closed=closed)

    def __repr__(self) -> str:
        return f"Tumbling(size={self.size!r}, offset={self.offset!r}, closed={self.closed!r})"


@dataclass(frozen=True)
class Sliding:
    """Windows of ``size`` reported whenever an event enters or leaves one."""

    size: Duration
    size_us: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_us", to_us(self.size, name="window size", allow_zero=False))

    kind = "sliding"


@dataclass(frozen=True)
class Session:
    """Sessions split by gaps longer than ``timeout``, capped by ``max_duration`` checks."""

    timeout: Duration
    max_duration: Duration | None = None
    timeout_us: int = field(init=False, repr=False)
    max_duration_us: int | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout_us", to_us(self.timeout, name="session timeout", allow_zero=False))
        md = None if self.max_duration is None else to_us(self.max_duration, name="max_duration", allow_zero=False)
        object.__setattr__(self, "max_duration_us", md)

    kind = "session"


Window = Hopping | Sliding | Session


def parse(window: Window | Duration) -> Window:
    """A window spec; a bare duration such as ``"5s"`` means a tumbling window."""
    if isinstance(window, (Hopping, Sliding, Session)):
        return window
    return Tumbling(window)


def fixed(window: Window | Duration) -> Hopping:
    """A tumbling or hopping window, or a clear error for the kinds that have no fixed bounds."""
    w = parse(window)
    if not isinstance(w, Hopping):
        raise ConfigurationError(
            f"{type(w).__name__} windows have no fixed bounds, so event-time policies and the incremental "
            "engine support only Tumbling and Hopping windows; use iotlib.processing.windowed() for them"
        )
    return w
