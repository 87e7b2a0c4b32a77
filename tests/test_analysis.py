"""The analysis questions: polars and DuckDB give the same answers; local days across DST; completeness
arithmetic; detectors scored against the simulator's ground truth; bad input named."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iotlib.analysis import (
    completeness,
    counts,
    dense,
    duplicates,
    heatmap,
    localday,
    scoring,
    skew,
    spikes,
    stuck,
    window,
)
from iotlib.analysis import (
    day as days,
)
from iotlib.analysis.source import EmptyRangeWarning, events
from iotlib.errors import ConfigurationError
from iotlib.fleet import scenario, simulate
from iotlib.fleet.delivery import deliver


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> days.SimulatedDay:
    registry = scenario.build_registry(400, buildings=5, seed=5)
    return days.build_day(tmp_path_factory.mktemp("day"), registry, duration="1d", seed=5, progress=False)


@pytest.fixture(scope="module")
def plain(day: days.SimulatedDay) -> pl.LazyFrame:
    """The same events as a frame without the day's device_key (the device id path)."""
    return day.scan().drop("device_key", "date").collect().lazy()


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_sql_twins_give_the_polars_answers(day: days.SimulatedDay) -> None:
    s, e = day.start, day.end
    w0, w1 = window.past(s + timedelta(hours=10), "1h")
    pairs = {
        "events per device": (counts.events_per_device, counts.events_per_device_sql, {}),
        "building window": (window.building_temperature, window.building_temperature_sql, {"start": w0, "end": w1}),
        "room window": (
            window.building_temperature,
            window.building_temperature_sql,
            {"start": w0, "end": w0 + timedelta(minutes=20), "by": "room", "buildings": 2},
        ),
        "spikes": (spikes.spikes, spikes.spikes_sql, {"start": s, "end": e}),
        "local days": (localday.local_day_stats, localday.local_day_stats_sql, {}),
        "device hours": (completeness.device_hours, completeness.device_hours_sql, {"start": s, "end": e}),
        "arrivals": (completeness.arrivals, completeness.arrivals_sql, {"start": s, "end": e}),
        "clock skew": (skew.clock_skew, skew.clock_skew_sql, {"start": s, "end": e}),
        "duplicates": (duplicates.duplicates, duplicates.duplicates_sql, {"start": s, "end": e}),
        "building hours": (heatmap.building_hours, heatmap.building_hours_sql, {}),
    }
    for name, (polars_way, sql_way, options) in pairs.items():
        a, b = polars_way(day, **options), sql_way(day, **options)
        assert a.height > 0, name
        same(a, b)


def test_the_device_key_and_the_device_id_paths_agree(day: days.SimulatedDay, plain: pl.LazyFrame) -> None:
    keyed = counts.events_per_device(day)
    by_id = counts.events_per_device(plain, day.registry)
    # Bodies that did not decode count for their device by key, under a null id by id.
    assert keyed["events"].sum() == by_id["events"].sum() == day.events
    errors = day.counts["decode_errors"]
    assert by_id.filter(pl.col("device_id").is_null())["events"].sum() == errors
    s, e = day.start, day.end
    same(completeness.device_hours(day, start=s, end=e).drop("device_key").filter(pl.col("device_id").is_not_null()),
         completeness.device_hours(plain, day.registry, start=s, end=e).filter(pl.col("device_id").is_not_null())
         .with_columns(pl.col("readings")))  # fmt: skip
    same(spikes.spikes(day, start=s, end=e), spikes.spikes(plain, day.registry, start=s, end=e))
    same(spikes.spikes(day, start=s, end=e, buckets=5), spikes.spikes(day, start=s, end=e))  # buckets change nothing
    same(
        duplicates.duplicates(day, start=s, end=e, buckets=3),
        duplicates.duplicates(plain, day.registry, start=s, end=e),
    )
    same(localday.local_day_stats(day), localday.local_day_stats(plain, day.registry))
    same(heatmap.building_hours(day), heatmap.building_hours(plain, day.registry))
    same(skew.clock_skew(day, start=s, end=e), skew.clock_skew(plain, day.registry, start=s, end=e))
    # Arrivals by key also count the bodies that did not decode; by id those arrive under a null id.
    keyed_arrivals = completeness.arrivals(day, start=s, end=e)
    by_id_arrivals = completeness.arrivals(plain, day.registry, start=s, end=e)
    assert keyed_arrivals["arrived"].sum() == by_id_arrivals["arrived"].sum()
    broken = day.scan().filter(pl.col("decode_error").is_not_null()).select("device_key").collect()
    senders = day.registry["device_id"].gather(broken["device_key"])
    same(
        keyed_arrivals.drop("device_key").filter(~pl.col("device_id").is_in(senders)),
        by_id_arrivals.filter(pl.col("device_id").is_not_null(), ~pl.col("device_id").is_in(senders)),
    )
    hour = {"start": s + timedelta(hours=3), "end": s + timedelta(hours=4), "buildings": [2, 3]}
    same(localday.local_day_stats(day, **hour), localday.local_day_stats(plain, day.registry, **hour))


