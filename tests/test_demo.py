"""The end-to-end journey (what `make demo` runs) on the session's stack at a tiny scale; as a user runs it: test_demo_cli.py.

The journey sends live with capture and the warm job beside the hub; what it prints and saves is
held to what the services and the cold store hold: every event in the cold store, the analysis
answers recomputed from the cold store they came from, the lag table covering every partition of
both consumer groups, and its figures real PNG images.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import image

from iotlib import hub
from iotlib.cli import journey as demo
from iotlib.cli.journey.fleet import heat_window
from iotlib.processing import EventTimePolicy, building_averages

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_runs_the_journey_end_to_end(local_stack: object, tmp_path: Path) -> None:
    run = demo.run(devices=400, minutes=10, seed=1, out=tmp_path / "out")  # four buildings
    text = "\n".join(run.lines)
    sent = run.results["ingest"].events_sent
    assert sent == run.results["events"].height and run.results["ingest"].mode == "live"
    assert run.results["capture"].events == sent
    assert "every event sent is in the cold store" in text
    cold: pl.DataFrame = run.results["cold"]
    assert cold.height == sent
    windows = run.results["windows"]
    hot = windows.filter(windows["building_id"] == 1)["avg_temperature"].max()
    assert hot > windows.filter(windows["building_id"] != 1)["avg_temperature"].max()
    # The streaming job, running beside the live send, saw the windows the batch job sees through
    # the same event-time policy (on a loaded machine a retried send can arrive late, to the side
    # output), all of them when none was late; and the heat event raised alerts.
    stream = run.results["stream"]
    assert stream.received == sent
    policy = EventTimePolicy(idle_timeout="15m")  # the demo's: its minutes plus five
    seen = building_averages(cold, run.results["registry"], window="5s", policy=policy)
    assert stream.windows == seen.windows.height, (stream.counts, seen.counts)
    alerts = run.results["alerts"]
    assert 1 in alerts.filter(alerts["rule"] == "building_too_hot")["building_id"].to_list()
    assert "[stack] stopped" not in text, "the demo must not stop a stack it did not start"
    assert "[stack] left running (azurite on " in text and "`iotlib down` stops it" in text
    assert "[next] the notebooks: `make lab`" in text and "`iotlib demo --full`" in text
    assert all(f"[next]   {n:02d}: " in text for n in range(1, 11))

    _the_answers_agree_with_the_cold_store(run)
    _the_lag_table_has_every_partition_of_both_groups(run)
    _the_figures_are_png_images(run, tmp_path / "out")
    report = text[text.index("[report]") :]
    assert f"{sent:,} sent live at 20x" in report and f"{cold.height:,} events loaded back" in report
    assert "0 events unprocessed over 8 partitions x 2 consumer groups" in report and "hot buildings [1]" in report


def _the_answers_agree_with_the_cold_store(run: demo.Demo) -> None:
    answers = run.results["answers"]
    cold: pl.DataFrame = run.results["cold"]
    registry: pl.DataFrame = run.results["registry"]
    start, end = run.results["span"]
    # Events per device: the original Hive query, counted again here.
    per_device = cold.group_by("device_id").agg(pl.len().cast(pl.Int64).alias("events")).sort("device_id")
    assert answers["events_per_device"].equals(per_device)
    # The buildings over the heat event's minutes: means from the rows themselves; building 1 on top.
    lo, hi = heat_window(start, run.minutes)
    assert (lo - start, hi - start) == (timedelta(minutes=4), timedelta(minutes=8))
    assert answers["heat_window"] == (lo, hi)
    inside = (
        cold.filter(pl.col("time_observed") >= lo, pl.col("time_observed") < hi, pl.col("temperature").is_not_null())
        .join(registry.select("device_id", "building_id"), on="device_id")
        .group_by("building_id")
        .agg(pl.len().cast(pl.Int64).alias("readings"), pl.col("temperature").mean().alias("mean"))
        .sort("building_id")
    )
    got = answers["buildings_in_heat"].sort("building_id")
    assert got["building_id"].to_list() == inside["building_id"].to_list()
    assert got["readings"].to_list() == inside["readings"].to_list()
    assert np.allclose(got["mean_temperature"].to_numpy(), inside["mean"].to_numpy())
    assert got.sort("mean_temperature", descending=True)["building_id"][0] == 1
    # Hot building-hours: judged on the hourly means of the rows themselves.
    hourly = (
        cold.filter(pl.col("time_observed") >= start, pl.col("time_observed") < end)
        .join(registry.select("device_id", "building_id"), on="device_id")
        .group_by("building_id", pl.col("time_observed").dt.truncate("1h").alias("hour"))
        .agg(pl.len().alias("readings"), pl.col("temperature").mean().alias("mean"))
    )
    flagged = answers["hot_building_hours"].join(hourly, on=["building_id", "hour"], how="left")
    assert flagged["mean"].null_count() == 0
    assert np.allclose(flagged["mean_temperature"].to_numpy(), flagged["mean"].to_numpy())
    assert (flagged["mean"] - flagged["usual"] > 6).all()
    assert flagged["building_id"].unique().to_list() == [1]  # the heat event, against three calm buildings
    # Completeness: every registry device, what it delivered in the span as the cold store holds it.
    received = (
        cold.filter(pl.col("time_observed") >= start, pl.col("time_observed") < end)
        .group_by("device_id")
        .agg(pl.len().alias("n"))
    )
    table = answers["device_completeness"].join(received, on="device_id", how="left")
    assert table.height == registry.height
    assert table["received"].to_list() == table["n"].fill_null(0).to_list()
    # Frozen sensors: each device found repeats one value in the cold store, and the simulation froze it.
    frozen = set(answers["stuck"]["device_id"].to_list())
    truth = set(run.results["events"].filter(pl.col("fault_stuck"))["device_id"].to_list())
    assert frozen and frozen <= truth
    for device in frozen:
        values = cold.filter(pl.col("device_id") == device, pl.col("time_observed") >= start)["temperature"]
        assert values.n_unique() == 1, device


def _the_lag_table_has_every_partition_of_both_groups(run: demo.Demo) -> None:
    lag: pl.DataFrame = run.results["lag"]
    partitions = sorted(hub.positions())
    for group in ("capture", "warm"):
        rows = lag.filter(pl.col("consumer_group") == group)
        assert sorted(rows["partition_id"].to_list()) == partitions, group
        assert rows["unprocessed"].to_list() == [0] * len(partitions), rows  # both stopped after reading it all
    printed = [line for line in run.lines if re.match(r"^(\[lag\]|\s+)\s*telemetry\s+(capture|warm)\s", line)]
    assert len(printed) == 2 * len(partitions)
    # The looks taken while it ran saw the backlog of a live send, and the last one none.
    looks: pl.DataFrame = run.results["looks"]
    assert looks["sampled_at"].n_unique() >= 2 and looks["unprocessed"].max() > 0


def _the_figures_are_png_images(run: demo.Demo, out: Path) -> None:
    assert set(run.figures) == {"lag", "buildings", "buildings-in-heat", "events-per-device"}
    for name, path in run.figures.items():
        assert path.parent == out and path.name == f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        pixels = image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400, (path, pixels.shape)
        assert np.ptp(pixels[..., :3]) > 0.5, f"{path} is blank"
        assert str(path) in "\n".join(run.lines)
