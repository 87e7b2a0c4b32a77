"""Where iotlib connects: connection strings for Event Hubs and Blob storage.

The same code runs on the local stack and on Azure; only two connection strings
differ. They come, in order of precedence, from the environment
(``IOTLIB_EVENTHUB_CONNECTION_STRING``, ``IOTLIB_STORAGE_CONNECTION_STRING``,
``IOTLIB_EVENTHUB_NAME``), from the running local stack started by
``iotlib up`` (which may sit on other ports), or from the local defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iotlib.errors import ConfigurationError

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


def settings() -> Settings:
    """The settings in force now: environment, then running local stack, then defaults."""
    from iotlib.local import stack  # late: stack imports this module

    state = stack.read_state()
    eventhub = os.environ.get(EVENTHUB_ENV)
    storage = os.environ.get(STORAGE_ENV)
    name = os.environ.get(EVENTHUB_NAME_ENV) or DEFAULT_EVENTHUB_NAME
    sources = []
    if eventhub:
        sources.append("environment")
    elif state and "eventhubs" in state.services:
        svc = state.services["eventhubs"]
        eventhub = eventhub_connection_string("localhost", svc.port)
        sources.append("local stack")
    else:
        eventhub = eventhub_connection_string()
        sources.append("defaults")
    if storage:
        sources.append("environment")
    elif state and "azurite" in state.services:
        svc = state.services["azurite"]
        storage = storage_connection_string(svc.host, svc.port)
        sources.append("local stack")
    else:
        storage = storage_connection_string()
        sources.append("defaults")
    parse_connection_string(eventhub, what=EVENTHUB_ENV)
    parse_connection_string(storage, what=STORAGE_ENV)
    return Settings(eventhub, storage, name, source=" + ".join(dict.fromkeys(sources)))
