"""The emulator's pieces on their own: config file, byte-level annotation splicing, log positions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotlib.errors import ConfigurationError
from iotlib.local.emulator import EmulatorConfig
from iotlib.local.emulator import codec as c
from iotlib.local.emulator import message as m
from iotlib.local.emulator.log import PartitionLog
from iotlib.local.emulator.position import PositionError, resolve_position

OFFICIAL = {
    "UserConfig": {
        "NamespaceConfig": [
            {
                "Type": "EventHub",
                "Name": "emulatorNs1",
                "Entities": [
                    {"Name": "eh1", "PartitionCount": "2", "ConsumerGroups": [{"Name": "cg1"}]},
                ],
            }
        ],
        "LoggingConfig": {"Type": "File"},
    }
}


def test_official_config_file_is_read_as_it_is(tmp_path):
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(OFFICIAL))
    cfg = EmulatorConfig.from_file(path)
    assert cfg.namespace == "emulatorNs1"
    (hub,) = cfg.entities
    assert (hub.name, hub.partition_count, hub.consumer_groups) == ("eh1", 2, ("$Default", "cg1"))
    assert cfg.keys[0].name == "RootManageSharedAccessKey"
    again = EmulatorConfig.from_dict(cfg.to_dict())
    assert again.entities == cfg.entities and again.keys == cfg.keys


def test_default_config_is_fabrikams():
    cfg = EmulatorConfig()
    (hub,) = cfg.entities
    assert (cfg.namespace, hub.name, hub.partition_count) == ("fabrikam", "telemetry", 8)
    assert hub.consumer_groups == ("$Default", "capture", "warm", "monitor")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"PartitionCount": "33"}, "1 to 32"),
        ({"ConsumerGroups": [{"Name": f"g{i}"} for i in range(20)]}, "at most 20"),
        ({"Name": "bad name!"}, "not valid"),
        ({"PartitionCount": "many"}, "must be a number"),
    ],
)
def test_config_limits_are_azures(change, message):
    raw = json.loads(json.dumps(OFFICIAL))
    raw["UserConfig"]["NamespaceConfig"][0]["Entities"][0].update(change)
    with pytest.raises(ConfigurationError, match=message):
        EmulatorConfig.from_dict(raw)


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        bad = tmp_path / "bad.json"
        bad.write_text("{")
        EmulatorConfig.from_file(bad)
    with pytest.raises(ConfigurationError, match="UserConfig"):
        EmulatorConfig.from_dict({})


def _section(code: int, value: bytes) -> bytes:
    return c.enc_described(code, value)


def _annotations(payload: bytes) -> dict:
    for_sections = {}
    pos = 0
    while pos < len(payload):
        code, vpos = m._section_at(payload, pos)
        value, pos = c.decode(payload, vpos)
        for_sections.setdefault(code, []).append(value)
    return for_sections


annotation_values = st.one_of(st.integers(-(2**31), 2**31 - 1).map(c.enc_int), st.text(max_size=300).map(c.enc_string))


@settings(max_examples=60, deadline=None)
@given(
    user=st.dictionaries(st.from_regex(r"x-opt-[a-z]{1,20}", fullmatch=True), annotation_values, max_size=12),
    header=st.booleans(),
    key=st.one_of(st.none(), st.text(min_size=1, max_size=300)),
    body=st.binary(max_size=600),
)
def test_splice_keeps_user_annotations_and_adds_the_services(user, header, key, body):
    sections = b""
    if header:
        sections += _section(m.HEADER, c.enc_list([c.TRUE, c.NULL, c.NULL, c.NULL, c.NULL]))
    if user:
        sections += _section(m.MESSAGE_ANNOTATIONS, c.enc_map([(c.enc_symbol(k), v) for k, v in user.items()]))
    sections += _section(m.APPLICATION_PROPERTIES, c.enc_map([(c.enc_string("p"), c.enc_int(1))]))
    sections += _section(m.DATA, c.enc_binary(body))
    event, layout, own_key = m.scan_event(sections)
    assert own_key is None and bytes(event) == sections
    stored_key = key.encode() if key else b""
    chunks = m.deliverable(
        memoryview(event), layout, seq=41, offset=9000, enqueued_ms=1_700_000_000_000, key=stored_key
    )
    out = b"".join(bytes(x) for x in chunks)
    parsed = _annotations(out)
    annotations = parsed[m.MESSAGE_ANNOTATIONS][0]
    assert annotations["x-opt-sequence-number"] == 41
    assert annotations["x-opt-offset"] == "9000"
    assert annotations["x-opt-enqueued-time"] == 1_700_000_000_000
    assert annotations.get("x-opt-partition-key") == (key or None)
    for k, v in user.items():
        assert annotations[k] == c.decode(v)[0]
    assert parsed[m.DATA] == [body]
    assert parsed[m.APPLICATION_PROPERTIES] == [{"p": 1}]
    assert (m.HEADER in parsed) == header


def test_forged_service_annotations_are_dropped_and_own_key_kept():
    ma = _section(
        m.MESSAGE_ANNOTATIONS,
        c.enc_map(
            [
                (c.enc_symbol("x-opt-sequence-number"), c.enc_long(7)),
                (c.enc_symbol("x-opt-partition-key"), c.enc_string("dev-1")),
                (c.enc_symbol("x-opt-offset"), c.enc_string("1")),
            ]
        ),
    )
    event, layout, own_key = m.scan_event(ma + _section(m.DATA, c.enc_binary(b"x")))
    assert own_key == "dev-1"
    chunks = m.deliverable(memoryview(event), layout, seq=3, offset=5, enqueued_ms=6, key=b"")
    out = b"".join(bytes(x) for x in chunks)
    annotations = _annotations(out)[m.MESSAGE_ANNOTATIONS][0]
    assert annotations == {
        "x-opt-sequence-number": 3,
        "x-opt-offset": "5",
        "x-opt-enqueued-time": 6,
        "x-opt-partition-key": "dev-1",
    }


def test_batch_key_reaches_events_without_their_own_and_delivery_annotations_merge():
    inner = _section(m.DELIVERY_ANNOTATIONS, c.enc_map([(c.enc_symbol("x-opt-mine"), c.enc_int(1))]))
    inner += _section(m.DATA, c.enc_binary(b"payload"))
    batch = _section(m.MESSAGE_ANNOTATIONS, c.enc_map([(c.enc_symbol("x-opt-partition-key"), c.enc_string("k"))]))
    batch += _section(m.DATA, c.enc_binary(inner)) * 2
    events, key = m.split_batch(batch)
    assert key == "k" and [bytes(e) for e in events] == [inner, inner]
    event, layout, own_key = m.scan_event(events[0])
    assert own_key is None and layout.flags == 1
    ours = {"last_enqueued_sequence_number": c.enc_long(10)}
    chunks = m.deliverable(memoryview(bytes(event)), layout, seq=1, offset=2, enqueued_ms=3, key=b"k")
    out = m.merge_delivery_annotations(chunks, ours)
    parsed = _annotations(out)
    assert parsed[m.DELIVERY_ANNOTATIONS] == [{"last_enqueued_sequence_number": 10, "x-opt-mine": 1}]
    assert parsed[m.MESSAGE_ANNOTATIONS][0]["x-opt-partition-key"] == "k"


def test_malformed_events_are_decode_errors():
    with pytest.raises(c.DecodeError):
        m.scan_event(b"")
    with pytest.raises(c.DecodeError):
        m.scan_event(b"\x00\x53\x75\xa0\x10short")
    with pytest.raises(c.DecodeError):
        m.split_batch(b"\x00\x53\x77\xa1\x02hi")  # a value body is not a batch


def _log_with(tmp_path, n: int) -> PartitionLog:
    log = PartitionLog(tmp_path, segment_bytes=4096)
    for i in range(n):
        body = _section(m.DATA, c.enc_binary(f"event-{i}".encode() * 5))
        _, layout, _ = m.scan_event(body)
        log.append([(body, layout, b"")], now_ms=1_000 + 10 * i)
        log.commit()
    return log


def test_log_positions_across_segments(tmp_path):
    log = _log_with(tmp_path, 300)
    assert len(log.segments) > 5
    assert (log.begin_seq, log.last_seq) == (0, 299)

    def first(cursor) -> int | None:
        got = log.read(cursor, 1)
        return got[0].seq if got else None

    assert first(resolve_position(log, None)) == 0
    assert first(resolve_position(log, "amqp.annotation.x-opt-offset > '-1'")) == 0
    assert first(resolve_position(log, "amqp.annotation.x-opt-offset > '@latest'")) is None
    assert first(resolve_position(log, "amqp.annotation.x-opt-sequence-number > '150'")) == 151
    assert first(resolve_position(log, "amqp.annotation.x-opt-sequence-number >= '150'")) == 150
    assert first(resolve_position(log, "amqp.annotation.x-opt-enqueued-time > '2000'")) == 101
    assert first(resolve_position(log, "amqp.annotation.x-opt-enqueued-time >= '2000'")) == 100
    # At the partition's first event (enqueued at 1000): exclusive skips it, inclusive keeps it.
    assert first(resolve_position(log, "amqp.annotation.x-opt-enqueued-time > '1000'")) == 1
    assert first(resolve_position(log, "amqp.annotation.x-opt-enqueued-time >= '1000'")) == 0
    assert first(resolve_position(log, "amqp.annotation.x-opt-enqueued-time > '999'")) == 0
    assert first(resolve_position(log, "amqp.annotation.x-opt-enqueued-time > '3990'")) is None
    records = log.read(log.locate_seq(200), 2)
    offset = records[0].offset
    assert first(resolve_position(log, f"amqp.annotation.x-opt-offset > '{offset}'")) == 201
    assert first(resolve_position(log, f"amqp.annotation.x-opt-offset >= '{offset}'")) == 200
    assert first(resolve_position(log, f"amqp.annotation.x-opt-offset > '{offset + 1}'")) == 201  # not a boundary
    assert first(resolve_position(log, "amqp.annotation.x-opt-sequence-number > '9999'")) is None
    with pytest.raises(PositionError):
        resolve_position(log, "amqp.annotation.x-opt-offset > 'soon'")
    with pytest.raises(PositionError):
        resolve_position(log, "DROP TABLE")
    # Reading everything walks every segment in order.
    cursor = log.begin_cursor()
    seqs = []
    while True:
        batch = log.read(cursor, 64)
        if not batch:
            break
        seqs.extend(r.seq for r in batch)
    assert seqs == list(range(300))
    log.close()
    reopened = PartitionLog(tmp_path, segment_bytes=4096)
    assert (reopened.last_seq, reopened.last_offset) == (299, log.last_offset)
    assert first(resolve_position(reopened, "amqp.annotation.x-opt-sequence-number >= '3'")) == 3
    reopened.close()
