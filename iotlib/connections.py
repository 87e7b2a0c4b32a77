"""Where iotlib connects: connection strings for Event Hubs and Blob storage.

The same code runs on the local stack and on Azure; only two connection strings
differ. They come, in order of precedence, from the environment
(``IOTLIB_EVENTHUB_CONNECTION_STRING``, ``IOTLIB_STORAGE_CONNECTION_STRING``,
``IOTLIB_EVENTHUB_NAME``), from the running local stack started by
``iotlib up`` (which may sit on other ports), or from the local defaults.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

from iotlib.errors import ConfigurationError
from iotlib.local.state import StackState, read_state

if TYPE_CHECKING:
    from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
    from azure.storage.blob import ContainerClient
    from azure.storage.blob.aio import BlobServiceClient

EVENTHUB_ENV = "IOTLIB_EVENTHUB_CONNECTION_STRING"
STORAGE_ENV = "IOTLIB_STORAGE_CONNECTION_STRING"
EVENTHUB_NAME_ENV = "IOTLIB_EVENTHUB_NAME"
HOME_ENV = "IOTLIB_HOME"

DEFAULT_EVENTHUB_NAME = "telemetry"
DEFAULT_EVENTHUB_PORT = 5672
DEFAULT_BLOB_PORT = 10000

# Azurite's well-known development account; the key is public by design.
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
DEVELOPMENT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def eventhub_connection_string(host: str = "localhost", port: int = DEFAULT_EVENTHUB_PORT) -> str:
    """The official emulator's connection string, pointed at ``host:port``."""
    endpoint = f"sb://{host}" if port == DEFAULT_EVENTHUB_PORT else f"sb://{host}:{port}"
    return (
        f"Endpoint={endpoint};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


def storage_connection_string(host: str = "127.0.0.1", port: int = DEFAULT_BLOB_PORT) -> str:
    """The development account's connection string, pointed at Azurite on ``host:port``."""
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={DEVELOPMENT_ACCOUNT};AccountKey={DEVELOPMENT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{DEVELOPMENT_ACCOUNT};"
    )


def parse_connection_string(value: str, *, what: str = "connection string") -> dict[str, str]:
    """Split ``Key=Value;Key=Value`` into a dict with lower-cased keys.

    Values may contain ``=`` (base64 keys do), so only the first one splits.
    """
    parts: dict[str, str] = {}
    for item in value.strip().split(";"):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"malformed {what}: {item!r} is not Key=Value")
        parts[key.strip().lower()] = val.strip()
    if not parts:
        raise ConfigurationError(f"malformed {what}: it is empty")
    return parts


def home(start: Path | None = None) -> Path:
    """The state folder of the local stack (``.iotlib``).

    ``IOTLIB_HOME`` wins; otherwise the nearest ``.iotlib`` folder in the
    current directory or one of its parents (so notebooks in ``notebooks/``
    find the stack started at the project root); otherwise ``./.iotlib``.
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".iotlib").is_dir():
            return folder / ".iotlib"
    return here / ".iotlib"


@dataclass(frozen=True)
class Settings:
    """The connection strings and hub name iotlib uses, and where they came from."""

    eventhub_connection_string: str
    storage_connection_string: str
    eventhub_name: str
    source: str

    @property
    def is_local(self) -> bool:
        """True when Event Hubs points at a development emulator, not Azure."""
        parts = parse_connection_string(self.eventhub_connection_string)
        return parts.get("usedevelopmentemulator", "").lower() == "true"

    def exports(self) -> str:
        """Shell ``export`` lines that make other processes use these settings."""
        return "\n".join(
            [
                f"export {EVENTHUB_ENV}='{self.eventhub_connection_string}'",
                f"export {STORAGE_ENV}='{self.storage_connection_string}'",
                f"export {EVENTHUB_NAME_ENV}='{self.eventhub_name}'",
            ]
        )


def stack_settings(state: StackState | None, *, eventhub_name: str = DEFAULT_EVENTHUB_NAME) -> Settings:
    """Settings pointing at a local stack's recorded services (the defaults for any it lacks)."""
    return _merge(state, {}, eventhub_name)


