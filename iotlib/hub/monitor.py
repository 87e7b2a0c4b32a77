"""The lag monitor: how far each consumer group is behind the hub, partition by partition.

The original journey's monitor compared, per partition and consumer group, the last enqueued
sequence number with the last checkpointed one (events not yet processed), and showed the last
enqueued time beside the checkpoint's time. This one reads the same two sources a real deployment
has — the hub's partition properties (a cheap management call) and the checkpoint blobs that
``BlobCheckpointStore`` writes — and adds how long the oldest unprocessed event has waited and
the throughput in and out between looks (the arithmetic is in :mod:`iotlib.hub.lag`). The same
calls work against Azure unchanged.

- :class:`LagMonitor` (``async`` twin: :class:`iotlib.hub.aio.LagMonitor`): look once
  (:meth:`~LagMonitor.sample`), every few seconds (:meth:`~LagMonitor.watch`), or in the
  background while something else runs (:meth:`~LagMonitor.record`); a
  :class:`~iotlib.hub.lag.LagRule` turns looks into alerts.
- :func:`lag`: one look as a frame, for scripts.

A consumer group the checkpoint container knows nothing about is checked with the hub: one the
hub does not have either is a :class:`~iotlib.errors.ConfigurationError` (rather than every
event shown as unprocessed). A stopped local stack, a wrong key or hub is one line (:mod:`iotlib.preflight`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Unpack

import polars as pl

from iotlib._eventloop import made_on_loop
from iotlib.clients import MonitorClient
from iotlib.connections import Connections, EventHubConnection, StorageConnection
from iotlib.durations import Duration, to_seconds
from iotlib.errors import HubError
from iotlib.hub import aio
from iotlib.hub.lag import SCHEMA, LagAlert, LagRule, LagSample, summary
from iotlib.hub.monitor_options import DEFAULT_CHECKPOINTS, ConsumerGroups, MonitorOptions, MonitorParameters

__all__ = ["DEFAULT_CHECKPOINTS", "LagAlert", "LagMonitor", "LagRule", "LagSample", "Recording", "lag", "summary"]


class LagMonitor(MonitorClient):
    """How far consumer groups are behind one hub. Create with :meth:`from_settings` or
    :meth:`from_connection_string`; options: :class:`~iotlib.hub.monitor_options.MonitorOptions`.

    ``with LagMonitor.from_settings(consumer_groups={"warm": "warm-checkpoints"}) as m: m.sample().frame``
    """

    def __init__(
        self, eventhub: EventHubConnection, storage: StorageConnection, /, **options: Unpack[MonitorParameters]
    ):
        self._runner, self._inner = made_on_loop("iotlib-monitor", lambda: aio.LagMonitor(eventhub, storage, **options))
        self._lock = threading.Lock()  # one look at a time: each measures throughput against the last
        self.eventhub_name = eventhub.eventhub_name

    @property
    def options(self) -> MonitorOptions:
        return self._inner.options

    def __enter__(self) -> LagMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._inner.close())
        finally:
            self._runner.stop()

    def sample(self) -> LagSample:
        """One look: a row per consumer group and partition, and the alerts of the rule (if any)."""
        with self._lock:
            return self._runner.run(self._inner.sample())

    def watch(self, every: Duration, *, count: int | None = None) -> Iterator[LagSample]:
        """A look every ``every`` (a duration), ``count`` times or until the caller stops iterating."""
        interval = to_seconds(every, name="every", allow_zero=False)
        taken = 0
        while count is None or taken < count:
            started = time.monotonic()
            yield self.sample()
            taken += 1
            if count is None or taken < count:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))

    def record(self, every: Duration = 1.0) -> Recording:
        """Start looking every ``every`` in a background thread; stop with :meth:`Recording.stop`."""
        return Recording(self, to_seconds(every, name="every", allow_zero=False))


class Recording:
    """Looks taken in the background by :meth:`LagMonitor.record` until :meth:`stop`.

    ``frame()`` has every look so far (the columns of :mod:`iotlib.hub.lag`, one ``sampled_at`` per
    look), so lag over time is one ``group_by("sampled_at")`` away.
    """

    def __init__(self, monitor: LagMonitor, every: float) -> None:
        self.monitor = monitor
        self.every = every
        self.samples: list[LagSample] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="iotlib-monitor-recording", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                look = self.monitor.sample()
            except BaseException as exc:  # noqa: BLE001 - surfaced by wait_until/stop
                with self._changed:
                    self.error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self.samples.append(look)
                self._changed.notify_all()
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))

    def frame(self) -> pl.DataFrame:
        """Every look so far, one after the other."""
        frames = [s.frame for s in list(self.samples)]
        return pl.concat(frames) if frames else pl.DataFrame(schema=SCHEMA)

    def alerts(self) -> list[LagAlert]:
        """Every alert the looks raised, in order."""
        return [a for s in list(self.samples) for a in s.alerts]

    def wait_until(self, condition: Callable[[LagSample], bool], *, timeout: Duration = 300) -> LagSample:
        """Wait for a look taken from now on that meets ``condition`` (e.g. ``lambda look: look.unprocessed
        == 0``: caught up); return it. Looks only: no clock decides, however slow the machine."""
        limit = time.monotonic() + to_seconds(timeout, name="timeout")
        with self._changed:
            seen = len(self.samples)
            while True:
                for look in self.samples[seen:]:
                    if condition(look):
                        return look
                seen = len(self.samples)
                if self.error is not None:
                    raise self.error
                left = limit - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise HubError(f"no look met the condition within {to_seconds(timeout):g} s ({seen} looks)")
                self._changed.wait(left)

    def stop(self) -> pl.DataFrame:
        """Stop looking (after the look in progress) and return :meth:`frame`."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.frame()


def lag(
    consumer_groups: ConsumerGroups = DEFAULT_CHECKPOINTS,
    *,
    eventhub_connection_string: str | None = None,
    storage_connection_string: str | None = None,
    eventhub_name: str | None = None,
    lag_time: bool = True,
) -> pl.DataFrame:
    """One look as a frame: a row per consumer group and partition (columns: :mod:`iotlib.hub.lag`).

    ``consumer_groups`` maps each group to its checkpoint container (a plain list uses
    :data:`DEFAULT_CHECKPOINTS`, else ``checkpoints``). ``unprocessed`` counts events after the
    checkpoint (all retained events when there is none). Give both connection strings, or
    neither for :func:`iotlib.settings`'s. ``lag_time=False`` skips reading the oldest waiting
    event of each partition (``lag_seconds`` is then null where events wait).
    """
    parts = Connections.given(eventhub_connection_string, storage_connection_string, eventhub_name=eventhub_name)
    with LagMonitor(*parts, consumer_groups=consumer_groups, lag_time=lag_time) as monitor:
        return monitor.sample().frame
