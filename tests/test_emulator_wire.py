"""The emulator's wire format against the SDK's own codec, and malformed AMQP against the emulator.

Real client sessions are recorded through a proxy (the azure-eventhub client sending batches,
annotated messages, management calls and a consumer with a starting position). The SDK's decoder
(pyamqp) is the oracle for what our performatives encode; the recorded bytes, mutated with a seeded
generator, feed a bounded fuzz of our codec, framing and message decoders and of a running emulator.
"""

from __future__ import annotations

import logging
import random
import socket
import struct
import time
import uuid
from typing import Any

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub._pyamqp._decode import decode_frame
from azure.eventhub._pyamqp.performatives import (
    AttachFrame,
    BeginFrame,
    CloseFrame,
    DetachFrame,
    DispositionFrame,
    EndFrame,
    FlowFrame,
    OpenFrame,
    SASLInit,
    SASLMechanism,
    SASLOutcome,
    TransferFrame,
)
from azure.eventhub.amqp import AmqpAnnotatedMessage, AmqpMessageProperties
from emulator_helpers import FAST, RawClient, RecordingProxy, error_of, event_message, receive, split_frames

from iotlib.connections import eventhub_connection_string
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator import codec as c
from iotlib.local.emulator import framing as f
from iotlib.local.emulator import message as m
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.auth import make_token
from iotlib.local.emulator.codec import DecodeError, Described, Symbol

HUB = "telemetry"
SELECTOR = Symbol("apache.org:selector-filter:string")
SDK_FRAMES = {
    p.Open: OpenFrame,
    p.Begin: BeginFrame,
    p.Attach: AttachFrame,
    p.Flow: FlowFrame,
    p.Transfer: TransferFrame,
    p.Disposition: DispositionFrame,
    p.Detach: DetachFrame,
    p.End: EndFrame,
    p.Close: CloseFrame,
    p.SaslMechanisms: SASLMechanism,
    p.SaslInit: SASLInit,
    p.SaslOutcome: SASLOutcome,
}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    config = EmulatorConfig(entities=(EntityConfig(HUB, 2),))
    with Emulator.start(data_dir=tmp_path_factory.mktemp("eventhubs"), port=0, config=config) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(emu) -> list[bytes]:
    """Client→emulator bytes of real SDK sessions: producer, management, consumer."""
    proxy = RecordingProxy(emu.port)
    through = eventhub_connection_string("localhost", proxy.port)
    try:
        with EventHubProducerClient.from_connection_string(through, eventhub_name=HUB, **FAST) as producer:
            producer.get_eventhub_properties()
            producer.get_partition_properties("0")
            batch = producer.create_batch(partition_key="device-7")
            for i in range(20):
                event = EventData(f'{{"DeviceId": "device-7", "Temperature": {20 + i / 10}}}')
                event.properties = {"kind": "reading", "n": i}
                batch.add(event)
            producer.send_batch(batch)
            producer.send_event(
                AmqpAnnotatedMessage(
                    value_body={"t": 21.5, "ok": True},
                    annotations={"x-opt-mine": 1},
                    application_properties={"a": "b"},
                    properties=AmqpMessageProperties(message_id="m-1", subject="s", content_type="application/json"),
                ),
                partition_id="0",
            )
            producer.send_event(AmqpAnnotatedMessage(sequence_body=[[1, "two", 3.0]]), partition_id="1")
            producer.send_event(AmqpAnnotatedMessage(data_body=[b"a", b"b", b"c"]), partition_id="1")
        got = receive(
            through,
            partition_id="1",
            count=2,
            starting_position=0,
            inclusive=True,
            track_last_enqueued_event_properties=True,
        )
        assert len(got) == 2
    finally:
        proxy.close()
    recorded = [bytes(s) for s in proxy.sessions if s]
    assert len(recorded) >= 2
    return recorded


def _frames(sessions: list[bytes]) -> list[tuple[int, bytes]]:
    return [(ftype, body) for stream in sessions for _, ftype, _, body in split_frames(stream) if body]


