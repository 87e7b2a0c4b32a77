"""One line for each way an endpoint can be unusable: not there, the key refused, the hub or container missing.

The SDKs say these things at length (the Event Hubs client repeats its description, the Blob client
adds headers and a request id); these functions keep what a user needs and say what to do.
Anything they do not recognise gets ``None``: not a mistake of the user's, so the caller's own
retries decide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from iotlib.connections import EventHubConnection, StorageConnection, home, parse_connection_string
from iotlib.local.state import read_state
from iotlib.preflight.endpoints import Endpoint, socket_reason

_DESCRIPTION = re.compile(r"Description:\s*\"?(.+?)\"?\s*(?:To know more visit \S+)?\s*$", re.MULTILINE)
#: How many names a "(it has: …)" list shows before "…".
SHOWN = 10


def unreachable(endpoint: Endpoint, why: str) -> str:
    """Nothing answers at ``endpoint``."""
    return unreachable_all([(endpoint, why)])


def unreachable_all(down: Sequence[tuple[Endpoint, str]]) -> str:
    """Nothing answers at any of these endpoints (with why, each): one line naming them all."""
    if all(e.is_local for e, _ in down):
        hint = "is the local stack up? Start it with `iotlib up` (`iotlib status` shows where it listens)"
    else:
        hint = "check the network and the connection string's endpoint"
    verb = "does not answer" if len(down) == 1 else "do not answer"
    if len({why for _, why in down}) == 1:  # one reason, said once
        where = " and ".join(f"{e.service} at {e.address}" for e, _ in down)
        return f"{where} {verb} ({down[0][1]}): {hint}"
    where = " and ".join(f"{e.service} at {e.address} ({why})" for e, why in down)
    return f"{where} {verb}: {hint}"


def sdk_description(exc: BaseException) -> str:
    """The service's own words in an SDK error, once (the Event Hubs client prints them twice)."""
    text = str(exc)
    found = _DESCRIPTION.search(text)
    line = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return line.strip().rstrip(".")


# --- Event Hubs -----------------------------------------------------------------------------


def namespace_name(eventhub: EventHubConnection, endpoint: Endpoint) -> str:
    """The namespace's name: the local emulator's configured one, else the host's first label."""
    local = local_emulator(endpoint)
    if local is not None:
        return local[0]
    if endpoint.is_local or eventhub.is_local:
        return "fabrikam"  # the emulator's default namespace
    return endpoint.host.split(".")[0]


def local_emulator(endpoint: Endpoint) -> tuple[str, list[str]] | None:
    """The namespace and hub names of the local stack's emulator, when ``endpoint`` is it.

    Azure's AMQP endpoint cannot list a namespace's hubs (only the management plane can), but the
    emulator ``iotlib up`` started is recorded with its configuration, which names them.
    """
    if not endpoint.is_local:
        return None
    try:
        state = read_state(home())
    except Exception:  # noqa: BLE001 - a damaged record only costs the list
        return None
    svc = state.services.get("eventhubs") if state else None
    if svc is None or svc.port != endpoint.port:
        return None
    from iotlib.local.emulator.config import EmulatorConfig

    try:
        command = svc.command
        config = (
            EmulatorConfig.from_file(Path(command[command.index("--config") + 1]))
            if "--config" in command
            else EmulatorConfig()
        )
    except Exception:  # noqa: BLE001 - the config may have moved since `iotlib up`
        return None
    return config.namespace, [e.name for e in config.entities]


def listed(names: Sequence[str]) -> str:
    """The first :data:`SHOWN` names, in the order given (a config's, the service's)."""
    shown = ", ".join(list(names)[:SHOWN])
    return shown + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")


def eventhub_missing(eventhub: EventHubConnection, endpoint: Endpoint) -> str:
    local = local_emulator(endpoint)
    namespace = namespace_name(eventhub, endpoint)
    if local is not None:
        has = f" (it has: {listed(local[1])})"
    elif endpoint.is_local:
        has = ""  # an emulator `iotlib up` did not start: its configuration is not known here
    else:
        has = " (Event Hubs cannot list hubs over AMQP: see the portal or `az eventhubs eventhub list`)"
    return f"event hub '{eventhub.eventhub_name}' does not exist in namespace '{namespace}'{has}"


def eventhub_key_refused(eventhub: EventHubConnection, endpoint: Endpoint, exc: BaseException) -> str:
    parts = parse_connection_string(eventhub.connection_string)
    key = parts.get("sharedaccesskeyname")
    what = f"the key '{key}'" if key else "the shared access signature"
    return (
        f"Event Hubs namespace '{namespace_name(eventhub, endpoint)}' at {endpoint.address} refused {what} "
        f"({sdk_description(exc)}): check SharedAccessKeyName and SharedAccessKey in the connection string"
    )


def eventhub_failure(exc: BaseException, eventhub: EventHubConnection, endpoint: Endpoint) -> str | None:
    """One line for an Event Hubs error that no retry can mend, else None."""
    from azure.eventhub.exceptions import AuthenticationError, ConnectError

    if isinstance(exc, AuthenticationError):
        return eventhub_key_refused(eventhub, endpoint, exc)
    if not isinstance(exc, ConnectError):
        return None
    text = str(exc)
    if "could not be found" in text or "Status code: 404" in text or "NotFound" in text:
        return eventhub_missing(eventhub, endpoint)
    if "401" in text or "unauthorized" in text.lower():
        return eventhub_key_refused(eventhub, endpoint, exc)
    why = socket_reason(exc)
    return unreachable(endpoint, why) if why else None


# --- Blob storage ---------------------------------------------------------------------------


def account_name(storage: StorageConnection) -> str:
    parts = parse_connection_string(storage.connection_string)
    if "accountname" in parts:
        return parts["accountname"]
    return "devstoreaccount1" if parts.get("usedevelopmentstorage", "").lower() == "true" else "?"


def container_missing(storage: StorageConnection, container: str, containers: Sequence[str] | None) -> str:
    if containers is None:
        has = ""
    elif containers:
        has = f" (it has: {listed(containers)})"
    else:
        has = " (it has no containers yet)"
    return f"container '{container}' does not exist in storage account '{account_name(storage)}'{has}"


def error_code(exc: BaseException) -> str:
    """A Blob error's code as Azure writes it (``ContainerNotFound``), whether the SDK gives text or an enum."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def storage_failure(exc: BaseException, storage: StorageConnection, endpoint: Endpoint) -> str | None:
    """One line for a Blob storage error that no retry can mend (but a missing container), else None."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    code = error_code(exc)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) or code in ("AuthenticationFailed", "AuthorizationFailure"):
        return (
            f"Blob storage account '{account_name(storage)}' at {endpoint.address} refused the credentials "
            f"({status} {code or 'AuthenticationFailed'}): check AccountName and AccountKey in the connection string"
        )
    if isinstance(exc, ServiceRequestError) and not isinstance(exc, HttpResponseError):
        return unreachable(endpoint, socket_reason(exc) or "no connection")
    return None
