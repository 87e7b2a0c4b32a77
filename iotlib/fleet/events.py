"""The ``UpdateTemperatureEvent``: its schema, JSON body, metadata properties and validation.

A thermostat sends one JSON object per reading, with the event's metadata
carried beside the body as Event Hubs application properties::

    body        {"DeviceId":"3f2a…","TimeObserved":"2015-06-01T12:34:56.789012Z","Temperature":21.5}
    properties  {"DeviceId": "3f2a…", "EventType": "UpdateTemperatureEvent", "EventTypeVersion": "1"}

Timestamps are RFC 3339 in UTC. The encoder always writes ``Z`` and six
fractional digits; the decoder accepts any RFC 3339 offset (converted to UTC)
and up to nine fractional digits (truncated to microseconds, as .NET writes
seven). Unknown extra fields are ignored, so a newer device firmware adding a
field does not break readers.

One event: :class:`UpdateTemperatureEvent`, :func:`encode`, :func:`decode`,
:func:`validate`, :func:`properties`. Many events at once (vectorised, for
millions of rows): :func:`encode_frame` turns a simulation's DataFrame into a
Series of JSON bodies; :func:`validate_bodies` and :func:`decode_bodies` check
or parse a Series of bodies, giving a reason per malformed one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import polars as pl

from iotlib.errors import ConfigurationError, ValidationError

__all__ = [
    "EVENT_TYPE",
    "EVENT_TYPE_VERSION",
    "FIELDS",
    "MALFORMED_KINDS",
    "PROPERTY_KEYS",
    "UpdateTemperatureEvent",
    "decode",
    "decode_bodies",
    "encode",
    "encode_frame",
    "format_timestamp",
    "parse_timestamp",
    "properties",
    "validate",
    "validate_bodies",
]

EVENT_TYPE = "UpdateTemperatureEvent"
EVENT_TYPE_VERSION = "1"
#: JSON field names of the body, in the order the encoder writes them.
FIELDS = ("DeviceId", "TimeObserved", "Temperature")
#: Application-property keys carried beside each body.
PROPERTY_KEYS = ("DeviceId", "EventType", "EventTypeVersion")

#: Ways a payload can be malformed, as the simulator injects them (see ``encode_frame``).
MALFORMED_KINDS = ("invalid_json", "missing_field", "wrong_type", "bad_timestamp")

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")
# The exact shape encode_frame writes; anything else goes through the slow, precise path.
_CANONICAL = (
    r'^\{"DeviceId":"([^"\\\x00-\x1f]+)",'
    r'"TimeObserved":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z)",'
    r'"Temperature":(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)\}$'
)


@dataclass(frozen=True, slots=True)
class UpdateTemperatureEvent:
    """One thermostat reading: device, when the device observed it (UTC), degrees Celsius."""

    device_id: str
    time_observed: datetime
    temperature: float

    def __post_init__(self) -> None:
        if self.time_observed.tzinfo is None:
            raise ValidationError("time_observed must be timezone-aware (UTC); got a naive datetime")

    def to_json(self) -> bytes:
        """The event's JSON body (UTF-8)."""
        return encode(self)

    def properties(self) -> dict[str, str]:
        """The application properties sent beside the body."""
        return properties(self.device_id)

    @classmethod
    def from_json(cls, body: bytes | str) -> UpdateTemperatureEvent:
        """Parse a body; raises :class:`~iotlib.errors.ValidationError` with the reason if malformed."""
        return decode(body)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 text in UTC with microseconds: ``2015-06-01T12:34:56.789012Z``."""
    if moment.tzinfo is None:
        raise ValidationError("timestamps must be timezone-aware; got a naive datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse RFC 3339 text into an aware UTC datetime (fractions beyond microseconds truncated)."""
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValidationError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    micros = int((frac or "0")[:6].ljust(6, "0"))
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz)
    except ValueError as exc:
        raise ValidationError(f"not a valid date and time: {text!r} ({exc})") from None
    return moment.astimezone(UTC)


