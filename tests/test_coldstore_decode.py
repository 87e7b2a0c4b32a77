"""The fast path equals the generic (fastavro) path; compiled parsers equal their Python definitions."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from coldstore_helpers import AZURE_SCHEMA, AZURE_SCHEMA_NO_NULL, avro_bytes, dotnet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotlib.capture import format as cf
from iotlib.coldstore import bodies, columns, container, fastdecode, generic
from iotlib.coldstore.timestamps import NOT_HANDLED, enqueued_text_micros, parse_rfc3339, rfc3339_micros, to_micros

UTC = UTC
PATH = cf.BlobPath("ns", "hub", "3", datetime(2024, 3, 1, tzinfo=UTC))

keys = st.text(min_size=0, max_size=12)
sys_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),  # NaN != NaN would make frames unequal for no reason
    st.text(max_size=20),
    st.binary(max_size=20),
)
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda t: t.replace(tzinfo=UTC)
)
thermo_bodies = st.builds(
    lambda d, t, x: json.dumps(
        {"DeviceId": d, "TimeObserved": t.isoformat().replace("+00:00", "Z"), "Temperature": x}
    ).encode(),
    st.text(min_size=1, max_size=10),
    moments,
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
any_bodies = st.one_of(st.none(), st.binary(max_size=40), thermo_bodies)


@st.composite
def records(draw: st.DrawFn, with_null: bool = True) -> dict:
    t = draw(moments)
    sysp = draw(st.dictionaries(keys, sys_values, max_size=4))
    if draw(st.booleans()):
        sysp["x-opt-enqueued-time"] = int(t.timestamp() * 1000)
    if draw(st.booleans()):
        sysp["x-opt-partition-key"] = draw(st.text(max_size=8))
    prop_values = st.one_of(sys_values, st.none()) if with_null else sys_values
    text = draw(st.sampled_from([dotnet(t), t.isoformat(), t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "1Z"]))
    return {
        "SequenceNumber": draw(st.integers(-(2**63), 2**63 - 1)),
        "Offset": draw(st.text(max_size=12)),
        "EnqueuedTimeUtc": text,
        "SystemProperties": sysp,
        "Properties": draw(st.dictionaries(keys, prop_values, max_size=4)),
        "Body": draw(any_bodies),
    }


def fast_frame(data: bytes) -> pl.DataFrame:
    f = container.open_container(data)
    assert f.props_branches is not None
    if f.records == 0:
        return columns.empty_raw()
    raw = fastdecode.decode(f.inflate())
    return columns.raw_frame(raw, PATH)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=25), st.sampled_from(["null", "deflate"]))
def test_fast_equals_generic(recs: list[dict], codec: str) -> None:
    data = avro_bytes(recs, codec=codec)
    fast, slow = fast_frame(data), generic.decode_file(data, PATH)
    assert fast.equals(slow), (fast, slow)
    assert fast.height == len(recs)


@settings(max_examples=25, deadline=None)
@given(st.lists(records(with_null=False), min_size=1, max_size=10))
def test_fast_equals_generic_without_null_branch(recs: list[dict]) -> None:
    data = avro_bytes(recs, codec="deflate", schema=AZURE_SCHEMA_NO_NULL)
    assert container.open_container(data).props_branches == 4
    assert fast_frame(data).equals(generic.decode_file(data, PATH))


def test_values_survive_both_paths() -> None:
    t = datetime(2024, 3, 1, 10, 0, 1, 250000, tzinfo=UTC)
    rec = {
        "SequenceNumber": 7,
        "Offset": "700",
        "EnqueuedTimeUtc": dotnet(t),
        "SystemProperties": {
            "x-opt-enqueued-time": 1709287201250,
            "x-opt-partition-key": "pk",
            "d": 0.5,
            "b": b"\x00\xff",
        },
        "Properties": {"n": None, "l": -3, "s": "é"},
        "Body": None,
    }
    df = fast_frame(avro_bytes([rec]))
    row = df.row(0, named=True)
    assert row["enqueued_time"] == t  # milliseconds from x-opt-enqueued-time, not the whole-second text
    assert row["partition_key"] == "pk" and row["body"] is None and row["offset"] == "700"
    props = {e["key"]: e for e in row["properties"]}
    assert props["n"] == {"key": "n", "long": None, "double": None, "string": None, "bytes": None}
    assert props["l"]["long"] == -3 and props["s"]["string"] == "é"
    sysp = {e["key"]: e for e in row["system_properties"]}
    assert sysp["d"]["double"] == 0.5 and sysp["b"]["bytes"] == b"\x00\xff"
    assert df.select(columns.property_value("properties", "l", "long")).item() == -3


def test_text_time_when_no_milliseconds() -> None:
    rec = {
        "SequenceNumber": 1,
        "Offset": "1",
        "EnqueuedTimeUtc": "12/8/2017 3:03:17 PM",
        "SystemProperties": {},
        "Properties": {},
        "Body": b"x",
    }
    rec2 = dict(rec, EnqueuedTimeUtc="2017-12-08T15:03:17.1234567Z")
    df = fast_frame(avro_bytes([rec, rec2]))
    assert df["enqueued_time"].to_list() == [
        datetime(2017, 12, 8, 15, 3, 17, tzinfo=UTC),
        datetime(2017, 12, 8, 15, 3, 17, 123456, tzinfo=UTC),
    ]


def test_bad_time_text_is_a_corrupt_file() -> None:
    rec = {
        "SequenceNumber": 1,
        "Offset": "1",
        "EnqueuedTimeUtc": "soon",
        "SystemProperties": {},
        "Properties": {},
        "Body": b"x",
    }
    with pytest.raises(container.CorruptFile, match="soon"):
        fast_frame(avro_bytes([rec]))
    with pytest.raises(container.CorruptFile, match="soon"):
        generic.decode_file(avro_bytes([rec]), PATH)


def test_other_schema_is_not_fast() -> None:
    schema = json.loads(json.dumps(AZURE_SCHEMA))
    schema["fields"].append({"name": "Extra", "type": "string", "default": ""})
    rec = {
        "SequenceNumber": 1,
        "Offset": "1",
        "EnqueuedTimeUtc": "12/8/2017 3:03:17 PM",
        "SystemProperties": {},
        "Properties": {},
        "Body": b"x",
        "Extra": "y",
    }
    data = avro_bytes([rec], schema=schema)
    assert container.open_container(data).props_branches is None
    assert generic.decode_file(data, PATH)["sequence_number"].to_list() == [1]


def test_header_only_file() -> None:
    data = avro_bytes([])
    f = container.open_container(data)
    assert f.records == 0 and len(f.counts) == 0


@pytest.mark.parametrize("cut", [3, 40, -30, -17, -1])
def test_truncated_files_are_named_corrupt(cut: int) -> None:
    recs = [
        {
            "SequenceNumber": i,
            "Offset": "1",
            "EnqueuedTimeUtc": "12/8/2017 3:03:17 PM",
            "SystemProperties": {},
            "Properties": {},
            "Body": b"x" * 50,
        }
        for i in range(40)
    ]
    data = avro_bytes(recs)
    with pytest.raises(container.CorruptFile):
        f = container.open_container(data[:cut])
        fastdecode.decode(f.inflate())
    with pytest.raises(container.CorruptFile):
        generic.decode_file(data[:cut], PATH)


def test_flipped_bytes_inside_a_block_are_caught() -> None:
    recs = [
        {
            "SequenceNumber": i,
            "Offset": "1",
            "EnqueuedTimeUtc": "12/8/2017 3:03:17 PM",
            "SystemProperties": {"k": 1},
            "Properties": {},
            "Body": b"x",
        }
        for i in range(40)
    ]
    data = bytearray(avro_bytes(recs))
    meta, sync, start = cf.read_header_meta(bytes(data))
    data[start + 6] = 0x7F  # a union branch / length in the first record's maps
    with pytest.raises(container.CorruptFile):
        f = container.open_container(bytes(data))
        fastdecode.decode(f.inflate())


# ------------------------------------------------------------------ bodies and time text


def _spans(items: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    buf = b"".join(b or b"" for b in items)
    spans, pos = [], 0
    for b in items:
        spans.append((pos, -1 if b is None else len(b)))
        pos += len(b or b"")
    return np.frombuffer(buf, dtype=np.uint8), np.array(spans, dtype=np.int64).reshape(-1, 2)


tricky_bodies = st.one_of(
    any_bodies,
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["DeviceId", "TimeObserved", "Temperature", "x"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(10**20), 10**20),
                st.floats(),
                st.text(max_size=30),
                st.sampled_from(
                    [
                        "2024-03-01T10:00:00Z",
                        "2024-02-30T10:00:00Z",
                        "2024-03-01t10:00:00.1234567+05:30",
                        "2024-03-01T10:00:00",
                    ]
                ),
            ),
        ),
    ),
    st.sampled_from(
        [
            b'{"DeviceId":"a","TimeObserved":"2024-03-01T10:00:00Z","Temperature":-0}',
            b' {"DeviceId" : "a" , "TimeObserved":"2024-03-01T10:00:00Z","Temperature":1E5} ',
            b'{"DeviceId":"a","TimeObserved":"2024-03-01T10:00:00Z","Temperature":01}',
            b'{"DeviceId":"a","TimeObserved":"2024-03-01T10:00:00Z","Temperature":1.5}x',
            b"\xef\xbb\xbf{}",
            b'{"DeviceId":"a","DeviceId":"b","TimeObserved":"2024-03-01T10:00:00Z","Temperature":NaN}',
        ]
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(tricky_bodies, max_size=12))
def test_bulk_bodies_equal_reference(items: list[bytes | None]) -> None:
    buf, spans = _spans(items)
    assert bodies.decode_bodies(buf, spans).equals(bodies.reference_frame(items))


def test_body_errors_are_kept_with_reasons() -> None:
    items = [
        b'{"DeviceId":"a","TimeObserved":"2024-03-01T10:00:00Z","Temperature":21.5}',
        b"oops",
        None,
        b'{"DeviceId":"a"}',
        b"[]",
    ]
    df = bodies.decode_bodies(*_spans(items))
    assert df["decode_error"].to_list() == [
        None,
        "invalid JSON: Expecting value: line 1 column 1 (char 0)",
        "no body",
        "missing field(s): TimeObserved, Temperature",
        "not a JSON object (got array)",
    ]
    assert df.row(0) == ("a", datetime(2024, 3, 1, 10, tzinfo=UTC), 21.5, None)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_convert_exactly(x: float) -> None:
    text = json.dumps({"DeviceId": "a", "TimeObserved": "2024-03-01T10:00:00Z", "Temperature": x}).encode()
    got = bodies.decode_bodies(*_spans([text]))["temperature"].item()
    assert got == x and math.copysign(1, got) == math.copysign(1, x)


@given(moments, st.integers(0, 9_999_999), st.sampled_from(["Z", "+02:00", "-11:30"]))
def test_rfc3339_compiled_equals_python(t: datetime, frac: int, zone: str) -> None:
    for text in (t.strftime("%Y-%m-%dT%H:%M:%S") + zone, t.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:07d}" + zone):
        raw = np.frombuffer(text.encode(), np.uint8)
        assert rfc3339_micros(raw, 0, len(raw)) == to_micros(parse_rfc3339(text))


@given(moments, st.integers(0, 9_999_999))
def test_enqueued_text_compiled_equals_python(t: datetime, frac: int) -> None:
    for text in (dotnet(t), t.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:07d}Z", t.strftime("%Y-%m-%dT%H:%M:%SZ")):
        raw = np.frombuffer(text.encode(), np.uint8)
        assert enqueued_text_micros(raw, 0, len(raw)) == to_micros(cf.parse_enqueued_time(text))


@given(st.text(max_size=30))
def test_compiled_time_parsers_never_disagree(text: str) -> None:
    raw = np.frombuffer(text.encode(), np.uint8)
    got = enqueued_text_micros(raw, 0, len(raw)) if len(raw) else NOT_HANDLED
    if got != NOT_HANDLED:
        assert got == to_micros(cf.parse_enqueued_time(text))
    got = rfc3339_micros(raw, 0, len(raw)) if len(raw) else NOT_HANDLED
    if got != NOT_HANDLED:
        assert got == to_micros(parse_rfc3339(text))


def test_day_boundaries() -> None:
    for text in ["2/29/2024 11:59:59 PM", "12/31/1999 12:00:00 AM", "1/1/2000 12:00:00 PM"]:
        raw = np.frombuffer(text.encode(), np.uint8)
        assert enqueued_text_micros(raw, 0, len(raw)) == to_micros(cf.parse_enqueued_time(text))
    raw = np.frombuffer(b"2/30/2024 11:59:59 PM", np.uint8)
    assert enqueued_text_micros(raw, 0, len(raw)) == NOT_HANDLED
    _ = timedelta
