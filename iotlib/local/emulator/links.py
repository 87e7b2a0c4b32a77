"""Links: what the emulator does at each end of an attached link.

* :class:`IngressLink` receives events from a producer (target ``<hub>`` or
  ``<hub>/Partitions/<id>``), appends them to the log and settles each delivery
  with ``accepted`` once the log has written it; with throughput units set, a
  send over the namespace's budget is settled ``rejected`` with
  ``com.microsoft:server-busy`` instead, whole, and the link stays attached.
* :class:`EgressLink` delivers a partition to a consumer (source
  ``<hub>/ConsumerGroups/<group>/Partitions/<id>``), pre-settled, within the
  consumer's credit and the namespace's egress budget, reading from the log
  (never an in-memory copy of it).
* :class:`RequestLink` / :class:`ReplyLink` carry ``$cbs`` and ``$management``
  requests and their answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iotlib.local.emulator import codec as c
from iotlib.local.emulator import framing as f
from iotlib.local.emulator import management, message
from iotlib.local.emulator import performatives as p
from iotlib.local.emulator.auth import Grants
from iotlib.local.emulator.codec import DecodeError
from iotlib.local.emulator.commit import ACCEPTED, GroupCommit
from iotlib.local.emulator.log import FLAG_USER_DELIVERY_ANNOTATIONS, Cursor
from iotlib.local.emulator.namespace import EventHub, Namespace, Partition
from iotlib.local.emulator.throughput import SERVER_BUSY, ThroughputMeter

if TYPE_CHECKING:
    from iotlib.local.emulator.session import Session

_LOG = logging.getLogger("iotlib.local.emulator.links")

MAX_MESSAGE_SIZE = 1024 * 1024  # Azure standard tier: one event or batch at most 1 MiB
RUNTIME_METRIC = "com.microsoft:enable-receiver-runtime-metric"
INGRESS_CREDIT = 1000
DELIVERY_BATCH = 300  # events per delivery turn, so that one reader does not starve the others
READ_BYTES = 512 * 1024


def rejected(condition: str, description: str) -> p.Rejected:
    """The ``rejected`` outcome carrying an error."""
    return p.Rejected(p.AmqpError(condition, description))


class Link:
    """One end of an attached link, as the emulator sees it.

    An event link remembers what its token must keep covering (``entity_path``
    and ``right``); it is detached when no token of the connection covers it any more.
    """

    role: bool  # the emulator's role on this link

    def __init__(self, session: Session, name: str, handle: int, remote_handle: int) -> None:
        self.session = session
        self.name = name
        self.handle = handle
        self.remote_handle = remote_handle
        self.attached = True
        self.detach_sent = False
        self.grants: Grants | None = None  # set for event links
        self.entity_path = ""
        self.right = ""
        self.authorised_until = float("inf")

    def authorise(self, grants: Grants, entity_path: str, right: str, until: float) -> None:
        self.grants, self.entity_path, self.right, self.authorised_until = grants, entity_path, right, until

    def still_authorised(self, now: float) -> bool:
        """Links live as long as a token covers them; when the last one expires, they are closed."""
        if now < self.authorised_until:
            return True
        until = self.grants.until(self.entity_path, self.right, now) if self.grants is not None else None
        if until is not None:
            self.authorised_until = until
            return True
        self.session.detach_link(
            self,
            p.AmqpError("amqp:unauthorized-access", f"the token for '{self.entity_path}' expired and was not renewed"),
        )
        return False

    def on_flow(self, flow: p.Flow) -> None:
        pass

    def on_transfer(self, delivery_id: int | None, fmt: int, settled: bool, payload: bytes | None, size: int) -> None:
        """A complete delivery; ``payload`` is None when it passed the size limit (its bytes were dropped)."""
        self.session.conn.fail("amqp:not-allowed", "transfer on a link where the emulator is the sender")

    def closed(self) -> None:
        """The link is gone (detached, session ended or connection lost)."""
        self.attached = False


class _Receiving(Link):
    """Common credit handling for links on which the emulator receives."""

    role = f.ROLE_RECEIVER

    def __init__(self, session: Session, name: str, handle: int, remote_handle: int, delivery_count: int) -> None:
        super().__init__(session, name, handle, remote_handle)
        self.delivery_count = delivery_count or 0
        self.credit = 0

    def grant(self) -> None:
        self.credit = INGRESS_CREDIT
        self.session.send_link_flow(self.handle, self.delivery_count, self.credit)

    def count_delivery(self) -> None:
        self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF
        self.credit -= 1
        if self.credit < INGRESS_CREDIT // 2:
            self.grant()


class IngressLink(_Receiving):
    """Events from a producer into a hub (or one of its partitions)."""

    def __init__(
        self,
        session: Session,
        name: str,
        handle: int,
        remote_handle: int,
        delivery_count: int,
        *,
        hub: EventHub,
        partition: Partition | None,
        meter: ThroughputMeter,
        commit: GroupCommit,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(session, name, handle, remote_handle, delivery_count)
        self.hub = hub
        self.partition = partition
        self.meter = meter
        self.commit = commit
        self.clock = clock

    def on_transfer(self, delivery_id: int | None, fmt: int, settled: bool, payload: bytes | None, size: int) -> None:
        self.count_delivery()
        now = self.clock()
        if not self.still_authorised(now):
            return
        if payload is None or size > MAX_MESSAGE_SIZE:
            self._reject(
                delivery_id,
                settled,
                "amqp:link:message-size-exceeded",
                f"the message is {size} bytes; the limit is {MAX_MESSAGE_SIZE} bytes",
            )
            return
        try:
            own_keys: list[str | None] = []
            if fmt == message.BATCH_FORMAT:
                bodies, batch_key = message.split_batch(payload)
                events = []
                for body in bodies:
                    event, layout, own_key = message.scan_event(body)
                    key = b"" if own_key is not None or not batch_key else batch_key.encode()
                    events.append((event, layout, key))
                    own_keys.append(own_key)
                route_key = batch_key
            elif fmt == 0:
                event, layout, own_key = message.scan_event(payload)
                events = [(event, layout, b"")]
                route_key = own_key
            else:
                self._reject(
                    delivery_id,
                    settled,
                    "amqp:not-implemented",
                    f"message format 0x{fmt:08x} is not supported (use 0 or 0x80013700)",
                )
                return
        except DecodeError as exc:
            self._reject(delivery_id, settled, "amqp:decode-error", f"the message cannot be decoded: {exc}")
            return
        if events and self.grants is not None and self.grants.has_publishers:
            keys = (
                [own if own is not None else batch_key for own in own_keys]
                if fmt == message.BATCH_FORMAT
                else [route_key]
            )
            refused = self.grants.send_refusal(self.entity_path, keys, now)
            if refused is not None:  # a publisher's token: its own key only, and only while not revoked
                self._reject(delivery_id, settled, "amqp:unauthorized-access", refused)
                return
        if events:
            refusal = self.meter.admit(len(events), size, self.hub.name)
            if refusal is not None:  # over budget: refuse it whole, store nothing (logged as a summary)
                if not settled and delivery_id is not None:
                    self.commit.after_commit(self.session, delivery_id, rejected(SERVER_BUSY, refusal))
                return
            partition = self.partition or self.hub.route(route_key)
            partition.log.append(events, int(now * 1000))
            self.commit.touched(partition)
        if not settled and delivery_id is not None:
            self.commit.after_commit(self.session, delivery_id, None)

    def _reject(self, delivery_id: int | None, settled: bool, condition: str, description: str) -> None:
        _LOG.info("rejected a message on %s: %s", self.hub.name, description)
        if not settled and delivery_id is not None:
            self.commit.after_commit(self.session, delivery_id, rejected(condition, description))


class RequestLink(_Receiving):
    """Requests to ``$cbs`` or ``$management``."""

    def __init__(
        self,
        session: Session,
        name: str,
        handle: int,
        remote_handle: int,
        delivery_count: int,
        *,
        node: str,
        namespace: Namespace,
        grants: Grants,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(session, name, handle, remote_handle, delivery_count)
        self.node = node
        self.namespace = namespace
        self.connection_grants = grants
        self.clock = clock

    def on_transfer(self, delivery_id: int | None, fmt: int, settled: bool, payload: bytes | None, size: int) -> None:
        self.count_delivery()
        try:
            if payload is None:
                raise DecodeError(f"a {size}-byte request is larger than the {MAX_MESSAGE_SIZE}-byte limit")
            request = message.decode_request(payload)
        except DecodeError as exc:
            if not settled and delivery_id is not None:
                self.session.send_disposition(delivery_id, delivery_id, rejected("amqp:decode-error", str(exc)))
            return
        if not settled and delivery_id is not None:
            self.session.send_disposition(delivery_id, delivery_id, ACCEPTED)
        now = self.clock()
        if self.node == management.CBS_NODE:
            response = management.put_token(request, self.namespace, self.connection_grants, now)
        else:
            response = management.read(request, self.namespace, self.connection_grants, now, self.session.conn.hostname)
        reply = self.session.reply_link(self.node)
        if reply is None:
            _LOG.info("no reply link attached for %s; dropping the response", self.node)
            return
        reply.send(message.encode_response(request.message_id, response.application_properties(), response.body))


class ReplyLink(Link):
    """Answers from ``$cbs`` or ``$management``, sent within the client's credit."""

    role = f.ROLE_SENDER

    def __init__(self, session: Session, name: str, handle: int, remote_handle: int, node: str) -> None:
        super().__init__(session, name, handle, remote_handle)
        self.node = node
        self.delivery_count = 0
        self.credit = 0
        self.queue: list[bytes] = []

    def on_flow(self, flow: p.Flow) -> None:
        delivery_count = flow.delivery_count if flow.delivery_count is not None else 0
        self.credit = delivery_count + (flow.link_credit or 0) - self.delivery_count
        self._drain()

    def send(self, payload: bytes) -> None:
        self.queue.append(payload)
        self._drain()

    def _drain(self) -> None:
        while self.queue and self.credit > 0 and self.attached:
            self.session.send_message(self.handle, self.queue.pop(0))
            self.credit -= 1
            self.delivery_count += 1