def _norm(value: Any) -> Any:
    """A decoded value in the SDK decoder's shape: bytes for text, descriptors dropped, lists for lists."""
    if isinstance(value, p.DescribedList):
        return [_norm(getattr(value, name)) for name, _, _ in value.WIRE]
    if isinstance(value, Described):
        return _norm(value.value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {_norm(k): _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, uuid.UUID):
        return value
    return value


# --- the SDK's codec as an oracle -----------------------------------------------------------------


def test_field_tables_name_the_fields_as_the_sdk_does():
    for ours, theirs in SDK_FRAMES.items():
        names = [name for name, _, _ in ours.WIRE]
        expected = [n for n in theirs._fields if n != "payload"]
        assert names == expected, ours.__name__
        assert ours.CODE == theirs._code  # type: ignore[attr-defined]


def _samples() -> list[p.DescribedList]:
    source = p.Source(
        address="telemetry/ConsumerGroups/$Default/Partitions/1",
        filters={SELECTOR: Described(SELECTOR, "amqp.annotation.x-opt-offset > '-1'")},
        outcomes=["amqp:accepted:list"],
    )
    error = p.AmqpError("amqp:link:stolen", "a newer receiver took the partition", {Symbol("k"): "v"})
    return [
        p.Open(container_id="c", hostname="localhost", max_frame_size=65536, channel_max=4095, idle_timeout=120000),
        p.Begin(remote_channel=1, next_outgoing_id=0, incoming_window=5000, outgoing_window=5000, handle_max=1023),
        p.Attach(
            name="link",
            handle=7,
            role=True,
            send_settle_mode=1,
            rcv_settle_mode=0,
            source=source,
            target=p.Target(address="telemetry"),
            incomplete_unsettled=False,
            initial_delivery_count=0,
            max_message_size=1 << 20,
            offered_capabilities=["com.microsoft:enable-receiver-runtime-metric"],
            properties={Symbol("com.microsoft:epoch"): 3},
        ),
        p.Flow(
            next_incoming_id=3,
            incoming_window=100,
            next_outgoing_id=4,
            outgoing_window=100,
            handle=7,
            delivery_count=9,
            link_credit=300,
            drain=False,
            echo=True,
        ),
        p.Transfer(handle=7, delivery_id=12, delivery_tag=b"\x00\x00\x00\x0c", message_format=0, settled=True),
        p.Disposition(role=True, first=3, last=9, settled=True, state=p.Accepted()),
        p.Disposition(role=True, first=3, settled=True, state=p.Rejected(error)),
        p.Detach(handle=7, closed=True, error=error),
        p.End(error=error),
        p.Close(),
        p.SaslMechanisms(["ANONYMOUS", "PLAIN"]),
        p.SaslInit("PLAIN", b"\x00user\x00secret", "localhost"),
        p.SaslOutcome(code=0),
    ]


@pytest.mark.parametrize("ours", _samples(), ids=lambda x: type(x).__name__)
def test_what_we_encode_the_sdk_decodes_field_by_field(ours):
    code, fields = decode_frame(memoryview(ours.encode()))
    if code == 0x14:
        fields = fields[:-1]  # the SDK appends the transfer's payload
    assert code == ours.CODE and len(fields) == len(ours.WIRE)  # every field, explicit nulls included
    theirs = [_norm(x) for x in fields]
    mine = _norm(ours)
    for (name, _, _), want, got in zip(ours.WIRE, mine, theirs):
        if name == "state" and want is not None:  # outcomes: the SDK keeps the descriptor
            continue
        assert got == want, (type(ours).__name__, name)
    # Our own decoder reads back what we wrote.
    again, _ = p.decode_performative(ours.encode())
    assert again == ours


def test_every_frame_a_real_client_sends_decodes_as_the_sdk_reads_it(sessions):
    seen = set()
    for _, body in _frames(sessions):
        ours, end = p.decode_performative(body)
        seen.add(type(ours))
        code, fields = decode_frame(memoryview(body))
        if code == 0x14:
            assert bytes(fields[-1]) == body[end:]  # the same payload boundary
            fields = fields[:-1]
        theirs = [_norm(x) for x in fields]
        mine = _norm(ours)[: len(theirs)]
        for (name, _, _), want, got in zip(ours.WIRE, mine, theirs):
            assert got == want, (type(ours).__name__, name)
    assert {p.SaslInit, p.Open, p.Begin, p.Attach, p.Flow, p.Transfer, p.Detach} <= seen


# --- malformed AMQP never raises anything but DecodeError ---------------------------------------

INTERESTING = (0x00, 0xFF, 0x40, 0x45, 0x53, 0x80, 0xA0, 0xA1, 0xA3, 0xB0, 0xC0, 0xC1, 0xD0, 0xD1, 0xE0, 0xF0)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation: bit flips, interesting bytes, truncation, insertion, deletion or duplication."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not buf:
            buf += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(len(buf))
        how = rng.randrange(7)
        if how == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            buf[i] = rng.choice(INTERESTING)
        elif how == 2:
            del buf[i:]
        elif how == 3:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif how == 4:
            del buf[i : i + rng.randint(1, 16)]
        elif how == 5:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j : j + rng.randint(1, 32)]
        else:
            buf[i : i + 4] = struct.pack(">I", rng.choice((0, 1, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF)))[: len(buf) - i]
    return bytes(buf)


