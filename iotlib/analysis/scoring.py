"""Scoring the detectors against what really happened: the simulator's ground truth.

The simulator marks every event it made faulty (``fault_*`` columns; a day keeps them in
``truth/``, keyed by partition and sequence number). Each detector answers at its own level:

=============  ==============  ====================================================
fault          level           detector
=============  ==============  ====================================================
spike          event           :func:`iotlib.analysis.spikes.spikes`
duplicate      event           :func:`iotlib.analysis.duplicates.duplicates`
malformed      event           the cold store's ``decode_error``
stuck          device          :func:`iotlib.analysis.stuck.stuck_sensors`
clock_skew     device          :func:`iotlib.analysis.skew.clock_skew` (``skewed``)
offline        device          :func:`iotlib.analysis.completeness.silent_devices`
heat           building-hour   :func:`iotlib.analysis.heatmap.hot_building_hours`
=============  ==============  ====================================================

:func:`score` returns one row per fault given: how many were real (``actual``) and flagged
(``detected``), the confusion counts and ``precision`` (flagged that were real) and ``recall``
(real that were flagged). Null precision means nothing was flagged.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from iotlib.analysis.source import hour_of

EVENT_KEY = ["partition_id", "sequence_number"]
LEVELS = {
    "spike": "event",
    "duplicate": "event",
    "malformed": "event",
    "stuck": "device",
    "clock_skew": "device",
    "offline": "device",
    "heat": "building-hour",
}


def actual(truth: pl.LazyFrame | pl.DataFrame, registry: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The real faults, per kind, at their detector's level (keys only)."""
    t = truth.lazy() if isinstance(truth, pl.DataFrame) else truth
    devices = {
        kind: t.filter(pl.col(f"fault_{kind}")).select("device_id").unique().collect()
        for kind in ("stuck", "clock_skew", "offline")
    }
    heat = (
        t.filter(pl.col("fault_heat"))
        .join(registry.lazy().select("device_id", "building_id"), on="device_id")
        .select("building_id", hour_of("time_observed").alias("hour"))
        .unique()
        .collect()
    )
    return {
        "spike": t.filter(pl.col("fault_spike")).select(EVENT_KEY).collect(),
        "duplicate": t.filter(pl.col("fault_duplicate")).select(EVENT_KEY).collect(),
        "malformed": t.filter(pl.col("fault_malformed").is_not_null()).select(EVENT_KEY).collect(),
        **devices,
        "heat": heat,
    }


def confusion(detected: pl.DataFrame, real: pl.DataFrame, *, on: list[str], universe: int) -> dict[str, Any]:
    """Confusion counts of ``detected`` against ``real`` (both keyed by ``on``) among ``universe`` candidates."""
    flagged = detected.select(on).unique()
    real = real.select(on).unique()
    tp = flagged.join(real, on=on, how="semi").height
    fp = flagged.height - tp
    fn = real.height - tp
    return {
        "actual": real.height,
        "detected": flagged.height,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": max(universe - tp - fp - fn, 0),
        "precision": tp / flagged.height if flagged.height else None,
        "recall": tp / real.height if real.height else None,
    }


def score(
    truth: pl.LazyFrame | pl.DataFrame,
    registry: pl.DataFrame,
    detections: dict[str, pl.DataFrame],
    *,
    events_total: int,
    building_hours_total: int | None = None,
) -> pl.DataFrame:
    """One row per fault kind in ``detections`` (keys of :data:`LEVELS`; frames with the level's key columns)."""
    unknown = sorted(set(detections) - set(LEVELS))
    if unknown:
        from iotlib.errors import ConfigurationError

        raise ConfigurationError(f"no scoring for {unknown}; known faults: {', '.join(LEVELS)}")
    real = actual(truth, registry)
    rows = []
    for kind, found in detections.items():
        level = LEVELS[kind]
        if level == "event":
            on, universe = EVENT_KEY, events_total
        elif level == "device":
            on, universe = ["device_id"], registry.height
        else:
            on = ["building_id", "hour"]
            universe = building_hours_total if building_hours_total is not None else found.height
        rows.append({"fault": kind, "level": level, **confusion(found, real[kind], on=on, universe=universe)})
    return pl.DataFrame(
        rows,
        schema={
            "fault": pl.String,
            "level": pl.String,
            "actual": pl.Int64,
            "detected": pl.Int64,
            "true_positives": pl.Int64,
            "false_positives": pl.Int64,
            "false_negatives": pl.Int64,
            "true_negatives": pl.Int64,
            "precision": pl.Float64,
            "recall": pl.Float64,
        },  # fmt: skip
    )
