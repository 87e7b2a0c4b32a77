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

from iotlib.local.emulator import framing as f
from iotlib.local.emulator import management
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.codec import Described
from iotlib.local.emulator.links import (
    MAX_MESSAGE_SIZE,
    RUNTIME_METRIC,
    EgressLink,
    IngressLink,
    Link,
    ReplyLink,
    RequestLink,
    _Receiving,
)
from iotlib.local.emulator.namespace import EventHub
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


def _symbols(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _selector(source: p.Source | None) -> str | None:
    """The selector filter (starting position) a consumer attaches with, if any."""
    filters = source.filters if source is not None else None
    for key, value in (filters or {}).items():
        if str(key) == SELECTOR_FILTER:
            text = value.value if isinstance(value, Described) else value
            return text if isinstance(text, str) else None
    return None


class Session:
    """One session of a connection."""

    def __init__(self, conn: Connection, channel: int, remote_channel: int, begin: p.Begin) -> None:
        self.conn = conn
        self.services = conn.services
        self.channel = channel
        self.remote_channel = remote_channel
        self.next_incoming_id = begin.next_outgoing_id
        self.incoming_window = INCOMING_WINDOW
        self._incoming_since_flow = 0
        self.next_outgoing_id = 0
        self.remote_incoming_window = begin.incoming_window
        self.links: dict[int, Link] = {}  # by remote handle
        self.by_handle: dict[int, Link] = {}
        self._partial: dict[int, tuple[int | None, int, bool, list[bytes], int]] = {}
        self.ended = False
        conn.send_performative(
            channel,
            p.Begin(
                remote_channel=remote_channel,
                next_outgoing_id=self.next_outgoing_id,
                incoming_window=INCOMING_WINDOW,
                outgoing_window=OUTGOING_WINDOW,
                handle_max=HANDLE_MAX,
            ),
        )

    # --- flow control --------------------------------------------------------------

    def _flow(self, **link_fields: Any) -> p.Flow:
        return p.Flow(
            next_incoming_id=self.next_incoming_id,
            incoming_window=self.incoming_window,
            next_outgoing_id=self.next_outgoing_id,
            outgoing_window=OUTGOING_WINDOW,
            drain=False,
            echo=False,
            **link_fields,
        )

    def send_link_flow(self, handle: int, delivery_count: int, credit: int) -> None:
        self.conn.send_performative(
            self.channel, self._flow(handle=handle, delivery_count=delivery_count, link_credit=credit)
        )

    def on_flow(self, flow: p.Flow) -> None:
        next_incoming = flow.next_incoming_id if flow.next_incoming_id is not None else 0
        self.remote_incoming_window = next_incoming + flow.incoming_window - self.next_outgoing_id
        if flow.handle is None:
            if flow.echo:
                self.conn.send_performative(self.channel, self._flow())
            for link in self.by_handle.values():
                if isinstance(link, EgressLink):
                    link.wake()
            return
        target = self.links.get(flow.handle)
        if target is None:  # a link that just detached: nothing to do (and no reason to drop the connection)
            _LOG.debug("flow for handle %s, which is not attached", flow.handle)
            return
        target.on_flow(flow)

    # --- transfers -----------------------------------------------------------------

    def on_transfer(self, transfer: p.Transfer, payload: bytes) -> None:
        handle = transfer.handle
        link = self.links.get(handle)
        if link is None:
            self.conn.fail("amqp:session:unattached-handle", f"transfer on unknown handle {handle}")
            return
        more = bool(transfer.more)
        partial = self._partial.get(handle)
        if partial is None:
            delivery_id = transfer.delivery_id
            fmt = transfer.message_format or 0
            settled = bool(transfer.settled)
            if delivery_id is not None:
                self.next_incoming_id = (delivery_id + 1) & 0xFFFFFFFF
            self._incoming_since_flow += 1
            if self._incoming_since_flow >= INCOMING_WINDOW // 2:
                self._incoming_since_flow = 0
                self.conn.send_performative(self.channel, self._flow())
            if not more:
                link.on_transfer(delivery_id, fmt, settled, payload, len(payload))
                return
            self._partial[handle] = (delivery_id, fmt, settled, [payload], len(payload))
            return
        delivery_id, fmt, settled, parts, size = partial
        if transfer.aborted:  # forget what came so far
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

    def send_disposition(self, first: int, last: int, outcome: p.DescribedList) -> None:
        self.conn.send_performative(
            self.channel,
            p.Disposition(
                role=f.ROLE_RECEIVER,
                first=first,
                last=None if last == first else last,
                settled=True,
                state=outcome,
            ),
        )

    def send_message(self, handle: int, payload: bytes) -> None:
        """One pre-settled delivery of a small message (management answers)."""
        out: list[Any] = []
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

        def head(more: bool) -> bytes:
            return p.Transfer(
                handle=handle,
                delivery_id=delivery_id,
                delivery_tag=tag,
                message_format=0,
                settled=True,
                more=more,
            ).encode()

        step = self.conn.remote_max_frame_size - 8 - len(head(True))
        frames = 0
        pos = 0
        n = len(payload)
        while pos < n:
            last = pos + step >= n
            out.append(f.frame(self.channel, head(not last) + payload[pos : pos + step]))
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

    def on_attach(self, attach: p.Attach) -> None:
        remote_handle = attach.handle
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
        try:
            link: Link
            if attach.role == f.ROLE_SENDER:
                link = self._attach_receiving(attach, handle)
                self._reply_attach(link, attach, handle)
                self.by_handle[handle] = link
                self.links[remote_handle] = link
                if isinstance(link, _Receiving):
                    link.grant()
            else:
                link = self._attach_sending(attach, handle)
                self._reply_attach(link, attach, handle)
                self.by_handle[handle] = link
                self.links[remote_handle] = link
                if isinstance(link, EgressLink):
                    link.wake()
        except AttachRefused as exc:
            self._refuse(attach, handle, exc.condition, exc.description)

    def _refuse(self, attach: p.Attach, handle: int, condition: str, description: str) -> None:
        _LOG.info("refused link %r: %s (%s)", attach.name, description, condition)
        placeholder = Link(self, attach.name, handle, attach.handle)
        placeholder.attached = False
        placeholder.detach_sent = True
        self.by_handle[handle] = placeholder
        self.links[attach.handle] = placeholder
        our_role = f.ROLE_RECEIVER if attach.role == f.ROLE_SENDER else f.ROLE_SENDER
        self.conn.send_performative(
            self.channel,
            p.Attach(
                name=attach.name,
                handle=handle,
                role=our_role,
                send_settle_mode=2,
                rcv_settle_mode=0,
                incomplete_unsettled=False,
                initial_delivery_count=0 if our_role == f.ROLE_SENDER else None,
            ),
        )
        self.conn.send_performative(
            self.channel, p.Detach(handle=handle, closed=True, error=p.AmqpError(condition, description))
        )

    def _reply_attach(self, link: Link, attach: p.Attach, handle: int) -> None:
        role = link.role
        offered = [RUNTIME_METRIC] if isinstance(link, EgressLink) and link.runtime_metric else None
        self.conn.send_performative(
            self.channel,
            p.Attach(
                name=attach.name,
                handle=handle,
                role=role,
                send_settle_mode=1
                if role == f.ROLE_SENDER
                else (2 if attach.send_settle_mode is None else attach.send_settle_mode),
                rcv_settle_mode=0,
                source=attach.source,
                target=attach.target,
                incomplete_unsettled=False,
                initial_delivery_count=0 if role == f.ROLE_SENDER else None,
                max_message_size=MAX_MESSAGE_SIZE,
                offered_capabilities=offered,
            ),
        )

    def _authorise(self, path: str, right: str) -> float:
        """Check that a token covers ``path`` with ``right``; return until when."""
        now = self.services.clock()
        until = self.conn.grants.until(path, right, now)
        if until is not None:
            return until
        raise AttachRefused("amqp:unauthorized-access", self.conn.grants.refusal(path, right, now))

    def _hub(self, name: str) -> EventHub:
        hub = self.services.namespace.hub(name)
        if hub is None:
            raise AttachRefused("amqp:not-found", management.not_found(self.conn.hostname, name))
        return hub

    def _attach_receiving(self, attach: p.Attach, handle: int) -> Link:
        services = self.services
        address = attach.target.address if attach.target is not None else None
        delivery_count = attach.initial_delivery_count or 0
        if address in (management.CBS_NODE, management.MANAGEMENT_NODE):
            return RequestLink(
                self,
                attach.name,
                handle,
                attach.handle,
                delivery_count,
                node=address,
                namespace=services.namespace,
                grants=self.conn.grants,
                clock=services.clock,
            )
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
        path = "/".join(part.lower() for part in parts)
        until = self._authorise(path, "Send")
        link = IngressLink(
            self,
            attach.name,
            handle,
            attach.handle,
            delivery_count,
            hub=hub,
            partition=partition,
            meter=services.meter,
            commit=services.commit,
            clock=services.clock,
        )
        link.authorise(self.conn.grants, path, "Send", until)
        return link

    def _attach_sending(self, attach: p.Attach, handle: int) -> Link:
        services = self.services
        address = attach.source.address if attach.source is not None else None
        if address in (management.CBS_NODE, management.MANAGEMENT_NODE):
            return ReplyLink(self, attach.name, handle, attach.handle, address)
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
        path = "/".join(part.lower() for part in parts)
        until = self._authorise(path, "Listen")
        try:
            cursor = resolve_position(partition.log, _selector(attach.source))
        except PositionError as exc:
            raise AttachRefused("amqp:invalid-field", str(exc)) from exc
        epoch = None
        for key, value in (attach.properties or {}).items():
            if str(key) == EPOCH_PROPERTY and isinstance(value, int) and not isinstance(value, bool):
                epoch = value
        link = EgressLink(
            self,
            attach.name,
            handle,
            attach.handle,
            hub=hub,
            group=group,
            partition=partition,
            cursor=cursor,
            epoch=epoch,
            runtime_metric=RUNTIME_METRIC in _symbols(attach.desired_capabilities),
            meter=services.meter,
            clock=services.clock,
        )
        link.authorise(self.conn.grants, path, "Listen", until)
        try:
            displaced = hub.slot(group, partition.id).admit(link)
        except Refused as exc:
            link.closed()
            raise AttachRefused(exc.condition, exc.description) from exc
        for old in displaced:
            if not isinstance(old, EgressLink):
                continue
            old.session.detach_link(
                old,
                p.AmqpError(
                    "amqp:link:stolen",
                    f"New receiver with higher epoch of '{epoch}' is created hence current receiver "
                    f"with epoch '{old.epoch}' is getting disconnected.",
                ),
            )
        return link

    def detach_link(self, link: Link, error: p.AmqpError | None = None) -> None:
        """Detach a link from the emulator's side (takeover, token expiry, shutdown)."""
        if link.detach_sent:
            return
        link.detach_sent = True
        link.closed()
        self.conn.send_performative(self.channel, p.Detach(handle=link.handle, closed=True, error=error))

    def on_detach(self, detach: p.Detach) -> None:
        link = self.links.pop(detach.handle, None)
        if link is None:
            return
        self._partial.pop(detach.handle, None)
        if not link.detach_sent:
            link.detach_sent = True
            self.conn.send_performative(self.channel, p.Detach(handle=link.handle, closed=True))
        link.closed()
        self.by_handle.pop(link.handle, None)

    def on_disposition(self, disposition: p.Disposition) -> None:
        pass  # deliveries are pre-settled: nothing to track

    def close(self) -> None:
        """Forget every link (session ended or connection lost)."""
        self.ended = True
        for link in list(self.by_handle.values()):
            link.closed()
        self.links.clear()
        self.by_handle.clear()
        self._partial.clear()
