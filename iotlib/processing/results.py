"""What every processing job returns: windows, side outputs and counts.

Nothing an input row carries disappears silently: each row ends up in exactly
one of ``windows`` (as part of an aggregate, possibly with an adjusted time),
``late``, ``dropped``, ``duplicates``, ``invalid`` or ``unmatched``, and
:class:`Counts` says how many went where.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import polars as pl


@dataclass(frozen=True)
class Counts:
    """How many input rows went where (and how many windows were emitted).

    ``events`` counts valid rows that reached the windowing stage; of those,
    ``duplicates`` were removed, ``accepted`` went into windows at their own
    time (``reordered`` of them arrived after a newer event of the same
    device), and ``late`` + ``clock_ahead`` were handled by the late policy:
    ``adjusted`` + ``dropped`` + ``side_output`` = ``late`` + ``clock_ahead``.
    """

    events: int = 0
    invalid: int = 0
    unmatched: int = 0
    duplicates: int = 0
    accepted: int = 0
    reordered: int = 0
    late: int = 0
    clock_ahead: int = 0
    adjusted: int = 0
    dropped: int = 0
    side_output: int = 0
    windows: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*[a + b for a, b in zip(self._values(), other._values())])

    def _values(self) -> tuple[int, ...]:
        return tuple(getattr(self, n) for n in _COUNT_FIELDS)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def frame(self) -> pl.DataFrame:
        """One row per count, for display and plots."""
        d = self.as_dict()
        return pl.DataFrame({"outcome": list(d), "count": list(d.values())})


_COUNT_FIELDS = tuple(f.name for f in fields(Counts))


def _empty() -> pl.DataFrame:
    return pl.DataFrame()


@dataclass
class WindowOutput:
    """Closed windows plus every side output, for one job run or one incremental step.

    ``watermarks`` has one row per watermark evaluation (``tick_start``: the
    arrival tick that triggered it, ``watermark``, ``frontier`` = watermark −
    late-arrival tolerance); empty for jobs without event-time policies.
    """

    windows: pl.DataFrame
    late: pl.DataFrame = field(default_factory=_empty)
    adjusted: pl.DataFrame = field(default_factory=_empty)
    dropped: pl.DataFrame = field(default_factory=_empty)
    duplicates: pl.DataFrame = field(default_factory=_empty)
    invalid: pl.DataFrame = field(default_factory=_empty)
    unmatched: pl.DataFrame = field(default_factory=_empty)
    watermarks: pl.DataFrame = field(default_factory=_empty)
    counts: Counts = field(default_factory=Counts)

    SIDE_OUTPUTS = ("late", "adjusted", "dropped", "duplicates", "invalid", "unmatched")

    def __repr__(self) -> str:
        sides = ", ".join(f"{n}={getattr(self, n).height}" for n in self.SIDE_OUTPUTS)
        return f"{type(self).__name__}(windows={self.windows.height}, {sides})"

    @classmethod
    def concat(cls, parts: list[WindowOutput]) -> WindowOutput:
        """Several outputs (e.g. every step of an incremental run) as one."""

        def cat(name: str) -> pl.DataFrame:
            frames = [getattr(p, name) for p in parts if getattr(p, name).width]
            return pl.concat(frames, how="vertical") if frames else pl.DataFrame()

        total = Counts()
        for p in parts:
            total = total + p.counts
        return cls(
            windows=cat("windows"),
            **{n: cat(n) for n in (*cls.SIDE_OUTPUTS, "watermarks")},
            counts=total,
        )


@dataclass(repr=False)
class EventTimeResult(WindowOutput):
    """A batch event-time run: the output plus the final per-device and per-partition state."""

    devices: pl.DataFrame = field(default_factory=_empty)
    partitions: pl.DataFrame = field(default_factory=_empty)
