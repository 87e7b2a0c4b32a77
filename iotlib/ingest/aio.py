"""Send simulated telemetry to Event Hubs, asynchronously: the engine behind both clients.

Each event goes to the partition its device id maps to (Event Hubs' own key
hash, see :mod:`iotlib.ingest.partitioning`) and carries that key, its JSON body and
the ``DeviceId``/``EventType``/``EventTypeVersion`` application properties.
Events are packed into batches up to the link's maximum size, one task per
partition sends them in order, and several partitions are in flight at once.
Throttling and transient errors are retried with exponential back-off and
counted; a batch that still fails is reported event by event, never dropped.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import polars as pl
from azure.eventhub import EventData
from azure.eventhub.exceptions import (
    AuthenticationError,
    ClientClosedError,
    EventDataError,
    EventHubError,
)
from tqdm.auto import tqdm

from iotlib._eventloop import StoppableEngine
from iotlib.clients import EventHubClient, ProducerOptions
from iotlib.connections import EventHubConnection
from iotlib.errors import ConfigurationError, IngestError, IotlibError
from iotlib.fleet import events as _events
from iotlib.ingest.as_devices import DeviceSenders, DeviceSource, reason, refused
from iotlib.ingest.plan import MODES, Outgoing, chunks, encode, frames, route, ticks
from iotlib.ingest.report import Failure, IngestReport
from iotlib.preflight import aio as preflight
from iotlib.preflight.endpoints import eventhub_endpoint
from iotlib.preflight.reasons import eventhub_failure, sdk_description

T = TypeVar("T")
PARTITION_KEY = b"x-opt-partition-key"
#: Events added to a batch between looks at the loop (other sends, a stop).
_ADDS_PER_YIELD = 256
#: Events in a send's first chunk (each next one twice as many, up to ``chunk_events``), so sending starts at once.
FIRST_CHUNK_EVENTS = 2_000
#: Pause after a throttled send (ServerBusy) when the hub names no wait, in seconds: a
#: throughput-unit budget refills every second, so waiting longer only wastes it.
THROTTLE_PAUSE = 1.0
#: Seconds a batch keeps waiting out throttling while no batch of the run is accepted.
THROTTLE_GIVE_UP = 120.0
# Errors no retry can fix: report them at once.
_FATAL = (AuthenticationError, ClientClosedError, EventDataError)


def _event(body: bytes, key: str, props: dict[str, str]) -> EventData:
    event = EventData(body)
    event.properties = props  # type: ignore[assignment]  # the SDK asks for dict[str | bytes, Any]; str keys are fine
    # Keep the key on each event while batching per partition, as the SDK's buffered producer does.
    event.raw_amqp_message.annotations = {PARTITION_KEY: key}
    return event


def _is_throttle(exc: BaseException) -> bool:
    text = f"{exc!r} {getattr(exc, 'error', '')}".lower()
    return "server-busy" in text or "serverbusy" in text or "throttl" in text


def _wait_hint(exc: BaseException) -> float | None:
    """The wait a throttled send is told to keep ("Please wait 4 seconds and try again"), at most 30 s."""
    found = re.search(r"wait (\d+(?:\.\d+)?) seconds?", f"{exc} {getattr(exc, 'error', '')}", re.IGNORECASE)
    return min(float(found.group(1)), 30.0) if found else None


class SendOptions(TypedDict, total=False):
    """The keywords of :meth:`IngestClient.send` (sync and async), described there."""

    mode: Literal["replay", "live"]
    speed: float
    send_malformed: bool
    max_batch_events: int | None
    chunk_events: int
    tick: float
    max_retries: int
    backoff: float
    progress: bool
    devices: DeviceSource | None


class IngestClient(EventHubClient, StoppableEngine):
    """Sends events to one event hub (async). Create with :meth:`from_connection_string` or :meth:`from_settings`.

    Use as ``async with IngestClient.from_settings() as client: report = await client.send(frame)``.
    ``options`` go to the SDK's producer client (e.g. ``retry_total``).
    """

    def __init__(self, eventhub: EventHubConnection, /, **options: Unpack[ProducerOptions]) -> None:
        try:
            self._producer = eventhub.producer(**options)
        except ValueError as exc:
            raise ConfigurationError(f"cannot use this Event Hubs connection string: {exc}") from exc
        self.eventhub = eventhub
        self.eventhub_name = eventhub.eventhub_name
        self._options = options
        self._partition_ids: list[str] | None = None
        #: The report of the current or last :meth:`send` (live while it runs).
        self.report: IngestReport | None = None
        self._props: dict[str, dict[str, str]] = {}

    async def __aenter__(self) -> IngestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._producer.close()

    async def partition_ids(self) -> list[str]:
        """The hub's partition ids. The first call checks the hub (:mod:`iotlib.preflight`): a stack that
        is down, a refused key or a missing hub raise :class:`~iotlib.errors.EndpointError` in seconds."""
        if self._partition_ids is None:
            ids = await preflight.check_eventhub(self.eventhub, **self._options)
            if ids is None:  # too slow to tell: the producer's own retries decide
                try:
                    ids = list(await self._producer.get_partition_ids())
                except EventHubError as exc:
                    line = eventhub_failure(exc, self.eventhub, eventhub_endpoint(self.eventhub))
                    raise IngestError(line or f"event hub '{self.eventhub_name}': {sdk_description(exc)}") from None
            self._partition_ids = ids
        return self._partition_ids

    async def send(
        self,
        events: pl.DataFrame | Iterable[pl.DataFrame] | Iterable[_events.UpdateTemperatureEvent],
        *,
        mode: Literal["replay", "live"] = "replay",
        speed: float = 1.0,
        send_malformed: bool = False,
        max_batch_events: int | None = None,
        chunk_events: int = 50_000,
        tick: float = 0.1,
        max_retries: int = 6,
        backoff: float = 0.2,
        progress: bool = True,
        devices: DeviceSource | None = None,
    ) -> IngestReport:
        """Send ``events``: a simulation frame, a :class:`~iotlib.fleet.simulate.Simulation` (streamed
        chunk by chunk), an iterable of frames, or ``UpdateTemperatureEvent`` objects.

        ``mode="replay"`` sends as fast as the hub takes them; ``mode="live"``
        paces them by ``sent_at``, ``speed`` times faster than real time (1 = the
        scenario's own rate). ``max_batch_events`` caps events per batch (default:
        as many as fit the link's size limit). Malformed payloads are held back
        and reported unless ``send_malformed``. A send that fails for a passing reason is retried
        up to ``max_retries`` times with a jittered ``backoff``; a send the hub throttles waits as
        long as the hub says and tries again, for as long as the run keeps getting batches through
        (after ``THROTTLE_GIVE_UP`` seconds with none, its events go to ``failed``).

        ``devices`` (a :class:`~iotlib.devices.DeviceRegistry`, a mapping of device id to
        credentials, or a function of the device id) makes each device send with its own publisher
        token and its id as partition key (:mod:`iotlib.ingest.as_devices`); a device the hub
        refuses (revoked, disabled, expired) has its events in ``failed`` with the hub's reason,
        and the rest of the fleet sends on. One connection per device: for small fleets.

        One sender task per partition drains a short queue, so encoding the next
        chunk overlaps sending this one, and in live mode whatever piles up while a
        send is in flight goes out together in the next batch. ``max_lag_seconds``
        in the report is how late the latest event went out against its schedule.
        """
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if max_batch_events is not None and max_batch_events < 1:
            raise ConfigurationError(f"max_batch_events must be at least 1, got {max_batch_events}")
        if mode == "live" and speed <= 0:
            raise ConfigurationError(f"speed must be positive, got {speed}")
        self._stop_requested = False  # a stop asked between sends is not this send's
        self.report = None
        stream, total = frames(events)
        partition_ids = await self.partition_ids()
        self._arm_stop()
        stopping = self._stop
        assert stopping is not None
        report = self.report = IngestReport(self.eventhub_name, mode, speed if mode == "live" else None)
        bar = tqdm(total=total, unit="ev", desc=f"ingest ({mode})", disable=not progress, smoothing=0.1)
        senders = DeviceSenders(devices, self._options) if devices is not None else None
        run = _Run(self, report, bar, max_batch_events or 0, max_retries, backoff, stopping, senders)
        queues = {pid: asyncio.Queue[tuple[Outgoing, float] | None](maxsize=4) for pid in partition_ids}
        tasks = [asyncio.ensure_future(run.sender(queues[pid])) for pid in partition_ids]

        def encode_and_route(raw: pl.DataFrame) -> tuple[dict[str, Outgoing], list[Failure]]:
            return route(encode(raw), partition_ids, send_malformed=send_malformed)

        async def dispatch(chunk: pl.DataFrame, due: float) -> None:
            await dispatch_routed(route(chunk, partition_ids, send_malformed=send_malformed), due)

        async def dispatch_routed(routed: tuple[dict[str, Outgoing], list[Failure]], due: float) -> None:
            groups, held = routed
            report.rejected.extend(held)
            bar.update(len(held))
            for pid, group in groups.items():
                await queues[pid].put((group, due))
            if run.error is not None:  # a refusal no retry can fix: stop, keeping the report
                run.error.report = report
                raise run.error

        try:
            try:
                origin = None
                while not stopping.is_set():
                    # Simulating and encoding run off the loop, so sends go on meanwhile and a stop is seen at once.
                    frame = await _unless_stopped(stopping, _in_thread(next, stream, None))
                    if frame is None:
                        break
                    report.events_in += frame.height
                    if origin is None and frame.height:
                        origin = frame["sent_at"][0]
                    # Small chunks first, growing: the first batches go out while the rest is still being routed.
                    first = FIRST_CHUNK_EVENTS if report.events_in == frame.height else None
                    for raw in chunks(frame, chunk_events, first=first):
                        if mode == "replay":  # routing, too, is off the loop: sends in flight go on
                            routed = await _unless_stopped(stopping, _in_thread(encode_and_route, raw))
                            if routed is None:
                                break
                            await dispatch_routed(routed, 0.0)
                            continue
                        encoded = await _unless_stopped(stopping, _in_thread(encode, raw))
                        if encoded is None:
                            break
                        for due, chunk in ticks(encoded, speed=speed, tick=tick, origin=origin):
                            if run.clock is None:
                                # The first tick opens the sender links (about half a second each in the
                                # client); the schedule starts once it is out, so that cost is not lag.
                                await dispatch(chunk, due)
                                await asyncio.gather(*(q.join() for q in queues.values()))
                                run.clock = time.monotonic() - due
                                continue
                            delay = run.clock + due - time.monotonic()
                            if stopping.is_set() or (delay > 0 and await _stopped_within(stopping, delay)):
                                break
                            await dispatch(chunk, due)
            except KeyboardInterrupt:
                # Polars turns Ctrl-C into KeyboardInterrupt in whichever thread runs a query (this
                # loop's, or a preparation thread's), and the caller may then never see it: it is
                # this send's stop request, ended like any other (a loop killed by it hung the CLI).
                stopping.set()
            for q in queues.values():
                await q.put(None)
            await asyncio.gather(*tasks)
            if run.error is not None:
                run.error.report = report
                raise run.error
        except asyncio.CancelledError:
            stopping.set()
            raise
        finally:
            for task in tasks:
                task.cancel()
            if senders is not None:
                await senders.close()
            bar.close()
            report.finish(interrupted=stopping.is_set())
        return report

    def stop(self) -> None:
        """Stop a running :meth:`send` soon: no new batch goes out, those in flight finish, and ``send``
        returns its report with ``interrupted`` set and the events it read but did not send counted.
        Safe from any thread (the sync client calls it on Ctrl-C)."""
        StoppableEngine.stop(self)

    def _properties(self, device: str) -> dict[str, str]:
        props = self._props.get(device)
        if props is None:
            props = self._props[device] = _events.properties(device)
        return props


class _Run:
    """State of one send call shared by its per-partition sender tasks."""

    def __init__(
        self,
        client: IngestClient,
        report: IngestReport,
        bar: Any,
        max_batch_events: int,
        max_retries: int,
        backoff: float,
        stopping: asyncio.Event,
        senders: DeviceSenders | None = None,
    ) -> None:
        self.client = client
        self.stopping = stopping
        self.producer = client._producer
        self.senders = senders
        self.report = report
        self.bar = bar
        self.max_batch_events = max_batch_events
        self.max_retries = max_retries
        self.backoff = backoff
        self.clock: float | None = None
        self.error: IngestError | None = None

    async def sender(self, queue: asyncio.Queue[tuple[Outgoing, float] | None]) -> None:
        while True:
            item = await queue.get()
            if item is None:
                queue.task_done()
                return
            group, due = item
            taken = 1
            while not queue.empty():  # merge whatever piled up meanwhile
                nxt = queue.get_nowait()
                taken += 1
                if nxt is None:
                    queue.put_nowait(None)  # finish after this group
                    break
                group.extend(nxt[0])
                due = nxt[1]
            if self.error is None and not self.stopping.is_set():  # after a refusal or a stop, drain unsent
                try:
                    await self.send_group(group, due)
                except IngestError as exc:
                    self.error = exc
            for _ in range(taken):
                queue.task_done()

    async def send_group(self, group: Outgoing, due: float) -> None:
        if self.senders is None:
            await self.send_lane(group, self.producer, {"partition_id": group.partition_id})
        else:  # each device with its own token and its id as partition key
            for device, own in group.by_key().items():
                await self.send_device(device, own)
        if self.clock is not None:
            late = time.monotonic() - (self.clock + due)
            self.report.max_lag_seconds = max(self.report.max_lag_seconds, late)

    async def send_device(self, device: str, group: Outgoing) -> None:
        assert self.senders is not None
        try:
            producer = await self.senders.producer(device)
        except IotlibError as exc:  # no credentials for this device: it cannot send, the others can
            self.fail(group, 0, f"device {device!r} has no credentials: {exc}")
            return
        await self.send_lane(group, producer, {"partition_key": device}, device=device)

    def fail(self, group: Outgoing, start: int, why: str) -> None:
        """Report ``group``'s events from ``start`` on as failed, for ``why``."""
        self.report.failed.extend(
            Failure(group.keys[i], group.observed[i], why, group.partition_id) for i in range(start, len(group))
        )
        self.bar.update(len(group) - start)

    async def send_lane(self, group: Outgoing, producer: Any, where: dict[str, str], device: str | None = None) -> None:
        """``group`` in batches on ``producer``, addressed by ``where`` (a partition, or a device's key).

        Sending as ``device``, a refusal by the hub (revoked, disabled, expired) fails the rest of the
        group with the hub's reason and drops the device's producer; the other devices go on.
        """
        pid = group.partition_id
        limit = self.max_batch_events or len(group)
        start = 0
        while start < len(group) and not self.stopping.is_set():
            try:
                batch = await producer.create_batch(**where)
                end = start
                while end < len(group) and end - start < limit:
                    if (end - start) % _ADDS_PER_YIELD == _ADDS_PER_YIELD - 1:
                        # Filling a batch is Python work of seconds on a busy machine: let the other
                        # partitions' sends and a stop get a look in.
                        await asyncio.sleep(0)
                        if self.stopping.is_set():
                            return
                    key = group.keys[end]
                    try:
                        batch.add(_event(group.bodies[end], key, self.client._properties(key)))
                    except ValueError:
                        if end > start:
                            break
                        # One event larger than the hub takes: report it and go on.
                        self.report.failed.append(
                            Failure(
                                key,
                                group.observed[end],
                                f"event of {len(group.bodies[end]):,} bytes exceeds the hub's "
                                f"{batch.max_size_in_bytes:,}-byte limit",
                                pid,
                            )
                        )
                        self.bar.update(1)
                        start = end = end + 1
                        continue
                    end += 1
                if len(batch):
                    await self.send_batch(batch, group, start, end, producer=producer, device=device)
            except EventHubError as exc:
                if device is None or self.senders is None or not refused(exc):
                    raise
                self.fail(group, start, f"refused: {reason(exc)}")
                await self.senders.drop(device)
                return
            start = end

    async def send_batch(
        self, batch: Any, group: Outgoing, start: int, end: int, *, producer: Any, device: str | None = None
    ) -> None:
        pid = group.partition_id
        attempt, throttle_waited = 0, 0.0
        accepted = self.report.batches_sent
        while True:
            try:
                await producer.send_batch(batch)
            except EventHubError as exc:
                if device is not None and refused(exc):
                    raise  # send_device reports this device's events with the hub's reason
                if isinstance(exc, _FATAL):
                    line = eventhub_failure(exc, self.client.eventhub, eventhub_endpoint(self.client.eventhub))
                    raise IngestError(
                        line or f"event hub '{self.client.eventhub_name}' refused the send: {sdk_description(exc)}"
                    ) from None
                throttled = _is_throttle(exc)
                self.report.retries += 1
                self.report.throttled += throttled
                if throttled:
                    # The hub is pacing, not failing: wait for the budget as often as it takes. Give
                    # up only once THROTTLE_GIVE_UP seconds of waiting passed with no batch of the
                    # run accepted (something else holds the budget).
                    if self.report.batches_sent > accepted:
                        accepted, throttle_waited = self.report.batches_sent, 0.0
                    hint = _wait_hint(exc)
                    pause = hint if hint is not None else THROTTLE_PAUSE
                    gave_up = throttle_waited >= THROTTLE_GIVE_UP
                    throttle_waited += pause
                else:
                    attempt += 1
                    pause = min(self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()), 30.0)
                    gave_up = attempt > self.max_retries
                if gave_up:
                    why = (
                        f"throttled for {THROTTLE_GIVE_UP:.0f} s with nothing accepted: {exc}"
                        if throttled
                        else f"not accepted after {self.max_retries} retries: {exc}"
                    )
                    self.report.failed.extend(
                        Failure(group.keys[i], group.observed[i], why, pid) for i in range(start, end)
                    )
                    self.bar.update(end - start)
                    return
                if await _stopped_within(self.stopping, pause):
                    return  # stopped while backing off: this batch stays unsent
                continue
            self.report.record_send(
                pid, end - start, batch.size_in_bytes, sum(group.malformed[start:end]), device=device
            )
            self.bar.update(end - start)
            return


