"""The window engine's changelog: an engine rebuilt from its changes answers exactly as the original.

A streaming job stores only what changed at each commit (touched devices, new open-window rows,
new duplicate sightings, a small core). Rebuilt from every commit's changes at any point, the
engine must go on exactly as one that never stopped — windows, side outputs, counts, state.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from processing_helpers import simulated

from iotlib.processing.building import BUILDING, BUILDING_AGGS
from iotlib.processing.changelog import EngineChanges
from iotlib.processing.incremental import WindowEngine
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.reference import Registry
from iotlib.processing.results import WindowOutput
from iotlib.processing.windows import END


class ChangeStore:
    """What a warm store keeps of the changes: the last core, each device's last record, live chunks."""

    def __init__(self) -> None:
        self.core = b""
        self.devices: dict[str, tuple] = {}
        self.rows: list[pl.DataFrame] = []
        self.sightings: list = []

    def apply(self, c: EngineChanges) -> None:
        self.core = c.core
        self.devices.update({r[0]: r for r in c.devices})
        if c.rows.height:
            self.rows.append(c.rows)
        self.sightings += c.sightings
        # Drop what is obsolete, as a store would: whole chunks only.
        if c.frontier is not None:
            self.rows = [r for r in self.rows if r[END].max() >= c.frontier]
        if c.forget_before is not None:
            self.sightings = [s for s in self.sightings if s[0] >= c.forget_before]

    def rebuild(self) -> WindowEngine:
        return WindowEngine.rebuild(self.core, list(self.devices.values()), self.rows, self.sightings)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), cut=st.integers(0, 2**32 - 1),
       policy=st.builds(EventTimePolicy, late_policy=st.sampled_from(["side_output", "adjust", "drop"]),
                        out_of_order=st.sampled_from(["0s", "2s"]), dedupe_horizon=st.sampled_from(["30s", "2m"])))  # fmt: skip
def test_an_engine_rebuilt_from_its_changes_goes_on_exactly(seed, cut, policy):
    registry, events = simulated(90, 8, seed)
    matched, _ = Registry(registry).enrich(events, [BUILDING])
    rng = np.random.default_rng(cut)
    whole = WindowEngine("5s", by=[BUILDING], aggs=BUILDING_AGGS, policy=policy)
    expected = WindowOutput.concat([whole.feed(matched), whole.flush()])

    make = lambda: WindowEngine("5s", by=[BUILDING], aggs=BUILDING_AGGS, policy=policy)  # noqa: E731
    engine, store, outs, i = make(), ChangeStore(), [], 0
    committed = (0, 0)  # events fed and outputs kept at the last stored changes
    rebuilds = 0
    while i < matched.height:
        n = int(rng.integers(1, 60))
        outs.append(engine.feed(matched.slice(i, n)))
        i += n
        if rng.random() < 0.5:
            store.apply(engine.changes())
            committed = (i, len(outs))
        if rng.random() < 0.15:  # a crash: what was not stored is lost, and read again
            i, kept = committed
            outs = outs[:kept]
            engine = store.rebuild() if store.core else make()
            rebuilds += bool(store.core)
    outs.append(engine.flush())
    got = WindowOutput.concat(outs)
    assert got.windows.equals(expected.windows)
    for name in ("late", "adjusted", "dropped", "duplicates"):
        assert getattr(got, name).equals(getattr(expected, name)), name
    assert engine.totals == whole.totals
    assert engine.devices().equals(whole.devices())
    event(f"rebuilt {min(rebuilds, 3)}+ times")
