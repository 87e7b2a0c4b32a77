"""Notebook 05's figures say what they show at full scale: every number whole, many late readings
sampled with the count said, devices named by role, runs that differ in a few windows told apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from iotlib.processing import plots  # noqa: E402
from iotlib.processing.results import Counts  # noqa: E402

T0 = datetime(2025, 1, 6, tzinfo=UTC)


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_outcome_bars_write_each_number_whole_beside_its_bar():
    fig = plots.outcome_bars({"narrow": Counts(accepted=10_000, side_output=126, duplicates=40_000)})
    assert "126 side output · 40,000 duplicates" in _texts(fig)
    plt.close(fig)


def test_the_watermark_figure_samples_many_late_readings_and_names_devices_by_role():
    ticks = [T0 + timedelta(seconds=s) for s in range(10)]
    marks = pl.DataFrame({"tick_start": ticks, "watermark": ticks, "frontier": ticks})
    history = pl.DataFrame({"device_id": ["a1b2c3d4e5"] * 10, "arrival": ticks, "newest_event_time": ticks,
                            "watermark": ticks})  # fmt: skip
    late = pl.DataFrame({"enqueued_time": [ticks[5]] * 4_105, "time_observed": [ticks[1]] * 4_105})
    fig = plots.watermark_figure(marks, history, late=late, names={"a1b2c3d4e5": "offline 3 min"}, max_late=200)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "late / clock-ahead readings, 200 of 4,105 shown" in labels
    assert "offline 3 min: watermark" in labels and not any(label.startswith("a1b2") for label in labels)
    plt.close(fig)


def test_building_series_shows_each_run_as_its_difference_and_the_windows_only_one_run_has():
    ends = [T0 + timedelta(seconds=5 * i) for i in range(1, 7)]
    reference = pl.DataFrame({"building_id": [1] * 6, "window_end": ends, "avg_temperature": [20.0] * 6})
    other = pl.concat([reference.head(5).with_columns(pl.col("avg_temperature") + pl.Series([0.0, 0.0, 1.5, 0.0, 0.0])),
                       pl.DataFrame({"building_id": [1], "window_end": [T0 + timedelta(seconds=40)],
                                     "avg_temperature": [3.0]})])  # fmt: skip
    fig = plots.building_series({"reference": reference, "other": other}, 1, title="t",
                                marks={"offline": (ends[0], ends[2]), "arrives": ends[4]})  # fmt: skip
    top, diff = fig.axes
    assert diff.get_title(loc="left") == "other − reference"
    assert max(y for y in diff.lines[0].get_ydata() if y == y) == 1.5  # the one window they differ in (NaN skipped)
    markers = {c.get_label(): len(c.get_offsets()) for c in diff.collections if c.get_label() in ("window only here", "window missing here")}  # fmt: skip
    assert markers == {
        "window only here": 1,
        "window missing here": 1,
    }  # 40 s only in "other"; 30 s only in the reference
    assert {"offline", "arrives"} <= set(top.get_legend_handles_labels()[1])
    plt.close(fig)
