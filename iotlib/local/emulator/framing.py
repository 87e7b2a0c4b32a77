"""AMQP 1.0 frames: protocol headers, the 8-byte frame header, and the delivery hot path.

Performatives themselves, with their field tables, are in
:mod:`~iotlib.local.emulator.performatives`; this module frames them, and
writes the one performative sent per event delivered (a pre-settled transfer)
with a single ``struct.pack``.
"""

from __future__ import annotations

import struct

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"

FRAME_AMQP = 0x00
FRAME_SASL = 0x01

# Link roles as the attach frame carries them.
ROLE_SENDER = False
ROLE_RECEIVER = True

MIN_MAX_FRAME_SIZE = 512

HEADER = struct.Struct(">IBBH")


def frame(channel: int, body: bytes, frame_type: int = FRAME_AMQP) -> bytes:
    """One frame: 8-byte header (size, doff=2, type, channel) and body."""
    return HEADER.pack(len(body) + 8, 2, frame_type, channel) + body


EMPTY_FRAME = HEADER.pack(8, 2, FRAME_AMQP, 0)


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
