"""Helpers shared by the emulator tests: receive with a deadline, a raw AMQP client for protocol tests."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any, TypeVar

from azure.eventhub import EventData, EventHubConsumerClient
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer

from iotlib.local.emulator import codec as c
from iotlib.local.emulator import framing as f
from iotlib.local.emulator import performatives as p

P = TypeVar("P", bound=p.DescribedList)

FAST = {"retry_total": 0}


def receive(
    connection_string: str,
    *,
    partition_id: str,
    count: int,
    eventhub_name: str = "telemetry",
    consumer_group: str = "$Default",
    starting_position: Any = "-1",
    inclusive: bool = False,
    timeout: float = 15.0,
    on_ready: Any = None,
    client_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> list[EventData]:
    """Receive ``count`` events from one partition (or whatever came before ``timeout``).

    ``on_ready`` runs once the link delivers (an empty batch arrives after a short
    wait), so a test can send events a ``@latest`` consumer must see. ``client_options``
    go to the client (a transport, an endpoint, a CA bundle).
    """
    consumer = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group=consumer_group, eventhub_name=eventhub_name, **FAST, **(client_options or {})
    )
    events: list[EventData] = []
    done = threading.Event()
    ready = threading.Event()
    errors: list[Exception] = []

    def on_batch(_ctx: Any, batch: list[EventData]) -> None:
        if not ready.is_set():
            ready.set()
        events.extend(batch)
        if len(events) >= count:
            done.set()

    def on_error(_ctx: Any, exc: Exception) -> None:
        errors.append(exc)

    worker = threading.Thread(
        target=consumer.receive_batch,
        kwargs=dict(
            on_event_batch=on_batch,
            partition_id=partition_id,
            starting_position=starting_position,
            starting_position_inclusive=inclusive,
            max_wait_time=0.3,
            on_error=on_error,
            **kwargs,
        ),
        daemon=True,
    )
    worker.start()
    if on_ready is not None:
        assert ready.wait(timeout), "the consumer never became ready"
        on_ready()
    done.wait(timeout)
    consumer.close()
    worker.join(10)
    if errors and len(events) < count:
        raise errors[0]
    return events


async def areceive(
    connection_string: str,
    *,
    partition_id: str,
    count: int,
    eventhub_name: str = "telemetry",
    consumer_group: str = "$Default",
    starting_position: Any = "-1",
    inclusive: bool = False,
    timeout: float = 15.0,
    client_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> list[EventData]:
    """The aio twin of :func:`receive`; run several at once with ``asyncio.gather``."""
    consumer = AsyncConsumer.from_connection_string(
        connection_string, consumer_group=consumer_group, eventhub_name=eventhub_name, **FAST, **(client_options or {})
    )
    events: list[EventData] = []
    done = asyncio.Event()

    async def on_batch(_ctx: Any, batch: list[EventData]) -> None:
        events.extend(batch)
        if len(events) >= count:
            done.set()

    task = asyncio.create_task(
        consumer.receive_batch(
            on_batch,
            partition_id=partition_id,
            starting_position=starting_position,
            starting_position_inclusive=inclusive,
            max_wait_time=0.3,
            **kwargs,
        )
    )
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        await consumer.close()
        task.cancel()  # the processor may linger in its load-balancing sleep
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
    return events


def receive_many(connection_string: str, *specs: dict[str, Any]) -> list[list[EventData]]:
    """Several :func:`areceive` calls at once (each client costs the SDK ~1 s of polling)."""

    async def run() -> list[list[EventData]]:
        return await asyncio.gather(*(areceive(connection_string, **spec) for spec in specs))

    return asyncio.run(run())


class RawClient:
    """A minimal AMQP 1.0 client over a plain socket, for tests the SDK cannot express."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.cbs_attached = False
        self.next_delivery = 0

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, performative: p.DescribedList, channel: int = 1, frame_type: int = f.FRAME_AMQP) -> None:
        self.send_raw(f.frame(channel, performative.encode(), frame_type))

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the emulator")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[int, p.DescribedList | None, bytes]:
        """(channel, performative or None for an empty frame, payload after the performative)."""
        head = self.recv_exact(8)
        size, doff, _ftype, channel = struct.unpack(">IBBH", head)
        body = self.recv_exact(size - 8)[doff * 4 - 8 :]
        if not body:
            return channel, None, b""
        performative, end = p.decode_performative(body)
        return channel, performative, body[end:]

    def read_until(self, kind: type[P], limit: int = 50) -> tuple[int, P, bytes]:
        for _ in range(limit):
            channel, got, payload = self.read_frame()
            if isinstance(got, kind):
                return channel, got, payload
        raise AssertionError(f"{kind.__name__} never came")

    def handshake(self, max_frame_size: int = 65536) -> None:
        """SASL ANONYMOUS, AMQP header, open, begin on channel 1."""
        self.send_raw(f.SASL_HEADER)
        assert self.recv_exact(8) == f.SASL_HEADER
        self.read_frame()  # mechanisms
        self.send(p.SaslInit("ANONYMOUS", b"", "localhost"), channel=0, frame_type=f.FRAME_SASL)
        _, outcome, _ = self.read_frame()
        assert isinstance(outcome, p.SaslOutcome) and outcome.code == 0
        self.send_raw(f.AMQP_HEADER)
        assert self.recv_exact(8) == f.AMQP_HEADER
        self.send(p.Open(container_id="raw-test", max_frame_size=max_frame_size, channel_max=100), channel=0)
        self.read_until(p.Open)
        self.send(p.Begin(next_outgoing_id=0, incoming_window=1000, outgoing_window=1000, handle_max=100))
        self.read_until(p.Begin)

    def attach_sender(self, address: str, handle: int = 0) -> p.Attach:
        self.send(
            p.Attach(
                name=f"sender-{handle}",
                handle=handle,
                role=f.ROLE_SENDER,
                send_settle_mode=0,
                rcv_settle_mode=0,
                source=p.Source(address="raw-sender"),
                target=p.Target(address=address),
                initial_delivery_count=0,
            )
        )
        return self.read_until(p.Attach)[1]

    def attach_receiver(self, address: str, handle: int = 0, selector: str | None = None) -> p.Attach:
        filters = None
        if selector is not None:
            name = "apache.org:selector-filter:string"
            filters = {c.Symbol(name): c.Described(c.Symbol(name), selector)}
        self.send(
            p.Attach(
                name=f"receiver-{handle}",
                handle=handle,
                role=f.ROLE_RECEIVER,
                send_settle_mode=0,
                rcv_settle_mode=0,
                source=p.Source(address=address, filters=filters),
                target=p.Target(address="raw-receiver"),
            )
        )
        return self.read_until(p.Attach)[1]

    def credit(self, handle: int, credit: int) -> None:
        self.send(
            p.Flow(
                next_incoming_id=0,
                incoming_window=1000,
                next_outgoing_id=0,
                outgoing_window=1000,
                handle=handle,
                delivery_count=0,
                link_credit=credit,
            )
        )

    def put_token(self, audience: str, token: str) -> int:
        """Put a token on $cbs the way the SDK does; return the status code."""
        import uuid

        from iotlib.local.emulator.message import decode_request

        if not self.cbs_attached:
            self.attach_sender("$cbs", handle=10)
            self.attach_receiver("$cbs", handle=11)
            self.credit(11, 10)
            self.cbs_attached = True
        props = p.Properties(message_id=uuid.uuid4()).encode()
        app = c.enc_described(
            0x74,
            c.enc_map(
                [
                    (c.enc_string("operation"), c.enc_string("put-token")),
                    (c.enc_string("type"), c.enc_string("servicebus.windows.net:sastoken")),
                    (c.enc_string("name"), c.enc_string(audience)),
                ]
            ),
        )
        body = c.enc_described(0x77, c.enc_string(token))
        self.transfer(10, self.next_delivery, props + app + body)
        self.next_delivery += 1
        for _ in range(20):
            _, got, payload = self.read_frame()
            if isinstance(got, p.Transfer):
                return int(decode_request(payload).application_properties["status-code"])
        raise AssertionError("no put-token response")

    def transfer(self, handle: int, delivery_id: int, payload: bytes, *, fmt: int = 0, more: bool = False) -> None:
        head = p.Transfer(
            handle=handle,
            delivery_id=delivery_id,
            delivery_tag=struct.pack(">I", delivery_id),
            message_format=fmt,
            settled=False,
            more=more,
        )
        self.send_raw(f.frame(1, head.encode() + payload))

    def outcome(self) -> p.DescribedList | None:
        """The state of the next disposition (accepted, rejected …)."""
        return self.read_until(p.Disposition)[1].state