def test_a_time_filter_is_kept_only_where_it_lets_row_groups_be_skipped(day: days.SimulatedDay) -> None:
    ev = events(day)
    s, e = day.start, day.end
    assert dense.in_range(ev, "time_observed", None, None) is ev.frame
    assert dense.in_range(ev, "time_observed", s - timedelta(days=1), e + timedelta(days=1)) is ev.frame
    narrow = dense.in_range(ev, "time_observed", s + timedelta(hours=3), s + timedelta(hours=4))
    assert narrow is not ev.frame  # the day's row groups are in enqueued-time order: most lie outside the hour
    assert narrow.select(pl.len()).collect().item() < ev.frame.select(pl.len()).collect().item()


def test_detectors_find_the_faults_the_simulator_made(day: days.SimulatedDay) -> None:
    s, e = day.start, day.end
    reg = day.registry
    hours_found = completeness.device_hours(day, start=s, end=e)
    found = {
        "spike": spikes.spikes(day, start=s, end=e),
        "duplicate": duplicates.duplicates(day, start=s, end=e),
        "malformed": day.scan().filter(pl.col("decode_error").is_not_null()).collect(),
        "stuck": stuck.stuck_sensors(hours_found, reg),
        "clock_skew": skew.clock_skew(day, start=s, end=e).filter("skewed"),
        "offline": completeness.silent_devices(completeness.arrivals(day, start=s, end=e), reg, start=s, end=e),
        "heat": heatmap.hot_building_hours(heatmap.building_hours(day)),
    }
    table = scoring.score(day.truth(), reg, found, events_total=day.events, building_hours_total=5 * 24)
    rows = {r["fault"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == set(scoring.LEVELS)
    for fault, r in rows.items():
        assert r["actual"] > 0, fault
        assert r["true_positives"] + r["false_negatives"] == r["actual"]
        assert r["true_positives"] + r["false_positives"] == r["detected"]
    assert rows["spike"]["precision"] >= 0.9 and rows["spike"]["recall"] >= 0.9
    assert rows["duplicate"]["precision"] == 1.0 and rows["duplicate"]["recall"] >= 0.95
    assert rows["malformed"]["precision"] == rows["malformed"]["recall"] == 1.0
    for fault in ("stuck", "clock_skew", "offline"):
        assert rows[fault]["precision"] == 1.0 and rows[fault]["recall"] == 1.0, fault
    assert rows["heat"]["recall"] >= 0.75 and rows["heat"]["precision"] >= 0.75
    # The devices behind the spikes, most spikes first.
    devices = spikes.spike_devices(found["spike"], reg)
    assert devices["spikes"].sum() == found["spike"].height and devices["spikes"].is_sorted(descending=True)


def _zone_events(zones: dict[int, str], start: datetime, hours: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    registry = scenario.build_registry(12, buildings=len(zones), equal_buildings=True, seed=1)
    registry = registry.with_columns(
        pl.col("building_id").replace_strict(zones, return_dtype=pl.String).alias("time_zone")
    )
    sent = simulate.generate(registry, start=start, duration=f"{hours}h", seed=1, temperature_range=(0, 30))
    delivered = deliver(sent, seed=1).with_columns(pl.col("device_id").cast(pl.String))
    return registry, delivered


@pytest.mark.parametrize(
    ("start", "local", "new_york_hours"),
    [
        (datetime(2025, 3, 8, 12, tzinfo=UTC), datetime(2025, 3, 9).date(), 23.0),  # spring forward
        (datetime(2025, 11, 1, 12, tzinfo=UTC), datetime(2025, 11, 2).date(), 25.0),  # fall back
    ],
    ids=["spring-forward", "fall-back"],
)
def test_local_days_follow_each_buildings_time_zone_across_dst(start: datetime, local, new_york_hours: float) -> None:
    zones = {1: "America/New_York", 2: "America/Phoenix", 3: "America/Los_Angeles"}
    registry, frame = _zone_events(zones, start, 60)
    got = localday.local_day_stats(frame, registry)
    assert_frame_equal(got, localday.local_day_stats_sql(frame, registry), check_exact=False, rel_tol=1e-9)
    # Reference: each reading's local date from zoneinfo, one by one.
    rows = frame.join(registry.select("device_id", "building_id", "time_zone"), on="device_id").to_dicts()
    ref: dict[tuple[int, object], list[float]] = {}
    for r in rows:
        d = r["time_observed"].astimezone(ZoneInfo(r["time_zone"])).date()
        ref.setdefault((r["building_id"], d), []).append(r["temperature"])
    assert got.height == len(ref)
    for r in got.iter_rows(named=True):
        temps = ref[(r["building_id"], r["local_date"])]
        assert r["readings"] == len(temps)
        assert r["min_temperature"] == min(temps) and r["max_temperature"] == max(temps)
        assert r["mean_temperature"] == pytest.approx(sum(temps) / len(temps))
    day = got.filter(pl.col("local_date") == local).sort("building_id")
    assert day["day_hours"].to_list() == [new_york_hours, 24.0, new_york_hours]
    # A whole local day of a device reading every minute: as many readings as the day has minutes, ±10 %.
    for r in day.iter_rows(named=True):
        per_device = r["readings"] / 4
        assert abs(per_device - 60 * r["day_hours"]) < 6 * r["day_hours"], r
        assert r["covered_hours"] == r["day_hours"]


def test_completeness_arithmetic_on_hand_made_events() -> None:
    registry = scenario.build_registry(3, buildings=1, seed=2)
    a, b, c = registry["device_id"].to_list()
    t0 = datetime(2025, 1, 6, 0, tzinfo=UTC)
    rows = [(a, t0 + timedelta(minutes=m), t0 + timedelta(minutes=m, seconds=1)) for m in range(60)]  # hour 0: 60
    rows += [(a, t0 + timedelta(hours=1, minutes=m), t0 + timedelta(hours=1, minutes=m, seconds=1)) for m in range(15)]
    # c was offline in hour 0: its 30 readings of hour 0 arrive in hour 1.
    rows += [(c, t0 + timedelta(minutes=2 * m), t0 + timedelta(hours=1, seconds=m)) for m in range(30)]
    frame = (
        pl.DataFrame(rows, schema=["device_id", "time_observed", "enqueued_time"], orient="row")
        .with_columns(
            pl.col("time_observed", "enqueued_time").cast(pl.Datetime("us", "UTC")),
            pl.lit("0").alias("partition_id"),
            pl.int_range(pl.len()).alias("sequence_number"),
        )
        .with_columns(  # a's sensor is frozen at 20 °C; c's moves
            pl.when(pl.col("device_id") == c)
            .then(pl.col("sequence_number") % 3 + 18.0)
            .otherwise(20.0)
            .alias("temperature")
        )
    )
    start, end = t0, t0 + timedelta(minutes=90)
    found = completeness.device_hours(frame, registry, start=start, end=end)
    table = completeness.completeness(found, registry, start=start, end=end)
    got = {(r["device_id"], r["hour"].hour): (r["expected"], r["received"]) for r in table.iter_rows(named=True)}
    assert got == {
        (a, 0): (60.0, 60), (a, 1): (30.0, 15),
        (b, 0): (60.0, 0), (b, 1): (30.0, 0),
        (c, 0): (60.0, 30), (c, 1): (30.0, 0),
    }  # fmt: skip
    assert table.filter(pl.col("device_id") == a)["ratio"].to_list() == [1.0, 0.5]
    # Whole hours in range: only hour 0. Nothing of b ever arrived; c's readings of hour 0 came in hour 1.
    arrived = completeness.arrivals(frame, registry, start=start, end=end)
    silent = completeness.silent_devices(arrived, registry, start=start, end=end)
    assert sorted(silent["device_id"].to_list()) == sorted([b, c])
    assert silent["silent_hours"].to_list() == [1, 1]
    # Stuck: a's hour 0 holds 60 equal readings.
    assert stuck.stuck_sensors(found, registry)["device_id"].to_list() == [a]


def test_bad_input_gets_a_clear_answer(day: days.SimulatedDay) -> None:
    later = day.end + timedelta(days=30)
    with pytest.warns(
        EmptyRangeWarning, match=r"no events in \[2025-02-.*the store holds events observed from 2025-01-0"
    ):
        empty = window.building_temperature(day, start=later, end=later + timedelta(hours=1))
    assert empty.height == 0
    with pytest.warns(EmptyRangeWarning):
        assert window.building_temperature_sql(day, start=later, end=later + timedelta(hours=1)).height == 0
    with pytest.raises(ConfigurationError, match=r"unknown building\(s\) \[999\]"):
        window.building_temperature(day, start=day.start, end=day.end, buildings=999)
    with pytest.raises(ConfigurationError, match=r"unknown room\(s\) \['9999'\] in building 1"):
        window.building_temperature(day, start=day.start, end=day.end, by="room", buildings=1, rooms="9999")
    with pytest.raises(ConfigurationError, match="exactly one building"):
        window.building_temperature(day, start=day.start, end=day.end, rooms="101")
    with pytest.raises(ConfigurationError, match="'time_zone'"):
        localday.local_day_stats(day.scan(), day.registry.drop("time_zone"))
    with pytest.raises(ConfigurationError, match="not after start"):
        counts.events_per_device(day, start=day.end, end=day.start)
    with pytest.raises(ConfigurationError, match="registry"):
        counts.events_per_device(day.scan())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts.events_per_device(day, start=day.start, end=day.end)  # data: no warning


def test_figures_draw_the_answers(day: days.SimulatedDay) -> None:
    from iotlib.analysis import plots

    hourly = heatmap.building_hours(day)
    figure = plots.heatmap(hourly, hot=heatmap.hot_building_hours(hourly))
    image = figure.axes[0].get_images()[0].get_array()
    assert image.shape == (hourly["building_id"].n_unique(), hourly["hour"].n_unique())
    assert len(figure.axes[0].patches) == heatmap.hot_building_hours(hourly).height > 0
    w0, w1 = window.past(day.start + timedelta(hours=10), "1h")
    bars = plots.building_window(window.building_temperature(day, start=w0, end=w1), highlight=[1])
    assert len(bars.axes[0].patches) == day.registry["building_id"].n_unique()
    local = plots.local_days(localday.local_day_stats(day), [1, 2])
    assert len(local.axes[0].get_xticklabels()) == localday.local_day_stats(day, buildings=[1, 2]).height
    table = completeness.completeness(
        completeness.device_hours(day, start=day.start, end=day.end), day.registry, start=day.start, end=day.end
    )
    assert len(plots.completeness(table).axes[1].get_lines()[0].get_xdata()) == 24
