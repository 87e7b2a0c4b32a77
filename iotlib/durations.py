"""One time grammar for the whole package: durations, and the epoch they count from.

A duration is text the way polars writes it — ``"5s"``, ``"250ms"``, ``"1m30s"``, ``"1.5h"``,
``"2d"`` (units ``us``, ``ms``, ``s``, ``m`` or ``min``, ``h``, ``d``; a number alone is seconds) —
a :class:`datetime.timedelta`, or a bare number, which is **seconds** everywhere (``5`` and
``5.0`` are ``"5s"``). ``True``/``False`` and negative durations are refused with a
:class:`~iotlib.errors.ConfigurationError` naming the parameter.

Internally, times are integer microseconds since :data:`EPOCH` (the physical value of polars'
``Datetime("us", "UTC")``), so window arithmetic is exact; :func:`to_us` rounds to the microsecond.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from iotlib.errors import ConfigurationError

#: The Unix epoch, in UTC: every "µs since the epoch" in iotlib counts from it.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Fixed-length units only: a calendar month or day-with-DST has no fixed length.
_UNITS_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|min|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

#: What a duration parameter takes.
Duration = str | timedelta | int | float


def to_us(value: Duration, *, name: str = "duration", allow_zero: bool = True) -> int:
    """``value`` in whole microseconds (a bare number is seconds)."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{name}={value!r} is not a duration: use e.g. '5s', a timedelta, or seconds")
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    elif isinstance(value, int):
        us = value * 1_000_000
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigurationError(f"{name}={value!r} is not a duration")
        us = _round(Decimal(repr(value)) * 1_000_000)
    elif isinstance(value, str):
        us = _parse(value, name)
    else:
        raise ConfigurationError(
            f"{name} must be a duration such as '5s', a timedelta or seconds, not {type(value).__name__}"
        )
    if us < 0 or (us == 0 and not allow_zero):
        raise ConfigurationError(f"{name}={value!r} must be {'zero or more' if allow_zero else 'positive'}")
    return us


def to_timedelta(value: Duration, *, name: str = "duration", allow_zero: bool = True) -> timedelta:
    """``value`` as a :class:`~datetime.timedelta` (a bare number is seconds)."""
    return timedelta(microseconds=to_us(value, name=name, allow_zero=allow_zero))


def to_seconds(value: Duration, *, name: str = "duration", allow_zero: bool = True) -> float:
    """``value`` in seconds (a bare number is seconds)."""
    return to_us(value, name=name, allow_zero=allow_zero) / 1_000_000


def _parse(value: str, name: str) -> int:
    text = value.strip().lower().replace(" ", "")
    if _NUMBER.fullmatch(text):
        return _round(Decimal(text) * 1_000_000)
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ConfigurationError(
            f"{name}={value!r} is not a duration: use e.g. '5s', '250ms', '1m30s', '2h' or seconds "
            f"(units: us, ms, s, m, h, d)"
        )
    return _round(sum((Decimal(n) * _UNITS_US[u] for n, u in parts), Decimal(0)))


def _round(us: Decimal) -> int:
    try:
        return int(us.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except InvalidOperation:  # pragma: no cover - only absurdly large numbers
        raise ConfigurationError(f"{us} µs is not a duration iotlib can hold") from None


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


def epoch_us(moment: datetime) -> int:
    """Microseconds since :data:`EPOCH` of an aware datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)
