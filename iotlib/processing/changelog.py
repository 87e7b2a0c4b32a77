"""A window engine's state as a changelog: what changed since the last look, and the engine rebuilt from it.

Stream processors keep operator state as changelogs (Kafka Streams' changelog topics, Flink's
incremental checkpoints): each commit writes what changed, so its cost follows the traffic, not
the size of the fleet. A :class:`~iotlib.processing.incremental.WindowEngine` holds four kinds of
state, and :func:`changes` hands each over in the form that stays cheap:

- the **core** (watermark clock, counts, settings, schema): small, pickled whole each time;
- one record per **device** (events, newest event time, clock skew): only those touched since (or,
  to compact a store's log of them, every device's);
- the **open windows' rows**: the rows added since; a row is obsolete once its window closed
  (window end before the engine's ``frontier``), so a store can drop whole chunks of them;
- the **duplicate memory**: the sightings added since; obsolete once older than the horizon
  (``forget_before``).

:func:`rebuild` makes the engine again from the last core, every device record and the chunks of
rows and sightings not yet obsolete: it then answers exactly as the engine it replaces.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from iotlib.processing.dedupe import DuplicateFilter, Sighting
from iotlib.processing.windows import END

#: A device's record: device id, events, last arrival, newest eligible event time, clock-ahead events,
#: largest skew (µs; :data:`~iotlib.processing.watermarks.NONE` where unknown).
DeviceRecord = tuple[str, int, int, int, int, int]
#: Attributes that are not the core: the big state, handed over as changes, and per-batch scratch.
_NOT_CORE = frozenset(
    {"_devices", "_buffer", "_dedupe", "_touched", "_fresh", "_sightings_mark", "_frontier", "_reordered", "_e", "_a"}
)


@dataclass
class EngineChanges:
    """What changed in a window engine since the previous :func:`changes` (see the module text)."""

    core: bytes
    devices: list[DeviceRecord]
    rows: pl.DataFrame
    sightings: list[Sighting]
    frontier: int | None
    forget_before: int | None

    @property
    def size(self) -> int:
        """Roughly how many bytes a store writes for these changes."""
        return (
            len(self.core)
            + 48 * len(self.devices)
            + int(self.rows.estimated_size())
            + 64 * sum(len(s[1]) for s in self.sightings)
        )


def changes(engine: Any, *, all_devices: bool = False) -> EngineChanges:
    """What changed since the last call (the first call: everything); marks it all as handed over."""
    state = {k: v for k, v in engine.__dict__.items() if k not in _NOT_CORE}
    state["_dedupe_clock"] = engine._dedupe._clock  # noqa: SLF001 - the engine's own state
    devices = engine._devices  # noqa: SLF001
    touched = devices if all_devices else engine._touched  # noqa: SLF001
    records: list[DeviceRecord] = [(d, *devices[d]) for d in touched if d in devices]
    engine._touched = set()  # noqa: SLF001
    fresh = engine._fresh  # noqa: SLF001
    rows = (pl.concat(fresh, how="vertical") if len(fresh) > 1 else fresh[0]) if fresh else pl.DataFrame()
    engine._fresh = []  # noqa: SLF001
    dedupe = engine._dedupe  # noqa: SLF001
    sightings = dedupe.sightings_since(engine._sightings_mark)  # noqa: SLF001
    engine._sightings_mark = dedupe.recorded  # noqa: SLF001
    return EngineChanges(
        core=pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),
        devices=records,
        rows=rows,
        sightings=sightings,
        frontier=engine._clock.frontier,  # noqa: SLF001
        forget_before=dedupe.forget_before,
    )


def rebuild(
    engine: Any,
    core: bytes,
    devices: Iterable[Sequence[object]],
    rows: Sequence[pl.DataFrame],
    sightings: Sequence[Sighting],
) -> None:
    """Make the blank ``engine`` (``WindowEngine.__new__``) the one whose last :func:`changes` gave ``core``,
    from every device record and the chunks kept since."""
    state = pickle.loads(core)
    dedupe_clock = state.pop("_dedupe_clock")
    engine.__dict__.update(state)
    engine._devices = {str(r[0]): [int(v) for v in r[1:6]] for r in devices}  # type: ignore[call-overload]  # noqa: SLF001
    frontier = engine._clock.frontier  # noqa: SLF001
    kept = [r for r in rows if r.height]
    if kept:
        buffer = pl.concat(kept, how="vertical")
        if frontier is not None:
            buffer = buffer.filter(pl.col(END) >= frontier)  # closed since the chunk was written
        engine._buffer = [buffer] if buffer.height else []  # noqa: SLF001 - chunks are in arrival order
    else:
        engine._buffer = []  # noqa: SLF001
    engine._dedupe = DuplicateFilter.rebuild(engine.policy.dedupe_horizon_us, sightings, dedupe_clock)  # noqa: SLF001
    engine._touched = set()  # noqa: SLF001
    engine._fresh = []  # noqa: SLF001
    engine._sightings_mark = engine._dedupe.recorded  # noqa: SLF001
