"""Merging per-partition micro-batches into one stream in arrival order.

An Event Hubs consumer receives each partition's events in order, but the
partitions' batches interleave arbitrarily. The engine's results are defined
on the global arrival order (:mod:`iotlib.processing.policy`), so a streaming
job puts each partition's batch into an :class:`ArrivalMerger` and feeds the
engine what :meth:`ArrivalMerger.pop` releases: every buffered event that
arrived before the latest arrival of every partition — nothing still to come
can sort before it. Like ASA's merger, this waits for the slowest partition,
except that a partition whose latest arrival is more than ``idle_timeout``
behind the newest one no longer holds the others back. Declare the hub's
partitions up front (``partitions=client.get_partition_ids()``) so that one
which has delivered nothing yet holds the others too (until it idles).

A quiet partition holds the others back until it idles. When the consumer
knows better — it has read a partition up to the hub's last enqueued event as
of some hub time — :meth:`ArrivalMerger.mark` says so, and the others' events
before that time are released at once. :attr:`ArrivalMerger.released_until`
is then the safe time for an engine heartbeat (``WindowEngine.advance``):
every event that arrived before it has been released.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from iotlib.durations import Duration, to_us
from iotlib.errors import ValidationError
from iotlib.processing import columns as C

NO_TIME = -(2**63)


class ArrivalMerger:
    """Buffers per-partition batches; releases events in global arrival order."""

    def __init__(self, partitions: Iterable[str | int] = (), *, idle_timeout: Duration = "30s") -> None:
        self.idle_timeout_us = to_us(idle_timeout, name="idle_timeout", allow_zero=False)
        self._pending: dict[str, pl.DataFrame] = {}
        self._latest: dict[str, int] = {}
        self._declared = {str(p) for p in partitions}
        self._first: int | None = None  # earliest arrival seen: unseen partitions idle from there
        self._arrival: str | None = None

    @property
    def pending(self) -> int:
        """Events buffered, not yet released."""
        return sum(f.height for f in self._pending.values())

    def push(self, partition_id: str | int, events: pl.DataFrame) -> None:
        """Add one partition's next batch (its events in order)."""
        if events.height == 0:
            return
        if self._arrival is None:
            self._arrival = C.arrival_column(events.schema)
        key = str(partition_id)
        us = events.select(C.epoch_us(self._arrival).alias("a"))["a"]
        if us.null_count():
            raise ValidationError(f"partition {key}: events without an arrival time cannot be merged")
        lo, hi = us.min(), us.max()
        assert isinstance(lo, int) and isinstance(hi, int)  # µs of a non-empty column without nulls
        if key in self._latest and lo < self._latest[key]:
            raise ValidationError(
                f"partition {key}: batch goes back in arrival time; push each partition's events in order"
            )
        self._latest[key] = max(self._latest.get(key, hi), hi)
        self._first = lo if self._first is None else min(self._first, lo)
        old = self._pending.get(key)
        self._pending[key] = events if old is None else pl.concat([old, events], how="vertical")

    def mark(self, partition_id: str | int, arrival_us: int) -> None:
        """Partition ``partition_id`` has delivered every event that arrived before ``arrival_us``.

        For a partition read up to the hub's last enqueued event: its next event
        can only arrive at or after the hub's clock at that moment. Marks never
        move a partition back; an earlier mark than its latest event is ignored.
        """
        key = str(partition_id)
        if arrival_us > self._latest.get(key, NO_TIME):
            self._latest[key] = arrival_us
        if self._first is None:
            self._first = arrival_us

    @property
    def released_until(self) -> int | None:
        """Arrival time (µs) before which every event has been released by :meth:`pop`, if known."""
        return self._bound()

    def pop(self) -> pl.DataFrame:
        """Events that can no longer be preceded by anything unseen, in arrival order."""
        bound = self._bound()
        return pl.DataFrame() if bound is None else self._release(bound)

    def _bound(self) -> int | None:
        if not self._latest:
            return None
        newest = max(self._latest.values())
        idle_before = newest - self.idle_timeout_us
        assert self._first is not None  # set with the first push or mark, as _latest is
        if any(p not in self._latest for p in self._declared) and self._first >= idle_before:
            return None  # a declared partition has not spoken yet and is not idle
        return min(t for t in self._latest.values() if t >= idle_before)

    def drain(self) -> pl.DataFrame:
        """Everything still buffered (end of stream), in arrival order."""
        return self._release(None)

    def _release(self, bound: int | None) -> pl.DataFrame:
        out = []
        for key, frame in list(self._pending.items()):
            if bound is None:
                out.append(frame)
                del self._pending[key]
                continue
            assert self._arrival is not None  # set by the push that buffered this frame
            early = frame.select(C.epoch_us(self._arrival) < bound).to_series()
            n = int(early.sum())
            if n:
                out.append(frame.head(n))
                rest = frame.slice(n)
                if rest.height:
                    self._pending[key] = rest
                else:
                    del self._pending[key]
        if not out:
            return pl.DataFrame()
        merged = pl.concat(out, how="vertical")
        keys = [self._arrival] + [c for c in (C.SEQUENCE, C.PARTITION) if c in merged.columns]
        if C.PARTITION in merged.columns:
            merged = merged.with_columns(pl.col(C.PARTITION).cast(pl.String).alias("__pkey"))
            keys[-1] = "__pkey"
        return merged.sort(keys, nulls_last=True, maintain_order=True).drop("__pkey", strict=False)
