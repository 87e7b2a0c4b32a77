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
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from iotlib.local.emulator import framing as f
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.auth import Grants
from iotlib.local.emulator.codec import DecodeError
from iotlib.local.emulator.session import Session

if TYPE_CHECKING:
    from iotlib.local.emulator.links import EgressLink
    from iotlib.local.emulator.server import Server

_LOG = logging.getLogger("iotlib.local.emulator.connection")

CONTAINER_ID = "iotlib-eventhubs-emulator"
CHANNEL_MAX = 4095
PRE_OPEN_FRAME_LIMIT = 65536  # frames before open (SASL, open itself) may not be larger
SASL_MECHANISMS = ["ANONYMOUS", "PLAIN", "EXTERNAL", "MSSBCBS"]

# states
_HEADER, _SASL, _HEADER_AFTER_SASL, _OPEN, _OPENED, _CLOSED = range(6)

# What each session-level performative does (the session is the frame's channel's).
_SESSION_HANDLERS: dict[type[p.DescribedList], Callable[[Session, Any], None]] = {
    p.Attach: Session.on_attach,
    p.Flow: Session.on_flow,
    p.Disposition: Session.on_disposition,
    p.Detach: Session.on_detach,
}


class ConnectionFailed(Exception):
    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class Connection(asyncio.Protocol):
    """The emulator's end of one client connection (TCP, TLS or a WebSocket)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.services = server.services
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.state = _HEADER
        self._buf = bytearray()
        self.max_frame_size = server.config.max_frame_size
        self.remote_max_frame_size = 512
        self.hostname: str | None = None  # what the client says it connected to (its open)
        self.sessions: dict[int, Session] = {}  # by remote channel
        self.grants = Grants(self.services.revoked)
        self.paused = False
        self.blocked: set[EgressLink] = set()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._last_sent = time.monotonic()
        self.was_opened = False

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport, never a datagram one
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
                size, doff, ftype, channel = f.HEADER.unpack_from(buf, pos)
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
        except p.UnknownPerformative as exc:
            del buf[:pos]
            self.fail("amqp:not-implemented", str(exc))
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
            self.services.commit.commit()
        del buf[:pos]

    # --- writing -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.state != _CLOSED and not self.transport.is_closing():
            self.transport.write(data)
            self._last_sent = time.monotonic()

    def send(self, channel: int, body: bytes, frame_type: int = f.FRAME_AMQP) -> None:
        self.write(f.frame(channel, body, frame_type))

    def send_performative(self, channel: int, performative: p.DescribedList) -> None:
        self.send(channel, performative.encode())

    # --- protocol ------------------------------------------------------------------

    def _on_header(self, header: bytes) -> None:
        if self.state == _HEADER and header == f.SASL_HEADER:
            self.write(f.SASL_HEADER)
            self.send(0, p.SaslMechanisms(SASL_MECHANISMS).encode(), f.FRAME_SASL)
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
        performative, end = p.decode_performative(body)
        if self.state == _SASL:
            if ftype != f.FRAME_SASL:
                raise ConnectionFailed("amqp:connection:framing-error", "expected a SASL frame")
            if not isinstance(performative, p.SaslInit):
                raise ConnectionFailed("amqp:not-allowed", f"unexpected SASL frame {performative.NAME}")
            self.send(0, p.SaslOutcome(code=0).encode(), f.FRAME_SASL)
            self.state = _HEADER_AFTER_SASL
            return
        if ftype != f.FRAME_AMQP:
            raise ConnectionFailed("amqp:connection:framing-error", f"unexpected frame type {ftype}")
        if isinstance(performative, p.Transfer):
            session = self.sessions.get(channel)
            if session is not None:
                session.on_transfer(performative, body[end:])
            return
        if self.state == _OPEN:
            if not isinstance(performative, p.Open):
                raise ConnectionFailed("amqp:illegal-state", "the first frame must be open")
            self._on_open(performative)
            return
        if isinstance(performative, p.Begin):
            self._on_begin(channel, performative)
        elif isinstance(performative, p.Close):
            self._on_close(performative)
        elif isinstance(performative, p.Open):
            raise ConnectionFailed("amqp:illegal-state", "open received twice")
        elif isinstance(performative, p.End):
            self._on_end(channel)
        else:
            handler = _SESSION_HANDLERS.get(type(performative))
            if handler is None:
                raise ConnectionFailed("amqp:not-allowed", f"{performative.NAME} is not allowed after open")
            session = self.sessions.get(channel)
            if session is None:
                # The client detaches some links after ending their session; ignore such stragglers.
                _LOG.debug("ignoring %s on channel %d without a session", performative.NAME, channel)
                return
            handler(session, performative)

    def _on_open(self, open_: p.Open) -> None:
        remote_max = open_.max_frame_size if open_.max_frame_size is not None else 0xFFFFFFFF
        if remote_max < f.MIN_MAX_FRAME_SIZE:
            raise ConnectionFailed("amqp:invalid-field", "max-frame-size below 512")
        self.remote_max_frame_size = min(remote_max, 1 << 24)
        self.hostname = open_.hostname
        self.send_performative(0, self._open())
        self.state = _OPENED
        self.was_opened = True
        if open_.idle_timeout:
            self._schedule_heartbeat(open_.idle_timeout / 1000.0 / 2)
        _LOG.debug("connection from %s opened (container %s)", self.peer, open_.container_id)

    def _open(self) -> p.Open:
        return p.Open(container_id=CONTAINER_ID, max_frame_size=self.max_frame_size, channel_max=CHANNEL_MAX)

    def _schedule_heartbeat(self, interval: float) -> None:
        def beat() -> None:
            if self.state != _OPENED:
                return
            if time.monotonic() - self._last_sent >= interval:
                self.write(f.EMPTY_FRAME)
            self._heartbeat = self.loop.call_later(interval, beat)

        self._heartbeat = self.loop.call_later(interval, beat)

    def _on_begin(self, channel: int, begin: p.Begin) -> None:
        if channel in self.sessions:
            raise ConnectionFailed("amqp:session:handle-in-use", f"channel {channel} already has a session")
        if channel > CHANNEL_MAX:
            raise ConnectionFailed("amqp:connection:framing-error", f"channel {channel} is above channel-max")
        self.sessions[channel] = Session(self, channel, channel, begin)

    def _on_end(self, channel: int) -> None:
        session = self.sessions.pop(channel, None)
        if session is None:
            return
        session.close()
        self.send_performative(session.channel, p.End())

    def _on_close(self, close: p.Close) -> None:
        if close.error is not None:
            _LOG.info("client %s closed its connection with an error: %r", self.peer, close.error)
        self.send_performative(0, p.Close())
        self.close_transport()

    # --- closing -------------------------------------------------------------------

    def fail(self, condition: str, description: str) -> None:
        """Close the connection with an error (what a misbehaving peer gets)."""
        if self.state == _CLOSED:
            return
        _LOG.warning("closing connection from %s: %s (%s)", self.peer, description, condition)
        if self.state == _OPENED or self.state == _OPEN:
            if self.state == _OPEN:  # the client expects our open before our close
                self.send_performative(0, self._open())
            self.send_performative(0, p.Close(error=p.AmqpError(condition, description)))
        self.close_transport()

    def shutdown(self, description: str = "the emulator is shutting down") -> None:
        if self.state == _OPENED:
            self.send_performative(0, p.Close(error=p.AmqpError("amqp:connection:forced", description)))
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
