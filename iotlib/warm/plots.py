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


def alert_timeline(alerts: pl.DataFrame, *, title: str = "Alerts as they were raised", dots: int = 60) -> Figure:
    """One row per rule: a dot per alert when a rule raised a few (at most ``dots``), else how many it
    raised in each time bin (a hundred dots at one time would merge into a bar that counts nothing)."""
    rules = [r for r in _RULE_COLOURS if r in set(alerts["rule"].to_list())]
    fig = Figure(figsize=(11, 1.0 + 0.9 * max(len(rules), 1)), layout="constrained")
    axes = fig.subplots(max(len(rules), 1), 1, sharex=True, squeeze=False)[:, 0]
    span = alerts.select((pl.col("raised_at").max() - pl.col("raised_at").min()).dt.total_seconds()).item() or 0
    every = max(1, round(span / 60))  # about 60 bins over the run, whole seconds
    for ax, rule in zip(axes, rules):
        at = alerts.filter(pl.col("rule") == rule)["raised_at"]
        colour, label = _RULE_COLOURS[rule], rule.replace("_", " ")
        if at.len() <= dots:
            ax.scatter(at.to_list(), [0] * at.len(), s=28, color=colour)
            ax.set_yticks([])
            ax.set_ylabel(f"{label}\n({at.len()})", rotation=0, ha="right", va="center", fontsize=9)
        else:
            binned = at.sort().to_frame().group_by_dynamic("raised_at", every=f"{every}s").agg(pl.len().alias("n"))
            ax.bar(binned["raised_at"].to_list(), binned["n"].to_list(), width=every / 86_400 * 0.9, align="edge",
                   color=colour)  # fmt: skip
            ax.set_ylabel(f"{label}\n({at.len():,}; per {every} s)", rotation=0, ha="right", va="center", fontsize=9)
    axes[0].set_title(title)
    axes[-1].set(xlabel="raised at (the stream's arrival time, UTC)")
    axes[-1].xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
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


def lag_figure(
    lag: pl.DataFrame,
    *,
    sending_seconds: float | None = None,
    per_second: float | None = None,
    commit_interval: float | None = None,
    title: str = "The warm consumer group's lag while the fleet was sending",
) -> Figure:
    """Unprocessed events (hub end − checkpoint, from ``iotlib.hub.monitor.lag``) over the run.

    With ``per_second`` (the fleet's rate) and ``commit_interval``, a dashed line marks the events
    that arrive in one commit interval: the lag cannot stay below it, as checkpoints follow commits.
    """
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(lag["seconds"].to_list(), lag["unprocessed"].to_list(), marker="o", ms=3, color="#c44e52",
            label="unprocessed (past the checkpoint)")  # fmt: skip
    if per_second is not None and commit_interval is not None:
        ax.axhline(per_second * commit_interval, color="#c44e52", lw=0.8, ls="--",
                   label=f"events arriving in one commit interval ({commit_interval:g} s)")  # fmt: skip
    ax.set(xlabel="seconds since sending began", ylabel="events", title=title)
    ax.set_ylim(bottom=0)
    if sending_seconds is not None:
        ax.axvspan(0, sending_seconds, color="#4c72b0", alpha=0.08, label="sending")
    twin = ax.twinx()
    twin.plot(lag["seconds"].to_list(), lag["received"].to_list(), color="#4c72b0", lw=1, label="read by the processor")
    twin.set_ylabel("events read (cumulative)")
    twin.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    return fig


def lag_summary(lag: pl.DataFrame, *, sending_seconds: float, per_second: float) -> dict[str, float]:
    """What the lag figure shows, in numbers: while sending, the largest lag and the mean lag in the
    first and second half (equal: flat; growing: the processor falls behind), in events and seconds of events."""
    sending = pl.col("seconds") <= sending_seconds
    n = lag.filter(sending).height
    during = lag.filter(sending).with_row_index("i")
    figures = during.select(
        pl.col("unprocessed").max().alias("largest"),
        pl.col("unprocessed").filter(pl.col("i") < n // 2).mean().alias("first_half"),
        pl.col("unprocessed").filter(pl.col("i") >= n // 2).mean().alias("second_half"),
    ).row(0, named=True)
    out = {k: float(v or 0) for k, v in figures.items()}
    out["largest_seconds"] = out["largest"] / per_second if per_second else 0.0
    out["after"] = float(lag.filter(~sending).select(pl.col("unprocessed").min()).item() or 0)
    return out
