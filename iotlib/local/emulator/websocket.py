"""AMQP over WebSockets, as Azure serves it at ``/$servicebus/websocket`` with subprotocol ``AMQPWSB10``.

Clients behind proxies use it (``transport_type=TransportType.AmqpOverWebsocket``;
azure-eventhub uses ``websocket-client`` when sync and ``aiohttp`` in ``.aio``).
Each port of the emulator tells the two apart by a connection's first bytes
(:class:`Door`): ``GET `` starts a WebSocket upgrade (RFC 6455), anything else
is AMQP. After the upgrade, the payload of binary messages is the AMQP byte
stream, handed to an ordinary :class:`~iotlib.local.emulator.connection.Connection`
through a transport that frames what it writes; pings are answered, a close is
echoed, and a broken handshake or frame gets an HTTP error or a WebSocket close code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
from collections.abc import Callable
from typing import Any, cast

_LOG = logging.getLogger("iotlib.local.emulator.websocket")

PATH = "/$servicebus/websocket"
SUBPROTOCOL = "AMQPWSB10"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_REQUEST_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL, PROTOCOL_ERROR, UNSUPPORTED_DATA, TOO_BIG = 1000, 1002, 1003, 1009

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.strip().encode() + _GUID).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + _U16.pack(n)
    else:
        head = bytes((0x80 | opcode, 127)) + _U64.pack(n)
    return head + payload


def unmask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (one big-integer operation, not a byte loop)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class _Refused(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WebSocketTransport(asyncio.Transport):
    """What the AMQP connection writes to: each write goes out as one binary message."""

    def __init__(self, socket: WebSocket, outer: asyncio.Transport) -> None:
        super().__init__()
        self._socket = socket
        self._outer = outer
        self._protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.is_closing():
            self._outer.write(frame(BINARY, bytes(data)))

    def is_closing(self) -> bool:
        return self._socket.closing or self._outer.is_closing()

    def close(self) -> None:
        self._socket.close(NORMAL, "")

    def abort(self) -> None:
        self._outer.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._outer.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._outer.get_write_buffer_size()

    def pause_reading(self) -> None:
        self._outer.pause_reading()

    def resume_reading(self) -> None:
        self._outer.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return cast(asyncio.BaseProtocol, self._protocol)  # set by WebSocket before the connection sees it


class WebSocket(asyncio.Protocol):
    """The server end of one WebSocket carrying AMQP: the upgrade, then the frames."""

    def __init__(self, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self.make_inner = make_inner
        self.transport: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None
        self.closing = False
        self._buf = bytearray()
        self._peer = "?"

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # stream servers only
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            if self.inner is None and not self._handshake():
                return
            payload = self._frames()
        except _Refused as exc:
            _LOG.info("refused a WebSocket upgrade from %s: %s", self._peer, exc.reason)
            body = exc.reason.encode()
            self._write_raw(
                f"HTTP/1.1 {exc.status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            self._close_outer()
            return
        except _Closing as exc:
            _LOG.info("closing the WebSocket from %s: %s (%d)", self._peer, exc.reason, exc.code)
            self.close(exc.code, exc.reason)
            return
        if payload and self.inner is not None:
            self.inner.data_received(payload)  # everything read at once: one group commit

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # --- the upgrade -----------------------------------------------------------------

    def _handshake(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_REQUEST_BYTES:
                raise _Refused("431 Request Header Fields Too Large", "the upgrade request is too large")
            return False
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
            raise _Refused("400 Bad Request", f"not an HTTP GET request: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        path = parts[1].split("?", 1)[0]
        if path != PATH:
            raise _Refused("404 Not Found", f"AMQP over WebSockets is served at {PATH}, not {path}")
        if "websocket" not in headers.get("upgrade", "").lower() or "upgrade" not in headers.get(
            "connection", ""
        ).lower().replace(" ", "").split(","):
            raise _Refused("426 Upgrade Required", "this path only accepts a WebSocket upgrade")
        if headers.get("sec-websocket-version") != "13":
            raise _Refused("426 Upgrade Required", "only WebSocket version 13 is supported")
        key = headers.get("sec-websocket-key", "")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            raise _Refused("400 Bad Request", "Sec-WebSocket-Key is not 16 bytes in base64") from None
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            raise _Refused("400 Bad Request", f"the client must offer the subprotocol {SUBPROTOCOL}")
        self._write_raw(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )
        adapter = WebSocketTransport(self, cast(asyncio.Transport, self.transport))
        self.inner = self.make_inner()
        adapter.set_protocol(self.inner)
        self.inner.connection_made(adapter)
        _LOG.debug("WebSocket from %s upgraded", self._peer)
        return True

    # --- frames ----------------------------------------------------------------------

    def _frames(self) -> bytes:
        """Decode every whole frame in the buffer; return the AMQP bytes they carried."""
        buf = self._buf
        out = bytearray()
        pos = 0
        while not self.closing:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = _U16.unpack_from(buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = _U64.unpack_from(buf, pos + 2)[0]
                head = 10
            if b0 & 0x70:
                raise _Closing(PROTOCOL_ERROR, "reserved bits set without an extension")
            if not masked:
                raise _Closing(PROTOCOL_ERROR, "a client frame must be masked")
            if n > MAX_MESSAGE_BYTES:
                raise _Closing(TOO_BIG, f"a frame of {n} bytes is larger than {MAX_MESSAGE_BYTES}")
            if opcode >= CLOSE and (n > 125 or not b0 & 0x80):
                raise _Closing(PROTOCOL_ERROR, "a control frame must be final and at most 125 bytes")
            if len(buf) - pos < head + 4 + n:
                break
            mask = bytes(buf[pos + head : pos + head + 4])
            start = pos + head + 4
            payload = unmask(memoryview(buf)[start : start + n], mask)
            pos = start + n
            if opcode in (BINARY, CONTINUATION):
                out += payload
            elif opcode == PING:
                self._write_raw(frame(PONG, payload))
            elif opcode == CLOSE:
                code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else NORMAL
                self.close(code if code in (NORMAL, 1001) else NORMAL, "")
            elif opcode == TEXT:
                raise _Closing(UNSUPPORTED_DATA, "AMQP travels in binary messages, not text")
            elif opcode != PONG:
                raise _Closing(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        del buf[:pos]
        return bytes(out)

    # --- writing and closing ---------------------------------------------------------

    def _write_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, code: int, reason: str) -> None:
        """Send a close frame (once) and close the socket."""
        if self.closing:
            return
        self.closing = True
        self._write_raw(frame(CLOSE, _U16.pack(code) + reason.encode()[:120]))
        self._close_outer()

    def _close_outer(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class Door(asyncio.Protocol):
    """A new connection on an emulator port: its first bytes say whether it speaks AMQP or WebSocket."""

    def __init__(self, make_amqp: Callable[[], asyncio.Protocol], undecided: set[asyncio.BaseTransport]) -> None:
        self.make_amqp = make_amqp
        self.undecided = undecided
        self.transport: asyncio.BaseTransport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.undecided.add(transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) < 4 and b"GET ".startswith(self._buf):
            return  # too early to tell
        if self.transport is None:
            return
        chosen: asyncio.Protocol = WebSocket(self.make_amqp) if self._buf.startswith(b"GET ") else self.make_amqp()
        self.undecided.discard(self.transport)
        self.transport.set_protocol(chosen)
        chosen.connection_made(self.transport)
        chosen.data_received(self._buf)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.undecided.discard(self.transport)
