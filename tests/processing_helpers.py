"""Simulated input for the processing tests: the product's simulator, as a hub consumer reads it."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from iotlib.fleet import scenario, simulate
from iotlib.fleet.delivery import Delivery, deliver
from iotlib.fleet.faults import ClockSkew, Duplicates, Offline


def simulated(
    devices: int, minutes: int, seed: int, *, faults: bool = True, resends: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(registry, events)`` in arrival order, 30 devices a building.

    With ``faults``: three skewed clocks (30 s to 10 min, ahead or behind),
    one device offline for two minutes, slow transit for 5 % of sends and,
    with ``resends``, readings sent twice and a consumer replay. Devices 0-3
    stay healthy (tests drop them from the registry to make unmatched events).
    """
    reg = scenario.build_registry(devices, buildings=max(1, devices // 30), equal_buildings=True, seed=seed)
    ids = tuple(reg["device_id"].to_list())
    chosen: list = []
    if faults:
        chosen = [
            ClockSkew(
                devices=ids[4:7], min_skew=timedelta(seconds=30), max_skew=timedelta(minutes=10), direction="both"
            ),
            Offline(devices=ids[7:8], outage=timedelta(minutes=2)),
        ]
        if resends:
            chosen.append(Duplicates(probability=0.01))
    sent = simulate.generate(reg, start=None, duration=timedelta(minutes=minutes), seed=seed, faults=chosen)
    model = Delivery(partitions=4, slow_fraction=0.05 if faults else 0.0, replays=1 if faults and resends else 0)
    return reg, deliver(sent, model, seed=seed)
