"""Figures of ingestion, as the sender and as the hub see it.

Each function takes reports or polars frames and returns a matplotlib ``Figure``
(nothing is shown or saved here; Jupyter displays a returned figure).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from matplotlib.figure import Figure

from iotlib.durations import to_seconds
from iotlib.ingest.report import IngestReport


def ingest_throughput(reports: Mapping[str, IngestReport]) -> Figure:
    """Events sent so far against wall-clock seconds, one line per run (a dot per batch)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, report in reports.items():
        sends = report.sends().sort("seconds")
        seconds = [0.0, *sends["seconds"].to_list()]
        total = [0, *sends["events"].cum_sum().to_list()]
        ax.step(
            seconds, total, where="post", marker=".", label=f"{name}: {report.events_per_second:,.0f} events/s overall"
        )
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
        width = to_seconds(every, name="every", allow_zero=False)
        counts = binned.group_by((pl.col("s") / width).floor().alias("bin")).len().sort("bin")
        seconds = counts["bin"].to_numpy() * width
        rates = counts["len"].to_numpy() / width
        ax.bar(seconds, rates, width=width, align="edge", color="tab:purple")
        ax.set(
            title=f"{name}: arrivals at the hub (peak {rates.max(initial=0):,.0f} events/s)",
            xlabel="seconds since the first arrival",
            ylabel="events/s",
        )
    return fig
