"""The shared Capture format: schema, blob names, EnqueuedTimeUtc text, writer."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    # as Azure writes them today: the key when there is one, then the enqueued time (ms); no sequence number
    assert list(got[1]["SystemProperties"].items()) == [
        ("x-opt-partition-key", "d1"),
        ("x-opt-enqueued-time", 1709287200950),
    ]
    assert got[0]["SystemProperties"] == {"x-opt-enqueued-time": 1709287200250}
    assert got[1]["EnqueuedTimeUtc"] == "3/1/2024 10:00:00 AM"


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_empty_window_is_a_header_and_one_empty_block(codec: str) -> None:
    marker = cf.sync_marker_for("ns/hub/0/2024/03/01/10/00/00.avro")
    data = cf.write_capture_file(None, [], codec=codec, sync_marker=marker)
    assert data == cf.empty_capture_file(codec=codec, sync_marker=marker)
    assert list(fastavro.reader(io.BytesIO(data))) == []
    meta, sync, end = cf.read_header_meta(data)
    assert meta["avro.codec"] == codec.encode() and data[end:].endswith(sync)
    if codec == "null":
        assert (end, len(data)) == (490, 508)  # Azure's sizes


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


# --------------------------------------------------------------------------- real files written by Azure


def _real_files(folder: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(folder.glob("*.avro"))}
    assert len(files) == 6, f"expected the six real Capture files in {folder}"
    return files


def _blocks(data: bytes, start: int) -> list[tuple[int, bytes, bytes]]:
    """(record count, record bytes, the whole block) of each Avro block from ``start``."""
    out, pos = [], start
    while pos < len(data):
        count, p = cf._read_long(data, pos)
        size, p = cf._read_long(data, p)
        out.append((count, data[p : p + size], data[pos : p + size + 16]))
        pos = p + size + 16
    return out


def _schema_of(meta: dict[str, bytes]) -> dict:
    return cf.SCHEMA if json.loads(meta["avro.schema"]) == cf.SCHEMA else cf.SCHEMA_WITHOUT_PROPERTIES_NULL


def test_real_headers_are_byte_for_byte_what_iotlib_writes(real_capture_dir: Path) -> None:
    for name, data in _real_files(real_capture_dir).items():
        meta, sync, end = cf.read_header_meta(data)
        schema = _schema_of(meta)
        assert json.loads(meta["avro.schema"]) == schema, name  # one of the two variants iotlib knows
        assert cf.capture_header(codec=meta["avro.codec"].decode(), sync_marker=sync, schema=schema) == data[:end], name


def test_real_records_re_encode_to_their_bytes(real_capture_dir: Path) -> None:
    for name, data in _real_files(real_capture_dir).items():
        _, sync, end = cf.read_header_meta(data)
        records = iter(cf.iter_records(data))
        for count, raw, block in _blocks(data, end):
            recs = [next(records) for _ in range(count)]
            mine = b"".join(
                cf.encode_record(r["SequenceNumber"], r["Offset"], r["EnqueuedTimeUtc"], r["SystemProperties"],
                                 r["Properties"], r["Body"]) for r in recs
            )  # fmt: skip
            assert mine == raw, name
            assert cf.encode_block(mine, count, codec="null", sync_marker=sync) == block, name


def test_an_empty_window_is_the_file_azure_writes(real_capture_dir: Path) -> None:
    (data,) = [d for n, d in _real_files(real_capture_dir).items() if n.endswith("_empty.avro")]
    _, sync, _ = cf.read_header_meta(data)
    assert len(data) == 508
    assert cf.empty_capture_file(sync_marker=sync) == data
    assert cf.write_capture_file(None, [], sync_marker=sync) == data


def test_the_writer_records_a_received_event_as_azure_does_today(real_capture_dir: Path) -> None:
    """Events of the 2022 files, as the hub would deliver them, encode to those files' very bytes."""
    from azure.eventhub import EventData

    from iotlib.capture.records import RecordEncoder

    checked = 0
    for name, data in _real_files(real_capture_dir).items():
        _, _, end = cf.read_header_meta(data)
        recs = list(cf.iter_records(data))
        if not recs or "x-opt-enqueued-time" not in recs[0]["SystemProperties"]:
            continue  # older files: an empty map, or x-opt-publisher (publisher endpoints)
        encoder, encoded = RecordEncoder(), []
        for r in recs:
            sp = r["SystemProperties"]
            ev = EventData(r["Body"])
            annotations = {b"x-opt-sequence-number": r["SequenceNumber"], b"x-opt-offset": r["Offset"].encode(),
                           b"x-opt-enqueued-time": sp["x-opt-enqueued-time"]}  # fmt: skip
            if "x-opt-partition-key" in sp:
                annotations[b"x-opt-partition-key"] = sp["x-opt-partition-key"].encode()
            ev.raw_amqp_message.annotations = annotations
            ev.raw_amqp_message.application_properties = {k.encode(): v for k, v in r["Properties"].items()}
            encoded.append(encoder.encode(ev)[2])
        ((count, raw, _),) = _blocks(data, end)
        assert (count, b"".join(encoded)) == (len(recs), raw), name
        checked += 1
    assert checked == 2  # the two files of 2022


def test_the_cold_store_reads_every_real_file_and_iotlibs_own(real_capture_dir: Path, tmp_path: Path) -> None:
    from iotlib import coldstore

    fmt, expected = cf.PathFormat(), []
    for i, data in enumerate(_real_files(real_capture_dir).values()):
        blob = fmt.name("ns", "hub", str(i), datetime(2024, 1, 1, tzinfo=UTC))
        (tmp_path / blob).parent.mkdir(parents=True)
        (tmp_path / blob).write_bytes(data)
        expected += [(str(i), r["SequenceNumber"], r["Body"]) for r in cf.iter_records(data)]
    ours = fmt.name("ns", "hub", "9", datetime(2024, 1, 1, tzinfo=UTC))
    (tmp_path / ours).parent.mkdir(parents=True)
    (tmp_path / ours).write_bytes(cf.write_capture_file(None, _records(5)))  # keyed and unkeyed events
    expected += [("9", r["SequenceNumber"], r["Body"]) for r in _records(5)]
    df, report = coldstore.load(tmp_path, decode=None, dedupe=False, with_report=True)
    got = list(zip(df["partition_id"], df["sequence_number"], df["body"]))
    assert sorted(got) == sorted(expected) and report.skipped == []
    mine = df.filter(df["partition_id"] == "9").sort("sequence_number")
    assert mine["partition_key"].to_list() == [None, "d1", None, "d3", None]
    assert mine["enqueued_time"][1] == datetime(2024, 3, 1, 10, 0, 0, 950000, tzinfo=UTC)  # ms from SystemProperties