def properties(device_id: str, *, event_type: str = EVENT_TYPE, version: str = EVENT_TYPE_VERSION) -> dict[str, str]:
    """Application properties for one event: ``DeviceId``, ``EventType``, ``EventTypeVersion``."""
    return {"DeviceId": device_id, "EventType": event_type, "EventTypeVersion": version}


def encode(event: UpdateTemperatureEvent) -> bytes:
    """One event's JSON body (UTF-8), in the same shape :func:`encode_frame` writes."""
    temp = float(event.temperature)
    if not math.isfinite(temp):
        raise ValidationError(f"temperature must be finite, got {event.temperature!r}")
    device = json.dumps(event.device_id)
    stamp = format_timestamp(event.time_observed)
    return f'{{"DeviceId":{device},"TimeObserved":"{stamp}","Temperature":{temp!r}}}'.encode()


def _id_values(column: pl.Series) -> pl.Series:
    """The distinct ids a device-id column can hold (its categories, for an Enum)."""
    if isinstance(column.dtype, pl.Enum):
        return pl.Series(column.dtype.categories, dtype=pl.String)
    return column.unique().cast(pl.String)


def _device_json(column: pl.Series) -> pl.Expr:
    """The ``device_id`` column as JSON string literals; escaping is only paid for when an id needs it."""
    ids = _id_values(column)
    if not ids.str.contains(r'["\\\x00-\x1f]').any():
        return pl.concat_str([pl.lit('"'), pl.col("device_id").cast(pl.String), pl.lit('"')])
    # Rare: ids with quotes, backslashes or control characters. Escape each distinct id once.
    ids = ids.drop_nulls()
    escaped = pl.Series([json.dumps(v) for v in ids.to_list()], dtype=pl.String)
    return pl.col("device_id").cast(pl.String).replace_strict(ids, escaped)


def encode_frame(events: pl.DataFrame, *, malformed: bool = True) -> pl.Series:
    """JSON bodies for every row of ``events`` (vectorised), as a String Series named ``body``.

    ``events`` needs columns ``device_id`` (String, Categorical or Enum),
    ``time_observed`` (Datetime; naive means UTC) and ``temperature``
    (float). If it also has the simulator's ground-truth column
    ``fault_malformed`` and ``malformed`` is true, the rows it marks get the
    broken body it names:

    - ``invalid_json``: the body cut short, so it does not parse;
    - ``missing_field``: no ``Temperature``;
    - ``wrong_type``: ``Temperature`` as a JSON string (``"21.5"``);
    - ``bad_timestamp``: ``TimeObserved`` in .NET text (``12/8/2017 3:03:17 AM``), not RFC 3339.
    """
    missing = [c for c in ("device_id", "time_observed", "temperature") if c not in events.columns]
    if missing:
        raise ValidationError(f"cannot encode events: missing column(s) {', '.join(missing)}")
    if not isinstance(events.schema["time_observed"], pl.Datetime):
        raise ValidationError(f"time_observed must be a Datetime column, got {events.schema['time_observed']}")
    bad = events.select(
        nulls=pl.any_horizontal(pl.col("device_id", "time_observed", "temperature").is_null()).sum(),
        nonfinite=(~pl.col("temperature").cast(pl.Float64).is_finite()).sum(),
    ).row(0)
    if bad[0] or bad[1]:
        raise ValidationError(f"cannot encode events: {bad[0]} row(s) with nulls, {bad[1]} non-finite temperature(s)")

    broken = (
        events["fault_malformed"].is_not_null()
        if malformed and "fault_malformed" in events.columns
        else pl.Series([], dtype=pl.Boolean)
    )
    fast = _fast_bodies(events)
    if fast is not None:
        if broken.any():  # the few broken bodies the polars way
            index = broken.arg_true()
            fast = fast.scatter(index, _polars_bodies(events[index], malformed=True))
        return fast
    return _polars_bodies(events, malformed=malformed)


