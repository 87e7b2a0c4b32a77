"""AMQP sessions: channels, handles, session flow control, and link attach/detach.

Attaching a link is where the emulator decides what the client may do: the
address names a hub, partition and consumer group that must exist
(``amqp:not-found``), a token put on ``$cbs`` must cover it
(``amqp:unauthorized-access``), and a consumer must respect owner levels. A
refused attach is answered with an attach without source or target and an
immediate detach carrying the error, as the AMQP specification asks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from iotlib.local.emulator import codec as c
from iotlib.local.emulator import framing as f
from iotlib.local.emulator import management
from iotlib.local.emulator.codec import Described
from iotlib.local.emulator.links import (
    MAX_MESSAGE_SIZE,
    RUNTIME_METRIC,
    EgressLink,
    IngressLink,
    Link,
    ReplyLink,
    RequestLink,
)
from iotlib.local.emulator.ownership import Refused
from iotlib.local.emulator.position import PositionError, resolve_position

if TYPE_CHECKING:
    from iotlib.local.emulator.connection import Connection

_LOG = logging.getLogger("iotlib.local.emulator.session")

INCOMING_WINDOW = 1 << 20
OUTGOING_WINDOW = 1 << 20
HANDLE_MAX = 1023
EPOCH_PROPERTY = "com.microsoft:epoch"
SELECTOR_FILTER = "apache.org:selector-filter:string"


class AttachRefused(Exception):
    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def _path_segments(address: str | None) -> list[str]:
    if not address:
        return []
    text = address
    if "://" in text:
        text = urlsplit(text).path
    return [unquote(p) for p in text.split("/") if p]


def _address(terminus: Any) -> str | None:
    if isinstance(terminus, Described) and isinstance(terminus.value, list) and terminus.value:
        value = terminus.value[0]
        return value if isinstance(value, str) else None
    return None


def _symbols(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


class Session:
    """One session of a connection."""

    def __init__(self, conn: Connection, channel: int, remote_channel: int, fields: list[Any]) -> None:
        self.conn = conn
        self.channel = channel
        self.remote_channel = remote_channel
        self.next_incoming_id = fields[1] or 0
        self.incoming_window = INCOMING_WINDOW
        self._incoming_since_flow = 0
        self.next_outgoing_id = 0
        self.remote_incoming_window = fields[2] or 0
        self.links: dict[int, Link] = {}  # by remote handle
        self.by_handle: dict[int, Link] = {}
        self._partial: dict[int, tuple[int | None, int, bool, list[bytes], int]] = {}
        self.ended = False
        conn.send(channel, f.begin(remote_channel, self.next_outgoing_id, INCOMING_WINDOW, OUTGOING_WINDOW, HANDLE_MAX))

    # --- flow control --------------------------------------------------------------

    def _flow_fields(self) -> dict[str, Any]:
        return {
            "next_incoming_id": self.next_incoming_id,
            "incoming_window": self.incoming_window,
            "next_outgoing_id": self.next_outgoing_id,
            "outgoing_window": OUTGOING_WINDOW,
        }

    def send_link_flow(self, handle: int, delivery_count: int, credit: int) -> None:
        self.conn.send(
            self.channel,
            f.flow(**self._flow_fields(), handle=handle, delivery_count=delivery_count, link_credit=credit),
        )

    def on_flow(self, fields: list[Any]) -> None:
        next_incoming = fields[0] if fields[0] is not None else 0
        self.remote_incoming_window = next_incoming + (fields[1] or 0) - self.next_outgoing_id
        if fields[4] is None:
            if fields[9]:
                self.conn.send(self.channel, f.flow(**self._flow_fields()))
            for attached in self.by_handle.values():
                if isinstance(attached, EgressLink):
                    attached.wake()
            return
        link = self.links.get(fields[4])
        if link is None:  # a link that just detached: nothing to do (and no reason to drop the connection)
            _LOG.debug("flow for handle %s, which is not attached", fields[4])
            return
        link.on_flow(fields)

    # --- transfers -----------------------------------------------------------------

    def on_transfer(self, fields: list[Any], payload: bytes) -> None:
        handle = fields[0]
        link = self.links.get(handle)
        if link is None:
            self.conn.fail("amqp:session:unattached-handle", f"transfer on unknown handle {handle}")
            return
        more = bool(fields[5])
        partial = self._partial.get(handle)
        if partial is None:
            delivery_id = fields[1]
            fmt = fields[3] or 0
            settled = bool(fields[4])
            if delivery_id is not None:
                self.next_incoming_id = (delivery_id + 1) & 0xFFFFFFFF
            self._incoming_since_flow += 1
            if self._incoming_since_flow >= INCOMING_WINDOW // 2:
                self._incoming_since_flow = 0
                self.conn.send(self.channel, f.flow(**self._flow_fields()))
            if not more:
                link.on_transfer(delivery_id, fmt, settled, payload, len(payload))
                return
            self._partial[handle] = (delivery_id, fmt, settled, [payload], len(payload))
            return
        delivery_id, fmt, settled, parts, size = partial
        if fields[9]:  # aborted: forget what came so far
            del self._partial[handle]
            return
        if size <= MAX_MESSAGE_SIZE:  # past the limit, stop keeping bytes; the delivery is rejected anyway
            parts.append(payload)
        size += len(payload)
        if more:
            self._partial[handle] = (delivery_id, fmt, settled, parts, size)
            return
        del self._partial[handle]
        link.on_transfer(delivery_id, fmt, settled, b"".join(parts) if size <= MAX_MESSAGE_SIZE else None, size)

    def send_disposition(self, first: int, last: int, state: bytes) -> None:
        self.conn.send(
            self.channel,
            f.disposition(
                role=f.ROLE_RECEIVER, first=first, last=None if last == first else last, settled=True, state=state
            ),
        )

    def send_message(self, handle: int, payload: bytes) -> None:
        """One pre-settled delivery of a small message (management answers)."""
        out: list[bytes] = []
        delivery_id = self.next_outgoing_id
        limit = self.conn.remote_max_frame_size - f.TRANSFER_OVERHEAD
        if len(payload) <= limit:
            out.append(f.presettled_transfer(self.channel, handle, delivery_id, len(payload)))
            out.append(payload)
            frames = 1
        else:
            frames = self.split_transfer(out, handle, delivery_id, payload)
        self.next_outgoing_id = (delivery_id + 1) & 0xFFFFFFFF
        self.remote_incoming_window -= frames
        self.conn.write(b"".join(out))

    def split_transfer(self, out: list[Any], handle: int, delivery_id: int, payload: bytes) -> int:
        """Append the frames of a delivery too large for one frame; return how many."""
        tag = delivery_id.to_bytes(4, "big")
        head_more = f.transfer_head(handle, delivery_id, tag, 0, True, True)
        step = self.conn.remote_max_frame_size - 8 - len(head_more)
        frames = 0
        pos = 0
        n = len(payload)
        while pos < n:
            last = pos + step >= n
            head = f.transfer_head(handle, delivery_id, tag, 0, True, not last)
            out.append(f.frame(self.channel, head + payload[pos : pos + step]))
            pos += step
            frames += 1
        return frames

    # --- links ---------------------------------------------------------------------

    def reply_link(self, node: str) -> ReplyLink | None:
        for link in self.by_handle.values():
            if isinstance(link, ReplyLink) and link.node == node and link.attached:
                return link
        return None

    def _new_handle(self) -> int:
        handle = 0
        while handle in self.by_handle:
            handle += 1
        return handle

    def on_attach(self, fields: list[Any], raws: list[bytes]) -> None:
        name, remote_handle, client_role = fields[0], fields[1], fields[2]
        if not isinstance(name, str) or remote_handle is None:
            self.conn.fail("amqp:invalid-field", "attach without name or handle")
            return
        existing = self.links.get(remote_handle)
        if existing is not None:
            if existing.attached:
                self.conn.fail("amqp:session:handle-in-use", f"handle {remote_handle} is already attached")
                return
            # A link the emulator refused or detached, whose detach the client never answered
            # (the SDK does not answer a refused attach): the handle is free again.
            del self.links[remote_handle]
            self.by_handle.pop(existing.handle, None)
        handle = self._new_handle()
        source, target = fields[5], fields[6]
        link: Link
        try:
            if client_role == f.ROLE_SENDER:
                link = self._attach_receiving(name, handle, remote_handle, fields, _address(target))
                self._reply_attach(link, name, handle, raws, fields, role=f.ROLE_RECEIVER)
                self.by_handle[handle] = link
                self.links[remote_handle] = link
                link.grant()
            else:
                link = self._attach_sending(name, handle, remote_handle, fields, _address(source))
                self._reply_attach(link, name, handle, raws, fields, role=f.ROLE_SENDER)
                self.by_handle[handle] = link
                self.links[remote_handle] = link
                if isinstance(link, EgressLink):
                    link.wake()
        except AttachRefused as exc:
            self._refuse(name, handle, remote_handle, client_role, exc.condition, exc.description)

    def _refuse(
        self, name: str, handle: int, remote_handle: int, client_role: bool, condition: str, description: str
    ) -> None:
        _LOG.info("refused link %r: %s (%s)", name, description, condition)
        placeholder = Link(self, name, handle, remote_handle)
        placeholder.attached = False
        placeholder.detach_sent = True
        self.by_handle[handle] = placeholder
        self.links[remote_handle] = placeholder
        our_role = f.ROLE_RECEIVER if client_role == f.ROLE_SENDER else f.ROLE_SENDER
        self.conn.send(
            self.channel,
            f.attach(
                name=name,
                handle=handle,
                role=our_role,
                snd_settle_mode=2,
                rcv_settle_mode=0,
                source=c.NULL,
                target=c.NULL,
                initial_delivery_count=0 if our_role == f.ROLE_SENDER else None,
                max_message_size=None,
            ),
        )
        self.conn.send(self.channel, f.detach(handle, True, f.error(condition, description)))

    def _reply_attach(
        self, link: Link, name: str, handle: int, raws: list[bytes], fields: list[Any], role: bool
    ) -> None:
        offered = None
        if isinstance(link, EgressLink) and link.runtime_metric:
            offered = [RUNTIME_METRIC]
        self.conn.send(
            self.channel,
            f.attach(
                name=name,
                handle=handle,
                role=role,
                snd_settle_mode=1 if role == f.ROLE_SENDER else (fields[3] if isinstance(fields[3], int) else 2),
                rcv_settle_mode=0,
                source=raws[5],
                target=raws[6],
                initial_delivery_count=0 if role == f.ROLE_SENDER else None,
                max_message_size=MAX_MESSAGE_SIZE,
                offered_capabilities=offered,
            ),
        )

    def _authorise(self, path: str, right: str) -> float:
        """Check that a token covers ``path`` with ``right``; return until when."""
        now = self.conn.server.clock()
        covering = [g.expires for g in self.conn.grants if g.covers(path, right, now)]
        if covering:
            return max(covering)
        raise AttachRefused(
            "amqp:unauthorized-access",
            f"Unauthorized access. '{right}' claim(s) are required to perform this operation on "
            f"'{path}'; put a valid token on $cbs first",
        )

    def _hub(self, name: str):
        namespace = self.conn.server.namespace
        assert namespace is not None  # connections exist only while the server runs
        hub = namespace.hub(name)
        if hub is None:
            raise AttachRefused("amqp:not-found", f"The messaging entity '{name}' could not be found.")
        return hub

    def _attach_receiving(
        self, name: str, handle: int, remote_handle: int, fields: list[Any], address: str | None
    ) -> IngressLink | RequestLink:
        if address in (management.CBS_NODE, management.MANAGEMENT_NODE):
            return RequestLink(self, name, handle, remote_handle, fields[9] or 0, address)
        parts = _path_segments(address)
        if not parts:
            raise AttachRefused("amqp:not-found", f"the target address {address!r} names no event hub")
        hub = self._hub(parts[0])
        partition = None
        if len(parts) == 3 and parts[1].lower() == "partitions":
            partition = hub.partition(parts[2])
            if partition is None:
                raise AttachRefused("amqp:not-found", f"partition '{parts[2]}' of '{hub.name}' could not be found")
        elif len(parts) != 1:
            raise AttachRefused(
                "amqp:not-found", f"the target address {address!r} is not <hub> or <hub>/Partitions/<id>"
            )
        path = "/".join(p.lower() for p in parts)
        until = self._authorise(path, "Send")
        link = IngressLink(self, name, handle, remote_handle, fields[9] or 0, hub, partition)
        link.entity_path, link.right, link.authorised_until = path, "Send", until
        return link

    def _attach_sending(
        self, name: str, handle: int, remote_handle: int, fields: list[Any], address: str | None
    ) -> Link:
        if address in (management.CBS_NODE, management.MANAGEMENT_NODE):
            return ReplyLink(self, name, handle, remote_handle, address)
        parts = _path_segments(address)
        if len(parts) != 5 or parts[1].lower() != "consumergroups" or parts[3].lower() != "partitions":
            if parts:
                self._hub(parts[0])
            raise AttachRefused(
                "amqp:not-found",
                f"the source address {address!r} is not <hub>/ConsumerGroups/<group>/Partitions/<id>",
            )
        hub = self._hub(parts[0])
        group = hub.consumer_group(parts[2])
        if group is None:
            raise AttachRefused("amqp:not-found", f"consumer group '{parts[2]}' of '{hub.name}' could not be found")
        partition = hub.partition(parts[4])
        if partition is None:
            raise AttachRefused("amqp:not-found", f"partition '{parts[4]}' of '{hub.name}' could not be found")
        path = "/".join(p.lower() for p in parts)
        until = self._authorise(path, "Listen")
        source = fields[5]
        filters = source.value[7] if isinstance(source, Described) and len(source.value) > 7 else None
        selector = None
        if isinstance(filters, dict):
            for key, value in filters.items():
                if str(key) == SELECTOR_FILTER:
                    selector = value.value if isinstance(value, Described) else value
        try:
            cursor = resolve_position(partition.log, selector if isinstance(selector, str) else None)
        except PositionError as exc:
            raise AttachRefused("amqp:invalid-field", str(exc)) from exc
        properties = fields[13] if isinstance(fields[13], dict) else {}
        epoch = None
        for key, value in properties.items():
            if str(key) == EPOCH_PROPERTY and isinstance(value, int):
                epoch = value
        runtime_metric = RUNTIME_METRIC in _symbols(fields[12])
        link = EgressLink(
            self,
            name,
            handle,
            remote_handle,
            hub=hub,
            group=group,
            partition=partition,
            cursor=cursor,
            epoch=epoch,
            runtime_metric=runtime_metric,
        )
        link.entity_path, link.right, link.authorised_until = path, "Listen", until
        try:
            displaced = hub.slot(group, partition.id).admit(link)
        except Refused as exc:
            link.closed()
            raise AttachRefused(exc.condition, exc.description) from exc
        for old in displaced:
            old.session.detach_link(
                old,
                f.error(
                    "amqp:link:stolen",
                    f"New receiver with higher epoch of '{epoch}' is created hence current receiver "
                    f"with epoch '{old.epoch}' is getting disconnected.",
                ),
            )
        return link

    def detach_link(self, link: Link, err: bytes = c.NULL) -> None:
        """Detach a link from the emulator's side (takeover, shutdown)."""
        if link.detach_sent:
            return
        link.detach_sent = True
        link.closed()
        self.conn.send(self.channel, f.detach(link.handle, True, err))

    def on_detach(self, fields: list[Any]) -> None:
        remote_handle = fields[0]
        link = self.links.pop(remote_handle, None)
        if link is None:
            return
        self._partial.pop(remote_handle, None)
        if not link.detach_sent:
            link.detach_sent = True
            self.conn.send(self.channel, f.detach(link.handle, True))
        link.closed()
        self.by_handle.pop(link.handle, None)

    def on_disposition(self, fields: list[Any]) -> None:
        pass  # deliveries are pre-settled: nothing to track

    def close(self) -> None:
        """Forget every link (session ended or connection lost)."""
        self.ended = True
        for link in list(self.by_handle.values()):
            link.closed()
        self.links.clear()
        self.by_handle.clear()
        self._partial.clear()
