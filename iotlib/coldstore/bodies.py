"""Thermostat event bodies (JSON) to typed columns, in bulk.

The body schema is the scenario's ``UpdateTemperatureEvent``:
``{"DeviceId": "<guid>", "TimeObserved": "<RFC 3339 UTC>", "Temperature": <float>}``.
Columns: ``device_id`` (String), ``time_observed`` (Datetime us UTC), ``temperature``
(Float64), ``decode_error`` (String: why a body did not decode, null when it did). A body that
is not valid JSON or does not fit is kept, with null typed columns and the reason.

:func:`decode_body` is the definition (:func:`iotlib.fleet.events.check`). :func:`decode_bodies` gets the
same answers for a whole column: a compiled scanner handles the plain shape (ASCII strings
without escapes, plain numbers, the three keys in any order, extra scalar keys ignored) and
hands every other body to :func:`decode_body`. Numbers are converted exactly (Clinger's fast
path: at most 15 digits and a power of ten up to 22), otherwise Python converts them.

Validity and the reasons given are :func:`iotlib.fleet.events.check`'s; the compiled scanner is only a
faster way to the same answers for the common shape (the tests hold it to that).
"""

from __future__ import annotations

from datetime import datetime

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

from iotlib.coldstore.timestamps import NOT_HANDLED, rfc3339_micros, to_micros
from iotlib.fleet.events import FIELDS, check

DECODED_SCHEMA = pl.Schema(
    {
        "device_id": pl.String(),
        "time_observed": pl.Datetime("us", "UTC"),
        "temperature": pl.Float64(),
        "decode_error": pl.String(),
    }
)

Decoded = tuple[str | None, datetime | None, float | None, str | None]


def decode_body(body: bytes | None) -> Decoded:
    """(device_id, time_observed, temperature, decode_error) for one body: the reference rules,
    which are :func:`iotlib.fleet.events.check`'s."""
    if body is None:
        return None, None, None, "no body"
    try:
        event, reason = check(body)
    except RecursionError:
        return None, None, None, "invalid JSON: nested too deeply"
    if event is None:
        return None, None, None, reason
    return event.device_id, event.time_observed, event.temperature, None


def decode_bodies(buf: np.ndarray, spans: np.ndarray) -> pl.DataFrame:
    """Decoded columns for bodies at ``spans`` (start, length; length -1 = null) in ``buf``."""
    status, dev, when, temp = _scan(buf, spans)
    n = len(spans)
    dev_spans = dev.copy()
    dev_spans[status != 0, 1] = -1
    from iotlib.coldstore.columns import _bytes_array, frame_from_arrow  # late: columns imports the decoders

    ok = status == 0
    frame = frame_from_arrow(
        pa.table(
            {
                "device_id": _bytes_array(buf, dev_spans, text=True, what="a DeviceId"),
                "time_observed": pa.array(when, type=pa.timestamp("us", "UTC"), mask=~ok),
                "temperature": pa.array(temp, mask=~ok),
                "decode_error": pa.nulls(n, pa.large_string()),
            }
        )
    ).cast(DECODED_SCHEMA)
    slow = np.flatnonzero(~ok)
    if len(slow):
        rows = [
            decode_body(None if spans[i, 1] < 0 else bytes(buf[spans[i, 0] : spans[i, 0] + spans[i, 1]]))
            for i in slow.tolist()
        ]
        idx = pl.Series(slow)
        frame = frame.with_columns(
            frame["device_id"].scatter(idx, pl.Series([r[0] for r in rows], dtype=pl.String)),
            frame["time_observed"].scatter(idx, pl.Series([r[1] for r in rows], dtype=pl.Datetime("us", "UTC"))),
            frame["temperature"].scatter(idx, pl.Series([r[2] for r in rows], dtype=pl.Float64)),
            frame["decode_error"].scatter(idx, pl.Series([r[3] for r in rows], dtype=pl.String)),
        )
    return frame