def settings() -> Settings:
    """The settings in force now: environment, then running local stack, then defaults."""
    environ = {key: os.environ[key] for key in (EVENTHUB_ENV, STORAGE_ENV) if os.environ.get(key)}
    name = os.environ.get(EVENTHUB_NAME_ENV) or DEFAULT_EVENTHUB_NAME
    found = _merge(read_state(home()), environ, name)
    parse_connection_string(found.eventhub_connection_string, what=EVENTHUB_ENV)
    parse_connection_string(found.storage_connection_string, what=STORAGE_ENV)
    return found


_in_force = settings  # ``Connections.of`` has a parameter of that name


def _merge(state: StackState | None, environ: dict[str, str], eventhub_name: str) -> Settings:
    """Each connection string from ``environ``, else the stack's service, else the default."""
    services = state.services if state else {}
    sources = []
    eventhub = environ.get(EVENTHUB_ENV)
    if eventhub:
        sources.append("environment")
    elif "eventhubs" in services:
        eventhub = eventhub_connection_string("localhost", services["eventhubs"].port)
        sources.append("local stack")
    else:
        eventhub = eventhub_connection_string()
        sources.append("defaults")
    storage = environ.get(STORAGE_ENV)
    if storage:
        sources.append("environment")
    elif "azurite" in services:
        storage = storage_connection_string(services["azurite"].host, services["azurite"].port)
        sources.append("local stack")
    else:
        storage = storage_connection_string()
        sources.append("defaults")
    return Settings(eventhub, storage, eventhub_name, source=" + ".join(dict.fromkeys(sources)))


# --- connection strings parsed once, for the clients ------------------------------------


@dataclass(frozen=True)
class EventHubConnection:
    """An event hub to talk to: an Event Hubs connection string checked once, and the hub's name.

    Clients take this (not the text) and build the SDK clients they need from it.
    """

    connection_string: str
    eventhub_name: str
    #: ``host[:port]``, lower-cased: the namespace the SDK writes into checkpoint blob names.
    fully_qualified_namespace: str
    #: True for a development emulator (``UseDevelopmentEmulator=true``).
    is_local: bool

    @classmethod
    def parse(cls, connection_string: str, *, eventhub_name: str | None = None) -> EventHubConnection:
        """Check ``connection_string``; the hub is ``eventhub_name`` or the string's ``EntityPath``."""
        what = "Event Hubs connection string"
        if not isinstance(connection_string, str):
            raise ConfigurationError(f"the {what} must be text, not {type(connection_string).__name__}")
        parts = parse_connection_string(connection_string, what=what)
        endpoint = parts.get("endpoint", "")
        host = urlparse(endpoint).netloc.strip().lower()
        if not endpoint.lower().startswith("sb://") or not host:
            raise ConfigurationError(f"malformed {what}: Endpoint=sb://<namespace host> is missing")
        if "sharedaccesssignature" not in parts and not ("sharedaccesskeyname" in parts and "sharedaccesskey" in parts):
            raise ConfigurationError(
                f"malformed {what}: it needs SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature"
            )
        name = eventhub_name or parts.get("entitypath")
        if not name:
            raise ConfigurationError(
                "no event hub name: pass eventhub_name= or use a connection string with EntityPath="
            )
        local = parts.get("usedevelopmentemulator", "").lower() == "true"
        return cls(connection_string, name, host, local)

    @classmethod
    def given(cls, connection_string: str | None, *, eventhub_name: str | None = None) -> EventHubConnection:
        """``connection_string`` parsed, or when it is None the hub of :func:`settings`."""
        if connection_string is None:
            return Connections.of(eventhub_name=eventhub_name).eventhub
        return cls.parse(connection_string, eventhub_name=eventhub_name)

    def consumer(self, consumer_group: str, **client_options: Any) -> EventHubConsumerClient:
        """An async consumer client on ``consumer_group`` (``client_options`` go to the SDK)."""
        from azure.eventhub.aio import EventHubConsumerClient

        return EventHubConsumerClient.from_connection_string(
            self.connection_string, consumer_group=consumer_group, eventhub_name=self.eventhub_name,
            **_with_tls(client_options),
        )  # fmt: skip

    def producer(self, *, eventhub_name: str | None = None, **client_options: Any) -> EventHubProducerClient:
        """An async producer client for this hub, or ``eventhub_name`` in the same namespace."""
        from azure.eventhub.aio import EventHubProducerClient

        return EventHubProducerClient.from_connection_string(
            self.connection_string, eventhub_name=eventhub_name or self.eventhub_name, **_with_tls(client_options)
        )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS client context for every Event Hubs connection of this process.

    The SDK's default verifies the service against certifi's CA bundle, loading the bundle anew for
    every connection it opens — and it opens one for every management call (a partition's
    properties, which heartbeats and ``monitor.lag`` ask for often): some 60 ms of CPU each. This is
    the same verification, with the bundle loaded once.
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _with_tls(options: dict[str, Any]) -> dict[str, Any]:
    if "ssl_context" in options or "connection_verify" in options:
        return options
    return {**options, "ssl_context": tls_context()}


