"""Timestamp text to microseconds since the Unix epoch, in compiled form for bulk decoding.

The compiled parsers accept only the canonical shapes (what Azure and the simulator write) and
report anything else as "not handled", so the caller falls back to the tolerant Python parsers
(:func:`iotlib.capture.format.parse_enqueued_time`, :func:`parse_rfc3339`). A compiled parser
therefore never decides differently from the Python one; it is only faster.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numba as nb
import numpy as np

from iotlib.durations import epoch_us

NOT_HANDLED = np.iinfo(np.int64).min

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp (offset required; fraction truncated to microseconds) as a UTC datetime.

    ``ValueError`` names the text when it is not one.
    """
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "").ljust(6, "0")[:6]), tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp: {exc}") from None
    if zone not in ("Z", "z"):
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"{text!r} is not an RFC 3339 timestamp: bad offset {zone}")
        t -= (1 if zone[0] == "+" else -1) * timedelta(hours=oh, minutes=om)
    return t


def to_micros(t: datetime) -> int:
    return epoch_us(t)


@nb.njit(cache=True)
def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@nb.njit(cache=True)
def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@nb.njit(cache=True)
def _digits(buf, pos: int, n: int) -> int:
    """The number written by ``n`` ASCII digits at ``pos``, or -1."""
    v = 0
    for i in range(n):
        c = buf[pos + i]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@nb.njit(cache=True)
def _micros(y: int, mo: int, d: int, h: int, mi: int, s: int, us: int) -> int:
    if y < 1 or mo < 1 or mo > 12 or d < 1 or d > _days_in_month(y, mo) or h > 23 or mi > 59 or s > 59:
        return NOT_HANDLED
    days = _days_from_civil(y, mo, d)
    return (((days * 24 + h) * 60 + mi) * 60 + s) * 1_000_000 + us


@nb.njit(cache=True)
def rfc3339_micros(buf, pos: int, n: int) -> int:
    """``YYYY-MM-DDTHH:MM:SS[.f…](Z|±HH:MM)`` at ``buf[pos:pos+n]`` → µs since epoch, else NOT_HANDLED."""
    if n < 20:
        return NOT_HANDLED
    y = _digits(buf, pos, 4)
    mo = _digits(buf, pos + 5, 2)
    d = _digits(buf, pos + 8, 2)
    h = _digits(buf, pos + 11, 2)
    mi = _digits(buf, pos + 14, 2)
    s = _digits(buf, pos + 17, 2)
    if buf[pos + 4] != 45 or buf[pos + 7] != 45 or buf[pos + 10] != 84 or buf[pos + 13] != 58 or buf[pos + 16] != 58:
        return NOT_HANDLED
    if y < 0 or mo < 0 or d < 0 or h < 0 or mi < 0 or s < 0:
        return NOT_HANDLED
    i = pos + 19
    end = pos + n
    us = 0
    if buf[i] == 46:  # '.'
        i += 1
        k = 0
        while i < end and 48 <= buf[i] <= 57:
            if k < 6:
                us = us * 10 + (buf[i] - 48)
            k += 1
            i += 1
        if k == 0:
            return NOT_HANDLED
        while k < 6:
            us *= 10
            k += 1
    t = _micros(y, mo, d, h, mi, s, us)
    if t == NOT_HANDLED or i >= end:
        return NOT_HANDLED
    if buf[i] == 90 and i + 1 == end:  # 'Z'
        return t
    if (buf[i] == 43 or buf[i] == 45) and i + 6 == end and buf[i + 3] == 58:
        oh = _digits(buf, i + 1, 2)
        om = _digits(buf, i + 4, 2)
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            return NOT_HANDLED
        off = (oh * 60 + om) * 60_000_000
        return t - off if buf[i] == 43 else t + off
    return NOT_HANDLED


@nb.njit(cache=True)
def enqueued_text_micros(buf, pos: int, n: int) -> int:
    """Azure's ``M/d/yyyy h:mm:ss AM`` or ``yyyy-MM-ddTHH:mm:ss[.fffffff]Z`` → µs since epoch, else NOT_HANDLED."""
    end = pos + n
    if n >= 20 and buf[pos + 4] == 45:  # ISO 8601 as Azure SDKs write it
        y = _digits(buf, pos, 4)
        mo = _digits(buf, pos + 5, 2)
        d = _digits(buf, pos + 8, 2)
        h = _digits(buf, pos + 11, 2)
        mi = _digits(buf, pos + 14, 2)
        s = _digits(buf, pos + 17, 2)
        if buf[pos + 7] != 45 or buf[pos + 10] != 84 or buf[pos + 13] != 58 or buf[pos + 16] != 58:
            return NOT_HANDLED
        if y < 0 or mo < 0 or d < 0 or h < 0 or mi < 0 or s < 0:
            return NOT_HANDLED
        i = pos + 19
        us = 0
        if buf[i] == 46:
            i += 1
            k = 0
            while i < end and 48 <= buf[i] <= 57 and k < 7:
                if k < 6:
                    us = us * 10 + (buf[i] - 48)
                k += 1
                i += 1
            if k == 0:
                return NOT_HANDLED
            while k < 6:
                us *= 10
                k += 1
        if i + 1 != end or buf[i] != 90:
            return NOT_HANDLED
        return _micros(y, mo, d, h, mi, s, us)
    # .NET invariant: M/d/yyyy h:mm:ss AM
    i = pos
    vals = np.zeros(6, np.int64)
    seps = (47, 47, 32, 58, 58, 32)  # / / space : : space
    for f in range(6):
        v = 0
        k = 0
        while i < end and 48 <= buf[i] <= 57:
            v = v * 10 + (buf[i] - 48)
            k += 1
            i += 1
        if k == 0 or k > 4 or i >= end or buf[i] != seps[f]:
            return NOT_HANDLED
        if (f == 2 and k != 4) or (f != 2 and k > 2) or (f >= 4 and k != 2):
            return NOT_HANDLED
        vals[f] = v
        i += 1
    if i + 2 != end or (buf[i + 1] != 77):  # 'M'
        return NOT_HANDLED
    h = vals[3]
    if h < 1 or h > 12:
        return NOT_HANDLED
    if buf[i] == 65:  # A
        h = h % 12
    elif buf[i] == 80:  # P
        h = h % 12 + 12
    else:
        return NOT_HANDLED
    return _micros(vals[2], vals[0], vals[1], h, vals[4], vals[5], 0)
