"""The two request/response nodes: ``$cbs`` (put-token) and ``$management`` (READ).

Both take a request message on the client's sender link and answer on the
client's receiver link of the same node, with ``correlation-id`` set to the
request's ``message-id`` and the status in application properties
``status-code`` / ``status-description``. The description is also put under
``statusDescription``, the key azure-eventhub 5.x reads for ``$management``
answers (it passes ``description_fields=``, which its management link ignores):
without it an unknown hub surfaces as ``Description: None``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from iotlib.local.emulator import auth
from iotlib.local.emulator import codec as c
from iotlib.local.emulator.message import Request
from iotlib.local.emulator.namespace import Namespace

_LOG = logging.getLogger("iotlib.local.emulator.management")

CBS_NODE = "$cbs"
MANAGEMENT_NODE = "$management"
EVENTHUB_TYPE = "com.microsoft:eventhub"
PARTITION_TYPE = "com.microsoft:partition"


@dataclass
class Response:
    status: int
    description: str
    body: bytes | None = None

    def application_properties(self) -> list[tuple[bytes, bytes]]:
        return [
            (c.enc_string("status-code"), c.enc_int(self.status)),
            (c.enc_string("status-description"), c.enc_string(self.description)),
            (c.enc_string("statusDescription"), c.enc_string(self.description)),
        ]


def not_found(host: str | None, entity: str) -> str:
    """Azure's words for an entity that does not exist."""
    where = f"sb://{host}/{entity}" if host else entity
    return (
        f"The messaging entity '{where}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions."
    )


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def put_token(request: Request, namespace: Namespace, grants: auth.Grants, now: float) -> Response:
    """Verify a token; on success remember what it grants for this connection."""
    props = request.application_properties
    operation = _text(props.get("operation"))
    if operation != "put-token":
        return Response(400, f"unsupported $cbs operation {operation!r}; only put-token is")
    token_type = _text(props.get("type"))
    if token_type != auth.TOKEN_TYPE_SAS:
        return Response(401, f"token type {token_type!r} is not supported; use a shared access signature")
    token = _text(request.body)
    audience = _text(props.get("name")) or ""
    if not token:
        return Response(400, "the put-token request carries no token")
    try:
        grant = auth.verify(token, namespace.config.keys, now=now)
    except auth.TokenError as exc:
        _LOG.info("refused a token for %s: %s", audience, exc)
        return Response(401, f"{exc.code}: {exc}")
    wanted = auth.entity_path(audience)
    if not grant.admits_audience(wanted):
        return Response(
            401, f"the token is for '{grant.scope or '/'}' and does not cover the audience '{wanted or '/'}'"
        )
    refused = grants.revoked.refused(grant.publisher) if grant.publisher is not None else None
    if refused is not None:
        _LOG.info("refused a token of %s", refused.describe(str(grant.publisher)))
        return Response(401, f"Unauthorized: {refused.describe(str(grant.publisher))}; its tokens are not accepted")
    grants.put(grant)
    return Response(202, "Accepted")


def read(request: Request, namespace: Namespace, grants: auth.Grants, now: float, host: str | None = None) -> Response:
    """Answer ``READ`` for an event hub or one of its partitions (``host``: what the client connected to)."""
    props = request.application_properties
    operation = _text(props.get("operation"))
    if operation != "READ":
        return Response(400, f"unsupported $management operation {operation!r}; only READ is")
    name = _text(props.get("name")) or ""
    hub = namespace.hub(name)
    if hub is None:
        return Response(404, not_found(host, name))
    if not _authorised(props.get("security_token"), hub.name.lower(), namespace, grants, now):
        return Response(401, f"unauthorized: no valid token covers '{hub.name}'")
    kind = _text(props.get("type"))
    if kind == EVENTHUB_TYPE:
        body = c.enc_map(
            [
                (c.enc_string("name"), c.enc_string(hub.name)),
                (c.enc_string("type"), c.enc_string(EVENTHUB_TYPE)),
                (c.enc_string("created_at"), c.enc_timestamp(hub.created_at)),
                (c.enc_string("partition_count"), c.enc_int(len(hub.partitions))),
                (c.enc_string("partition_ids"), c.enc_string_array(hub.partition_ids)),
            ]
        )
        return Response(200, "OK", body)
    if kind == PARTITION_TYPE:
        pid = _text(props.get("partition")) or ""
        partition = hub.partition(pid)
        if partition is None:
            return Response(404, not_found(host, f"{hub.name}/Partitions/{pid}"))
        log = partition.log
        body = c.enc_map(
            [
                (c.enc_string("name"), c.enc_string(hub.name)),
                (c.enc_string("type"), c.enc_string(PARTITION_TYPE)),
                (c.enc_string("partition"), c.enc_string(partition.id)),
                (c.enc_string("begin_sequence_number"), c.enc_long(log.begin_seq)),
                (c.enc_string("last_enqueued_sequence_number"), c.enc_long(log.last_seq)),
                (c.enc_string("last_enqueued_offset"), c.enc_string(str(log.last_offset))),
                (c.enc_string("last_enqueued_time_utc"), c.enc_timestamp(log.last_time)),
                (c.enc_string("is_partition_empty"), c.enc_bool(log.is_empty)),
            ]
        )
        return Response(200, "OK", body)
    return Response(400, f"unsupported READ type {kind!r}")


def _authorised(token: object, path: str, namespace: Namespace, grants: auth.Grants, now: float) -> bool:
    """A token in the request itself, or one put on ``$cbs`` before, must cover the hub."""
    text = _text(token)
    if text:
        try:
            grant = auth.verify(text, namespace.config.keys, now=now)
        except auth.TokenError:
            return False
        return grant.covers(path, None, now)
    return grants.until(path, None, now) is not None
