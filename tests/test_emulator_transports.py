"""Transports the official emulator lacks: AMQP over TLS and AMQP over WebSockets, with the real SDK.

Clients reach TLS the way they reach Azure (a host name and a credential, or a connection string
without ``UseDevelopmentEmulator``), pointed at the emulator's TLS port with
``custom_endpoint_address`` and trusting the local CA with ``connection_verify``. WebSockets go to
``/$servicebus/websocket`` on the plain port (``ws://``) or the TLS port (``wss://``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import struct

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.eventhub import EventData, EventHubProducerClient, TransportType
from azure.eventhub.aio import EventHubProducerClient as AsyncProducer
from azure.eventhub.exceptions import ConnectError
from emulator_helpers import FAST, areceive, receive

from iotlib.local import stack
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig
from iotlib.local.emulator import framing as f
from iotlib.local.emulator import websocket as ws
from iotlib.local.emulator.tls import ensure_certificates

HUB = "telemetry"
ROOT = AzureNamedKeyCredential("RootManageSharedAccessKey", "SAS_KEY_VALUE")
AZURE_STYLE = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    config = EmulatorConfig(entities=(EntityConfig(HUB, 4),))
    with Emulator.start(data_dir=tmp_path_factory.mktemp("eventhubs"), port=0, tls_port=0, config=config) as running:
        yield running


def _route(emu, transport: str) -> tuple[str, dict]:
    """The connection string and client options a user passes for each transport."""
    ca = str(emu.ca_file)
    if transport == "tls":
        options = {"transport_type": TransportType.Amqp, "connection_verify": ca}
        return AZURE_STYLE, {**options, "custom_endpoint_address": f"sb://localhost:{emu.tls_port}"}
    if transport == "websocket":
        options = {"transport_type": TransportType.AmqpOverWebsocket}
        return emu.connection_string, {**options, "custom_endpoint_address": f"sb://localhost:{emu.port}"}
    assert transport == "secure websocket"
    options = {"transport_type": TransportType.AmqpOverWebsocket, "connection_verify": ca}
    return AZURE_STYLE, {**options, "custom_endpoint_address": f"sb://localhost:{emu.tls_port}"}


TRANSPORTS = ["tls", "websocket", "secure websocket"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_clients_send_and_receive(emu, transport):
    pid = str(TRANSPORTS.index(transport))
    connection_string, options = _route(emu, transport)
    with EventHubProducerClient.from_connection_string(connection_string, eventhub_name=HUB, **FAST, **options) as p:
        start = p.get_partition_properties(pid)["last_enqueued_sequence_number"]
        batch = p.create_batch(partition_id=pid)
        for i in range(50):
            batch.add(EventData(f"{transport}-{i}" * 40))  # ~1 KB each: several AMQP frames per WebSocket read
        p.send_batch(batch)
    got = receive(
        connection_string, partition_id=pid, count=50, starting_position=start, client_options=options, timeout=20
    )
    assert [e.body_as_str() for e in got] == [f"{transport}-{i}" * 40 for i in range(50)]


@pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")  # the SDK's call into aiohttp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_aio_clients_send_and_receive(emu, transport):
    pid = "3"
    connection_string, options = _route(emu, transport)

    async def scenario() -> list[EventData]:
        async with AsyncProducer.from_connection_string(
            connection_string, eventhub_name=HUB, **FAST, **options
        ) as producer:
            start = (await producer.get_partition_properties(pid))["last_enqueued_sequence_number"]
            await producer.send_batch([EventData(f"aio-{transport}-{i}") for i in range(10)], partition_id=pid)
        return await areceive(
            connection_string, partition_id=pid, count=10, starting_position=start, client_options=options, timeout=20
        )

    got = asyncio.run(scenario())
    assert [e.body_as_str() for e in got] == [f"aio-{transport}-{i}" for i in range(10)]


def test_a_client_built_from_a_host_name_and_a_credential(emu):
    """What Azure users write, with the emulator's port and CA: TLS is the SDK's only choice here."""
    with EventHubProducerClient(
        "localhost",
        HUB,
        ROOT,
        custom_endpoint_address=f"sb://localhost:{emu.tls_port}",
        transport_type=TransportType.Amqp,
        connection_verify=str(emu.ca_file),
        **FAST,
    ) as producer:
        assert producer.get_partition_ids() == ["0", "1", "2", "3"]


def test_an_untrusted_certificate_is_refused_by_the_client(emu):
    with (
        EventHubProducerClient.from_connection_string(
            AZURE_STYLE,
            eventhub_name=HUB,
            custom_endpoint_address=f"sb://localhost:{emu.tls_port}",
            transport_type=TransportType.Amqp,
            **FAST,
        ) as producer,
        pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        producer.get_partition_ids()  # the system's CAs do not know the local one


# --- the WebSocket upgrade and frames on the wire ---------------------------------------------------


def _upgrade(port: int, *, path: str = ws.PATH, protocol: str = ws.SUBPROTOCOL) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    if b" 101 " in head.split(b"\r\n")[0]:
        assert f"Sec-WebSocket-Accept: {ws.accept_key(key)}".encode() in head
    return sock, head


def _client_frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    length = (
        bytes((n | (0x80 if masked else 0),))
        if n < 126
        else bytes((126 | (0x80 if masked else 0),)) + struct.pack(">H", n)
    )
    return bytes((0x80 | opcode,)) + length + (mask + ws.unmask(payload, mask) if masked else payload)


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(8))[0]
    return b0 & 0x0F, exact(n)


def test_websocket_upgrade_speaks_amqp_and_answers_pings(emu):
    sock, head = _upgrade(emu.port)
    with sock:
        assert head.startswith(b"HTTP/1.1 101") and f"Sec-WebSocket-Protocol: {ws.SUBPROTOCOL}".encode() in head
        sock.sendall(_client_frame(ws.PING, b"are you there"))
        assert _read_frame(sock) == (ws.PONG, b"are you there")
        # The AMQP protocol header split over two messages: the stream is what counts, not the framing.
        sock.sendall(_client_frame(ws.BINARY, f.SASL_HEADER[:3]) + _client_frame(ws.BINARY, f.SASL_HEADER[3:]))
        opcode, data = _read_frame(sock)
        assert opcode == ws.BINARY and data.startswith(f.SASL_HEADER)
        sock.sendall(_client_frame(ws.CLOSE, struct.pack(">H", 1000)))
        while opcode == ws.BINARY:  # the SASL mechanisms may still be on their way
            opcode, data = _read_frame(sock)
        assert opcode == ws.CLOSE and struct.unpack(">H", data[:2])[0] == 1000


@pytest.mark.parametrize(
    "how, status",
    [("path", b"404"), ("protocol", b"400")],
)
def test_a_wrong_upgrade_gets_an_http_error(emu, how, status):
    sock, head = _upgrade(emu.port, **({"path": "/other"} if how == "path" else {"protocol": "chat"}))
    with sock:
        assert head.split(b"\r\n")[0].split(b" ")[1] == status


@pytest.mark.parametrize(
    "frame, code",
    [(_client_frame(ws.TEXT, b"hello"), 1003), (_client_frame(ws.BINARY, f.SASL_HEADER, masked=False), 1002)],
    ids=["text", "unmasked"],
)
def test_a_bad_websocket_frame_closes_with_a_code(emu, frame, code):
    sock, _ = _upgrade(emu.port)
    with sock:
        sock.sendall(frame)
        opcode, data = _read_frame(sock)
        assert opcode == ws.CLOSE and struct.unpack(">H", data[:2])[0] == code


def test_the_tls_port_serves_the_certificate_of_the_local_ca(emu):
    context = ssl.create_default_context(cafile=str(emu.ca_file))
    for host in ("localhost", "127.0.0.1"):
        with (
            socket.create_connection(("127.0.0.1", emu.tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.sendall(f.SASL_HEADER)
            assert sock.recv(8) == f.SASL_HEADER  # AMQP inside TLS, no AMQP TLS header (what the SDK does)


def test_certificates_are_made_once_and_reissued_for_new_hosts(tmp_path):
    first = ensure_certificates(tmp_path)
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    again = ensure_certificates(tmp_path)
    assert (again.ca.read_bytes(), again.cert.read_bytes()) == (ca, cert)  # reused: nothing to re-trust
    wider = ensure_certificates(tmp_path, ["devbox.local"])
    assert wider.ca.read_bytes() == ca and wider.cert.read_bytes() != cert  # same CA, a new server certificate
    assert oct(wider.key.stat().st_mode & 0o777) == "0o600"
    context = ssl.create_default_context(cafile=str(wider.ca))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_iotlib_up_serves_tls_with_its_ca_under_the_state_folder(tmp_path):
    st = stack.up(home=tmp_path, services=("eventhubs",), eventhub_port=0, tls_port=0)
    try:
        svc = st.services["eventhubs"]
        ca = tmp_path / "tls" / "ca.pem"
        assert svc.tls_port and ca.exists()
        assert stack.read_state(tmp_path).services["eventhubs"].tls_port == svc.tls_port  # recorded
        with EventHubProducerClient(
            "localhost",
            "telemetry",
            ROOT,
            custom_endpoint_address=f"sb://localhost:{svc.tls_port}",
            transport_type=TransportType.Amqp,
            connection_verify=str(ca),
            **FAST,
        ) as producer:
            producer.send_event(EventData(b"over tls"), partition_id="0")
            assert producer.get_partition_properties("0")["last_enqueued_sequence_number"] == 0
    finally:
        st.down()
