"""The shared Capture format: schema, blob names, EnqueuedTimeUtc text, writer."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotlib.capture import format as cf
from iotlib.errors import ColdStoreError, ConfigurationError

UTC = UTC
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda t: t.replace(tzinfo=UTC)
)


def test_schema_is_azures() -> None:
    s = cf.SCHEMA
    assert (s["type"], s["name"], s["namespace"]) == ("record", "EventData", "Microsoft.ServiceBus.Messaging")
    assert [(f["name"], f["type"]) for f in s["fields"]] == [
        ("SequenceNumber", "long"),
        ("Offset", "string"),
        ("EnqueuedTimeUtc", "string"),
        ("SystemProperties", {"type": "map", "values": ["long", "double", "string", "bytes"]}),
        ("Properties", {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}),
        ("Body", ["null", "bytes"]),
    ]
    assert cf.SCHEMA_WITHOUT_PROPERTIES_NULL["fields"][4]["type"]["values"] == ["long", "double", "string", "bytes"]


def test_dotnet_text_as_azure_writes_it() -> None:
    assert cf.format_enqueued_time(datetime(2017, 12, 8, 3, 3, 17, 999000, tzinfo=UTC)) == "12/8/2017 3:03:17 AM"
    assert cf.format_enqueued_time(datetime(2017, 12, 8, 0, 5, 0, tzinfo=UTC)) == "12/8/2017 12:05:00 AM"
    assert cf.format_enqueued_time(datetime(2017, 12, 8, 12, 0, 1, tzinfo=UTC)) == "12/8/2017 12:00:01 PM"
    assert cf.format_enqueued_time(datetime(2017, 12, 8, 23, 59, 59, tzinfo=UTC)) == "12/8/2017 11:59:59 PM"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12/8/2017 3:03:17 AM", datetime(2017, 12, 8, 3, 3, 17, tzinfo=UTC)),
        ("12/8/2017 12:03:17 AM", datetime(2017, 12, 8, 0, 3, 17, tzinfo=UTC)),
        ("12/8/2017 12:03:17 PM", datetime(2017, 12, 8, 12, 3, 17, tzinfo=UTC)),
        ("1/31/2024 11:59:59 pm", datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC)),
        ("12/08/2017 15:03:17", datetime(2017, 12, 8, 15, 3, 17, tzinfo=UTC)),
        ("2017-12-08T03:03:17.1234567Z", datetime(2017, 12, 8, 3, 3, 17, 123456, tzinfo=UTC)),
        ("2017-12-08T03:03:17.1Z", datetime(2017, 12, 8, 3, 3, 17, 100000, tzinfo=UTC)),
        ("2017-12-08 03:03:17", datetime(2017, 12, 8, 3, 3, 17, tzinfo=UTC)),
        ("2017-12-08T05:03:17+02:00", datetime(2017, 12, 8, 3, 3, 17, tzinfo=UTC)),
    ],
)
def test_parse_enqueued_time(text: str, expected: datetime) -> None:
    assert cf.parse_enqueued_time(text) == expected


@pytest.mark.parametrize(
    "text", ["", "yesterday", "13/40/2017 3:03:17 AM", "12/8/2017 13:03:17 PM", "2017-12-08T03:03:17.12345678Z"]
)
def test_parse_enqueued_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="EnqueuedTimeUtc"):
        cf.parse_enqueued_time(text)


@given(moments)
def test_enqueued_time_round_trips_to_the_second(t: datetime) -> None:
    assert cf.parse_enqueued_time(cf.format_enqueued_time(t)) == t.replace(microsecond=0)
    assert cf.parse_enqueued_time(t.isoformat()) == t


@given(
    moments,
    st.sampled_from(
        [
            cf.DEFAULT_PATH_FORMAT,
            "{Year}/{Month}/{Day}/{Namespace}/{EventHub}/{PartitionId}/{Hour}/{Minute}/{Second}",
            "{EventHub}-{PartitionId}/{Namespace}/{Year}{Month}{Day}/{Hour}_{Minute}_{Second}",
        ]
    ),
    st.integers(0, 31),
)
def test_names_parse_back(t: datetime, fmt: str, partition: int) -> None:
    t = t.replace(microsecond=0)
    pf = cf.PathFormat(fmt)
    name = pf.name("fabrikam-ns", "telemetry", partition, t)
    assert name.endswith(".avro")
    assert pf.parse(name) == cf.BlobPath("fabrikam-ns", "telemetry", str(partition), t)


def test_default_name_matches_azures_example() -> None:
    start = datetime(2017, 8, 31, 19, 11, 45, tzinfo=UTC)
    assert cf.PathFormat().name("tfdatamigratens", "hubdatamigration", 1, start) == (
        "tfdatamigratens/hubdatamigration/1/2017/08/31/19/11/45.avro"
    )


@pytest.mark.parametrize(
    "fmt",
    [
        "{Namespace}/{EventHub}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}",
        "{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}/{Year}",
        "{Namespace}/{Hub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}",
    ],
)
def test_bad_path_formats_are_named(fmt: str) -> None:
    with pytest.raises(ConfigurationError, match="capture path format"):
        cf.PathFormat(fmt)


def test_parse_rejects_foreign_names() -> None:
    with pytest.raises(ColdStoreError, match="does not fit"):
        cf.PathFormat().parse("ns/hub/0/2017/08/31/19/11/45.json")
    assert cf.PathFormat().try_parse("readme.txt") is None


def test_time_prefixes_reach_one_window_back() -> None:
    pf = cf.PathFormat()
    kw = dict(namespace="ns", eventhub="hub", partition_id=2)
    # A range starting 10 minutes into the hour must also look in the previous hour (a 900 s window).
    got = pf.time_prefixes(datetime(2024, 3, 1, 10, 10, tzinfo=UTC), datetime(2024, 3, 1, 11, 0, tzinfo=UTC), **kw)
    assert got == ["ns/hub/2/2024/03/01/09/", "ns/hub/2/2024/03/01/10/"]
    got = pf.time_prefixes(datetime(2024, 3, 1, 10, 20, tzinfo=UTC), datetime(2024, 3, 1, 11, 0, 1, tzinfo=UTC), **kw)
    assert got == ["ns/hub/2/2024/03/01/10/", "ns/hub/2/2024/03/01/11/"]
    got = pf.time_prefixes(datetime(2024, 2, 28, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC), granularity="Day", **kw)
    assert got == [f"ns/hub/2/2024/{d}/" for d in ("02/27", "02/28", "02/29", "03/01")]


def test_may_overlap_keeps_a_window_before() -> None:
    pf = cf.PathFormat()
    start, end = datetime(2024, 3, 1, 10, tzinfo=UTC), datetime(2024, 3, 1, 11, tzinfo=UTC)
    path = lambda t: cf.BlobPath("n", "h", "0", t)  # noqa: E731
    assert pf.may_overlap(path(start - timedelta(seconds=899)), start, end)
    assert not pf.may_overlap(path(start - timedelta(seconds=900)), start, end)
    assert pf.may_overlap(path(end - timedelta(seconds=1)), start, end)
    assert not pf.may_overlap(path(end), start, end)


def _records(n: int) -> list[cf.CaptureRecord]:
    t0 = datetime(2024, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)
    return [
        cf.capture_record(
            sequence_number=100 + i,
            offset=4096 * i,
            enqueued_time=t0 + timedelta(milliseconds=700 * i),
            body=json.dumps({"i": i}).encode(),
            properties={"DeviceId": f"d{i}", "EventTypeVersion": 1, "ratio": 0.5, "raw": b"\x01", "none": None},
            partition_key=f"d{i}" if i % 2 else None,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_written_file_reads_with_plain_fastavro(codec: str) -> None:
    records = _records(50)
    data = cf.write_capture_file(None, records, codec=codec, block_records=7)
    assert isinstance(data, bytes)
    reader = fastavro.reader(io.BytesIO(data))
    assert reader.metadata["avro.codec"] == codec
    header = json.loads(reader.metadata["avro.schema"])
    assert header == cf.SCHEMA  # Azure's short name + namespace, not fastavro's full name
    got = list(reader)
    assert got == records
    assert got[1]["SystemProperties"] == {
        "x-opt-sequence-number": 101,
        "x-opt-offset": "4096",
        "x-opt-enqueued-time": 1709287200950,
        "x-opt-partition-key": "d1",
    }
    assert "x-opt-partition-key" not in got[0]["SystemProperties"]
    assert got[1]["EnqueuedTimeUtc"] == "3/1/2024 10:00:00 AM"


def test_empty_window_is_header_only() -> None:
    data = cf.write_capture_file(None, [])
    assert 400 < len(data) < 600  # "about 500 bytes"
    assert list(fastavro.reader(io.BytesIO(data))) == []
    meta, sync, end = cf.read_header_meta(data)
    assert end == len(data) and meta["avro.codec"] == b"null"


def test_sync_marker_makes_replays_identical() -> None:
    marker = cf.sync_marker_for("ns/hub/0/2024/03/01/10/00/00.avro")
    a = cf.write_capture_file(None, _records(5), sync_marker=marker)
    b = io.BytesIO()
    cf.write_capture_file(b, _records(5), sync_marker=marker)
    assert a == b.getvalue()


def test_variant_schema_without_properties_null() -> None:
    recs = [dict(r, Properties={"k": "v"}) for r in _records(3)]
    data = cf.write_capture_file(None, recs, schema=cf.SCHEMA_WITHOUT_PROPERTIES_NULL, codec="deflate")
    assert json.loads(fastavro.reader(io.BytesIO(data)).metadata["avro.schema"]) == cf.SCHEMA_WITHOUT_PROPERTIES_NULL
    assert list(cf.iter_records(data)) == recs


def test_bad_codec_is_named() -> None:
    with pytest.raises(ConfigurationError, match="snappy"):
        cf.write_capture_file(None, [], codec="snappy")
