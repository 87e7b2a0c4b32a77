"""The 1 MB limit, and bad peers that must not affect anyone else."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import EventDataSendError
from emulator_helpers import FAST, RawClient, event_message, receive

from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator import framing as f
from iotlib.local.emulator.auth import make_token
from iotlib.local.emulator.codec import decode

HUB = "telemetry"
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    config = EmulatorConfig(entities=(EntityConfig(HUB, 2),))
    with Emulator.start(data_dir=tmp_path_factory.mktemp("eventhubs"), port=0, config=config) as running:
        yield running


@pytest.fixture(scope="module")
def prod(emu):
    with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
        yield p


def _authorised_raw(emu) -> RawClient:
    raw = RawClient(emu.port)
    raw.handshake()
    token = make_token(
        f"sb://localhost:{emu.port}/{HUB}", "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(time.time()) + 300
    )
    assert raw.put_token(f"sb://localhost:{emu.port}/{HUB}", token) == 202
    return raw


def test_too_large_events_are_refused(prod):
    batch = prod.create_batch()
    assert batch.max_size_in_bytes == LIMIT  # the emulator's attach advertises Azure's limit
    with pytest.raises(ValueError, match="size limit"):
        batch.add(EventData(b"x" * (LIMIT + 1)))
    with pytest.raises(EventDataSendError) as err:
        prod.send_event(EventData(b"x" * (LIMIT + 100)), partition_id="0")
    assert "message-size-exceeded" in str(err.value).lower() or "MessageSizeExceeded" in str(err.value)


def test_event_just_under_the_limit_round_trips(emu, prod):
    start = prod.get_partition_properties("1")["last_enqueued_sequence_number"]
    batch = prod.create_batch(partition_id="1")
    body = os.urandom(LIMIT - 64)
    while True:  # the largest body the client's own size accounting accepts
        try:
            batch.add(EventData(body))
            break
        except ValueError:
            body = body[:-16]
    assert len(body) > LIMIT - 200
    prod.send_batch(batch)  # the emulator negotiates 64 KiB frames: the client splits this send
    got = receive(emu.connection_string, partition_id="1", count=1, starting_position=start)
    assert len(got) == 1 and got[0].body_as_str(encoding="latin-1").encode("latin-1") == body


def test_oversized_message_is_rejected_on_the_wire(emu):
    raw = _authorised_raw(emu)
    try:
        raw.attach_sender(HUB, handle=0)
        payload = event_message(b"y" * (LIMIT + 10))
        chunk = 60000
        for i in range(0, len(payload), chunk):
            raw.transfer(0, 0, payload[i : i + chunk], more=i + chunk < len(payload))
        _, fields, _ = raw.read_until(f.DISPOSITION)
        state = fields[4]
        assert state.descriptor == f.REJECTED
        assert state.value[0].value[0] == "amqp:link:message-size-exceeded"
        # The link and connection stay usable: a normal message is accepted next.
        raw.transfer(0, 1, event_message(b"fine"))
        _, fields, _ = raw.read_until(f.DISPOSITION)
        assert fields[4].descriptor == f.ACCEPTED
    finally:
        raw.close()


def test_undecodable_message_is_rejected_and_nothing_is_stored(emu, prod):
    before = prod.get_partition_properties("0")["last_enqueued_sequence_number"]
    raw = _authorised_raw(emu)
    try:
        raw.attach_sender(f"{HUB}/Partitions/0", handle=0)
        raw.transfer(0, 0, b"\x00\x53\x75\xb0\xff\xff\xff\xff")  # a data section claiming 4 GB
        _, fields, _ = raw.read_until(f.DISPOSITION)
        assert fields[4].descriptor == f.REJECTED
        assert fields[4].value[0].value[0] == "amqp:decode-error"
        raw.transfer(0, 1, b"\x00\x53\x75\xa0\x02ok", fmt=0x80013700)  # a batch of one event
        _, fields, _ = raw.read_until(f.DISPOSITION)
        assert fields[4].descriptor == f.REJECTED  # "ok" is not an encoded event
    finally:
        raw.close()
    assert prod.get_partition_properties("0")["last_enqueued_sequence_number"] == before


def _still_serves(emu, prod) -> None:
    start = prod.get_partition_properties("0")["last_enqueued_sequence_number"]
    prod.send_event(EventData(b"still here"), partition_id="0")
    got = receive(emu.connection_string, partition_id="0", count=1, starting_position=start)
    assert [e.body_as_str() for e in got] == ["still here"]


def test_bad_peers_do_not_affect_others(emu, prod):
    # A consumer that stays connected throughout must keep working.
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", emu.port), timeout=5)

    def read_all(sock: socket.socket) -> bytes:
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except OSError:
            return data

    # Garbage instead of a protocol header: answered with the header we speak, then closed.
    with connect() as s:
        s.sendall(os.urandom(64))
        assert read_all(s).startswith(f.SASL_HEADER)
    # A TLS header (a client that forgot UseDevelopmentEmulator): same.
    with connect() as s:
        s.sendall(f.TLS_HEADER)
        assert read_all(s) == f.SASL_HEADER
    # Garbage after a valid handshake: closed with a decode error.
    raw = RawClient(emu.port)
    raw.handshake()
    raw.send_raw(struct.pack(">IBBH", 20, 2, 0, 1) + b"\xff" * 12)
    _, close, _ = raw.read_until(f.CLOSE)
    assert close[0] is not None
    raw.close()
    # A frame larger than the negotiated max-frame-size: framing error.
    raw = RawClient(emu.port)
    raw.handshake()
    raw.send_raw(struct.pack(">IBBH", 10_000_000, 2, 0, 1))
    _, close, _ = raw.read_until(f.CLOSE)
    assert close[0].value[0] == "amqp:connection:framing-error"
    raw.close()
    # A client that vanishes in the middle of a multi-frame transfer.
    raw = _authorised_raw(emu)
    raw.attach_sender(f"{HUB}/Partitions/0", handle=0)
    raw.transfer(0, 0, event_message(b"z" * 50_000)[:30_000], more=True)
    raw.sock.shutdown(socket.SHUT_WR)  # half-closed, then gone
    raw.close()
    # A health probe: header, answer, leave.
    with connect() as s:
        s.sendall(f.SASL_HEADER)
        assert s.recv(8) == f.SASL_HEADER
    _still_serves(emu, prod)


def test_reader_quota_is_five_per_partition_and_group(emu):
    raw = _authorised_raw(emu)
    try:
        address = f"{HUB}/ConsumerGroups/$Default/Partitions/1"
        for handle in range(5):
            fields = raw.attach_receiver(address, handle=handle)
            assert fields[5] is not None
        fields = raw.attach_receiver(address, handle=5)
        assert fields[5] is None
        _, detach, _ = raw.read_until(f.DETACH)
        assert detach[2].value[0] == "amqp:resource-limit-exceeded"
    finally:
        raw.close()


def test_wire_details_the_client_depends_on(emu):
    """Full performative field lists, explicit max-frame-size, undescribed arrays."""
    raw = RawClient(emu.port)
    try:
        raw.send_raw(f.SASL_HEADER)
        assert raw.recv_exact(8) == f.SASL_HEADER
        _, code, fields, _ = raw.read_frame()
        assert code == f.SASL_MECHANISMS and "ANONYMOUS" in fields[0]
        raw.send_raw(f.frame(0, b"\x00\x53\x41\xc0\x0c\x03\xa3\x09ANONYMOUS\x40\x40", f.FRAME_SASL))
        raw.read_frame()
        raw.send_raw(f.AMQP_HEADER)
        raw.recv_exact(8)
        raw.send_raw(f.frame(0, f.open_("wire", 1 << 20, 100, None)))
        head = raw.recv_exact(8)
        size = struct.unpack(">I", head[:4])[0]
        body = raw.recv_exact(size - 8)
        assert body[:3] == b"\x00\x53\x10"
        fields, _ = decode(body, 3)
        assert len(fields) == 10 and fields[2] == 65536
    finally:
        raw.close()


def test_large_delivery_is_split_to_the_client_frame_size(emu, prod):
    from iotlib.local.emulator.message import decode_message

    start = prod.get_partition_properties("1")["last_enqueued_sequence_number"]
    body = os.urandom(20_000)
    prod.send_event(EventData(body), partition_id="1")
    raw = RawClient(emu.port)
    try:
        raw.handshake(max_frame_size=4096)
        token = make_token(
            f"sb://localhost:{emu.port}/{HUB}", "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(time.time()) + 300
        )
        assert raw.put_token(f"sb://localhost:{emu.port}/{HUB}", token) == 202
        from iotlib.local.emulator import codec as c

        selector = c.enc_described_symbol(
            "apache.org:selector-filter:string", c.enc_string(f"amqp.annotation.x-opt-sequence-number > '{start}'")
        )
        filters = c.enc_map([(c.enc_symbol("apache.org:selector-filter:string"), selector)])
        source = c.enc_described(
            f.SOURCE,
            c.enc_list(
                [c.enc_string(f"{HUB}/ConsumerGroups/$Default/Partitions/1")] + [c.NULL] * 6 + [filters] + [c.NULL] * 3
            ),
        )
        raw.send_raw(
            f.frame(
                1,
                f.attach(
                    name="big",
                    handle=0,
                    role=f.ROLE_RECEIVER,
                    snd_settle_mode=0,
                    rcv_settle_mode=0,
                    source=source,
                    target=c.NULL,
                    initial_delivery_count=None,
                    max_message_size=None,
                ),
            )
        )
        _, attached, _ = raw.read_until(f.ATTACH)
        assert attached[5] is not None, attached
        raw.send_raw(
            f.frame(
                1,
                f.flow(
                    next_incoming_id=0,
                    incoming_window=1000,
                    next_outgoing_id=0,
                    outgoing_window=1000,
                    handle=0,
                    delivery_count=0,
                    link_credit=1,
                ),
            )
        )
        frames, payload = 0, b""
        while True:
            channel, code, fields, rest = raw.read_frame()
            if code != f.TRANSFER or fields[0] != attached[1]:
                continue
            frames += 1
            payload += rest
            assert len(rest) < 4096 - 8
            if not fields[5]:
                break
    finally:
        raw.close()
    assert frames >= 5
    from iotlib.local.emulator.message import _section_at

    message = decode_message(payload)
    assert message.body == body
    code, vpos = _section_at(payload, 0)
    annotations, _ = decode(payload, vpos)
    assert annotations["x-opt-sequence-number"] == start + 1
