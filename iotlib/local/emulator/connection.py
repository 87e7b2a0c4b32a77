"""One client connection: protocol headers, SASL, frames, open/close, sessions.

The byte stream goes: SASL header → ``sasl-mechanisms`` (ANONYMOUS, PLAIN,
EXTERNAL; authentication happens later on ``$cbs``) → ``sasl-init`` →
``sasl-outcome`` ok → AMQP header → ``open`` … A bad peer (wrong header,
garbage, a frame larger than negotiated, a half-closed socket) is answered
with an AMQP error where the protocol allows and closed; it never affects
other connections or the log. A health probe that sends the SASL header and
leaves is answered and forgotten without a log line above DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import TYPE_CHECKING, Any, cast

from iotlib.local.emulator import codec as c
from iotlib.local.emulator import framing as f
from iotlib.local.emulator.auth import Grant
from iotlib.local.emulator.codec import DecodeError
from iotlib.local.emulator.session import Session

if TYPE_CHECKING:
    from iotlib.local.emulator.links import EgressLink
    from iotlib.local.emulator.server import Server

_LOG = logging.getLogger("iotlib.local.emulator.connection")

CONTAINER_ID = "iotlib-eventhubs-emulator"
CHANNEL_MAX = 4095
PRE_OPEN_FRAME_LIMIT = 65536  # frames before open (SASL, open itself) may not be larger
_FRAME_HEADER = struct.Struct(">IBBH")

# states
_HEADER, _SASL, _HEADER_AFTER_SASL, _OPEN, _OPENED, _CLOSED = range(6)


class ConnectionFailed(Exception):
    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class Connection(asyncio.Protocol):
    """The emulator's end of one TCP connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.state = _HEADER
        self._buf = bytearray()
        self.max_frame_size = server.config.max_frame_size
        self.remote_max_frame_size = 512
        self.sessions: dict[int, Session] = {}  # by remote channel
        self.grants: list[Grant] = []
        self.paused = False
        self.blocked: set[EgressLink] = set()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._last_sent = time.monotonic()
        self.was_opened = False

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP server's transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server.connections.add(self)
        _LOG.debug("connection from %s", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.was_opened and self.state != _CLOSED:
            _LOG.info("connection from %s lost (%s)", self.peer, exc)
        else:
            _LOG.debug("connection from %s closed", self.peer)
        self._teardown()

    def eof_received(self) -> bool:
        # A half-closed peer sends nothing more: close our side too.
        return False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        blocked, self.blocked = self.blocked, set()
        for link in blocked:
            link.wake()

    def data_received(self, data: bytes) -> None:
        if self.state == _CLOSED:
            return
        buf = self._buf
        buf += data
        pos = 0
        try:
            while self.state != _CLOSED:
                avail = len(buf) - pos
                if self.state in (_HEADER, _HEADER_AFTER_SASL):
                    if avail < 8:
                        break
                    self._on_header(bytes(buf[pos : pos + 8]))
                    pos += 8
                    continue
                if avail < 8:
                    break
                size, doff, ftype, channel = _FRAME_HEADER.unpack_from(buf, pos)
                limit = self.max_frame_size if self.state == _OPENED else PRE_OPEN_FRAME_LIMIT
                if size < 8 or doff < 2 or doff * 4 > size:
                    raise ConnectionFailed("amqp:connection:framing-error", f"malformed frame header (size {size})")
                if size > limit:
                    raise ConnectionFailed(
                        "amqp:connection:framing-error",
                        f"frame of {size} bytes is larger than the negotiated max-frame-size {limit}",
                    )
                if avail < size:
                    break
                body = bytes(buf[pos + doff * 4 : pos + size])
                pos += size
                self._on_frame(ftype, channel, body)
        except ConnectionFailed as exc:
            del buf[:pos]
            self.fail(exc.condition, exc.description)
            return
        except DecodeError as exc:
            del buf[:pos]
            self.fail("amqp:decode-error", str(exc))
            return
        except Exception as exc:  # a bug must cost one connection, never the server
            _LOG.exception("internal error on connection from %s", self.peer)
            del buf[:pos]
            self.fail("amqp:internal-error", f"emulator error: {exc}")
            return
        finally:
            self.server.commit()
        del buf[:pos]

    # --- writing -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.state != _CLOSED and not self.transport.is_closing():
            self.transport.write(data)
            self._last_sent = time.monotonic()

    def send(self, channel: int, body: bytes, frame_type: int = f.FRAME_AMQP) -> None:
        self.write(f.frame(channel, body, frame_type))

    # --- protocol ------------------------------------------------------------------

    def _on_header(self, header: bytes) -> None:
        if self.state == _HEADER and header == f.SASL_HEADER:
            self.write(f.SASL_HEADER)
            self.send(0, f.sasl_mechanisms(["ANONYMOUS", "PLAIN", "EXTERNAL", "MSSBCBS"]), f.FRAME_SASL)
            self.state = _SASL
        elif header == f.AMQP_HEADER:
            self.write(f.AMQP_HEADER)
            self.state = _OPEN
        else:
            # Answer with the header we speak, then close (AMQP 1.0 §2.2).
            _LOG.info("connection from %s sent an unsupported protocol header %r; closing", self.peer, header)
            self.write(f.SASL_HEADER)
            self.close_transport()

    def _on_frame(self, ftype: int, channel: int, body: bytes) -> None:
        if not body:  # empty frame: heartbeat
            return
        if self.state == _SASL:
            if ftype != f.FRAME_SASL:
                raise ConnectionFailed("amqp:connection:framing-error", "expected a SASL frame")
            code, pos = self._descriptor(body)
            if code == f.SASL_INIT:
                self.send(0, f.sasl_outcome(0), f.FRAME_SASL)
                self.state = _HEADER_AFTER_SASL
                return
            raise ConnectionFailed("amqp:not-allowed", f"unexpected SASL frame 0x{code:02x}")
        if ftype != f.FRAME_AMQP:
            raise ConnectionFailed("amqp:connection:framing-error", f"unexpected frame type {ftype}")
        code, pos = self._descriptor(body)
        expected = f.FIELD_COUNTS.get(code)
        if expected is None:
            raise ConnectionFailed("amqp:not-implemented", f"unknown performative 0x{code:02x}")
        if code == f.TRANSFER:
            fields, _, end = c.decode_fields(body, pos, expected)
            session = self.sessions.get(channel)
            if session is not None:
                session.on_transfer(fields, body[end:])
            return
        fields, raws, _ = c.decode_fields(body, pos, expected)
        if self.state == _OPEN:
            if code != f.OPEN:
                raise ConnectionFailed("amqp:illegal-state", "the first frame must be open")
            self._on_open(fields)
            return
        if code not in (f.BEGIN, f.CLOSE, f.OPEN) and channel not in self.sessions:
            # The client detaches some links after ending their session; ignore such stragglers.
            _LOG.debug("ignoring performative 0x%02x on channel %d without a session", code, channel)
            return
        if code == f.ATTACH:
            self.sessions[channel].on_attach(fields, raws)
        elif code == f.BEGIN:
            self._on_begin(channel, fields)
        elif code == f.FLOW:
            self.sessions[channel].on_flow(fields)
        elif code == f.DISPOSITION:
            self.sessions[channel].on_disposition(fields)
        elif code == f.DETACH:
            self.sessions[channel].on_detach(fields)
        elif code == f.END:
            self._on_end(channel)
        elif code == f.CLOSE:
            self._on_close(fields)
        else:
            raise ConnectionFailed("amqp:illegal-state", "open received twice")

    @staticmethod
    def _descriptor(body: bytes) -> tuple[int, int]:
        if len(body) < 3 or body[0] != 0x00:
            raise DecodeError("a frame body must start with a described performative")
        descriptor, pos = c.decode(body, 1)
        if not isinstance(descriptor, int):
            raise DecodeError(f"performative descriptor {descriptor!r} is not numeric")
        return descriptor, pos

    def _on_open(self, fields: list[Any]) -> None:
        remote_max = fields[2] if fields[2] is not None else 0xFFFFFFFF
        if remote_max < f.MIN_MAX_FRAME_SIZE:
            raise ConnectionFailed("amqp:invalid-field", "max-frame-size below 512")
        self.remote_max_frame_size = min(remote_max, 1 << 24)
        idle = fields[4]
        self.send(0, f.open_(CONTAINER_ID, self.max_frame_size, CHANNEL_MAX, None))
        self.state = _OPENED
        self.was_opened = True
        if idle:
            self._schedule_heartbeat(idle / 1000.0 / 2)
        _LOG.debug("connection from %s opened (container %s)", self.peer, fields[0])

    def _schedule_heartbeat(self, interval: float) -> None:
        def beat() -> None:
            if self.state != _OPENED:
                return
            if time.monotonic() - self._last_sent >= interval:
                self.write(f.EMPTY_FRAME)
            self._heartbeat = self.loop.call_later(interval, beat)

        self._heartbeat = self.loop.call_later(interval, beat)

    def _on_begin(self, channel: int, fields: list[Any]) -> None:
        if channel in self.sessions:
            raise ConnectionFailed("amqp:session:handle-in-use", f"channel {channel} already has a session")
        if channel > CHANNEL_MAX:
            raise ConnectionFailed("amqp:connection:framing-error", f"channel {channel} is above channel-max")
        self.sessions[channel] = Session(self, channel, channel, fields)

    def _on_end(self, channel: int) -> None:
        session = self.sessions.pop(channel, None)
        if session is None:
            return
        session.close()
        self.send(session.channel, f.end())

    def _on_close(self, fields: list[Any]) -> None:
        err = fields[0]
        if err:
            _LOG.info("client %s closed its connection with an error: %r", self.peer, err)
        self.send(0, f.close())
        self.close_transport()

    # --- closing -------------------------------------------------------------------

    def fail(self, condition: str, description: str) -> None:
        """Close the connection with an error (what a misbehaving peer gets)."""
        if self.state == _CLOSED:
            return
        _LOG.warning("closing connection from %s: %s (%s)", self.peer, description, condition)
        if self.state == _OPENED or self.state == _OPEN:
            if self.state == _OPEN:  # the client expects our open before our close
                self.send(0, f.open_(CONTAINER_ID, self.max_frame_size, CHANNEL_MAX, None))
            self.send(0, f.close(f.error(condition, description)))
        self.close_transport()

    def shutdown(self, description: str = "the emulator is shutting down") -> None:
        if self.state == _OPENED:
            self.send(0, f.close(f.error("amqp:connection:forced", description)))
        self.close_transport()

    def close_transport(self) -> None:
        self._teardown()
        if self.transport is not None:
            self.transport.close()

    def _teardown(self) -> None:
        if self.state == _CLOSED:
            return
        self.state = _CLOSED
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        self.blocked.clear()
        self.server.connections.discard(self)
