"""Figures for the notebooks: the fleet, temperature traces, ingestion load.

Each function takes polars frames from :mod:`iotlib.scenario` and
:mod:`iotlib.simulate` and returns a matplotlib ``Figure`` (nothing is shown
or saved here; Jupyter displays a returned figure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import polars as pl
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from iotlib.simulate import events_per_second

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
    b.hist(per_building["floors"].to_numpy(), bins=range(1, int(per_building["floors"].max()) + 2), color="tab:green")  # type: ignore[arg-type]
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
        ax.plot(trace["time_observed"].to_numpy(), trace["temperature"].to_numpy(), marker=".", lw=1,
                label=device[:8] + "…")
    ax.set(title="Temperature traces", xlabel="time observed (UTC)", ylabel="°C")
    ax.legend(fontsize=8, ncols=min(len(devices), 5))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    return fig


def load_profiles(
    runs: Mapping[str, pl.DataFrame],
    *,
    devices: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Figure:
    """Events per second (by ``sent_at``) of each run on one log-scale axis, over ``[start, end)``.

    With ``devices``, a dashed line marks the average rate (one reading a
    minute each) and a dotted one the throughput units that rate needs.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.subplots()
    for (name, events), color in zip(runs.items(), ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        rate = events_per_second(events, start=start, end=end)
        ax.plot(rate["second"].to_numpy(), rate["events"].clip(lower_bound=0.8).to_numpy(), lw=1, color=color,
                label=f"{name} (peak {rate['events'].max():,}/s)")
    if devices:
        mean = devices / 60
        ax.axhline(mean, ls="--", color="black", lw=1, label=f"average {mean:,.0f}/s")
        units = max(1, -(-int(mean) // EVENTS_PER_THROUGHPUT_UNIT))
        ax.axhline(units * EVENTS_PER_THROUGHPUT_UNIT, ls=":", color="gray", lw=1,
                   label=f"{units} throughput unit(s): {units * EVENTS_PER_THROUGHPUT_UNIT:,}/s")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)  # seconds without events sit on the floor of the log scale
    ax.set(title="Load on ingestion", xlabel="sent at (UTC)", ylabel="events per second")
    ax.legend(fontsize=8, loc="upper right")
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    return fig


# --- ingestion, as the sender and as the hub see it --------------------------------------------


def ingest_throughput(reports: Mapping[str, object]) -> Figure:
    """Events sent so far against wall-clock seconds, one line per run (a dot per batch)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, report in reports.items():
        sends = report.sends().sort("seconds")  # type: ignore[attr-defined]
        seconds = [0.0, *sends["seconds"].to_list()]
        total = [0, *sends["events"].cum_sum().to_list()]
        ax.step(seconds, total, where="post", marker=".",
                label=f"{name}: {report.events_per_second:,.0f} events/s overall")  # type: ignore[attr-defined]
    ax.set(title="Events sent over time", xlabel="seconds since the run started", ylabel="events sent")
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)
    return fig


def partition_balance(counts: Mapping[str, Mapping[str, int]]) -> Figure:
    """Events per partition for each way of keying, as grouped bars (hot partitions stand out)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    partitions = sorted({p for c in counts.values() for p in c}, key=int)
    width = 0.8 / max(1, len(counts))
    for i, (name, c) in enumerate(counts.items()):
        total = sum(c.values()) or 1
        shares = [100 * c.get(p, 0) / total for p in partitions]
        ax.bar([j + i * width for j in range(len(partitions))], shares, width=width, label=name)
    ax.axhline(100 / max(1, len(partitions)), color="black", ls="--", lw=1, label="even share")
    ax.set_xticks([j + width * (len(counts) - 1) / 2 for j in range(len(partitions))], partitions)
    ax.set(title="Share of events per partition", xlabel="partition", ylabel="% of events")
    ax.legend(fontsize=8)
    return fig


def batch_size_effect(results: pl.DataFrame) -> Figure:
    """Events per second against events per batch (columns ``batch`` and ``events_per_second``)."""
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(results["batch"].to_numpy(), results["events_per_second"].to_numpy(), marker="o")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title="Throughput against batch size", xlabel="events per batch", ylabel="events per second")
    return fig


def arrival_profiles(runs: Mapping[str, pl.DataFrame], *, every: str = "100ms") -> Figure:
    """Events enqueued by the hub per ``every`` (by ``enqueued_time``), one panel per run."""
    fig = Figure(figsize=(11, 2.6 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    for ax, (name, events) in zip(axes, runs.items()):
        t0 = events["enqueued_time"].min()
        binned = events.select(((pl.col("enqueued_time") - t0).dt.total_microseconds() / 1e6).alias("s"))
        width = _seconds(every)
        counts = binned.group_by((pl.col("s") / width).floor().alias("bin")).len().sort("bin")
        seconds = counts["bin"].to_numpy() * width
        ax.bar(seconds, counts["len"].to_numpy() / width, width=width, align="edge", color="tab:purple")
        ax.set(title=f"{name}: arrivals at the hub (peak {counts['len'].max() / width:,.0f} events/s)",
               xlabel="seconds since the first arrival", ylabel="events/s")
    return fig


def _seconds(every: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if every.endswith(suffix):
            return float(every[: -len(suffix)]) * units[suffix]
    raise ValueError(f"cannot read the interval {every!r} (use e.g. 100ms, 1s, 1m)")
