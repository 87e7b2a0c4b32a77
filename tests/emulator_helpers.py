"""Helpers shared by the emulator tests: receive with a deadline, a raw AMQP client for protocol tests."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any

from azure.eventhub import EventData, EventHubConsumerClient
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer

from iotlib.local.emulator import codec as c
from iotlib.local.emulator import framing as f

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
    **kwargs: Any,
) -> list[EventData]:
    """Receive ``count`` events from one partition (or whatever came before ``timeout``).

    ``on_ready`` runs once the link delivers (an empty batch arrives after a short
    wait), so a test can send events a ``@latest`` consumer must see.
    """
    consumer = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group=consumer_group, eventhub_name=eventhub_name, **FAST
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
    **kwargs: Any,
) -> list[EventData]:
    """The aio twin of :func:`receive`; run several at once with ``asyncio.gather``."""
    consumer = AsyncConsumer.from_connection_string(
        connection_string, consumer_group=consumer_group, eventhub_name=eventhub_name, **FAST
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

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the emulator")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[int, int, Any, bytes]:
        """(channel, performative code, fields, payload after the performative)."""
        head = self.recv_exact(8)
        size, doff, _ftype, channel = struct.unpack(">IBBH", head)
        body = self.recv_exact(size - 8)[doff * 4 - 8 :]
        if not body:
            return channel, -1, [], b""
        descriptor, pos = c.decode(body, 1)
        fields, _, end = c.decode_fields(body, pos, 0)
        return channel, descriptor, fields, body[end:]

    def read_until(self, code: int, limit: int = 50) -> tuple[int, Any, bytes]:
        for _ in range(limit):
            channel, got, fields, payload = self.read_frame()
            if got == code:
                return channel, fields, payload
        raise AssertionError(f"performative 0x{code:02x} never came")

    def handshake(self, max_frame_size: int = 65536) -> None:
        """SASL ANONYMOUS, AMQP header, open, begin on channel 1."""
        self.send_raw(f.SASL_HEADER)
        assert self.recv_exact(8) == f.SASL_HEADER
        self.read_frame()  # mechanisms
        init = c.enc_described(
            f.SASL_INIT, c.enc_list([c.enc_symbol("ANONYMOUS"), c.enc_binary(b""), c.enc_string("localhost")])
        )
        self.send_raw(f.frame(0, init, f.FRAME_SASL))
        _, code, fields, _ = self.read_frame()
        assert code == f.SASL_OUTCOME and fields[0] == 0
        self.send_raw(f.AMQP_HEADER)
        assert self.recv_exact(8) == f.AMQP_HEADER
        self.send_raw(f.frame(0, f.open_("raw-test", max_frame_size, 100, None)))
        self.read_until(f.OPEN)
        self.send_raw(f.frame(1, _begin_unmapped()))
        self.read_until(f.BEGIN)

    def attach_sender(self, address: str, handle: int = 0) -> tuple[Any, bytes]:
        target = c.enc_described(f.TARGET, c.enc_list([c.enc_string(address)] + [c.NULL] * 6))
        source = c.enc_described(f.SOURCE, c.enc_list([c.enc_string("raw-sender")] + [c.NULL] * 10))
        self.send_raw(
            f.frame(
                1,
                f.attach(
                    name=f"sender-{handle}",
                    handle=handle,
                    role=f.ROLE_SENDER,
                    snd_settle_mode=0,
                    rcv_settle_mode=0,
                    source=source,
                    target=target,
                    initial_delivery_count=0,
                    max_message_size=None,
                ),
            )
        )
        _, fields, _ = self.read_until(f.ATTACH)
        return fields, b""

    def attach_receiver(self, address: str, handle: int = 0) -> Any:
        source = c.enc_described(f.SOURCE, c.enc_list([c.enc_string(address)] + [c.NULL] * 10))
        target = c.enc_described(f.TARGET, c.enc_list([c.enc_string("raw-receiver")] + [c.NULL] * 6))
        self.send_raw(
            f.frame(
                1,
                f.attach(
                    name=f"receiver-{handle}",
                    handle=handle,
                    role=f.ROLE_RECEIVER,
                    snd_settle_mode=0,
                    rcv_settle_mode=0,
                    source=source,
                    target=target,
                    initial_delivery_count=None,
                    max_message_size=None,
                ),
            )
        )
        _, fields, _ = self.read_until(f.ATTACH)
        return fields

    def put_token(self, audience: str, token: str) -> int:
        """Put a token on $cbs the way the SDK does; return the status code."""
        import uuid

        from iotlib.local.emulator.message import decode_message

        if not self.cbs_attached:
            self.attach_sender("$cbs", handle=10)
            self.attach_receiver("$cbs", handle=11)
            self.send_raw(
                f.frame(
                    1,
                    f.flow(
                        next_incoming_id=0,
                        incoming_window=1000,
                        next_outgoing_id=0,
                        outgoing_window=1000,
                        handle=11,
                        delivery_count=0,
                        link_credit=10,
                    ),
                )
            )
            self.cbs_attached = True
        props = c.enc_described(0x73, c.enc_list([c.enc_uuid(uuid.uuid4())] + [c.NULL] * 12))
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
            _, code, fields, payload = self.read_frame()
            if code == f.TRANSFER and fields[0] is not None:
                return int(decode_message(payload).application_properties["status-code"])
        raise AssertionError("no put-token response")

    def transfer(self, handle: int, delivery_id: int, payload: bytes, *, fmt: int = 0, more: bool = False) -> None:
        head = f.transfer_head(handle, delivery_id, struct.pack(">I", delivery_id), fmt, False, more)
        self.send_raw(f.frame(1, head + payload))


def _begin_unmapped() -> bytes:
    """A begin from the client side (no remote channel)."""
    return c.enc_described(
        f.BEGIN,
        c.enc_list(
            [c.NULL, c.enc_uint(0), c.enc_uint(1000), c.enc_uint(1000), c.enc_uint(100), c.NULL, c.NULL, c.NULL]
        ),
    )


def event_message(body: bytes) -> bytes:
    """A format-0 message with one data section."""
    return c.enc_described(0x75, c.enc_binary(body))


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class ManualClock:
    """An emulator's clock (``Emulator.start(clock=...)``) that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # near the real time: the SDK's own tokens stay valid

    def __call__(self) -> float:
        return self.now
