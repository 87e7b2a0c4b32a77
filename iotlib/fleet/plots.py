"""Figures of the fleet: the registry, temperature traces, the load it puts on ingestion.

Each function takes polars frames from :mod:`iotlib.fleet.scenario` and
:mod:`iotlib.fleet.simulate` and returns a matplotlib ``Figure`` (nothing is shown
or saved here; Jupyter displays a returned figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import polars as pl
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from iotlib.fleet.simulate import events_per_second

#: Event Hubs standard tier: one throughput unit admits 1,000 events/s (or 1 MB/s).
EVENTS_PER_THROUGHPUT_UNIT = 1_000


def registry_overview(registry: pl.DataFrame) -> Figure:
    """Three panels: devices per building, floors per building, buildings per time zone."""
    per_building = registry.group_by("building_id").agg(
        devices=pl.len(), floors=pl.col("floor").max(), zone=pl.col("time_zone").first()
    )
    zones = per_building.group_by("zone").len().sort("len")
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    a, b, c = fig.subplots(1, 3)
    a.hist(per_building["devices"].to_numpy(), bins=30, color="tab:blue")
    a.set(title="Devices per building", xlabel="devices", ylabel="buildings")
    top_floor = int(per_building.select(pl.col("floors").max()).item())
    b.hist(per_building["floors"].to_numpy(), bins=range(1, top_floor + 2), color="tab:green")
    b.set(title="Floors per building", xlabel="floors", ylabel="buildings")
    c.barh(zones["zone"].to_list(), zones["len"].to_list(), color="tab:orange")
    c.set(title="Buildings per time zone", xlabel="buildings")
    c.tick_params(axis="y", labelsize=8)
    return fig


def temperature_traces(events: pl.DataFrame, devices: Sequence[str]) -> Figure:
    """Temperature against observation time, one line per device."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    chosen = events.filter(pl.col("device_id").cast(pl.String).is_in(list(devices))).sort("time_observed")
    for device in devices:
        trace = chosen.filter(pl.col("device_id").cast(pl.String) == device)
        ax.plot(
            trace["time_observed"].to_numpy(), trace["temperature"].to_numpy(), marker=".", lw=1, label=device[:8] + "…"
        )
    ax.set(title="Temperature traces", xlabel="time observed (UTC)", ylabel="°C")
    ax.legend(fontsize=8, ncols=min(len(devices), 5))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    return fig


def throughput_units(events_per_second: float) -> int:
    """Throughput units (1,000 events/s of ingress each) that take ``events_per_second`` without throttling."""
    return max(1, math.ceil(events_per_second / EVENTS_PER_THROUGHPUT_UNIT))


def load_profiles(
    runs: Mapping[str, pl.DataFrame],
    *,
    devices: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Figure:
    """Events per second (by ``sent_at``) of each run on one log-scale axis, over ``[start, end)``.

    With ``devices``, a dashed line marks the average rate (one reading a minute each). A dotted
    line marks the throughput units (:func:`throughput_units`) that absorb the busiest second of
    the most level run: the peak, not the average, sets what to provision.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.subplots()
    peaks: dict[str, int] = {}
    for (name, events), color in zip(runs.items(), ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        rate = events_per_second(events, start=start, end=end)
        peak = peaks[name] = rate.select(pl.col("events").max()).item() or 0  # None for a run without events
        ax.plot(
            rate["second"].to_numpy(),
            rate["events"].clip(lower_bound=0.8).to_numpy(),
            lw=1,
            color=color,
            label=f"{name} (peak {peak:,}/s)",
        )
    if devices:
        mean = devices / 60
        ax.axhline(mean, ls="--", color="black", lw=1, label=f"average {mean:,.0f}/s")
    if peaks:
        # The units that absorb the levelled run's busiest second: provision for the peak, not the mean.
        name, peak = min(peaks.items(), key=lambda kv: kv[1])
        units = throughput_units(peak)
        ax.axhline(
            units * EVENTS_PER_THROUGHPUT_UNIT,
            ls=":",
            color="gray",
            lw=1.5,
            label=f"{units} throughput unit{'s' if units > 1 else ''} ({units * EVENTS_PER_THROUGHPUT_UNIT:,}/s) "
            f"{'absorb' if units > 1 else 'absorbs'} the {name} peak",
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)  # seconds without events sit on the floor of the log scale
    ax.set(title="Load on ingestion", xlabel="sent at (UTC)", ylabel="events per second")
    ax.legend(fontsize=8, loc="upper right")
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    return fig
