"""The journey's closing pages: the lag table of the last look, and a short report of the whole run."""

from __future__ import annotations

import polars as pl

from iotlib.cli.journey.answers import arrived_share
from iotlib.cli.journey.state import Demo


def lag_table(demo: Demo) -> None:
    """The last look of the monitor, as ``iotlib monitor`` prints it: a row per group and partition."""
    from iotlib.cli.monitor import table

    demo.say("lag", "\n".join(table(demo.results["lag"])))


def summary(demo: Demo) -> None:
    """A few lines, one per stage, with the figures that matter."""
    r = demo.results
    truth, sent, answers = r["truth"], r["ingest"], r["answers"]
    lag: pl.DataFrame = r["lag"]
    hot = sorted(set(answers["hot_building_hours"]["building_id"].to_list()))
    table = answers["completeness"]
    alerts = ", ".join(f"{n} {rule}" for rule, n in sorted(r["alerts"].group_by("rule").len().iter_rows()))
    rows = [
        ("fleet", f"{demo.devices:,} devices, {r['events'].height:,} readings over {demo.minutes} min"),
        (
            "faults",
            f"heat in building 1; {truth['offline']} devices offline a while; {truth['stuck']} frozen; "
            f"{truth['duplicates']} readings sent twice",
        ),
        (
            "hub",
            f"{sent.events_sent:,} sent live at {demo.speed:g}x in {sent.elapsed_seconds:,.1f} s to "
            f"{len(sent.per_partition)} partitions; {len(sent.failed)} failed",
        ),
        ("capture", f"{r['capture'].events:,} events in {len(r['capture'].files)} Avro files"),
        ("cold store", f"{r['cold'].height:,} events loaded back"),
        ("warm job", f"{r['stream'].received:,} events, {r['stream'].windows:,} windows; alerts: {alerts or 'none'}"),
        (
            "analysis",
            f"hot buildings {hot or 'none'}; {arrived_share(table):.1%} of expected "
            f"readings arrived; {answers['stuck'].height} frozen sensors found",
        ),
        (
            "lag",
            f"{int(lag['unprocessed'].sum()):,} events unprocessed over {lag['partition_id'].n_unique()} partitions "
            f"x {lag['consumer_group'].n_unique()} consumer groups at the end",
        ),
        ("figures", ", ".join(str(p) for p in demo.figures.values())),
    ]
    width = max(len(name) for name, _ in rows)
    demo.say("report", "\n".join(f"{name.ljust(width)}  {text}" for name, text in rows))
