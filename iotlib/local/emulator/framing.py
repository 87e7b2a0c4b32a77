"""AMQP 1.0 frames and performatives as the emulator sends them.

Every performative is written with its complete field list, explicit nulls
included: the azure-eventhub client reads fields by index (``frame[9]``,
``frame[13]`` …) and fails on shortened lists. Field counts: open 10,
begin 8, attach 14, flow 11, transfer 11, disposition 6, detach 3, end 1,
close 1.
"""

from __future__ import annotations

import struct

from iotlib.local.emulator import codec as c

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"

FRAME_AMQP = 0x00
FRAME_SASL = 0x01

# Performative descriptors.
OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(0x40, 0x45)
ERROR = 0x1D
SOURCE, TARGET = 0x28, 0x29
RECEIVED, ACCEPTED, REJECTED, RELEASED, MODIFIED = range(0x23, 0x28)

FIELD_COUNTS = {OPEN: 10, BEGIN: 8, ATTACH: 14, FLOW: 11, TRANSFER: 11, DISPOSITION: 6, DETACH: 3, END: 1, CLOSE: 1}

# Link roles as the attach frame carries them.
ROLE_SENDER = False
ROLE_RECEIVER = True

MIN_MAX_FRAME_SIZE = 512

_HEADER = struct.Struct(">IBBH")


def frame(channel: int, body: bytes, frame_type: int = FRAME_AMQP) -> bytes:
    """One frame: 8-byte header (size, doff=2, type, channel) and body."""
    return _HEADER.pack(len(body) + 8, 2, frame_type, channel) + body


EMPTY_FRAME = _HEADER.pack(8, 2, FRAME_AMQP, 0)


def _perf(code: int, fields: list[bytes]) -> bytes:
    assert len(fields) == FIELD_COUNTS.get(code, len(fields)), (code, len(fields))
    return c.enc_described(code, c.enc_list(fields))


def error(condition: str, description: str | None = None) -> bytes:
    """An ``amqp:error`` value (condition symbol, description, no info)."""
    return c.enc_described(ERROR, c.enc_list([c.enc_symbol(condition), c.enc_string(description), c.NULL]))


def open_(container_id: str, max_frame_size: int, channel_max: int, idle_timeout_ms: int | None) -> bytes:
    return _perf(
        OPEN,
        [
            c.enc_string(container_id),
            c.NULL,  # hostname
            b"\x70" + struct.pack(">I", max_frame_size),  # always explicit
            c.enc_ushort(channel_max),
            c.NULL if idle_timeout_ms is None else b"\x70" + struct.pack(">I", idle_timeout_ms),
            c.NULL,
            c.NULL,
            c.NULL,
            c.NULL,
            c.NULL,
        ],
    )


def begin(
    remote_channel: int, next_outgoing_id: int, incoming_window: int, outgoing_window: int, handle_max: int
) -> bytes:
    return _perf(
        BEGIN,
        [
            c.enc_ushort(remote_channel),
            c.enc_uint(next_outgoing_id),
            c.enc_uint(incoming_window),
            c.enc_uint(outgoing_window),
            c.enc_uint(handle_max),
            c.NULL,
            c.NULL,
            c.NULL,
        ],
    )


def attach(
    *,
    name: str,
    handle: int,
    role: bool,
    snd_settle_mode: int,
    rcv_settle_mode: int,
    source: bytes,
    target: bytes,
    initial_delivery_count: int | None,
    max_message_size: int | None,
    offered_capabilities: list[str] | None = None,
    properties: bytes = c.NULL,
) -> bytes:
    return _perf(
        ATTACH,
        [
            c.enc_string(name),
            c.enc_uint(handle),
            c.enc_bool(role),
            c.enc_ubyte(snd_settle_mode),
            c.enc_ubyte(rcv_settle_mode),
            source,
            target,
            c.NULL,  # unsettled
            c.FALSE,  # incomplete-unsettled
            c.enc_uint(initial_delivery_count),
            c.enc_ulong(max_message_size),
            c.enc_symbol_array(offered_capabilities) if offered_capabilities else c.NULL,
            c.NULL,
            properties,
        ],
    )