@dataclass(frozen=True)
class StorageConnection:
    """A Blob storage account to talk to: a storage connection string checked once."""

    connection_string: str

    @classmethod
    def parse(cls, connection_string: str) -> StorageConnection:
        what = "storage connection string"
        if not isinstance(connection_string, str):
            raise ConfigurationError(f"the {what} must be text, not {type(connection_string).__name__}")
        parts = parse_connection_string(connection_string, what=what)
        if not {"accountname", "blobendpoint", "usedevelopmentstorage"} & set(parts):
            raise ConfigurationError(f"malformed {what}: it names no account (AccountName= or BlobEndpoint=)")
        return cls(connection_string)

    def service(self, **client_options: Any) -> BlobServiceClient:
        """An async Blob service client (``client_options`` go to the SDK)."""
        from azure.storage.blob.aio import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string, **client_options)

    def container(self, name: str, **client_options: Any) -> ContainerClient:
        """A sync client for the container ``name``."""
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(self.connection_string, name, **client_options)

    def checkpoint_store(self, container: str, **client_options: Any) -> BlobCheckpointStore:
        """An async Blob checkpoint store in ``container`` (partition ownership and checkpoints)."""
        from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

        return BlobCheckpointStore.from_connection_string(self.connection_string, container, **client_options)


class Connections(NamedTuple):
    """What every client is built from: the hub and the storage account, parsed once.

    A client's ``from_connection_string`` parses what it is given and never reads
    :func:`settings`; its ``from_settings`` takes :func:`settings` (or the ``Settings`` passed in).
    """

    eventhub: EventHubConnection
    storage: StorageConnection

    @classmethod
    def parse(
        cls, eventhub_connection_string: str, storage_connection_string: str, *, eventhub_name: str | None = None
    ) -> Connections:
        return cls(
            EventHubConnection.parse(eventhub_connection_string, eventhub_name=eventhub_name),
            StorageConnection.parse(storage_connection_string),
        )

    @classmethod
    def given(
        cls,
        eventhub_connection_string: str | None,
        storage_connection_string: str | None,
        *,
        eventhub_name: str | None = None,
    ) -> Connections:
        """Both connection strings parsed, or when neither is given those of :func:`settings`."""
        if eventhub_connection_string is None and storage_connection_string is None:
            return cls.of(eventhub_name=eventhub_name)
        if eventhub_connection_string is None or storage_connection_string is None:
            missing = "eventhub" if eventhub_connection_string is None else "storage"
            raise ConfigurationError(
                f"{missing}_connection_string is missing: give both connection strings, or neither for iotlib.settings()"
            )
        return cls.parse(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name)

    @classmethod
    def of(cls, settings: Settings | None = None, *, eventhub_name: str | None = None) -> Connections:
        s = settings if settings is not None else _in_force()
        return cls.parse(
            s.eventhub_connection_string, s.storage_connection_string, eventhub_name=eventhub_name or s.eventhub_name
        )