def decode_body_column(bodies: pl.Series) -> pl.DataFrame:
    """Decoded columns for a Binary column of bodies (e.g. from the Parquet cache)."""
    arrow = bodies.cast(pl.Binary).to_arrow().cast("large_binary")
    arrow = arrow.combine_chunks() if hasattr(arrow, "combine_chunks") else arrow
    offsets = np.frombuffer(arrow.buffers()[1], dtype=np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
    data = arrow.buffers()[2]
    buf = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    spans = np.empty((len(arrow), 2), np.int64)
    spans[:, 0] = offsets[:-1]
    spans[:, 1] = offsets[1:] - offsets[:-1]
    if arrow.null_count:
        spans[~np.asarray(arrow.is_valid()), 1] = -1
    return decode_bodies(buf, spans)


_POW10 = np.array([10.0**i for i in range(23)])
_K_DEVICE = np.frombuffer(b"DeviceId", dtype=np.uint8)
_K_TIME = np.frombuffer(b"TimeObserved", dtype=np.uint8)
_K_TEMP = np.frombuffer(b"Temperature", dtype=np.uint8)


@nb.njit(cache=True)
def _ws(buf, i, end):
    while i < end and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


@nb.njit(cache=True)
def _plain_string(buf, i, end):
    """End (index of closing quote) of a string starting after its opening quote, or -1 if not plain ASCII."""
    while i < end:
        c = buf[i]
        if c == 34:
            return i
        if c == 92 or c < 32 or c > 126:
            return -1
        i += 1
    return -1


@nb.njit(cache=True)
def _is(buf, s, n, key):
    if n != key.shape[0]:
        return False
    for k in range(n):
        if buf[s + k] != key[k]:
            return False
    return True


@nb.njit(nogil=True, cache=True)
def _scan(buf, spans):
    n = spans.shape[0]
    status = np.ones(n, np.int8)  # 0 decoded here, 1 needs the Python rules
    dev = np.zeros((n, 2), np.int64)
    when = np.zeros(n, np.int64)
    temp = np.zeros(n, np.float64)
    for r in range(n):
        if spans[r, 1] < 0:
            continue
        i = spans[r, 0]
        end = i + spans[r, 1]
        i = _ws(buf, i, end)
        if i >= end or buf[i] != 123:  # {
            continue
        i = _ws(buf, i + 1, end)
        seen = 0
        bad = False
        while True:
            if i >= end or buf[i] != 34:
                bad = True
                break
            ks = i + 1
            ke = _plain_string(buf, ks, end)
            if ke < 0:
                bad = True
                break
            i = _ws(buf, ke + 1, end)
            if i >= end or buf[i] != 58:  # :
                bad = True
                break
            i = _ws(buf, i + 1, end)
            if i >= end:
                bad = True
                break
            c = buf[i]
            kind = 0  # 1 string, 2 number, 3 literal
            vs = i
            ve = i
            num = 0.0
            if c == 34:
                ve = _plain_string(buf, i + 1, end)
                if ve < 0:
                    bad = True
                    break
                vs = i + 1
                i = ve + 1
                kind = 1
            elif c == 45 or (48 <= c <= 57):
                neg = c == 45
                j = i + 1 if neg else i
                mant = 0
                digits = 0
                if j < end and buf[j] == 48:
                    j += 1
                    digits = 1
                else:
                    while j < end and 48 <= buf[j] <= 57:
                        mant = mant * 10 + (buf[j] - 48)
                        digits += 1
                        j += 1
                        if digits > 15:
                            break
                if digits == 0 or digits > 15:
                    bad = True
                    break
                frac = 0
                integer = True
                if j < end and buf[j] == 46:
                    integer = False
                    j += 1
                    while j < end and 48 <= buf[j] <= 57:
                        mant = mant * 10 + (buf[j] - 48)
                        digits += 1
                        frac += 1
                        j += 1
                        if digits > 15:
                            break
                    if frac == 0 or digits > 15:
                        bad = True
                        break
                exp = 0
                if j < end and (buf[j] == 101 or buf[j] == 69):
                    integer = False
                    j += 1
                    eneg = False
                    if j < end and (buf[j] == 43 or buf[j] == 45):
                        eneg = buf[j] == 45
                        j += 1
                    ed = 0
                    while j < end and 48 <= buf[j] <= 57 and ed < 4:
                        exp = exp * 10 + (buf[j] - 48)
                        ed += 1
                        j += 1
                    if ed == 0 or ed >= 4:
                        bad = True
                        break
                    if eneg:
                        exp = -exp
                e10 = exp - frac
                if e10 > 22 or e10 < -22:
                    bad = True
                    break
                num = float(mant)
                if e10 >= 0:
                    num = num * _POW10[e10]
                else:
                    num = num / _POW10[-e10]
                if neg and not (integer and mant == 0):  # JSON -0 is the integer 0
                    num = -num
                i = j
                kind = 2
            elif c == 116 and i + 4 <= end and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
                i += 4
                kind = 3
            elif (
                c == 102
                and i + 5 <= end
                and buf[i + 1] == 97
                and buf[i + 2] == 108
                and buf[i + 3] == 115
                and buf[i + 4] == 101
            ):
                i += 5
                kind = 3
            elif c == 110 and i + 4 <= end and buf[i + 1] == 117 and buf[i + 2] == 108 and buf[i + 3] == 108:
                i += 4
                kind = 3
            else:
                bad = True  # objects, arrays, anything odd: Python decides
                break
            klen = ke - ks
            if _is(buf, ks, klen, _K_DEVICE):
                if kind != 1 or ve == vs:
                    bad = True
                    break
                dev[r, 0] = vs
                dev[r, 1] = ve - vs
                seen |= 1
            elif _is(buf, ks, klen, _K_TIME):
                if kind != 1:
                    bad = True
                    break
                t = rfc3339_micros(buf, vs, ve - vs)
                if t == NOT_HANDLED:
                    bad = True
                    break
                when[r] = t
                seen |= 2
            elif _is(buf, ks, klen, _K_TEMP):
                if kind != 2:
                    bad = True
                    break
                temp[r] = num
                seen |= 4
            i = _ws(buf, i, end)
            if i < end and buf[i] == 44:  # ,
                i = _ws(buf, i + 1, end)
                continue
            if i < end and buf[i] == 125:  # }
                i = _ws(buf, i + 1, end)
                break
            bad = True
            break
        if not bad and seen == 7 and i == end:
            status[r] = 0
    return status, dev, when, temp


def reference_frame(bodies: list[bytes | None]) -> pl.DataFrame:
    """:func:`decode_body` over a list, as a frame: what :func:`decode_bodies` must equal."""
    rows = [decode_body(b) for b in bodies]
    return pl.DataFrame(
        {
            "device_id": pl.Series([r[0] for r in rows], dtype=pl.String),
            "time_observed": pl.Series([r[1] for r in rows], dtype=pl.Datetime("us", "UTC")),
            "temperature": pl.Series([r[2] for r in rows], dtype=pl.Float64),
            "decode_error": pl.Series([r[3] for r in rows], dtype=pl.String),
        }
    )


__all__ = [
    "DECODED_SCHEMA",
    "FIELDS",
    "decode_bodies",
    "decode_body",
    "decode_body_column",
    "reference_frame",
    "to_micros",
]
