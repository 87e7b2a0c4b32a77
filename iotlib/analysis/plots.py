"""Figures for notebooks 07 and 08: one per question.

Each function takes the polars frame a question returned and returns a matplotlib ``Figure``;
nothing is shown or saved here (Jupyter displays a returned figure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def building_window(stats: pl.DataFrame, *, highlight: Sequence[int] = (), top: int = 40, title: str = "") -> Figure:
    """Mean temperature per building over a window (the ``top`` warmest), min-max as whiskers."""
    rows = stats.sort("mean_temperature", descending=True).head(top)
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(rows.height)
    mean = rows["mean_temperature"].to_numpy()
    err = np.vstack([mean - rows["min_temperature"].to_numpy(), rows["max_temperature"].to_numpy() - mean])
    colours = ["#c44e52" if b in set(highlight) else "#4c72b0" for b in rows["building_id"].to_list()]
    ax.bar(x, mean, color=colours)
    ax.errorbar(x, mean, yerr=err, fmt="none", ecolor="grey", lw=0.8)
    ax.set_xticks(x, [str(b) for b in rows["building_id"].to_list()], rotation=90, fontsize=7)
    ax.set(
        xlabel="building", ylabel="°C", title=title or "Mean temperature per building (whiskers: min and max reading)"
    )
    return fig


def rooms(stats: pl.DataFrame, *, title: str = "") -> Figure:
    """Mean temperature per room of one building, floor by floor."""
    rows = stats.with_columns(pl.col("room").cast(pl.Int32).alias("__n")).sort("__n")
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(range(rows.height), rows["mean_temperature"].to_list(), color="#55a868")
    step = max(1, rows.height // 40)
    ax.set_xticks(range(0, rows.height, step), rows["room"].to_list()[::step], rotation=90, fontsize=7)
    ax.set(xlabel="room (floor, apartment)", ylabel="°C", title=title or "Mean temperature per room")
    return fig


def windows(stats: Mapping[str, pl.DataFrame], *, title: str = "") -> Figure:
    """Mean temperature per building in a few windows side by side (one bar group per building)."""
    labels = list(stats)
    buildings = sorted({b for frame in stats.values() for b in frame["building_id"].to_list()})
    fig = Figure(figsize=(9, 3), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        means = dict(stats[label].select("building_id", "mean_temperature").iter_rows())
        ax.bar(
            np.arange(len(buildings)) + i * width, [means.get(b, np.nan) for b in buildings], width=width, label=label
        )
    ax.set_xticks(np.arange(len(buildings)) + width * (len(labels) - 1) / 2, [f"building {b}" for b in buildings])
    ax.set(ylabel="mean °C", title=title or "Mean temperature per building, window by window")
    ax.legend(fontsize=8)
    return fig


def clock_skew(skews: pl.DataFrame, *, title: str = "") -> Figure:
    """Each device's estimated clock skew (seconds, symmetric log scale); the flagged ones in red."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    ax = fig.subplots()
    ordered = skews.sort("skew_seconds")
    colours = np.where(ordered["skewed"].to_numpy(), "#c44e52", "#4c72b0")
    ax.scatter(np.arange(ordered.height), ordered["skew_seconds"].to_numpy(), s=4, c=colours)
    ax.set_yscale("symlog", linthresh=1)
    ax.set(xlabel="devices, by skew", ylabel="seconds (time_observed behind +, ahead −)",
           title=title or "Clock skew per device: the smallest enqueued − observed gap")  # fmt: skip
    return fig


