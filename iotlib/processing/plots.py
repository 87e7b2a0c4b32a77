"""Figures for notebook 05: window kinds, event vs arrival time, policies, watermarks.

Each function takes frames produced by :mod:`iotlib.processing` and returns a
matplotlib ``Figure``; notebooks only call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

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
    unit: str = "°C",
) -> Figure:
    """Readings (dots) and each window as a bar from its start to its end: mean above, count below."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True, height_ratios=[3, 2])
    top.scatter(events[time].to_list(), events[value].to_list(), s=10, color="black", zorder=3, label="readings")
    starts, ends = windows["window_start"].to_list(), windows["window_end"].to_list()
    top.hlines(windows[mean].to_list(), starts, ends, color="#4c72b0", alpha=0.55, lw=3, label="window mean")
    bottom.hlines(windows[count].to_list(), starts, ends, color="#55a868", alpha=0.6, lw=3)
    for e in ends:
        bottom.axvline(e, color="#55a868", alpha=0.15, lw=0.8)
    top.set_ylabel(f"{value} ({unit})" if unit else value)
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
    """Per run, stacked bars of the events not accepted as they were; each bar's numbers are written beside
    it (a segment too narrow for its number would clip it), accepted counts in the labels."""
    labels = list(results)
    names = [f"{k}\n({results[k].accepted:,} accepted)" for k in labels]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(labels) + 1.6))
    left = [0] * len(labels)
    for outcome in _OUTCOMES[1:]:
        vals = [getattr(results[k], outcome) for k in labels]
        ax.barh(names, vals, left=left, color=_COLOURS[outcome], label=outcome.replace("_", " "))
        left = [a + b for a, b in zip(left, vals)]
    for y, (k, end) in enumerate(zip(labels, left)):
        parts = [f"{getattr(results[k], o):,} {o.replace('_', ' ')}" for o in _OUTCOMES[1:] if getattr(results[k], o)]
        ax.annotate(" · ".join(parts) or "none", (end, y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_xlim(0, max(max(left), 1) * 1.7)  # room for the numbers
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
    names: Mapping[str, str] | None = None,
    max_late: int = 200,
    title: str = "Watermarks over arrival time",
) -> Figure:
    """Per-device newest event time and watermark, the fleet watermark and frontier, late readings.

    ``names`` says what each device of ``history`` is ("offline 3 min"; its id's first characters
    otherwise). At most ``max_late`` late readings are drawn (a fixed sample, the legend says of how
    many), under the lines, so that a large fleet's late readings do not bury them.
    """
    fig, ax = plt.subplots(figsize=(10, 4.6))
    for device, part in history.group_by(C.DEVICE, maintain_order=True):
        name = (names or {}).get(str(device[0])) or f"{str(device[0])[:8]}…"
        line = ax.step(part["arrival"].to_list(), part["newest_event_time"].to_list(), where="post", lw=1, alpha=0.6,
                       zorder=3, label=f"{name}: newest reading")  # fmt: skip
        ax.step(part["arrival"].to_list(), part["watermark"].to_list(), where="post", lw=2, zorder=3,
                color=line[0].get_color(), label=f"{name}: watermark")  # fmt: skip
    ax.step(watermarks["tick_start"].to_list(), watermarks["watermark"].to_list(), where="post", color="black", lw=2,
            zorder=3, label="fleet watermark")  # fmt: skip
    ax.step(watermarks["tick_start"].to_list(), watermarks["frontier"].to_list(), where="post", color="black", lw=1,
            ls="--", zorder=3, label="frontier (windows ending before it are closed)")  # fmt: skip
    if late is not None and late.height:
        arrival = C.arrival_column(late.schema)
        shown = late.sample(max_late, seed=0) if late.height > max_late else late
        of = f", {shown.height} of {late.height:,} shown" if shown.height < late.height else ""
        ax.scatter(shown[arrival].to_list(), shown[C.TIME_OBSERVED].to_list(), marker="x", s=14, alpha=0.6,
                   color="#c44e52", zorder=2, label=f"late / clock-ahead readings{of}")  # fmt: skip
    ax.set_xlabel("arrival time")
    ax.set_ylabel("event time")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


#: What :func:`building_series` can mark: a moment, or a span from one moment to another.
Mark = datetime | tuple[datetime, datetime]


def building_series(
    windows: Mapping[str, pl.DataFrame], building: int, *, title: str, marks: Mapping[str, Mark] | None = None
) -> Figure:
    """One building's average temperature per window: the first run on top, each other run below it as
    its difference from the first (so that runs agreeing almost everywhere are not drawn over each other),
    with ``marks`` (moments as lines, spans shaded) on every panel."""
    labels = list(windows)
    series = {k: w.filter(pl.col("building_id") == building).sort("window_end") for k, w in windows.items()}
    first = series[labels[0]].select("window_end", pl.col("avg_temperature").alias("reference"))
    fig, axes = plt.subplots(len(labels), 1, figsize=(10, 2.4 + 1.6 * (len(labels) - 1)), sharex=True,
                             height_ratios=[2] + [1] * (len(labels) - 1), squeeze=False)  # fmt: skip
    top = axes[0][0]
    top.step(first["window_end"].to_list(), first["reference"].to_list(), where="pre", color="#4c72b0", lw=1)
    top.set_ylabel("average (°C)")
    top.set_title(f"{title}\n{labels[0]}", fontsize=10)
    colours = ("#dd8452", "#55a868", "#c44e52", "#8172b3")
    for i, label in enumerate(labels[1:]):
        ax = axes[i + 1][0]
        both = first.join(series[label].select("window_end", "avg_temperature"), on="window_end", how="full",
                          coalesce=True).sort("window_end")  # fmt: skip
        delta = both.select((pl.col("avg_temperature") - pl.col("reference")).fill_null(float("nan"))).to_series()
        ax.step(both["window_end"].to_list(), delta.to_list(), where="pre", color=colours[i % len(colours)], lw=1)
        ax.axhline(0, color="black", lw=0.6)
        # A window only one of the two has cannot be subtracted: say where they are.
        for only, marker, what in (
            ("reference", "^", "window only here"),
            ("avg_temperature", "v", "window missing here"),
        ):
            ends = both.filter(pl.col(only).is_null())["window_end"].to_list()
            if ends:
                ax.scatter(ends, [0] * len(ends), marker=marker, s=28, color="black", zorder=3, label=what)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
        ax.set_ylabel("difference (°C)")
        ax.set_title(f"{label} − {labels[0]}", fontsize=9, loc="left")
    for j, (label, mark) in enumerate((marks or {}).items()):
        colour = ("#c44e52", "#8172b3", "#937860")[j % 3]
        for k, row in enumerate(axes):
            tag = label if k == 0 else None
            if isinstance(mark, tuple):
                row[0].axvspan(mark[0], mark[1], color=colour, alpha=0.12, label=tag)
            else:
                row[0].axvline(mark, color=colour, lw=1.2, ls="--", label=tag)
    if marks:
        top.legend(fontsize=8, loc="upper left")
    axes[-1][0].set_xlabel("window end")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def outage_marks(events: pl.DataFrame, device: str) -> dict[str, Mark]:
    """For :func:`building_series`: when ``device`` was offline (the event times of the readings it
    buffered) and when those readings reached the hub."""
    buffered = events.filter((pl.col(C.DEVICE).cast(pl.String) == device) & pl.col("fault_offline"))
    if buffered.height == 0:
        return {}
    arrival = C.arrival_column(events.schema)
    return {
        "device offline (the readings it buffered, by event time)": (
            buffered[C.TIME_OBSERVED].min(), buffered[C.TIME_OBSERVED].max()),  # type: ignore[dict-item]
        "its buffered readings arrive": buffered[arrival].min(),  # type: ignore[dict-item]
    }  # fmt: skip