def _in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` on a daemon thread of its own, as a future of the running loop.

    The loop stays free to send and to notice a stop meanwhile; a computation abandoned by a stop
    never keeps the process from exiting (executor threads would be joined at exit).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    thread = threading.Thread(target=work, name="iotlib-ingest-prepare", daemon=True)
    _preparing.add(thread)
    thread.start()
    return future


#: Preparation threads not finished yet (a stop leaves the one in progress behind).
_preparing: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
EXIT_GRACE = 30.0  # seconds the interpreter waits at exit for abandoned preparation to finish


@atexit.register
def _finish_preparing() -> None:
    """Let abandoned preparation finish before the interpreter goes: a daemon thread still inside
    polars or numba when Python finalizes is torn down mid-call, and the process aborts (SIGABRT)
    instead of exiting with its status."""
    deadline = time.monotonic() + EXIT_GRACE
    for thread in list(_preparing):
        thread.join(max(0.0, deadline - time.monotonic()))


async def _unless_stopped(stopping: asyncio.Event, future: asyncio.Future[T]) -> T | None:
    """``future``'s result, or None as soon as ``stopping`` is set."""
    if stopping.is_set():
        return None
    waiter: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    pending: set[asyncio.Future[Any]] = {future, waiter}
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return future.result() if future.done() else None


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as ``stopping`` is set."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True
