"""iotlib.preflight against the session's real emulator and Azurite: what passes, and the one line for each mistake."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import iotlib
from iotlib import connections, preflight
from iotlib.connections import Connections, EventHubConnection
from iotlib.errors import EndpointError
from iotlib.preflight import reasons
from iotlib.preflight.endpoints import Endpoint, eventhub_endpoint, storage_endpoint

pytestmark = pytest.mark.usefixtures("local_stack")


def test_the_session_stack_passes(eventhub_name: str) -> None:
    preflight.check(eventhub_name=eventhub_name)
    ids = preflight.check_eventhub(Connections.of(eventhub_name=eventhub_name).eventhub)
    assert ids == [str(i) for i in range(8)]


def test_a_missing_hub_lists_those_of_the_local_emulator() -> None:
    with pytest.raises(EndpointError) as caught:
        preflight.check(eventhub_name="nohub", storage=False)
    text = str(caught.value)
    assert text.startswith("event hub 'nohub' does not exist in namespace 'fabrikam' (it has: telemetry, ")


def test_a_missing_container_lists_the_accounts() -> None:
    with pytest.raises(
        EndpointError, match=r"^container 'nowhere' does not exist in storage account 'devstoreaccount1'"
    ):
        preflight.check(eventhub=False, container="nowhere")


def test_azure_cannot_list_hubs_and_the_message_says_so() -> None:
    conn = "Endpoint=sb://contoso-iot.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc"
    eventhub = EventHubConnection.parse(conn, eventhub_name="telemtry")
    endpoint = eventhub_endpoint(eventhub)
    assert endpoint == Endpoint("Event Hubs", "contoso-iot.servicebus.windows.net", 5671) and not endpoint.is_local
    assert reasons.eventhub_missing(eventhub, endpoint) == (
        "event hub 'telemtry' does not exist in namespace 'contoso-iot' (Event Hubs cannot list hubs over AMQP: "
        "see the portal or `az eventhubs eventhub list`)"
    )
    assert reasons.unreachable(endpoint, "timed out").endswith("check the network and the connection string's endpoint")


def test_storage_endpoints_of_each_connection_string_shape() -> None:
    parse = connections.StorageConnection.parse
    azure = parse(
        "DefaultEndpointsProtocol=https;AccountName=fabrikamcold;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    )
    assert storage_endpoint(azure) == Endpoint("Blob storage", "fabrikamcold.blob.core.windows.net", 443)
    assert storage_endpoint(parse("UseDevelopmentStorage=true")) == Endpoint("Blob storage", "127.0.0.1", 10000)
    local = parse(iotlib.settings().storage_connection_string)
    assert storage_endpoint(local).is_local


def test_a_service_too_slow_to_answer_passes() -> None:
    """A port that accepts but never speaks: not the user's mistake, so the work's own retries decide."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
        conn = connections.eventhub_connection_string("localhost", silent.getsockname()[1])
        try:
            assert (
                preflight.check_eventhub(EventHubConnection.parse(conn, eventhub_name="telemetry"), timeout=1) is None
            )
        finally:
            for peer in accepted:
                peer.close()


def test_a_local_port_slow_to_accept_is_busy_not_missing() -> None:
    """An emulator on a loaded machine can be slow to accept: a full accept queue drops the handshake
    until it catches up. Only a refusal says the stack is not up; this one passes to the work's own retries."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        queued = [socket.socket() for _ in range(4)]  # more than the queue holds: the rest wait on SYN retries
        try:
            for peer in queued:
                peer.setblocking(False)
                peer.connect_ex(("127.0.0.1", port))
            conn = connections.eventhub_connection_string("127.0.0.1", port)
            assert (
                preflight.check_eventhub(EventHubConnection.parse(conn, eventhub_name="telemetry"), timeout=1) is None
            )
        finally:
            for peer in queued:
                peer.close()


def _closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stack_that_is_not_up_is_one_line_naming_both_endpoints() -> None:
    hub_port, blob_port = _closed_port(), _closed_port()
    settings = connections.Settings(
        eventhub_connection_string=connections.eventhub_connection_string("localhost", hub_port),
        storage_connection_string=connections.storage_connection_string("127.0.0.1", blob_port),
        eventhub_name="telemetry",
        source="this test",
    )
    with pytest.raises(EndpointError) as caught:
        preflight.check(settings)
    assert str(caught.value) == (
        f"Event Hubs at localhost:{hub_port} and Blob storage at 127.0.0.1:{blob_port} do not answer "
        "(connection refused): is the local stack up? Start it with `iotlib up` (`iotlib status` shows where it listens)"
    )


def test_endpoints_down_for_different_reasons_each_say_theirs() -> None:
    down = [
        (Endpoint("Event Hubs", "localhost", 5672), "connection refused"),
        (Endpoint("Blob storage", "fabrikamcold.blob.core.windows.net", 443), "no answer within 4s"),
    ]
    assert reasons.unreachable_all(down) == (
        "Event Hubs at localhost:5672 (connection refused) and Blob storage at fabrikamcold.blob.core.windows.net:443 "
        "(no answer within 4s) do not answer: check the network and the connection string's endpoint"
    )


def test_a_refusal_the_sdks_meet_reads_as_the_direct_check_does() -> None:
    """When the direct connect passes a busy local port on to the SDKs (iotlib.preflight.endpoints) and the
    port then refuses, the async SDKs' errors (those preflight meets) give the same words as the direct
    check: "connection refused", not "Connect call failed (addr)" or "no connection"."""
    from azure.core.exceptions import ServiceRequestError
    from azure.eventhub.aio import EventHubProducerClient
    from azure.eventhub.exceptions import ConnectError
    from azure.storage.blob.aio import BlobServiceClient

    port = _closed_port()
    eventhub = EventHubConnection.parse(connections.eventhub_connection_string("localhost", port), eventhub_name="t")
    storage = connections.StorageConnection.parse(connections.storage_connection_string("127.0.0.1", port))

    async def errors() -> tuple[BaseException, BaseException]:
        producer = EventHubProducerClient.from_connection_string(eventhub.connection_string, eventhub_name="t",
                                                                 retry_total=0)  # fmt: skip
        async with producer:
            with pytest.raises(ConnectError) as hub_error:
                await producer.get_eventhub_properties()
        async with BlobServiceClient.from_connection_string(storage.connection_string, retry_total=0) as service:
            with pytest.raises(ServiceRequestError) as blob_error:
                await service.get_service_properties()
        return hub_error.value, blob_error.value

    hub_error, blob_error = asyncio.run(errors())
    hint = "is the local stack up? Start it with `iotlib up` (`iotlib status` shows where it listens)"
    assert reasons.eventhub_failure(hub_error, eventhub, eventhub_endpoint(eventhub)) == (
        f"Event Hubs at localhost:{port} does not answer (connection refused): {hint}"
    )
    assert reasons.storage_failure(blob_error, storage, storage_endpoint(storage)) == (
        f"Blob storage at 127.0.0.1:{port} does not answer (connection refused): {hint}"
    )
