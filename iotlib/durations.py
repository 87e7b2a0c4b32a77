"""Durations as integers of microseconds, parsed from polars-style strings.

Every time in ``iotlib.processing`` is handled internally as microseconds since
the Unix epoch (the physical value of ``Datetime("us", "UTC")``), so window
arithmetic is exact integer arithmetic. Users write durations the way polars
does: ``"5s"``, ``"250ms"``, ``"1m30s"``, ``"2h"`` — or pass a
:class:`datetime.timedelta`.
"""

from __future__ import annotations

import re
from datetime import timedelta

from iotlib.errors import ProcessingError

# Fixed-length units only: a calendar month or day-with-DST has no fixed length.
_UNITS_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_PART = re.compile(r"(\d+)(us|ms|s|m|h|d)")

Duration = str | timedelta | int


def to_us(value: Duration, *, name: str = "duration", allow_zero: bool = True) -> int:
    """``value`` in microseconds. Ints are taken as microseconds already."""
    if isinstance(value, bool):
        raise ProcessingError(f"{name} must be a duration such as '5s', not {value!r}")
    if isinstance(value, int):
        us = value
    elif isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ProcessingError(
                f"{name}={value!r} is not a duration: use e.g. '5s', '250ms', '1m30s', '2h' "
                f"(units: {', '.join(_UNITS_US)})"
            )
        us = sum(int(n) * _UNITS_US[u] for n, u in parts)
    else:
        raise ProcessingError(f"{name} must be a string like '5s' or a timedelta, not {type(value).__name__}")
    if us < 0 or (us == 0 and not allow_zero):
        raise ProcessingError(f"{name}={value!r} must be {'positive' if not allow_zero else 'zero or more'}")
    return us


def describe(us: int) -> str:
    """A compact string for ``us`` microseconds, the inverse of :func:`to_us`."""
    if us == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms", "us"):
        size = _UNITS_US[unit]
        if us >= size:
            n, us = divmod(us, size)
            out.append(f"{n}{unit}")
    return "".join(out)