def _payloads(sessions: list[bytes]) -> list[bytes]:
    """Every message a client sent, and every event inside its batches."""
    out = []
    for _, body in _frames(sessions):
        performative, end = p.decode_performative(body)
        if isinstance(performative, p.Transfer) and body[end:]:
            out.append(body[end:])
            if performative.message_format == m.BATCH_FORMAT:
                out.extend(bytes(event) for event in m.split_batch(body[end:])[0])
    return out


def _only_decode_errors(what: str, call: Any, data: bytes) -> None:
    try:
        call(data)
    except DecodeError:
        pass
    except Exception as exc:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{what} raised {type(exc).__name__}: {exc} on {data.hex()}") from exc


def test_known_crashers_are_decode_errors():
    with pytest.raises(DecodeError):
        m.decode_request(b"\x00")
    with pytest.raises(DecodeError):
        c.decode_list(b"\xc0", 0)
    with pytest.raises(DecodeError):
        c.decode(b"\x00" * 5000)  # descriptors nested past any real message
    with pytest.raises(DecodeError):
        c.decode(b"\xf0\x00\x00\x00\x05\xff\xff\xff\xff\x40")  # 4 billion nulls in five bytes
    with pytest.raises(DecodeError, match="handle must be a uint"):
        p.decode_performative(c.enc_described(0x14, c.enc_list([c.enc_string("x")])))
    with pytest.raises(DecodeError, match="mandatory"):
        p.decode_performative(c.enc_described(0x12, c.enc_list([c.enc_string("name")])))


def _store_and_deliver(data: bytes) -> None:
    """What ingest accepts, delivery must turn into a message the SDK can read (never an error)."""
    event, layout, _ = m.scan_event(data)  # a DecodeError here is a refusal: fine
    metrics = {"last_enqueued_sequence_number": c.enc_long(5)}
    chunks = m.deliverable(
        memoryview(bytes(event)), layout, seq=5, offset=10, enqueued_ms=1, key=b"k", delivery_annotations=b""
    )
    delivered = m.merge_delivery_annotations(chunks, metrics) if layout.flags else b"".join(map(bytes, chunks))
    try:
        m.scan_event(delivered)
    except DecodeError as exc:
        raise AssertionError(f"an accepted event was delivered malformed: {data.hex()}") from exc


def test_seeded_fuzz_of_codec_framing_and_messages(sessions):
    rng = random.Random(20240613)
    frames = [body for _, body in _frames(sessions)]
    payloads = _payloads(sessions)
    assert frames and payloads
    decoders = [
        ("decode_performative", p.decode_performative, frames),
        ("codec.decode", lambda b: c.decode(b, 0), frames),
        ("codec.skip", lambda b: c.skip(b, 0), frames),
        ("scan_event", m.scan_event, payloads),
        ("split_batch", m.split_batch, payloads),
        ("decode_request", m.decode_request, payloads),
        ("store and deliver", _store_and_deliver, payloads),
    ]
    started = time.monotonic()
    for what, call, corpus in decoders:
        for _ in range(2500):
            _only_decode_errors(what, call, mutate(rng.choice(corpus), rng))
        for _ in range(200):
            _only_decode_errors(what, call, bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))
    assert time.monotonic() - started < 60  # bounded: a few seconds on a quiet machine


