"""Figures for notebook 05: window kinds, event vs arrival time, policies, watermarks.

Each function takes frames produced by :mod:`iotlib.processing` and returns a
matplotlib ``Figure``; notebooks only call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from iotlib.processing import columns as C
from iotlib.processing.results import Counts

_OUTCOMES = ("accepted", "adjusted", "side_output", "dropped", "duplicates")
_COLOURS = {
    "accepted": "#4c72b0",
    "adjusted": "#dd8452",
    "side_output": "#c44e52",
    "dropped": "#8c8c8c",
    "duplicates": "#937860",
}


def window_figure(
    events: pl.DataFrame,
    windows: pl.DataFrame,
    *,
    title: str,
    value: str = "temperature",
    mean: str = "temperature_mean",
    count: str = "events",
    time: str = C.TIME_OBSERVED,
) -> Figure:
    """Readings (dots) and each window as a bar from its start to its end: mean above, count below."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True, height_ratios=[3, 2])
    top.scatter(events[time].to_list(), events[value].to_list(), s=10, color="black", zorder=3, label="readings")
    starts, ends = windows["window_start"].to_list(), windows["window_end"].to_list()
    top.hlines(windows[mean].to_list(), starts, ends, color="#4c72b0", alpha=0.55, lw=3, label="window mean")
    bottom.hlines(windows[count].to_list(), starts, ends, color="#55a868", alpha=0.6, lw=3)
    for e in ends:
        bottom.axvline(e, color="#55a868", alpha=0.15, lw=0.8)
    top.set_ylabel(f"{value}")
    bottom.set_ylabel("events in window")
    bottom.set_xlabel(time)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title} — {windows.height} windows")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def event_vs_arrival(
    events: pl.DataFrame, *, highlight: Mapping[str, Sequence[str]] = {}, max_points: int = 20_000
) -> Figure:
    """How late each reading arrived (arrival − event time), over arrival time; faulty devices highlighted.

    At most ``max_points`` of the other devices' readings are drawn (a fixed sample).
    """
    arrival = C.arrival_column(events.schema)
    df = events.select(
        pl.col(C.DEVICE).cast(pl.String),
        pl.col(arrival).alias("arrival"),
        ((pl.col(arrival) - pl.col(C.TIME_OBSERVED)).dt.total_microseconds() / 1e6).alias("delay_s"),
    )
    fig, ax = plt.subplots(figsize=(10, 4))
    marked = [d for ds in highlight.values() for d in ds]
    rest = df.filter(~pl.col(C.DEVICE).is_in(marked))
    if rest.height > max_points:
        rest = rest.sample(max_points, seed=0)
    ax.scatter(
        rest["arrival"].to_list(), rest["delay_s"].to_list(), s=4, color="#4c72b0", alpha=0.4, label="all other devices"
    )
    for (label, devices), colour in zip(highlight.items(), ("#c44e52", "#dd8452", "#8172b3", "#937860")):
        sel = df.filter(pl.col(C.DEVICE).is_in(list(devices)))
        ax.scatter(sel["arrival"].to_list(), sel["delay_s"].to_list(), s=14, color=colour, label=label)
    ax.set_yscale("symlog", linthresh=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("arrival − event time (s, symlog)\nbelow 0: device clock ahead")
    ax.set_xlabel(f"arrival ({arrival})")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Event time vs arrival time")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def outcome_bars(
    results: Mapping[str, Counts], *, title: str = "What the policies did with the events they did not simply accept"
) -> Figure:
    """Per run, stacked bars of the events not accepted as they were (accepted counts in the labels)."""
    labels = list(results)
    names = [f"{k}\n({results[k].accepted:,} accepted)" for k in labels]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(labels) + 1.6))
    left = [0] * len(labels)
    for outcome in _OUTCOMES[1:]:
        vals = [getattr(results[k], outcome) for k in labels]
        bars = ax.barh(names, vals, left=left, color=_COLOURS[outcome], label=outcome.replace("_", " "))
        ax.bar_label(bars, labels=[f"{v:,}" if v else "" for v in vals], label_type="center", fontsize=8, color="white")
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("events")
    ax.invert_yaxis()
    ax.legend(fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.set_title(title, pad=28)
    fig.tight_layout()
    return fig


def watermark_figure(
    watermarks: pl.DataFrame,
    history: pl.DataFrame,
    *,
    late: pl.DataFrame | None = None,
    title: str = "Watermarks over arrival time",
) -> Figure:
    """Per-device newest event time and watermark, the fleet watermark and frontier, late readings."""
    fig, ax = plt.subplots(figsize=(10, 4.6))
    for device, part in history.group_by(C.DEVICE, maintain_order=True):
        name = device[0][:8]
        line = ax.step(
            part["arrival"].to_list(),
            part["newest_event_time"].to_list(),
            where="post",
            lw=1,
            alpha=0.6,
            label=f"{name}… newest reading",
        )
        ax.step(
            part["arrival"].to_list(),
            part["watermark"].to_list(),
            where="post",
            lw=2,
            color=line[0].get_color(),
            label=f"{name}… watermark",
        )
    ax.step(
        watermarks["tick_start"].to_list(),
        watermarks["watermark"].to_list(),
        where="post",
        color="black",
        lw=2,
        label="fleet watermark",
    )
    ax.step(
        watermarks["tick_start"].to_list(),
        watermarks["frontier"].to_list(),
        where="post",
        color="black",
        lw=1,
        ls="--",
        label="frontier (windows ending before it are closed)",
    )
    if late is not None and late.height:
        arrival = C.arrival_column(late.schema)
        ax.scatter(
            late[arrival].to_list(),
            late[C.TIME_OBSERVED].to_list(),
            marker="x",
            color="#c44e52",
            zorder=4,
            label="late / clock-ahead readings",
        )
    ax.set_xlabel("arrival time")
    ax.set_ylabel("event time")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def building_series(windows: Mapping[str, pl.DataFrame], building: int, *, title: str) -> Figure:
    """One building's average temperature per window, for several runs side by side."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for label, w in windows.items():
        b = w.filter(pl.col("building_id") == building).sort("window_end")
        ax.step(b["window_end"].to_list(), b["avg_temperature"].to_list(), where="pre", label=label, alpha=0.8)
    ax.set_ylabel("average temperature (°C)")
    ax.set_xlabel("window end")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