def flow(
    *,
    next_incoming_id: int | None,
    incoming_window: int,
    next_outgoing_id: int,
    outgoing_window: int,
    handle: int | None = None,
    delivery_count: int | None = None,
    link_credit: int | None = None,
    available: int | None = None,
    drain: bool = False,
    echo: bool = False,
) -> bytes:
    return _perf(
        FLOW,
        [
            c.enc_uint(next_incoming_id),
            c.enc_uint(incoming_window),
            c.enc_uint(next_outgoing_id),
            c.enc_uint(outgoing_window),
            c.enc_uint(handle),
            c.enc_uint(delivery_count),
            c.enc_uint(link_credit),
            c.enc_uint(available),
            c.enc_bool(drain),
            c.enc_bool(echo),
            c.NULL,
        ],
    )


def transfer_head(
    handle: int, delivery_id: int | None, tag: bytes | None, message_format: int, settled: bool, more: bool
) -> bytes:
    """A transfer performative (the payload follows it in the same frame)."""
    return _perf(
        TRANSFER,
        [
            c.enc_uint(handle),
            c.enc_uint(delivery_id),
            c.enc_binary(tag),
            c.enc_uint(message_format),
            c.enc_bool(settled),
            c.enc_bool(more),
            c.NULL,
            c.NULL,
            c.NULL,
            c.NULL,
            c.NULL,
        ],
    )


# A single-frame, pre-settled transfer of a format-0 message, with fixed-width
# fields so that it is one struct.pack per event on the delivery path:
# frame header, described list of 11 fields (handle, delivery-id, tag as 4-byte
# binary, format 0, settled, not more, then five nulls).
_TRANSFER_FIXED = struct.Struct(">IBBH" + "3sBBB" + "BI" + "BI" + "2sI" + "8s")
_TRANSFER_TAIL = b"\x43\x41\x42\x40\x40\x40\x40\x40"
_TRANSFER_LIST_SIZE = 5 + 5 + 6 + len(_TRANSFER_TAIL)
TRANSFER_OVERHEAD = _TRANSFER_FIXED.size


def presettled_transfer(channel: int, handle: int, delivery_id: int, payload_len: int) -> bytes:
    """Frame header and transfer performative for a one-frame delivery of ``payload_len`` bytes."""
    return _TRANSFER_FIXED.pack(
        _TRANSFER_FIXED.size + payload_len,
        2,
        FRAME_AMQP,
        channel,
        b"\x00\x53\x14",
        0xC0,
        _TRANSFER_LIST_SIZE + 1,
        11,
        0x70,
        handle,
        0x70,
        delivery_id,
        b"\xa0\x04",
        delivery_id,
        _TRANSFER_TAIL,
    )


def disposition(*, role: bool, first: int, last: int | None, settled: bool, state: bytes) -> bytes:
    return _perf(
        DISPOSITION,
        [c.enc_bool(role), c.enc_uint(first), c.enc_uint(last), c.enc_bool(settled), state, c.NULL],
    )


ACCEPTED_STATE = c.enc_described(ACCEPTED, c.enc_list([]))  # list8, never list0


def rejected_state(condition: str, description: str) -> bytes:
    return c.enc_described(REJECTED, c.enc_list([error(condition, description)]))


def detach(handle: int, closed: bool, err: bytes = c.NULL) -> bytes:
    return _perf(DETACH, [c.enc_uint(handle), c.enc_bool(closed), err])


def end(err: bytes = c.NULL) -> bytes:
    return _perf(END, [err])


def close(err: bytes = c.NULL) -> bytes:
    return _perf(CLOSE, [err])


def sasl_mechanisms(mechanisms: list[str]) -> bytes:
    return c.enc_described(SASL_MECHANISMS, c.enc_list([c.enc_symbol_array(mechanisms)]))


def sasl_outcome(code: int) -> bytes:
    return c.enc_described(SASL_OUTCOME, c.enc_list([c.enc_ubyte(code), c.NULL]))
