"""Figures for notebook 10: what each device got through when it sent with its own token.

Functions take the per-device frame of an ingestion run (:meth:`iotlib.ingest.IngestReport.devices`)
and return a matplotlib ``Figure``; nothing is shown or saved here.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from matplotlib.figure import Figure


def outcomes(
    devices: pl.DataFrame,
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "Events per device: accepted by the hub, or refused",
) -> Figure:
    """A bar per device: events the hub accepted and events it refused (the refused ones labelled)."""
    labels = labels or {}
    rows = devices.sort("device_id")
    names = [labels.get(d, d[:8]) for d in rows["device_id"]]
    fig = Figure(figsize=(10, 0.28 * rows.height + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, rows["sent"].to_list(), color="#55a868", label="accepted")
    ax.barh(names, rows["failed"].to_list(), left=rows["sent"].to_list(), color="#c44e52", label="refused")
    ax.invert_yaxis()
    ax.set(xlabel="events", title=title)
    ax.legend(fontsize=8, loc="lower right")
    return fig