def _fast_bodies(events: pl.DataFrame) -> pl.Series | None:
    """Well-formed bodies by :mod:`iotlib.fleet.fastjson` (the same text, several times faster), when the
    frame suits it: an Enum of ids with nothing to escape, UTC times in µs or ms of years 1970-9999."""
    from iotlib.fleet import fastjson

    device, when = events["device_id"], events["time_observed"]
    dtype = when.dtype
    if not isinstance(device.dtype, pl.Enum) or not isinstance(dtype, pl.Datetime):
        return None
    if dtype.time_zone not in (None, "UTC") or dtype.time_unit == "ns":
        return None
    ids = _id_values(device)
    if ids.str.contains(r'["\\\x00-\x1f]').any():  # ids that need escaping: the polars path
        return None
    observed = when.dt.epoch("us")
    if not fastjson.formats(observed):
        return None
    table = fastjson.text_buffers(ids)
    codes = device.to_physical().to_numpy()
    return fastjson.bodies(codes, table, observed.to_numpy(), events["temperature"])


def _polars_bodies(events: pl.DataFrame, *, malformed: bool) -> pl.Series:
    # Naive datetimes are taken as UTC (polars' convention); other zones are converted.
    when = pl.col("time_observed")
    dtype = events.schema["time_observed"]
    zone = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    if zone not in (None, "UTC"):
        when = when.dt.convert_time_zone("UTC")
    prefix = pl.concat_str([pl.lit('{"DeviceId":'), _device_json(events["device_id"]), pl.lit(',"TimeObserved":"')])
    stamp = when.dt.strftime(_TIMESTAMP_FORMAT)
    temp = pl.col("temperature").cast(pl.String)
    good = pl.concat_str([prefix, stamp, pl.lit('","Temperature":'), temp, pl.lit("}")])
    body = good
    if malformed and "fault_malformed" in events.columns and events["fault_malformed"].null_count() < events.height:
        kind = pl.col("fault_malformed").cast(pl.String)
        body = (
            pl.when(kind.is_null())
            .then(good)
            .when(kind == "invalid_json")
            .then(good.str.slice(0, 40))
            .when(kind == "missing_field")
            .then(pl.concat_str([prefix, stamp, pl.lit('"}')]))
            .when(kind == "wrong_type")
            .then(pl.concat_str([prefix, stamp, pl.lit('","Temperature":"'), temp, pl.lit('"}')]))
            .otherwise(  # bad_timestamp
                pl.concat_str(
                    [prefix, when.dt.strftime("%-m/%-d/%Y %-I:%M:%S %p"), pl.lit('","Temperature":'), temp, pl.lit("}")]
                )
            )
        )
    return events.select(body.alias("body")).to_series()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check(body: bytes | str | bytearray | memoryview) -> tuple[UpdateTemperatureEvent | None, str | None]:
    """Parse one body: ``(event, None)`` when valid, else ``(None, reason)``: the definition of a valid body."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not UTF-8: {exc.reason} at byte {exc.start}"
    elif isinstance(body, str):
        text = body
    else:
        return None, f"a body is bytes or str, got {type(body).__name__}"

    def no_constants(name: str) -> float:
        raise ValueError(f"{name} is not allowed in JSON")

    try:
        obj = json.loads(text, parse_constant=no_constants)
    except (json.JSONDecodeError, ValueError) as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (got {_type_name(obj)})"
    absent = [f for f in FIELDS if f not in obj]
    if absent:
        return None, f"missing field(s): {', '.join(absent)}"
    device, stamp, temp = obj["DeviceId"], obj["TimeObserved"], obj["Temperature"]
    if not isinstance(device, str) or not device:
        got = "an empty string" if device == "" else _type_name(device)
        return None, f"field DeviceId must be a non-empty string, got {got}"
    if not isinstance(stamp, str):
        return None, f"field TimeObserved must be an RFC 3339 string, got {_type_name(stamp)}"
    if isinstance(temp, bool) or not isinstance(temp, (int, float)):
        return None, f"field Temperature must be a number, got {_type_name(temp)}"
    if not math.isfinite(temp):
        return None, f"field Temperature must be finite, got {temp!r}"
    try:
        moment = parse_timestamp(stamp)
    except ValidationError as exc:
        return None, f"field TimeObserved: {exc}"
    return UpdateTemperatureEvent(device, moment, float(temp)), None


def decode(body: bytes | str) -> UpdateTemperatureEvent:
    """Parse one JSON body; raises :class:`~iotlib.errors.ValidationError` naming what is wrong."""
    event, reason = check(body)
    if event is None:
        raise ValidationError(f"malformed {EVENT_TYPE}: {reason}")
    return event


def validate(body: bytes | str) -> str | None:
    """``None`` if ``body`` is a valid event, else a short reason such as ``missing field(s): Temperature``."""
    return check(body)[1]


def _utf8_or_none(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _as_series(bodies: pl.Series | Iterable[bytes | str]) -> tuple[pl.Series, pl.Series]:
    """(bodies as given, as a Series; the same as UTF-8 text, null where not decodable)."""
    if not isinstance(bodies, pl.Series):
        values = list(bodies)
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {str}:
            bodies = pl.Series("body", values, dtype=pl.String)
        elif kinds <= {bytes, bytearray, memoryview}:
            bodies = pl.Series("body", [None if v is None else bytes(v) for v in values], dtype=pl.Binary)
        else:
            bodies = pl.Series(
                "body", [v if isinstance(v, str) or v is None else bytes(v) for v in values], dtype=pl.Object
            )
    if bodies.dtype == pl.String:
        return bodies, bodies
    if bodies.dtype == pl.Binary:
        try:
            return bodies, bodies.cast(pl.String)
        except pl.exceptions.ComputeError:
            # Some body is not UTF-8: leave those null here, the slow path reports them precisely.
            return bodies, pl.Series([_utf8_or_none(v) for v in bodies.to_list()], dtype=pl.String)
    if bodies.dtype == pl.Object:
        return bodies, pl.Series([None] * len(bodies), dtype=pl.String)  # mixed types: all slow
    raise ConfigurationError(f"bodies must be a String or Binary Series (or a list of str/bytes), got {bodies.dtype}")


def decode_bodies(bodies: pl.Series | Iterable[bytes | str]) -> pl.DataFrame:
    """Parse many bodies at once: one row per body, in order.

    Columns: ``device_id`` (String), ``time_observed`` (Datetime µs UTC),
    ``temperature`` (Float64) and ``error`` (String: null when the body is
    valid, else the reason; the other columns are then null). Bodies in the
    exact shape :func:`encode_frame` writes are parsed vectorised; others
    (different key order, spacing, offsets, malformed) one by one.
    """
    originals, text = _as_series(bodies)
    parts = text.str.extract_groups(_CANONICAL)
    fast = pl.DataFrame(
        {
            "device_id": parts.struct.field("1"),
            "time_observed": parts.struct.field("2").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False
            ),
            "temperature": parts.struct.field("3").cast(pl.Float64, strict=False),
            "error": pl.Series([None] * len(text), dtype=pl.String),
        }
    )
    ok = fast["time_observed"].is_not_null() & fast["temperature"].is_finite().fill_null(False)
    slow_rows = (~ok).arg_true()
    if len(slow_rows) == 0:
        return fast

    devices, moments, temps, errors = [], [], [], []
    for i in slow_rows.to_list():
        value = originals[i]
        event, reason = (None, "empty body (null)") if value is None else check(value)
        devices.append(event.device_id if event else None)
        moments.append(event.time_observed if event else None)
        temps.append(event.temperature if event else None)
        errors.append(reason)
    patch = pl.DataFrame(
        {
            "row": slow_rows.cast(pl.UInt32),
            "device_id": pl.Series(devices, dtype=pl.String),
            "time_observed": pl.Series(moments, dtype=pl.Datetime("us", "UTC")),
            "temperature": pl.Series(temps, dtype=pl.Float64),
            "error": pl.Series(errors, dtype=pl.String),
        }
    )
    out = fast.with_row_index("row").update(patch, on="row", include_nulls=True)
    return out.drop("row")


def validate_bodies(bodies: pl.Series | Iterable[bytes | str]) -> pl.Series:
    """A String Series named ``error``: null where a body is valid, else the reason it is not."""
    return decode_bodies(bodies)["error"]
