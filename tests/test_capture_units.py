"""Capture writer pieces that need no stack: options, windows, record encoding, blob metadata, error kinds."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import fastavro
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ServiceRequestError
from azure.eventhub import EventData
from hypothesis import given, settings
from hypothesis import strategies as st

from iotlib.capture import CaptureOptions, parse_size
from iotlib.capture import format as cf
from iotlib.capture.aio import namespace_from
from iotlib.capture.files import ExistingFile, block_id
from iotlib.capture.records import RecordEncoder
from iotlib.capture.report import CaptureFile
from iotlib.capture.storage import CONFLICT, HARD, TRANSIENT, classify
from iotlib.capture.windows import Window
from iotlib.connections import EventHubConnection
from iotlib.errors import ConfigurationError

UTC = UTC


def opts(**kw: object) -> CaptureOptions:
    return CaptureOptions.create(eventhub_name="telemetry", default_namespace="fabrikam", **kw)  # type: ignore[arg-type]


def test_defaults_are_azures() -> None:
    o = opts()
    assert (o.time_window, o.size_window, o.codec, o.skip_empty_archives) == (300, 314_572_800, "null", True)
    assert (o.breaker_warn, o.breaker_trip, o.breaker_stall) == (200, 400, 30.0)
    assert o.path_format.format == cf.DEFAULT_PATH_FORMAT
    assert o.notes() == []


def test_sizes_and_durations_in_friendly_forms() -> None:
    assert parse_size("300MB") == 314_572_800  # Azure's portal: MB means MiB
    assert parse_size("64 KiB") == 65_536
    assert parse_size(1000) == 1000
    o = opts(time_window="2m", size_window="10MB", grace="500ms")
    assert (o.time_window, o.size_window, o.grace) == (120, 10 * 1024**2, 0.5)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"time_window": 901}, "at most 900"),
        ({"time_window": 1.5}, "whole seconds"),
        ({"size_window": "600MB"}, "at most 524,288,000"),
        ({"size_window": "12 parsecs"}, "not a size"),
        ({"codec": "snappy"}, "'null'"),
        ({"breaker_warn": 400, "breaker_trip": 200}, "warn < trip"),
        ({"container": "Capture_Files"}, "not a valid Blob container name"),
        ({"container": "same", "checkpoint_container": "same"}, "must differ"),
        ({"path_format": "{Namespace}/{EventHub}/{Year}/{Month}/{Day}"}, "missing"),
        ({"ownership_expiry": 5, "load_balancing_interval": 10}, "longer than load_balancing_interval"),
        ({"windows": 3}, "unknown capture option"),
    ],
)
def test_bad_options_get_clear_errors(kw: dict, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        opts(**kw)


def test_small_windows_are_accepted_but_noted() -> None:
    o = opts(time_window=2, size_window="4KB")
    assert len(o.notes()) == 2 and "below Azure's minimum" in o.notes()[0]


def test_windows_lie_on_a_grid_of_enqueued_time() -> None:
    t = datetime(2017, 8, 31, 19, 12, 14, 674000, tzinfo=UTC)
    ms = int(t.timestamp() * 1000)
    w = Window.of(ms, 300)
    assert w.start_time == datetime(2017, 8, 31, 19, 10, tzinfo=UTC)
    assert w.end_time == datetime(2017, 8, 31, 19, 15, tzinfo=UTC)
    assert Window.of(ms, 60).start_time == datetime(2017, 8, 31, 19, 12, tzinfo=UTC)
    assert Window.of(w.end * 1000 - 1, 300) == w and Window.of(w.end * 1000, 300) == w.next()


def test_block_ids_have_one_length() -> None:
    assert len(block_id("0a1b2c3d", 0)) == len(block_id("ffffffff", 99_999_999)) == 16


records = st.fixed_dictionaries(
    {
        "SequenceNumber": st.integers(0, 2**62),
        "Offset": st.integers(0, 2**40).map(str),
        "EnqueuedTimeUtc": st.just("12/8/2017 3:03:17 AM"),
        "SystemProperties": st.dictionaries(
            st.text(max_size=12),
            st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(), st.binary()),
            max_size=4,
        ),
        "Properties": st.dictionaries(
            st.text(max_size=12),
            st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(), st.binary(), st.none()),
            max_size=4,
        ),
        "Body": st.one_of(st.none(), st.binary(max_size=300)),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(records, max_size=20), st.sampled_from(["null", "deflate"]))
def test_hand_written_encoder_reads_back_with_fastavro(recs: list[dict], codec: str) -> None:
    marker = cf.sync_marker_for("ns/hub/0/2017/12/08/03/00/00.avro")
    data = b"".join(cf.encode_record(**_args(r)) for r in recs)
    blob = cf.capture_header(codec=codec, sync_marker=marker) + cf.encode_block(
        data, len(recs), codec=codec, sync_marker=marker
    )  # no records: one empty block, Azure's empty-window file
    back = list(fastavro.reader(io.BytesIO(blob)))
    assert back == recs
    if codec == "null":  # and the very bytes fastavro writes
        assert blob == cf.write_capture_file(
            None, recs, codec=codec, sync_marker=marker, block_records=max(1, len(recs))
        )


def _args(r: dict) -> dict:
    return {
        "sequence_number": r["SequenceNumber"], "offset": r["Offset"], "enqueued_time_utc": r["EnqueuedTimeUtc"],
        "system_properties": r["SystemProperties"], "properties": r["Properties"], "body": r["Body"],
    }  # fmt: skip


def _received(body: bytes, annotations: dict, properties: dict | None) -> EventData:
    ev = EventData(body)
    ev.raw_amqp_message.annotations = annotations
    ev.raw_amqp_message.application_properties = properties
    return ev


def test_received_event_becomes_the_record_azure_writes() -> None:
    ms = int(datetime(2017, 12, 8, 15, 3, 17, 999000, tzinfo=UTC).timestamp() * 1000)
    ev = _received(
        b'{"DeviceId":"d1"}',
        {b"x-opt-sequence-number": 42, b"x-opt-offset": b"8400", b"x-opt-enqueued-time": ms,
         b"x-opt-partition-key": b"d1", b"my-annotation": True},
        {b"DeviceId": b"d1", b"EventType": b"UpdateTemperatureEvent", b"Count": 3, b"Ratio": 0.5, b"Raw": b"\xff\x00",
         b"Missing": None},
    )  # fmt: skip
    seq, got_ms, data = RecordEncoder().encode(ev)
    assert (seq, got_ms) == (42, ms)
    marker = cf.sync_marker_for("x")
    (rec,) = fastavro.reader(
        io.BytesIO(cf.capture_header(sync_marker=marker) + cf.encode_block(data, 1, codec="null", sync_marker=marker))
    )
    assert rec == {
        "SequenceNumber": 42,
        "Offset": "8400",
        "EnqueuedTimeUtc": "12/8/2017 3:03:17 PM",
        "SystemProperties": {"x-opt-partition-key": "d1", "x-opt-enqueued-time": ms, "my-annotation": "True"},
        "Properties": {"DeviceId": "d1", "EventType": "UpdateTemperatureEvent", "Count": 3, "Ratio": 0.5,
                       "Raw": b"\xff\x00", "Missing": None},
        "Body": b'{"DeviceId":"d1"}',
    }  # fmt: skip


def test_event_without_partition_key_has_no_key_in_system_properties() -> None:
    ev = _received(b"x", {b"x-opt-sequence-number": 0, b"x-opt-offset": b"0", b"x-opt-enqueued-time": 0}, None)
    _, _, data = RecordEncoder().encode(ev)
    marker = cf.sync_marker_for("x")
    (rec,) = fastavro.reader(
        io.BytesIO(cf.capture_header(sync_marker=marker) + cf.encode_block(data, 1, codec="null", sync_marker=marker))
    )
    assert rec["SystemProperties"] == {"x-opt-enqueued-time": 0} and rec["Properties"] == {}


def test_blob_metadata_round_trips_the_capture_file_created_fields() -> None:
    t0 = datetime(2017, 8, 31, 19, 12, 14, 674000, tzinfo=UTC)
    t1 = datetime(2017, 8, 31, 19, 12, 44, 309000, tzinfo=UTC)
    row = CaptureFile("https://x/c/ns/hub/1/2017/08/31/19/11/45.avro", "ns/hub/1/2017/08/31/19/11/45.avro", "1", 25_000,
                      170, 100, 269, t0, t1, datetime(2017, 8, 31, 19, 11, 45, tzinfo=UTC), "window", writer="0a1b2c3d")  # fmt: skip
    event = row.to_event_data()
    assert set(event) == {"fileUrl", "partitionId", "sizeInBytes", "eventCount", "firstSequenceNumber",
                          "lastSequenceNumber", "firstEnqueueTime", "lastEnqueueTime"}  # fmt: skip
    assert event["firstEnqueueTime"] == "2017-08-31T19:12:14.674000Z"
    back = ExistingFile.from_properties(row.name, '"etag"', 25_000, {k.lower(): v for k, v in row.metadata().items()})
    assert (back.first_seq, back.last_seq, back.count) == (100, 269, 170) and back.known
    assert back.contains(100) and back.contains(269) and not back.contains(270)
    assert back.first_ms == int(t0.timestamp() * 1000)
    # metadata that does not add up is not trusted
    bad = ExistingFile.from_properties(
        "n", "e", 1, {"firstSequenceNumber": "1", "lastSequenceNumber": "9", "eventCount": "3"}
    )
    assert not bad.known and not bad.contains(5)
    # a partition's first file may hold event 0 alone: a replay must see it as stored
    first = ExistingFile.from_properties(
        "n", "e", 1, {"firstsequencenumber": "0", "lastsequencenumber": "0", "eventcount": "1"}
    )
    assert first.known and first.contains(0) and not first.contains(1)


def test_namespace_comes_from_the_host() -> None:
    azure = "Endpoint=sb://contoso-iot.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"
    assert namespace_from(EventHubConnection.parse(azure, eventhub_name="h")) == "contoso-iot"
    local = "Endpoint=sb://localhost:5673;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true;"
    assert namespace_from(EventHubConnection.parse(local, eventhub_name="h")) == "fabrikam"


def test_storage_failures_are_classified() -> None:
    assert classify(ServiceRequestError("connection refused"))[0] == TRANSIENT
    assert classify(ResourceExistsError("exists"))[0] == CONFLICT
    assert classify(ClientAuthenticationError("bad key"))[0] == HARD
    err = HttpResponseError("boom")
    err.status_code = 503
    assert classify(err)[0] == TRANSIENT
