"""The journey's read side: the capture and the warm job's results, the cold store loaded back, and
a few of the analysis chapters' questions answered over it (iotlib.analysis, as notebooks 07-08 ask them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from iotlib.cli.journey.fleet import heat_window
from iotlib.cli.journey.state import Demo

#: A frozen sensor's readings never move over the run; this many readings make that a finding.
STUCK_MIN_READINGS = 4
#: A device is short of readings below this share of what its period leads to expect.
SHORT = 0.9


def captured(demo: Demo) -> None:
    report = demo.results["capture"]
    nbytes = sum(f.size_in_bytes for f in report.files)
    demo.say(
        "capture",
        f"{report.events:,} events in {len(report.files)} Avro files ({nbytes / 1e6:,.2f} MB) in Blob container "
        f"'{demo.capture_container}' (checkpoints in '{demo.checkpoint_containers['capture']}')",
    )
    first = min(report.files, key=lambda f: f.name)
    demo.say(
        "capture",
        f"e.g. {first.name}: {first.event_count:,} events, sequence numbers "
        f"{first.first_sequence_number}-{first.last_sequence_number}",
    )


def streamed(demo: Demo) -> None:
    from iotlib.warm import WarmStore

    report = demo.results["stream"]
    path = demo.results["warm_store"]
    store = WarmStore(path)
    try:
        alerts = store.alerts()
        history = store.history()
        now = store.current_temperature(1)
    finally:
        store.close()
    demo.results["alerts"] = alerts
    demo.results["history"] = history
    per_rule = ", ".join(f"{n} {rule}" for rule, n in sorted(alerts.group_by("rule").len().iter_rows()))
    demo.say(
        "stream",
        f"{report.received:,} events through the warm job into {path}: {report.windows:,} windows "
        f"({report.counts.late:,} events late), alerts: {per_rule or 'none'}",
    )
    if now is not None:
        hot = alerts.filter(pl.col("rule") == "building_too_hot")
        demo.say(
            "stream",
            f"building 1's last window: {now.avg_temperature:.1f} °C (observed {now.last_observed_time:%H:%M:%S}); "
            f"too-hot alerts for building(s) {sorted(set(hot['building_id'].to_list()))}",
        )


def coldstore(demo: Demo) -> None:
    from iotlib import coldstore as cold

    frame = cold.load(container=demo.capture_container)
    demo.results["cold"] = frame
    sent = demo.results["ingest"].events_sent
    bad = frame["decode_error"].is_not_null().sum()
    verdict = "every event sent is in the cold store" if frame.height == sent else "MISMATCH"
    demo.say(
        "coldstore",
        f"loaded {frame.height:,} events back from the Capture files ({sent:,} sent: {verdict}); "
        f"{bad} bodies failed to decode",
    )


def processing(demo: Demo) -> None:
    from iotlib.processing import building_averages

    result = building_averages(demo.results["cold"], demo.results["registry"], window="5s")
    windows = result.windows
    peaks = windows.group_by("building_id").agg(pl.col("avg_temperature").max().alias("peak"))
    heated = peaks.filter(pl.col("building_id") == 1)["peak"].max()
    others = peaks.filter(pl.col("building_id") != 1)["peak"].max()
    assert isinstance(heated, float) and isinstance(others, float)  # the demo fleet has building 1 and others
    demo.results["windows"] = windows
    demo.say(
        "processing",
        f"{windows.height:,} five-second building averages (event time, batch over the cold store); building 1, "
        f"with the heat event, peaks at {heated:.1f} °C, the other buildings at most {others:.1f} °C",
    )


def analysis(demo: Demo) -> None:
    """Events per device, the buildings over the heat event, hot building-hours, completeness and
    frozen sensors: notebook 07's and 08's questions, asked of the cold store the run loaded."""
    from iotlib.analysis import completeness, counts, heatmap, stuck, window

    cold, reg = demo.results["cold"], demo.results["registry"]
    start, end = demo.results["span"]
    heat = heat_window(start, demo.minutes)
    hours_found = completeness.device_hours(cold, reg, start=start, end=end)
    table = completeness.completeness(hours_found, reg, start=start, end=end)
    answers: dict[str, Any] = {
        "events_per_device": counts.events_per_device(cold, reg),
        "heat_window": heat,
        "buildings_in_heat": window.building_temperature(cold, reg, start=heat[0], end=heat[1]),
        "hot_building_hours": heatmap.hot_building_hours(heatmap.building_hours(cold, reg, start=start, end=end)),
        "completeness": table,
        "device_completeness": _per_device_completeness(table),
        "stuck": stuck.stuck_sensors(_over_the_run(hours_found), reg, min_readings=STUCK_MIN_READINGS),
    }
    demo.results["answers"] = answers
    for line in _answer_lines(answers, demo.results["truth"], reg.height):
        demo.say("analysis", line)


def _answer_lines(answers: dict[str, Any], truth: dict[str, Any], devices: int) -> list[str]:
    per_device = answers["events_per_device"]
    n = per_device["events"].to_numpy()
    silent = devices - per_device.filter(pl.col("device_id").is_not_null()).height
    lines = [
        f"events per device (the original Hive query): {per_device.height:,} devices, {int(n.sum()):,} events; "
        f"median {float(np.median(n)):g}, {int(n.min())}-{int(n.max())}; {silent} devices sent nothing"
    ]
    inside = answers["buildings_in_heat"]
    hottest = inside.sort("mean_temperature", descending=True).row(0, named=True)
    others = inside.filter(pl.col("building_id") != hottest["building_id"])["mean_temperature"]
    lo, hi = answers["heat_window"]
    lines.append(
        f"the buildings from {lo:%H:%M} to {hi:%H:%M} UTC: building {hottest['building_id']} averaged "
        f"{hottest['mean_temperature']:.1f} °C over {hottest['readings']:,} readings, the others "
        f"{others.min():.1f}-{others.max():.1f} °C"
    )
    hot = answers["hot_building_hours"]
    where = ", ".join(
        f"building {b} at {h:%H}:00 UTC ({t:.1f} °C, {t - u:+.1f} on the median building)"
        for b, h, t, u in hot.select("building_id", "hour", "mean_temperature", "usual").iter_rows()
    )
    lines.append(f"hot building-hours: {where or 'none'}")
    per = answers["device_completeness"]
    short = per.filter(pl.col("ratio") < SHORT)
    offline = per.filter(pl.col("device_id").is_in(truth["offline_devices"]))
    away = (
        f"; the {offline.height} devices that were offline a while: {arrived_share(offline):.1%} "
        "(what they buffered came later, in a burst)"
        if offline.height
        else ""
    )
    lines.append(
        f"completeness: {arrived_share(answers['completeness']):.1%} of the readings expected arrived (one sent twice "
        f"counts twice); {short.height} devices below {SHORT:.0%}{away}"
    )
    lines.append(
        f"frozen sensors: {answers['stuck'].height} devices whose readings never moved over the run "
        f"({STUCK_MIN_READINGS}+ readings; the simulation froze {truth['stuck']})"
    )
    return lines


def arrived_share(table: pl.DataFrame) -> float:
    """The share of the readings :func:`~iotlib.analysis.completeness.completeness` expected that arrived."""
    return float(table["received"].sum()) / float(table["expected"].sum())


def _per_device_completeness(table: pl.DataFrame) -> pl.DataFrame:
    """device_id, building_id, expected, received, ratio: :func:`completeness` over the whole run."""
    return (
        table.group_by("device_id", "building_id")
        .agg(pl.col("expected").sum(), pl.col("received").sum())
        .with_columns((pl.col("received") / pl.col("expected")).alias("ratio"))
        .sort("ratio", "device_id")
    )


def _over_the_run(hours_found: pl.DataFrame) -> pl.DataFrame:
    """Each device's hours as one span. A run of minutes that crosses an hour boundary leaves a slice
    of a few readings on one side, and a steady room's few readings can all be equal: judged per
    hour, that flagged sound sensors (2 of 1,000 on a 10-minute run crossing 10:00)."""
    return hours_found.group_by("device_id").agg(
        pl.col("hour").min(),
        pl.col("readings").sum(),
        pl.col("min_temperature").min(),
        pl.col("max_temperature").max(),
    )
