"""Streaming equals batch: what the warm store holds against :mod:`iotlib.processing` on the same events.

The stream saw the hub's events in arrival order, cut into whatever batches
the consumer delivered, interleaved across partitions, perhaps across a crash
and a restart. Read the same events back (:func:`iotlib.hub.read`), decode
them the same way (:func:`iotlib.warm.incoming.from_hub_frame`) and run the
batch job over them with the same window, policy and the heartbeats the
stream recorded (``watermarks`` table): every window and every side output
must be identical. :func:`compare` does that and says, table by table, how
many rows each side has and whether they are equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from iotlib.durations import Duration
from iotlib.processing import EventTimePolicy
from iotlib.processing import columns as C
from iotlib.processing.building import BUILDING
from iotlib.processing.event_time import windows_with_policy
from iotlib.processing.reference import Registry
from iotlib.processing.results import Counts, EventTimeResult, WindowOutput
from iotlib.processing.windows import Window
from iotlib.warm import deadletters, incoming
from iotlib.warm.merge import PARTIAL_AGGS, final_windows
from iotlib.warm.partition import enrichment
from iotlib.warm.store import SIDE_TABLES, TABLES, WarmStore

_KEYS = {
    "window_history": ["window_end", "building_id", "window_start"],
    "dead_letters": ["partition_id", "sequence_number"],
}


@dataclass
class BatchView:
    """The batch job's answer for a received frame: windows, side outputs and dead letters.

    ``result.windows``: the building windows as the warm store holds them (every partition's
    partials merged, ``closed_at`` from every partition's watermarks); ``partials``: each
    partition's own windows; ``by_partition``: each partition's batch result (with its device state).
    """

    result: WindowOutput
    dead_letters: pl.DataFrame
    unmatched: pl.DataFrame
    partials: pl.DataFrame
    by_partition: dict[str, EventTimeResult]


def batch_view(
    events: pl.DataFrame,
    registry: pl.DataFrame | Registry,
    *,
    window: Window | Duration = "5s",
    policy: EventTimePolicy | None = None,
    heartbeats: pl.DataFrame | None = None,
    partitions: Sequence[str] | None = None,
    time: str = C.TIME_OBSERVED,
) -> BatchView:
    """The batch job over a received frame, partition by partition, as the warm job defines it.

    Dead letters are split off and the registry joined; each partition's events go through
    :func:`~iotlib.processing.event_time.windows_with_policy` on their own (with that partition's
    ``heartbeats``: a frame of ``partition_id``, ``tick_start``), and the partial windows are merged
    as the warm store merges them (:mod:`iotlib.warm.merge`). ``partitions``: the hub's partitions
    (default: those in ``events``).
    """
    valid, dead = deadletters.split(events)
    reg = Registry.of(registry)
    matched, unmatched = reg.enrich(valid.select(incoming.EVENT_COLUMNS), enrichment(reg))
    parts = [str(p) for p in (partitions if partitions is not None else sorted(set(events["partition_id"].to_list())))]
    outputs: dict[str, EventTimeResult] = {}
    partials, marks = [], []
    for pid in parts:
        own = matched.filter(pl.col(C.PARTITION) == pid)
        beats = None
        if heartbeats is not None:
            beats = heartbeats.filter(pl.col(C.PARTITION) == pid)["tick_start"]
        res = windows_with_policy(own, window, by=[BUILDING], aggs=PARTIAL_AGGS, policy=policy, heartbeats=beats,
                                  time=time)  # fmt: skip
        outputs[pid] = res
        partials.append(res.windows.with_columns(pl.lit(pid).alias(C.PARTITION)))
        marks.append(res.watermarks.with_columns(pl.lit(pid).alias(C.PARTITION)))
    result = WindowOutput.concat(list(outputs.values()))
    result.windows = final_windows(pl.concat(partials, how="diagonal_relaxed"), pl.concat(marks), parts)
    result.unmatched = unmatched
    result.counts = result.counts + Counts(unmatched=unmatched.height)
    return BatchView(result, dead, unmatched, pl.concat(partials, how="diagonal_relaxed"), outputs)


@dataclass
class Comparison:
    """Per warm-store table: rows in the stream's store, rows in the batch answer, equal or not."""

    rows: list[tuple[str, int, int, bool]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return all(ok for *_, ok in self.rows)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=["table", "stream", "batch", "identical"], orient="row")

    def __repr__(self) -> str:
        parts = ", ".join(f"{t} {s}/{b}{'' if ok else ' DIFFERENT'}" for t, s, b, ok in self.rows)
        return f"Comparison({'equal' if self.equal else 'NOT equal'}: {parts})"


def _same(table: str, stream: pl.DataFrame, batch: pl.DataFrame) -> tuple[str, int, int, bool]:
    spec = TABLES[table]
    cols = [c for c in spec.names if c in batch.columns]
    keys = _KEYS.get(table, ["partition_id", "sequence_number", "reason"])
    b = batch.select([pl.col(c).cast(spec.schema()[c]) for c in cols]).sort(keys, nulls_last=True)
    s = stream.select(cols).sort(keys, nulls_last=True)
    return table, s.height, b.height, s.equals(b)


def compare(
    store: WarmStore,
    events: pl.DataFrame,
    registry: pl.DataFrame | Registry,
    *,
    window: Window | Duration = "5s",
    policy: EventTimePolicy | None = None,
    time: str = C.TIME_OBSERVED,
) -> Comparison:
    """The warm store against the batch job over ``events`` (a received frame of everything the store consumed).

    Uses the store's recorded watermark evaluations as heartbeats, and its list of the hub's partitions.
    """
    view = batch_view(events, registry, window=window, policy=policy, heartbeats=store.watermarks(),
                      partitions=store.hub_partitions() or None, time=time)  # fmt: skip
    out = Comparison()
    out.rows.append(_same("window_history", store.history(), view.result.windows))
    for name, table in SIDE_TABLES.items():
        frame = view.unmatched if name == "unmatched" else getattr(view.result, name)
        out.rows.append(_same(table, store.table(table), frame))
    out.rows.append(_same("dead_letters", store.dead_letters(), view.dead_letters))
    return out
