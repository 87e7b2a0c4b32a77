"""The 1 MB limit, and bad peers that must not affect anyone else."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import EventDataSendError
from emulator_helpers import FAST, RawClient, error_of, event_message, receive

from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator import framing as f
from iotlib.local.emulator import performatives as p
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
        state = raw.outcome()
        assert isinstance(state, p.Rejected)
        assert error_of(state).condition == "amqp:link:message-size-exceeded"
        # The link and connection stay usable: a normal message is accepted next.
        raw.transfer(0, 1, event_message(b"fine"))
        assert isinstance(raw.outcome(), p.Accepted)
    finally:
        raw.close()


def test_undecodable_message_is_rejected_and_nothing_is_stored(emu, prod):
    before = prod.get_partition_properties("0")["last_enqueued_sequence_number"]
    raw = _authorised_raw(emu)
    try:
        raw.attach_sender(f"{HUB}/Partitions/0", handle=0)
        raw.transfer(0, 0, b"\x00\x53\x75\xb0\xff\xff\xff\xff")  # a data section claiming 4 GB
        assert error_of(raw.outcome()).condition == "amqp:decode-error"
        raw.transfer(0, 1, b"\x00\x53\x75\xa0\x02ok", fmt=0x80013700)  # a batch of one event
        assert error_of(raw.outcome()).condition == "amqp:decode-error"  # "ok" is not an encoded event
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
    _, close, _ = raw.read_until(p.Close)
    assert error_of(close).condition == "amqp:decode-error"
    raw.close()
    # A frame larger than the negotiated max-frame-size: framing error.
    raw = RawClient(emu.port)
    raw.handshake()
    raw.send_raw(struct.pack(">IBBH", 10_000_000, 2, 0, 1))
    _, close, _ = raw.read_until(p.Close)
    assert error_of(close).condition == "amqp:connection:framing-error"
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
            assert raw.attach_receiver(address, handle=handle).source is not None
        assert raw.attach_receiver(address, handle=5).source is None
        _, detach, _ = raw.read_until(p.Detach)
        assert error_of(detach).condition == "amqp:resource-limit-exceeded"
    finally:
        raw.close()


def test_wire_details_the_client_depends_on(emu):
    """Full performative field lists, explicit max-frame-size, undescribed arrays."""
    raw = RawClient(emu.port)
    try:
        raw.send_raw(f.SASL_HEADER)
        assert raw.recv_exact(8) == f.SASL_HEADER
        _, mechanisms, _ = raw.read_frame()
        assert isinstance(mechanisms, p.SaslMechanisms) and "ANONYMOUS" in mechanisms.sasl_server_mechanisms
        raw.send_raw(f.frame(0, b"\x00\x53\x41\xc0\x0e\x03\xa3\x09ANONYMOUS\x40\x40", f.FRAME_SASL))
        raw.read_frame()
        raw.send_raw(f.AMQP_HEADER)
        raw.recv_exact(8)
        raw.send(p.Open(container_id="wire", max_frame_size=1 << 20, channel_max=100), channel=0)
        head = raw.recv_exact(8)
        size = struct.unpack(">I", head[:4])[0]
        body = raw.recv_exact(size - 8)
        assert body[:3] == b"\x00\x53\x10"
        fields, _ = decode(body, 3)
        assert len(fields) == 10 and fields[2] == 65536  # every field, max-frame-size explicit
    finally:
        raw.close()


def test_large_delivery_is_split_to_the_client_frame_size(emu, prod):
    from iotlib.local.emulator.message import _section_at, decode_request

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
        attached = raw.attach_receiver(
            f"{HUB}/ConsumerGroups/$Default/Partitions/1",
            handle=0,
            selector=f"amqp.annotation.x-opt-sequence-number > '{start}'",
        )
        assert attached.source is not None, attached
        raw.credit(0, 1)
        frames, payload = 0, b""
        while True:
            _, transfer, rest = raw.read_frame()
            if not isinstance(transfer, p.Transfer) or transfer.handle != attached.handle:
                continue
            frames += 1
            payload += rest
            assert len(rest) < 4096 - 8
            if not transfer.more:
                break
    finally:
        raw.close()
    assert frames >= 5
    message = decode_request(payload)
    assert message.body == body
    code, vpos = _section_at(payload, 0)
    annotations, _ = decode(payload, vpos)
    assert annotations["x-opt-sequence-number"] == start + 1