def device_series(readings: pl.DataFrame, spikes: pl.DataFrame, *, title: str = "") -> Figure:
    """One device's readings over event time, its spikes circled."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax = fig.subplots()
    r = readings.sort("time_observed")
    ax.plot(r["time_observed"].to_list(), r["temperature"].to_list(), lw=0.9, color="#4c72b0", label="readings")
    if spikes.height:
        ax.scatter(spikes["time_observed"].to_list(), spikes["temperature"].to_list(), s=70, facecolors="none",
                   edgecolors="#c44e52", lw=1.6, label="spike (rolling z-score)")  # fmt: skip
    ax.set(xlabel="time observed (UTC)", ylabel="°C", title=title or "A device and its spikes")
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    ax.legend(fontsize=8, loc="upper left")
    return fig


def local_days(stats: pl.DataFrame, buildings: Sequence[int], *, title: str = "") -> Figure:
    """Min, mean and max per local day for a few buildings, each local day labelled with its length and zone."""
    rows = stats.filter(pl.col("building_id").is_in(list(buildings))).sort("building_id", "local_date")
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(rows.height)
    mean = rows["mean_temperature"].to_numpy()
    ax.bar(x, rows["max_temperature"].to_numpy() - rows["min_temperature"].to_numpy(),
           bottom=rows["min_temperature"].to_numpy(), color="#8172b3", alpha=0.35, label="min to max")  # fmt: skip
    ax.scatter(x, mean, color="#8172b3", zorder=3, label="mean")
    labels = [
        f"b{b} {d:%m-%d}\n{z.split('/')[-1]} {h:g} h\n{c:g} h held"
        for b, d, z, h, c in rows.select(
            "building_id", "local_date", "time_zone", "day_hours", "covered_hours"
        ).iter_rows()
    ]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set(ylabel="°C", title=title or "Local days per building (length of the local day; hours of it the store holds)")
    ax.legend(fontsize=8)
    return fig


def completeness(table: pl.DataFrame, *, title: str = "") -> Figure:
    """Left: received/expected per device-hour (histogram); right: the fleet's completeness hour by hour."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    ratio = table["ratio"].clip(0, 1.5).to_numpy()
    left.hist(ratio, bins=30, color="#4c72b0")
    left.set_yscale("log")
    left.set(xlabel="received / expected", ylabel="device-hours", title="per device-hour")
    hourly = (
        table.group_by("hour").agg((pl.col("received").sum() / pl.col("expected").sum()).alias("ratio")).sort("hour")
    )
    right.plot(hourly["hour"].to_list(), hourly["ratio"].to_list(), marker="o", ms=3, color="#4c72b0")
    right.axhline(1.0, color="black", lw=0.8, ls="--")
    right.set(xlabel="hour (UTC)", ylabel="received / expected", title="the fleet, hour by hour")
    right.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    fig.suptitle(title or "Completeness: readings received against readings expected")
    return fig


def heatmap(hourly: pl.DataFrame, *, hot: pl.DataFrame | None = None, title: str = "") -> Figure:
    """Buildings × hours, coloured by mean temperature; ``hot`` building-hours outlined."""
    buildings = hourly["building_id"].unique().sort().to_list()
    hours = hourly["hour"].unique().sort().to_list()
    row = {b: i for i, b in enumerate(buildings)}
    col = {h: j for j, h in enumerate(hours)}
    grid = np.full((len(buildings), len(hours)), np.nan)
    for b, h, t in hourly.select("building_id", "hour", "mean_temperature").iter_rows():
        grid[row[b], col[h]] = t
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(grid, aspect="auto", cmap="coolwarm", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean °C")
    step = max(1, len(hours) // 24)
    ax.set_xticks(range(0, len(hours), step), [f"{h:%H:%M}" for h in hours[::step]], rotation=90, fontsize=7)
    if len(buildings) <= 40:
        ax.set_yticks(range(len(buildings)), [str(b) for b in buildings], fontsize=7)
    if hot is not None:
        for b, h in hot.select("building_id", "hour").iter_rows():
            if b in row and h in col:
                ax.add_patch(_box(col[h], row[b]))
    ax.set(xlabel="hour (UTC)", ylabel="building", title=title or "Mean temperature, building × hour")
    return fig


def _box(x: int, y: int) -> Rectangle:
    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.2)


def events_per_device(counts: pl.DataFrame, *, span: str = "the day", title: str = "") -> Figure:
    """How many events each device sent over ``span`` (histogram)."""
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.subplots()
    ax.hist(counts["events"].to_numpy(), bins=60, color="#4c72b0")
    ax.set_yscale("log")
    ax.set(xlabel=f"events in {span}", ylabel="devices", title=title or "Events per device")
    return fig


def scores(table: pl.DataFrame, *, title: str = "") -> Figure:
    """Precision and recall per fault kind."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    ax = fig.subplots()
    x = np.arange(table.height)
    ax.bar(x - 0.2, table["precision"].fill_null(0).to_list(), width=0.4, label="precision", color="#4c72b0")
    ax.bar(x + 0.2, table["recall"].fill_null(0).to_list(), width=0.4, label="recall", color="#dd8452")
    ax.set_xticks(x, [f"{f}\n({lvl})" for f, lvl in table.select("fault", "level").iter_rows()], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set(ylabel="share", title=title or "Detectors against the simulator's ground truth")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def timings(seconds: Mapping[str, Mapping[str, float]], *, title: str = "") -> Figure:
    """Seconds per question (groups) and engine (bars)."""
    questions = list(seconds)
    engines = sorted({e for q in seconds.values() for e in q})
    fig = Figure(figsize=(9, 3), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(engines))
    for i, engine in enumerate(engines):
        values = [seconds[q].get(engine, 0.0) for q in questions]
        ax.bar(np.arange(len(questions)) + i * width, values, width=width, label=engine)
    ax.set_xticks(np.arange(len(questions)) + width * (len(engines) - 1) / 2, questions, fontsize=8)
    ax.set(ylabel="seconds", title=title or "Query time in this run")
    ax.legend(fontsize=8)
    return fig