def error_of(performative: object) -> p.AmqpError:
    """The AMQP error a detach, close or rejected outcome carries (failing the test if none)."""
    error = getattr(performative, "error", None)
    assert isinstance(error, p.AmqpError), performative
    return error


def event_message(body: bytes, *, partition_key: str | None = None) -> bytes:
    """A format-0 message with one data section (and the partition key annotation, if given)."""
    data = c.enc_described(0x75, c.enc_binary(body))
    if partition_key is None:
        return data
    annotations = c.enc_map([(c.enc_symbol("x-opt-partition-key"), c.enc_string(partition_key))])
    return c.enc_described(0x72, annotations) + data


class ManualClock:
    """A wall clock that moves only when a test says so (hand it to ``Emulator.start(clock=...)``)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class RecordingProxy:
    """A TCP proxy in front of an emulator that keeps every byte each client sent (real client sessions).

    ``sessions`` holds one bytearray per connection, in the order they were accepted.
    """

    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.sessions: list[bytearray] = []
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            record = bytearray()
            self.sessions.append(record)
            self._sockets += [client, upstream]
            for source, sink, keep in ((client, upstream, record), (upstream, client, None)):
                thread = threading.Thread(target=self._pump, args=(source, sink, keep), daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, keep: bytearray | None) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if keep is not None:
                    keep += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(5)


def split_frames(stream: bytes) -> list[tuple[bytes, int, int, bytes]]:
    """A recorded client stream as (protocol header or b"", frame type, channel, frame body) items."""
    out = []
    pos = 0
    while pos + 8 <= len(stream):
        if stream[pos : pos + 4] == b"AMQP":
            out.append((stream[pos : pos + 8], -1, 0, b""))
            pos += 8
            continue
        size, doff, ftype, channel = struct.unpack_from(">IBBH", stream, pos)
        if size < 8 or pos + size > len(stream):
            break
        out.append((b"", ftype, channel, stream[pos + doff * 4 : pos + size]))
        pos += size
    return out
