"""The journey's figures, saved as PNG under the run's ``out`` folder (``out/`` for ``make demo``)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from matplotlib.figure import Figure

from iotlib.cli.journey.state import Demo

#: Resolution of the saved figures.
DPI = 110


def figures(demo: Demo) -> None:
    """One PNG per question: lag while it ran, the warm store's windows, the buildings over the heat
    event from the cold store, events per device."""
    demo.out.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES.items():
        path = demo.out / f"{name}.png"
        draw(demo).savefig(path, dpi=DPI)
        demo.figures[name] = path
    demo.say(
        "figures", f"{len(demo.figures)} PNG files in {demo.out}/: {', '.join(p.name for p in demo.figures.values())}"
    )


def _lag(demo: Demo) -> Figure:
    from iotlib.hub.plots import lag_over_time

    return lag_over_time(
        demo.results["looks"],
        sending=demo.results["sending"],
        title="Lag of capture and the warm job while the fleet sent live, and after",
    )


def _buildings(demo: Demo) -> Figure:
    from iotlib.warm.plots import building_timeline

    history: pl.DataFrame = demo.results["history"]
    calm = sorted(b for b in history["building_id"].unique().to_list() if b != 1)[:2]
    return building_timeline(
        history,
        [1, *calm],
        alerts=demo.results["alerts"],
        threshold=30,
        title="Average temperature per 5 s window in the warm store: the heat event in building 1",
    )


def _events_per_device(demo: Demo) -> Figure:
    from iotlib.analysis.plots import events_per_device

    return events_per_device(
        demo.results["answers"]["events_per_device"],
        span=f"the {demo.minutes} minutes",
        title="Events per device, from the cold store (the original Hive query)",
    )


def _buildings_in_heat(demo: Demo) -> Figure:
    from iotlib.analysis.plots import building_window

    lo, hi = demo.results["answers"]["heat_window"]
    return building_window(
        demo.results["answers"]["buildings_in_heat"],
        highlight=[1],
        title=f"Mean temperature per building from {lo:%H:%M} to {hi:%H:%M} UTC, from the cold store "
        "(whiskers: min and max reading)",
    )


FIGURES: dict[str, Callable[[Demo], Figure]] = {
    "lag": _lag,
    "buildings": _buildings,
    "events-per-device": _events_per_device,
    "buildings-in-heat": _buildings_in_heat,
}