# --- a running emulator meets malformed AMQP ------------------------------------------------------


def _authorised_raw(emu) -> RawClient:
    raw = RawClient(emu.port)
    raw.handshake()
    audience = f"sb://localhost:{emu.port}/{HUB}"
    assert raw.put_token(audience, make_token(audience, "RootManageSharedAccessKey", "SAS_KEY_VALUE", 2**31)) == 202
    return raw


def test_a_malformed_transfer_is_rejected_alone(emu, sessions):
    rng = random.Random(7)
    payloads = [x for x in _payloads(sessions) if len(x) > 40]
    raw = _authorised_raw(emu)
    try:
        raw.attach_sender(f"{HUB}/Partitions/0", handle=0)
        delivery = 0
        for bad in (b"\x00", b"\x00\x53\x75\xa0\xff", *(mutate(rng.choice(payloads), rng) for _ in range(30))):
            raw.transfer(0, delivery, bad)
            state = raw.outcome()
            delivery += 1
            if isinstance(state, p.Rejected):
                assert error_of(state).condition == "amqp:decode-error"
            else:
                assert isinstance(state, p.Accepted)  # some mutations are still well-formed messages
        raw.transfer(0, delivery, event_message(b"after the bad ones"))
        assert isinstance(raw.outcome(), p.Accepted)
        # A malformed $management request is rejected too, and the node keeps answering.
        raw.attach_sender("$management", handle=1)
        raw.transfer(1, delivery + 1, b"\x00\x53\x73\xc0\xff")
        assert error_of(raw.outcome()).condition == "amqp:decode-error"
    finally:
        raw.close()


def test_a_malformed_frame_closes_that_connection_with_a_decode_error(emu):
    raw = _authorised_raw(emu)
    try:
        raw.send_raw(f.frame(1, c.enc_described(0x14, c.enc_list([c.enc_string("not a handle")]))))
        _, close, _ = raw.read_until(p.Close)
        error = error_of(close)
        assert error.condition == "amqp:decode-error" and "handle" in (error.description or "")
    finally:
        raw.close()


def _replay(port: int, data: bytes) -> None:
    """Send a (mutated) client session, then read until the emulator closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # reset by the emulator: it closed


def _mutated_session(stream: bytes, rng: random.Random) -> bytes:
    """Mutate one frame body and re-frame it (so the damage reaches the decoders), or the raw bytes."""
    if rng.random() < 0.3:
        return mutate(stream, rng)
    items = split_frames(stream)
    bodies = [i for i, (_, ftype, _, body) in enumerate(items) if body]
    k = rng.choice(bodies)
    out = []
    for i, (header, ftype, channel, body) in enumerate(items):
        if header:
            out.append(header)
        else:
            out.append(f.frame(channel, mutate(body, rng) if i == k else body, ftype))
    return b"".join(out)


def test_fuzzed_sessions_never_take_the_emulator_down(emu, sessions, caplog):
    rng = random.Random(1337)
    with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as kept:
        kept.send_event(EventData(b"before"), partition_id="1")  # a connection that stays open throughout
        with caplog.at_level(logging.WARNING):
            for _ in range(150):
                _replay(emu.port, _mutated_session(rng.choice(sessions), rng))
        failures = [
            r
            for r in caplog.records
            if (r.name.startswith("iotlib.local.emulator") or r.name == "asyncio")
            and (r.exc_info or r.levelno >= logging.ERROR or "internal error" in r.getMessage())
        ]
        assert not failures, failures[0].getMessage()
        start = kept.get_partition_properties("1")["last_enqueued_sequence_number"]
        kept.send_event(EventData(b"after"), partition_id="1")
    got = receive(emu.connection_string, partition_id="1", count=1, starting_position=start)
    assert [e.body_as_str() for e in got] == ["after"]
