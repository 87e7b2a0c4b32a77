"""Thermostat JSON bodies for millions of events by compiled code: :func:`iotlib.fleet.events.encode_frame`'s fast path.

A body is ``{"DeviceId":"<id>","TimeObserved":"<YYYY-MM-DDTHH:MM:SS.ffffff>Z","Temperature":<t>}``.
polars builds it with ``strftime`` and ``concat_str`` at about a million rows a second; here one
compiled pass (numba, GIL released) copies the device id from a table of the distinct ids,
formats the time from microseconds since the epoch, and copies the temperature's text — which
polars still writes (``cast(pl.String)``), so the numbers read exactly as before.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

from iotlib._workspace import Workspace

_PREFIX = np.frombuffer(b'{"DeviceId":"', dtype=np.uint8)
_MIDDLE = np.frombuffer(b'","TimeObserved":"', dtype=np.uint8)
_SUFFIX = np.frombuffer(b'Z","Temperature":', dtype=np.uint8)
_STAMP = 26  # YYYY-MM-DDTHH:MM:SS.ffffff
#: Times the fast path formats (four-digit years, as polars' strftime writes them).
LOWEST_US = 0
HIGHEST_US = 253402300800 * 1_000_000  # 10000-01-01


def formats(observed_us: pl.Series) -> bool:
    """Whether the fast path formats every time of ``observed_us`` (µs since the epoch; an empty column: yes)."""
    lo, hi = observed_us.min(), observed_us.max()
    if lo is None or hi is None:
        return True
    assert isinstance(lo, int) and isinstance(hi, int)  # an integer column
    return LOWEST_US <= lo and hi < HIGHEST_US


def text_buffers(column: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, starts) of a String or Binary column without nulls: its values back to back, as Arrow holds them."""
    arrow = column.cast(pl.Binary).to_arrow().cast(pa.large_binary())
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    offsets = np.frombuffer(arrow.buffers()[1], dtype=np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
    data = arrow.buffers()[2]
    return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets


def bodies(
    device_codes: np.ndarray, ids: tuple[np.ndarray, np.ndarray], observed_us: np.ndarray, temperature: pl.Series
) -> pl.Series:
    """The JSON bodies as a String Series named ``body`` (see :func:`body_buffers`)."""
    data, starts = body_buffers(device_codes, ids, observed_us, temperature)
    array = pa.LargeStringArray.from_buffers(len(starts) - 1, pa.py_buffer(starts), pa.py_buffer(data))
    return pl.Series("body", array)


def body_buffers(
    device_codes: np.ndarray,
    ids: tuple[np.ndarray, np.ndarray],
    observed_us: np.ndarray,
    temperature: pl.Series,
    *,
    replace: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The JSON bodies back to back, and their ``len + 1`` start offsets.

    ``device_codes`` index the distinct ids ``ids = (bytes, starts)`` (nothing in them to
    escape); ``observed_us``: microseconds since the epoch within [:data:`LOWEST_US`,
    :data:`HIGHEST_US`); ``temperature``: the numbers, written as polars writes them.
    ``replace = (rows, (bytes, starts))`` puts other bodies at those rows (ascending), e.g.
    malformed ones. With a ``workspace`` the result lives in its buffers (valid until the next call).
    """
    ws = workspace or Workspace()
    n = len(device_codes)
    temp_bytes, temp_starts = text_buffers(temperature.cast(pl.String))
    codes = np.ascontiguousarray(device_codes, dtype=np.int64)
    observed = np.ascontiguousarray(observed_us, dtype=np.int64)
    id_bytes, id_starts = np.ascontiguousarray(ids[0], dtype=np.uint8), np.ascontiguousarray(ids[1], dtype=np.int64)
    rows, (other, other_starts) = replace or (np.zeros(0, np.int64), (np.zeros(0, np.uint8), np.zeros(1, np.int64)))
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    starts = ws.get("body_starts", (n + 1,), np.int64)
    _sizes(codes, id_starts, temp_starts, rows, other_starts, starts)
    data = ws.get("body_bytes", (int(starts[-1]),), np.uint8)
    _write(
        codes, id_bytes, id_starts, observed, temp_bytes, temp_starts, rows, other, other_starts,
        _PREFIX, _MIDDLE, _SUFFIX, starts, data,
    )  # fmt: skip
    return data, starts


@nb.njit(cache=True, nogil=True)
def _sizes(codes, id_starts, temp_starts, rows, other_starts, starts):
    fixed = 13 + 18 + _STAMP + 17 + 1
    pos = 0
    j = 0
    for i in range(len(codes)):
        starts[i] = pos
        if j < len(rows) and rows[j] == i:
            pos += other_starts[j + 1] - other_starts[j]
            j += 1
            continue
        k = codes[i]
        pos += fixed + id_starts[k + 1] - id_starts[k] + temp_starts[i + 1] - temp_starts[i]
    starts[len(codes)] = pos


@nb.njit(cache=True, nogil=True, inline="always")
def _put_number(out, pos, value, width):
    for k in range(width - 1, -1, -1):
        out[pos + k] = 48 + value % 10
        value //= 10
    return pos + width


@nb.njit(cache=True, nogil=True, inline="always")
def civil_from_days(days):
    """(year, month, day) of a day number since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y, m, d


@nb.njit(cache=True, nogil=True, inline="always")
def _put_date(out, pos, days):
    """``YYYY-MM-DDT`` of a day number since the epoch."""
    y, m, d = civil_from_days(days)
    pos = _put_number(out, pos, y, 4)
    out[pos] = 45  # -
    pos = _put_number(out, pos + 1, m, 2)
    out[pos] = 45
    pos = _put_number(out, pos + 1, d, 2)
    out[pos] = 84  # T
    return pos + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _put_time(out, pos, us):
    """``HH:MM:SS.ffffff`` of the time of day of ``us`` (µs since the epoch)."""
    secs = us // 1_000_000
    micros = us - secs * 1_000_000
    rem = secs - (secs // 86400) * 86400
    pos = _put_number(out, pos, rem // 3600, 2)
    out[pos] = 58  # :
    pos = _put_number(out, pos + 1, (rem // 60) % 60, 2)
    out[pos] = 58
    pos = _put_number(out, pos + 1, rem % 60, 2)
    out[pos] = 46  # .
    return _put_number(out, pos + 1, micros, 6)


@nb.njit(cache=True, nogil=True)
def _write(
    codes,
    id_bytes,
    id_starts,
    observed,
    temp_bytes,
    temp_starts,
    rows,
    other,
    other_starts,
    prefix,
    middle,
    suffix,
    starts,
    out,
):
    j = 0
    date = np.empty(11, dtype=np.uint8)  # YYYY-MM-DDT of `day`: readings come day after day
    day = -(1 << 62)
    for i in range(len(codes)):
        pos = starts[i]
        if j < len(rows) and rows[j] == i:
            a, b = other_starts[j], other_starts[j + 1]
            out[pos : pos + b - a] = other[a:b]
            j += 1
            continue
        out[pos : pos + len(prefix)] = prefix
        pos += len(prefix)
        k = codes[i]
        a, b = id_starts[k], id_starts[k + 1]
        out[pos : pos + b - a] = id_bytes[a:b]
        pos += b - a
        out[pos : pos + len(middle)] = middle
        pos += len(middle)
        if observed[i] // 86_400_000_000 != day:
            day = observed[i] // 86_400_000_000
            _put_date(date, 0, day)
        out[pos : pos + 11] = date
        pos = _put_time(out, pos + 11, observed[i])
        out[pos : pos + len(suffix)] = suffix
        pos += len(suffix)
        a, b = temp_starts[i], temp_starts[i + 1]
        out[pos : pos + b - a] = temp_bytes[a:b]
        pos += b - a
        out[pos] = 125  # }
