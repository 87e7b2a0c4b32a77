"""Every client is made the same two ways, and a connection string given is the one used.

``from_connection_string`` parses what it is given and never reads ``iotlib.settings()``
(a malformed ``IOTLIB_*`` variable must not matter then); ``from_settings`` takes the settings
(and the hub name given). Sync and ``.aio`` twins alike, against the session's real hub.
"""

from __future__ import annotations

import asyncio

import pytest

from iotlib import connections, hub
from iotlib.capture import CaptureWriter
from iotlib.capture import aio as capture_aio
from iotlib.connections import EventHubConnection, Settings, StorageConnection
from iotlib.errors import ConfigurationError
from iotlib.hub import aio as hub_aio
from iotlib.hub import monitor
from iotlib.ingest import IngestClient
from iotlib.ingest import aio as ingest_aio
from iotlib.local.stack import Stack
from iotlib.warm import StreamProcessor
from iotlib.warm import aio as warm_aio

CLIENTS = [IngestClient, ingest_aio.IngestClient, CaptureWriter, capture_aio.CaptureWriter, StreamProcessor,
           warm_aio.StreamProcessor]  # fmt: skip
STORAGE_CLIENTS = CLIENTS[2:]
MALFORMED = "this is not a connection string"


@pytest.fixture
def given(local_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The stack's real settings, while the environment holds malformed connection strings."""
    real = local_stack.settings()
    monkeypatch.setenv(connections.EVENTHUB_ENV, MALFORMED)
    monkeypatch.setenv(connections.STORAGE_ENV, MALFORMED)
    with pytest.raises(ConfigurationError):
        connections.settings()
    return real


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_client_has_both_constructors(client: type) -> None:
    assert callable(client.from_connection_string) and callable(client.from_settings)  # type: ignore[attr-defined]


def test_ingest_from_a_connection_string_ignores_a_malformed_environment(given: Settings, eventhub_name: str) -> None:
    """Regression: from_connection_string(valid, eventhub_name=...) read settings() and failed on it."""
    with IngestClient.from_connection_string(given.eventhub_connection_string, eventhub_name=eventhub_name) as client:
        assert client.eventhub_name == eventhub_name and len(client.partition_ids()) == 8

    async def aio() -> list[str]:
        conn = given.eventhub_connection_string
        async with ingest_aio.IngestClient.from_connection_string(conn, eventhub_name=eventhub_name) as client:
            return await client.partition_ids()

    assert len(asyncio.run(aio())) == 8


def test_hub_and_monitor_with_connection_strings_ignore_a_malformed_environment(
    given: Settings, eventhub_name: str
) -> None:
    conn, storage = given.eventhub_connection_string, given.storage_connection_string
    assert sorted(hub.positions(conn, eventhub_name=eventhub_name), key=int) == [str(i) for i in range(8)]
    assert len(asyncio.run(hub_aio.positions(conn, eventhub_name=eventhub_name))) == 8
    lag = monitor.lag(["warm"], eventhub_connection_string=conn, storage_connection_string=storage,
                      eventhub_name=eventhub_name)  # fmt: skip
    assert lag.height == 8 and set(lag["consumer_group"]) == {"warm"}
    with pytest.raises(ConfigurationError, match="storage_connection_string is missing"):
        monitor.lag(["warm"], eventhub_connection_string=conn, eventhub_name=eventhub_name)


@pytest.mark.parametrize("client", STORAGE_CLIENTS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_engines_from_connection_strings_ignore_a_malformed_environment(client: type, given: Settings) -> None:
    made = client.from_connection_string(  # type: ignore[attr-defined]
        given.eventhub_connection_string, given.storage_connection_string, eventhub_name="x"
    )
    assert made.options.eventhub_name == "x" and made.eventhub.connection_string == given.eventhub_connection_string


@pytest.mark.parametrize("client", STORAGE_CLIENTS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_from_settings_takes_the_hub_name(client: type, local_stack: Stack) -> None:
    """Regression: CaptureWriter.from_settings(eventhub_name=...) passed eventhub_name twice (TypeError)."""
    made = client.from_settings(eventhub_name="x")  # type: ignore[attr-defined]
    assert made.options.eventhub_name == "x"
    assert client.from_settings(local_stack.settings()).options.eventhub_name == "telemetry"  # type: ignore[attr-defined]


def test_ingest_from_settings_takes_the_hub_name(local_stack: Stack) -> None:
    with IngestClient.from_settings(local_stack.settings(), eventhub_name="x") as client:
        assert client.eventhub_name == "x"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("Endpoint=http://x;SharedAccessKeyName=k;SharedAccessKey=v", "Endpoint=sb://"),
        ("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k", "SharedAccessKey"),
        ("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v", "event hub name"),
        ("Endpoint", "not Key=Value"),
    ],
)
def test_a_bad_event_hubs_connection_string_is_named(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as err:
        IngestClient.from_connection_string(text)
    assert isinstance(err.value, ValueError)


def test_parsed_parts() -> None:
    azure = "Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=hub1"
    eh = EventHubConnection.parse(azure)
    assert (eh.eventhub_name, eh.fully_qualified_namespace, eh.is_local) == ("hub1", "ns.servicebus.windows.net", False)
    assert EventHubConnection.parse(azure, eventhub_name="other").eventhub_name == "other"
    local = connections.eventhub_connection_string("localhost", 5999)
    assert EventHubConnection.parse(local, eventhub_name="t").fully_qualified_namespace == "localhost:5999"
    with pytest.raises(ConfigurationError, match="names no account"):
        StorageConnection.parse("DefaultEndpointsProtocol=https;AccountKey=b==")
    with pytest.raises(ConfigurationError, match="storage connection string"):
        CaptureWriter.from_connection_string(local, "nonsense", eventhub_name="t")
