"""Figures for notebook 09: a consumer group's lag over time, from the monitor's looks.

Each function takes frames from :class:`~iotlib.hub.monitor.Recording` and returns a matplotlib
``Figure``; nothing is shown or saved here (Jupyter displays a returned figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
from matplotlib.figure import Figure

from iotlib.hub.lag import LagAlert, over_time


def lag_over_time(
    looks: pl.DataFrame,
    *,
    sending: tuple[datetime, datetime] | None = None,
    alerts: Sequence[LagAlert] = (),
    threshold: int | None = None,
    title: str = "Lag while the fleet sends faster than the consumer works",
) -> Figure:
    """Three panels over seconds since the first look: unprocessed events (with the alert threshold
    and the alert's span), how long the oldest of them had waited, and events in and out per second.
    Each consumer group is a line of its own (named in the legend when there are several)."""
    series = over_time(looks)
    start: datetime = series["sampled_at"][0]

    def since(t: datetime) -> float:
        return (t - start).total_seconds()

    groups = series["consumer_group"].unique(maintain_order=True).to_list()
    fig = Figure(figsize=(10, 7), layout="constrained")
    events, waited, rates = fig.subplots(3, 1, sharex=True)
    for i, group in enumerate(groups):
        one = series.filter(pl.col("consumer_group") == group)
        seconds = [since(t) for t in one["sampled_at"]]
        named = f" ({group})" if len(groups) > 1 else ""
        colour = _GROUP_COLOURS[i % len(_GROUP_COLOURS)]
        events.plot(seconds, one["unprocessed"].to_list(), marker="o", ms=3, color=colour, label=f"unprocessed{named}")
        wait_colour = "#8172b3" if len(groups) == 1 else colour
        waited.plot(seconds, one["lag_seconds"].to_list(), marker="o", ms=3, color=wait_colour, label=group)
        if i == 0:  # what the hub took in is the same for every group
            rates.plot(seconds, one["enqueued_per_second"].to_list(), color="#4c72b0", label="in (enqueued/s)")
        out = "#55a868" if len(groups) == 1 else colour
        rates.plot(seconds, one["processed_per_second"].to_list(), color=out, label=f"out (checkpointed/s){named}")
    last = since(series["sampled_at"][-1])
    if threshold is not None:
        events.axhline(threshold, color="grey", ls="--", lw=1, label=f"alert threshold ({threshold:,})")
    fired = [a for a in alerts if a.state == "fired"]
    for alert in fired:
        end = next((since(r.at) for r in alerts if r.state == "resolved" and r.at > alert.at), last)
        events.axvspan(since(alert.above_since), end, color="#c44e52", alpha=0.08)
        events.axvline(since(alert.at), color="#c44e52", lw=1, ls=":", label="alert fired")
    events.set(ylabel="events", title=title)
    waited.set(ylabel="oldest waiting (s)")
    rates.set(ylabel="events per second", xlabel="seconds since the first look")
    for ax in (events, waited, rates):
        if sending is not None:
            ax.axvspan(since(sending[0]), since(sending[1]), color="#4c72b0", alpha=0.06)
    events.legend(fontsize=8, loc="upper left")
    rates.legend(fontsize=8, loc="upper left")
    if len(groups) > 1:
        waited.legend(fontsize=8, loc="upper left")
    if sending is not None:
        events.annotate("sending", (since(sending[0]), 0), xytext=(4, 4), textcoords="offset points", fontsize=8)
    return fig


#: One colour per consumer group, the first as the single-group figure has always drawn it.
_GROUP_COLOURS = ("#c44e52", "#8172b3", "#dd8452", "#937860")