class EgressLink(Link):
    """Delivers one partition of one consumer group to a consumer."""

    role = f.ROLE_SENDER

    def __init__(
        self,
        session: Session,
        name: str,
        handle: int,
        remote_handle: int,
        *,
        hub: EventHub,
        group: str,
        partition: Partition,
        cursor: Cursor,
        epoch: int | None,
        runtime_metric: bool,
        meter: ThroughputMeter,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(session, name, handle, remote_handle)
        self.hub = hub
        self.group = group
        self.partition = partition
        self.cursor = cursor
        self.epoch = epoch
        self.runtime_metric = runtime_metric
        self.meter = meter
        self.clock = clock
        self.delivery_count = 0
        self.credit = 0
        self._scheduled = False
        self._held: asyncio.TimerHandle | None = None  # waiting for egress budget
        self.drain = False
        partition.waiters.add(self.wake)

    def on_flow(self, flow: p.Flow) -> None:
        delivery_count = flow.delivery_count if flow.delivery_count is not None else 0
        self.credit = max(0, delivery_count + (flow.link_credit or 0) - self.delivery_count)
        self.drain = bool(flow.drain)
        if flow.echo:
            self.session.send_link_flow(self.handle, self.delivery_count, self.credit)
        self.wake()

    def wake(self) -> None:
        if not self._scheduled and self._held is None and self.attached:
            self._scheduled = True
            self.session.conn.loop.call_soon(self._pump)

    def _release(self) -> None:
        self._held = None
        self.wake()

    def _pump(self) -> None:
        self._scheduled = False
        if not self.attached:
            return
        try:
            self._deliver()
        except Exception as exc:  # a bug must cost this link, never the loop or other links
            _LOG.exception("internal error delivering %s to link %r", self.entity_path, self.name)
            self.session.detach_link(self, p.AmqpError("amqp:internal-error", f"emulator error: {exc}"))

    def _deliver(self) -> None:
        session = self.session
        conn = session.conn
        if conn.paused:
            conn.blocked.add(self)
            return
        budget = min(self.credit, DELIVERY_BATCH, session.remote_incoming_window)
        now = self.clock()
        if budget <= 0 or not self.still_authorised(now):
            return
        log = self.partition.log
        meter = self.meter
        max_bytes = READ_BYTES
        if meter.limited and log.has_data(self.cursor):
            budget, max_bytes, wait = meter.egress_allowance(budget, READ_BYTES)
            if not budget:
                self._held = conn.loop.call_later(wait, self._release)
                return
        records = log.read(self.cursor, budget, max_bytes)
        if not records:
            if self.drain and self.credit:
                self.delivery_count = (self.delivery_count + self.credit) & 0xFFFFFFFF
                self.credit = 0
                self.drain = False
                session.send_link_flow(self.handle, self.delivery_count, 0)
            return
        da = b""
        metrics = None
        if self.runtime_metric:
            metrics = {
                "last_enqueued_sequence_number": c.enc_long(log.last_seq),
                "last_enqueued_offset": c.enc_string(str(log.last_offset)),
                "last_enqueued_time_utc": c.enc_timestamp(log.last_time),
                "runtime_info_retrieval_time_utc": c.enc_timestamp(int(now * 1000)),
            }
            da = message.delivery_annotations_section(metrics)
        out: list[Any] = []
        channel = session.channel
        handle = self.handle
        limit = conn.remote_max_frame_size - f.TRANSFER_OVERHEAD
        delivery_id = session.next_outgoing_id
        frames = 0
        delivered = 0
        deliverable = message.deliverable
        transfer = f.presettled_transfer
        for record in records:
            # An event with delivery annotations of its own gets ours merged into them (the slow path).
            merge = metrics is not None and record.layout.flags & FLAG_USER_DELIVERY_ANNOTATIONS
            chunks = deliverable(
                record.body,
                record.layout,
                seq=record.seq,
                offset=record.offset,
                enqueued_ms=record.enqueued_ms,
                key=record.key,
                delivery_annotations=b"" if merge else da,
            )
            if merge and metrics is not None:
                chunks = [message.merge_delivery_annotations(chunks, metrics)]
            size = 0
            for chunk in chunks:
                size += len(chunk)
            delivered += size
            if size <= limit:
                out.append(transfer(channel, handle, delivery_id, size))
                out.extend(chunks)
                frames += 1
            else:
                frames += session.split_transfer(out, handle, delivery_id, b"".join(chunks))
            delivery_id = (delivery_id + 1) & 0xFFFFFFFF
        n = len(records)
        session.next_outgoing_id = delivery_id
        session.remote_incoming_window -= frames
        self.credit -= n
        self.delivery_count = (self.delivery_count + n) & 0xFFFFFFFF
        meter.delivered(n, delivered)
        conn.write(b"".join(out))
        if self.credit > 0 and log.has_data(self.cursor):
            self.wake()

    def closed(self) -> None:
        super().closed()
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self.partition.waiters.discard(self.wake)
        self.hub.slot(self.group, self.partition.id).remove(self)
