"""Figures for notebook 06: the warm store's windows, alerts, outcomes and lag.

Each function takes frames from :class:`~iotlib.warm.store.WarmStore` (or a
:class:`~iotlib.warm.live.LiveRun`) and returns a matplotlib ``Figure``;
nothing is shown or saved here (Jupyter displays a returned figure).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from iotlib.processing.results import Counts

_RULE_COLOURS = {"building_too_hot": "#c44e52", "temperature_jump": "#dd8452", "device_silent": "#8172b3"}


def building_timeline(
    history: pl.DataFrame,
    buildings: Sequence[int],
    *,
    alerts: pl.DataFrame | None = None,
    threshold: float | None = None,
    title: str = "Average temperature per 5 s window, as the warm store recorded it",
) -> Figure:
    """Each building's window averages over event time; too-hot alerts as shaded spans."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    for b in buildings:
        w = history.filter(pl.col("building_id") == b).sort("window_end")
        ax.step(w["window_end"].to_list(), w["avg_temperature"].to_list(), where="pre", lw=1.6, label=f"building {b}")
    if threshold is not None:
        ax.axhline(threshold, color="black", lw=0.8, ls="--", label=f"{threshold:g} °C")
    if alerts is not None:
        hot = alerts.filter((pl.col("rule") == "building_too_hot") & pl.col("building_id").is_in(list(buildings)))
        for i, row in enumerate(hot.iter_rows(named=True)):
            ax.axvspan(row["window_start"], row["window_end"], color=_RULE_COLOURS["building_too_hot"], alpha=0.18,
                       label="too hot: the streak that raised the alert" if i == 0 else None)  # fmt: skip
    ax.set(xlabel="window end (event time, UTC)", ylabel="°C", title=title)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    ax.legend(fontsize=8, loc="upper left")
    return fig


def alert_timeline(alerts: pl.DataFrame, *, title: str = "Alerts as they were raised") -> Figure:
    """One dot per alert: when it was raised (arrival time) against its rule."""
    fig = Figure(figsize=(11, 2.6), layout="constrained")
    ax = fig.subplots()
    rules = [r for r in _RULE_COLOURS if r in set(alerts["rule"].to_list())]
    for i, rule in enumerate(rules):
        at = alerts.filter(pl.col("rule") == rule)["raised_at"].to_list()
        ax.scatter(at, [i] * len(at), s=28, color=_RULE_COLOURS[rule], label=f"{rule} ({len(at)})")
    ax.set_yticks(range(len(rules)), [r.replace("_", " ") for r in rules])
    ax.set_ylim(-0.7, len(rules) - 0.3)
    ax.set(xlabel="raised at (the stream's arrival time, UTC)", title=title)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    return fig


def outcomes(counts: Counts, *, dead_letters: int, title: str = "Where every event went") -> Figure:
    """Horizontal bars: accepted, late/clock-ahead (by policy), duplicates, unknown devices, dead letters."""
    bars = {
        "accepted into windows": counts.accepted,
        "late → side output": counts.side_output,
        "late → adjusted": counts.adjusted,
        "late → dropped": counts.dropped,
        "duplicates": counts.duplicates,
        "unknown devices": counts.unmatched,
        "dead letters": dead_letters,
    }
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    names, values = list(bars), list(bars.values())
    drawn = ax.barh(names, values, color=["#4c72b0", "#c44e52", "#dd8452", "#8c8c8c", "#937860", "#8172b3", "#55a868"])
    ax.bar_label(drawn, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_xscale("symlog", linthresh=10)
    ax.invert_yaxis()
    ax.set(xlabel="events (symlog)", title=title)
    return fig


def lag_figure(lag: pl.DataFrame, *, sending_seconds: float | None = None,
               title: str = "The warm consumer group's lag while the fleet was sending") -> Figure:  # fmt: skip
    """Unprocessed events (hub end − checkpoint, from ``iotlib.hub.monitor.lag``) over the run."""
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(lag["seconds"].to_list(), lag["unprocessed"].to_list(), marker="o", ms=3, color="#c44e52",
            label="unprocessed (past the checkpoint)")  # fmt: skip
    ax.set(xlabel="seconds since sending began", ylabel="events", title=title)
    if sending_seconds is not None:
        ax.axvspan(0, sending_seconds, color="#4c72b0", alpha=0.08, label="sending")
    twin = ax.twinx()
    twin.plot(lag["seconds"].to_list(), lag["received"].to_list(), color="#4c72b0", lw=1, label="read by the processor")
    twin.set_ylabel("events read (cumulative)")
    handles, labels = ax.get_legend_handles_labels()
    twin_handles, twin_labels = twin.get_legend_handles_labels()
    ax.legend(handles + twin_handles, labels + twin_labels, fontsize=8, loc="upper left")
    return fig
