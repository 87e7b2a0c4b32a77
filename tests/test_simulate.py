"""The simulator: determinism, the original's scenarios, timing, load profiles, and every fault with its ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotlib.cli import main as cli
from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError, ValidationError
from iotlib.fleet import scenario, simulate
from iotlib.fleet.faults import (
    ClockSkew,
    Duplicates,
    HeatEvent,
    MalformedPayloads,
    Offline,
    Spikes,
    StuckSensors,
    parse_fault,
)

START = datetime(2025, 1, 6, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture(scope="module")
def registry() -> pl.DataFrame:
    return scenario.build_registry(600, buildings=6, seed=11)


@pytest.fixture(scope="module")
def hour(registry: pl.DataFrame) -> pl.DataFrame:
    """One healthy hour: the baseline faults are compared against."""
    return simulate.generate(registry, start=START, duration="1h", seed=5)


def _with(registry: pl.DataFrame, *faults, **options) -> pl.DataFrame:
    return simulate.generate(registry, start=START, duration="1h", seed=5, faults=list(faults), **options)


def _steps(events: pl.DataFrame) -> pl.DataFrame:
    """Consecutive readings of each device: interval (s) and temperature change."""
    return (
        events.sort("device_id", "time_observed")
        .with_columns(
            interval=(pl.col("time_observed").diff().dt.total_microseconds() / 1e6).over("device_id"),
            change=pl.col("temperature").diff().over("device_id"),
        )
        .drop_nulls("interval")
    )


# --- contract and determinism -----------------------------------------------------------------


def test_columns_dtypes_and_order_are_the_contract(hour: pl.DataFrame, registry: pl.DataFrame) -> None:
    assert tuple(hour.columns) == simulate.EVENT_COLUMNS
    assert hour.schema["device_id"] == pl.Enum(registry["device_id"].to_list())
    for name in ("time_observed", "sent_at"):
        assert hour.schema[name] == pl.Datetime("us", "UTC")
    assert hour.schema["temperature"] == pl.Float32
    assert hour["event_type"].cast(pl.String).unique().to_list() == ["UpdateTemperatureEvent"]
    assert hour["event_type_version"].cast(pl.String).unique().to_list() == ["1"]
    assert hour["sent_at"].is_sorted()
    assert hour.select(pl.col("^fault_.*$").exclude("fault_malformed").any()).row(0) == (False,) * 6
    assert hour["fault_malformed"].null_count() == hour.height
    assert (hour["sent_at"] == hour["time_observed"]).all(), "healthy devices send as they observe"
    assert hour["time_observed"].min() >= START and hour["time_observed"].max() < START + timedelta(hours=1)


def test_same_seed_same_events_other_seed_other_events(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    assert simulate.generate(registry, start=START, duration="1h", seed=5).equals(hour)
    other = simulate.generate(registry, start=START, duration="1h", seed=6)
    assert not other["temperature"].equals(hour["temperature"])


def test_chunk_size_does_not_change_the_result(registry: pl.DataFrame) -> None:
    faults = [Offline(fraction=0.05, outage=10 * MIN), Duplicates(probability=0.02), ClockSkew(fraction=0.05)]
    whole = _with(registry, *faults)
    sliced = _with(registry, *faults, chunk_events=2_000)
    assert sliced.n_chunks() > 5 and sliced.equals(whole)


def test_a_simulation_can_be_iterated_again(registry: pl.DataFrame) -> None:
    sim = simulate.simulation(
        registry,
        start=START,
        duration="20m",
        chunk_events=3_000,
        faults=[Offline(fraction=0.1, outage=5 * MIN), StuckSensors(fraction=0.1)],
    )
    first, second = pl.concat(list(sim)), pl.concat(list(sim))
    assert first.height > 0 and first.equals(second)


def test_slices_without_readings_are_fine(registry: pl.DataFrame) -> None:
    # Synchronized devices read in the first second of each minute; with 51 devices and a
    # 500-event target the slices are [0, 588 s) and [588 s, 600 s): the second holds nothing.
    few = registry.head(51)
    options = {"start": START, "duration": "10m", "firmware": "synchronized"}
    chunks = [c.height for c in simulate.simulation(few, chunk_events=500, **options)]
    assert chunks == [510, 0]
    assert simulate.generate(few, chunk_events=500, **options).equals(simulate.generate(few, **options))


def test_a_device_does_not_depend_on_the_others(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    few = registry.filter(pl.col("building_id") == 2)
    alone = simulate.generate(few, start=START, duration="1h", seed=5)
    same = hour.filter(pl.col("device_id").cast(pl.String).is_in(few["device_id"].to_list()))
    assert alone.with_columns(pl.col("device_id").cast(pl.String)).equals(
        same.with_columns(pl.col("device_id").cast(pl.String))
    )


# --- scenarios and timing ----------------------------------------------------------------------


def test_no_errors_expected_starts_whole_0_to_24_and_walks_by_at_most_2() -> None:
    reg = scenario.build_registry(3_000, seed=1)
    events = simulate.generate(reg, start=START, duration="15m", seed=2)
    first = events.sort("time_observed").group_by("device_id", maintain_order=True).first()["temperature"]
    assert first.min() == 0 and first.max() == 24 and first.n_unique() == 25
    assert (events["temperature"] == events["temperature"].round()).all(), "whole degrees"
    changes = _steps(events)["change"]
    assert set(changes.unique().to_list()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    shares = changes.value_counts(normalize=True)["proportion"]
    assert (shares - 0.2).abs().max() < 0.02, "steps are uniform over -2..+2"


def test_thirty_degree_readings_are_all_thirty(registry: pl.DataFrame) -> None:
    events = simulate.generate(registry, start=START, duration="10m", scenario="ThirtyDegreeReadings")
    assert events.height > 0 and (events["temperature"] == 30.0).all()


def test_period_is_60s_with_10_percent_jitter(hour: pl.DataFrame, registry: pl.DataFrame) -> None:
    intervals = _steps(hour)["interval"]
    assert intervals.min() >= 54.0 and intervals.max() <= 66.0
    assert intervals.min() < 54.5 and intervals.max() > 65.5, "the jitter is used"
    assert abs(intervals.mean() - 60.0) < 0.2  # type: ignore[operator]
    per_device = hour.group_by("device_id").len()["len"]
    assert per_device.min() >= 55 and per_device.max() <= 67
    assert hour["device_id"].n_unique() == registry.height


def test_staggered_firmware_levels_the_load_and_synchronized_bursts(registry: pl.DataFrame) -> None:
    n = registry.height
    staggered = simulate.generate(registry, start=START, duration="10m", seed=1)
    burst = simulate.generate(registry, start=START, duration="10m", seed=1, firmware="synchronized")
    level = simulate.events_per_second(staggered)
    spikes = simulate.events_per_second(burst)
    mean = n / 60
    # Warm-up spreads first readings over one period: no second ever sees more than a few times the mean.
    first = staggered.group_by("device_id").agg(pl.col("sent_at").min())["sent_at"]
    assert first.min() >= START and first.max() < START + MIN
    assert level["events"].max() < 4 * mean and level.height == 600
    # Synchronized: every device in the first second of each minute, nothing in between.
    busy = spikes.filter(pl.col("events") > 0)
    assert busy["events"].to_list() == [n] * 10
    assert (busy["second"].dt.second() == 0).all()
    assert burst.height == n * 10
    assert 9 * n <= staggered.height <= 11 * n


def test_events_per_second_counts_every_second(hour: pl.DataFrame, registry: pl.DataFrame) -> None:
    rate = simulate.events_per_second(hour)
    assert rate["events"].sum() == hour.height
    assert rate.height == 3_600 and rate["second"].diff().drop_nulls().dt.total_seconds().eq(1).all()
    burst = simulate.generate(registry, start=START, duration="3m", firmware="synchronized")
    assert simulate.events_per_second(burst).height == 121, "by default: first to last event"
    window = simulate.events_per_second(burst, start=START, end=START + 3 * MIN)
    assert window.height == 180 and window["events"].mean() == registry.height / 60


def test_temperature_range_reflects_the_walk_and_keeps_steps_small() -> None:
    reg = scenario.build_registry(500, seed=3)
    free = simulate.generate(reg, start=START, duration="6h", seed=1)
    kept = simulate.generate(reg, start=START, duration="6h", seed=1, temperature_range=(0, 30))
    assert free["temperature"].min() < -10 and free["temperature"].max() > 40, "the original walk wanders"
    assert kept["temperature"].min() == 0 and kept["temperature"].max() == 30
    assert _steps(kept)["change"].abs().max() == 2
    inside = (free["temperature"] >= 0) & (free["temperature"] <= 30)
    first = lambda df: df.group_by("device_id").agg(pl.col("temperature").first()).sort("device_id")  # noqa: E731
    assert first(free).equals(first(kept)), "starts unchanged"
    assert inside.any()
    with pytest.raises(ConfigurationError, match="temperature_range"):
        simulate.generate(reg, start=START, duration="1m", temperature_range=(5, 30))


@settings(max_examples=15, deadline=None)
@given(
    devices=st.integers(1, 60),
    seed=st.integers(0, 2**31),
    minutes=st.integers(1, 90),
    jitter=st.floats(0.0, 0.5),
    firmware=st.sampled_from(simulate.FIRMWARES),
)
def test_invariants_hold_for_any_seed_and_size(devices, seed, minutes, jitter, firmware) -> None:
    reg = scenario.build_registry(devices, seed=seed % 1000)
    events = simulate.generate(
        reg,
        start=START,
        duration=timedelta(minutes=minutes),
        seed=seed,
        jitter=jitter,
        firmware=firmware,
        chunk_events=500,
    )
    assert events["sent_at"].is_sorted()
    assert events["time_observed"].min() >= START  # type: ignore[operator]
    assert events["time_observed"].max() < START + timedelta(minutes=minutes)  # type: ignore[operator]
    steps = _steps(events)
    if steps.height:
        assert steps["change"].abs().max() <= 2
        if firmware == "staggered":
            assert steps["interval"].min() >= 60 * (1 - jitter) - 1e-6
            assert steps["interval"].max() <= 60 * (1 + jitter) + 1e-6


# --- faults: visible in the data and in the ground truth ---------------------------------------


def _joined(base: pl.DataFrame, faulty: pl.DataFrame) -> pl.DataFrame:
    """Each faulty event beside the healthy run's event of the same device and reading."""
    keyed = lambda df: df.with_columns(  # noqa: E731
        pl.col("device_id").cast(pl.String), n=pl.int_range(pl.len()).over("device_id", order_by="time_observed")
    )
    return keyed(faulty).join(keyed(base), on=["device_id", "n"], suffix="_base", validate="1:1")


def test_heat_event_raises_chosen_buildings_in_its_window_only(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    heat = HeatEvent(buildings=(2, 3), start=20 * MIN, duration=20 * MIN, rise=12.0, ramp=5 * MIN)
    both = _joined(hour, _with(registry, heat)).join(registry.select("device_id", "building_id"), on="device_id")
    rise = both["temperature"] - both["temperature_base"]
    offset = (both["time_observed"] - START).dt.total_seconds(fractional=True)
    inside = both["building_id"].is_in([2, 3]) & (offset >= 20 * 60) & (offset < 40 * 60)
    assert (both["fault_heat"] == inside).all()
    expected = (12.0 * ((offset - 20 * 60) / 300).clip(0, 1)).cast(pl.Float32)
    assert ((rise - expected).abs() < 1e-3).filter(inside).all()
    assert (rise == 0).filter(~inside).all()
    assert rise.filter(inside & (offset >= 25 * 60)).min() == pytest.approx(12.0)


def test_stuck_sensors_repeat_one_value(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    events = _with(registry, StuckSensors(fraction=0.1, since=15 * MIN))
    stuck = events.filter(pl.col("fault_stuck"))
    devices = stuck["device_id"].n_unique()
    assert 30 <= devices <= 100, "about 10% of 600 devices"
    assert (stuck.group_by("device_id").agg(pl.col("temperature").n_unique())["temperature"] == 1).all()
    assert (stuck["time_observed"] >= START + 15 * MIN).all()
    both = _joined(hour, events)
    assert (both["temperature"] == both["temperature_base"]).filter(~both["fault_stuck"]).all()
    chosen = registry["device_id"][:3].to_list()
    named = _with(registry, StuckSensors(devices=chosen))
    assert set(named.filter("fault_stuck")["device_id"].cast(pl.String).unique()) == set(chosen)


def test_spikes_jump_by_the_magnitude(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    both = _joined(hour, _with(registry, Spikes(probability=0.02, magnitude=40.0)))
    jump = (both["temperature"] - both["temperature_base"]).filter(both["fault_spike"])
    assert set(jump.unique().to_list()) == {-40.0, 40.0}
    assert 0.015 < len(jump) / both.height < 0.025
    assert (both["temperature"] == both["temperature_base"]).filter(~both["fault_spike"]).all()


@pytest.mark.parametrize("direction", ["ahead", "behind", "both"])
def test_clock_skew_moves_time_observed_not_sent_at(registry: pl.DataFrame, hour: pl.DataFrame, direction) -> None:
    skew = ClockSkew(fraction=0.2, min_skew=2 * MIN, max_skew=30 * MIN, direction=direction)
    events = _with(registry, skew)
    assert events["sent_at"].equals(hour["sent_at"])
    offset = (events["time_observed"] - events["sent_at"]).dt.total_seconds(fractional=True)
    skewed = events["fault_clock_skew"]
    assert (offset == 0).filter(~skewed).all()
    amount = offset.filter(skewed)
    assert amount.abs().min() >= 120 and amount.abs().max() <= 1800
    per_device = (
        events.filter(skewed).with_columns(o=offset.filter(skewed)).group_by("device_id").agg(pl.col("o").n_unique())
    )
    assert (per_device["o"] == 1).all(), "a device's clock is off by a fixed amount"
    if direction == "ahead":
        assert (amount > 0).all()
    elif direction == "behind":
        assert (amount < 0).all()
    else:
        assert (amount > 0).any() and (amount < 0).any()


def test_offline_devices_buffer_and_send_late_in_a_burst(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    outage = 12 * MIN
    events = _with(registry, Offline(fraction=0.05, outage=outage, spacing=timedelta(milliseconds=50)))
    assert events.height == hour.height, "nothing is lost"
    assert events["sent_at"].is_sorted()
    late = events.filter(pl.col("fault_offline"))
    assert late["device_id"].n_unique() >= 15
    delay = (late["sent_at"] - late["time_observed"]).dt.total_seconds(fractional=True)
    assert delay.min() > 0 and delay.max() <= outage.total_seconds() + 20 * 0.05
    bursts = (
        late.sort("device_id", "sent_at")
        .group_by("device_id", maintain_order=True)
        .agg(gap=pl.col("sent_at").diff().drop_nulls().dt.total_milliseconds(), count=pl.len())
    )
    assert bursts.filter(pl.col("count") > 1)["gap"].explode().unique().to_list() == [50]
    healthy = events.filter(~pl.col("fault_offline"))
    assert (healthy["sent_at"] == healthy["time_observed"]).all()
    both = _joined(hour, events)
    assert (both["time_observed"] == both["time_observed_base"]).all()


def test_duplicates_are_second_copies_sent_after_the_delay(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    events = _with(registry, Duplicates(probability=0.01, delay=timedelta(seconds=3)))
    copies = events.filter(pl.col("fault_duplicate"))
    assert events.height == hour.height + copies.height and 0.005 < copies.height / hour.height < 0.015
    originals = events.filter(~pl.col("fault_duplicate"))
    assert originals.equals(hour)
    matched = copies.join(originals, on=["device_id", "time_observed", "temperature"], suffix="_first")
    assert matched.height == copies.height
    assert ((matched["sent_at"] - matched["sent_at_first"]).dt.total_seconds() == 3).all()


def test_malformed_payloads_are_marked_not_applied(registry: pl.DataFrame, hour: pl.DataFrame) -> None:
    events = _with(registry, MalformedPayloads(probability=0.03, kinds=("missing_field", "wrong_type")))
    kinds = events["fault_malformed"].drop_nulls().cast(pl.String)
    assert set(kinds.unique()) == {"missing_field", "wrong_type"}
    assert 0.02 < len(kinds) / events.height < 0.04
    assert events.drop("fault_malformed").equals(hour.drop("fault_malformed"))


def test_all_faults_together_keep_order_and_ground_truth(registry: pl.DataFrame) -> None:
    faults = [
        HeatEvent(buildings=(1,)),
        StuckSensors(fraction=0.05),
        Spikes(probability=0.01),
        ClockSkew(fraction=0.05),
        Offline(fraction=0.05),
        Duplicates(probability=0.01),
        MalformedPayloads(probability=0.01),
    ]
    events = _with(registry, *faults)
    assert events["sent_at"].is_sorted()
    flags = events.select(pl.col("^fault_.*$").exclude("fault_malformed").any()).row(0)
    assert all(flags) and events["fault_malformed"].null_count() < events.height
    stuck_and_spiked = events.filter(pl.col("fault_stuck") & (pl.col("fault_spike") | pl.col("fault_heat")))
    assert stuck_and_spiked.height == 0, "a frozen sensor reports neither heat nor spikes"


def test_fault_columns_cost_nothing_when_off(hour: pl.DataFrame) -> None:
    flags_and_constants = hour.select(pl.col("^fault_.*$"), "event_type", "event_type_version")
    assert flags_and_constants.estimated_size() < 1_000


# --- bad input -----------------------------------------------------------------------------------


def test_bad_options_get_clear_errors(registry: pl.DataFrame) -> None:
    def run(**options):
        base = {"start": START, "duration": "10m"}
        return simulate.generate(registry, **{**base, **options})

    with pytest.raises(ConfigurationError, match="unknown scenario 'Hot'"):
        run(scenario="Hot")
    with pytest.raises(ConfigurationError, match="unknown firmware"):
        run(firmware="random")
    with pytest.raises(ConfigurationError, match="no time zone"):
        run(start=datetime(2025, 1, 1))
    with pytest.raises(ConfigurationError, match="duration must be positive"):
        run(duration=timedelta(0))
    with pytest.raises(ConfigurationError, match="not in the registry: nope"):
        run(faults=[Offline(devices=("nope",))])
    with pytest.raises(ConfigurationError, match=r"building\(s\) not in the registry: \[999\]"):
        run(faults=[HeatEvent(buildings=(999,))])
    with pytest.raises(ConfigurationError, match="at most one of each fault"):
        run(faults=[Spikes(), Spikes()])
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        Spikes(probability=2)
    with pytest.raises(ValidationError, match="lacks column"):
        simulate.generate(registry.drop("time_zone"), start=START, duration="1m")


def test_faults_and_durations_read_from_text() -> None:
    assert to_timedelta("1h30m") == timedelta(minutes=90)
    assert to_timedelta("250ms") == timedelta(milliseconds=250)
    assert parse_fault("heat:buildings=25+26,start=10m,duration=30m,rise=15") == HeatEvent(
        buildings=(25, 26), start=10 * MIN, duration=30 * MIN, rise=15.0
    )
    assert parse_fault("spikes") == Spikes()
    assert parse_fault("skew:direction=ahead,fraction=0.5") == ClockSkew(direction="ahead", fraction=0.5)
    with pytest.raises(ConfigurationError, match="is not a duration"):
        parse_fault("offline:outage=soon")
    with pytest.raises(ConfigurationError, match="unknown fault 'fire'"):
        parse_fault("fire")
    with pytest.raises(ConfigurationError, match="fields are"):
        parse_fault("spikes:size=3")
    with pytest.raises(ConfigurationError, match="not a valid float"):
        parse_fault("spikes:probability=lots")


# --- command line and files ---------------------------------------------------------------------


def test_cli_writes_the_same_events_as_generate(tmp_path, capsys) -> None:
    out = tmp_path / "events.parquet"
    code = cli(
        [
            "simulate",
            "--devices",
            "150",
            "--duration",
            "20m",
            "--seed",
            "3",
            "--firmware",
            "synchronized",
            "--fault",
            "spikes:probability=0.05",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and "events from 150 devices" in capsys.readouterr().out
    expected = simulate.generate(
        scenario.build_registry(150),
        start=simulate.DEFAULT_START,
        duration="20m",
        seed=3,
        firmware="synchronized",
        faults=[Spikes(probability=0.05)],
    )
    assert pl.read_parquet(out).equals(expected)
    assert not list(tmp_path.glob("*.partial"))


def test_cli_reports_bad_input(tmp_path, capsys) -> None:
    assert cli(["simulate", "--devices", "10", "--fault", "fire", "--out", str(tmp_path / "x.parquet")]) == 1
    assert "unknown fault 'fire'" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_write_parquet_streams_chunks_into_one_file(tmp_path, registry: pl.DataFrame) -> None:
    sim = simulate.simulation(registry, start=START, duration="30m", chunk_events=3_000)
    assert len(sim) > 3
    count = simulate.write_parquet(sim, tmp_path / "e.parquet", progress=False)
    back = pl.read_parquet(tmp_path / "e.parquet")
    assert count == back.height
    assert back.equals(simulate.generate(registry, start=START, duration="30m"))


def test_expected_events_matches_the_real_count(hour: pl.DataFrame, registry: pl.DataFrame) -> None:
    sim = simulate.simulation(registry, start=START, duration="1h")
    assert abs(sim.expected_events - hour.height) / hour.height < 0.02
    assert np.isclose(hour.height / registry.height, 60, atol=1)


def test_fault_durations_take_text_and_seconds_with_clear_errors() -> None:
    from datetime import timedelta

    from iotlib.errors import ConfigurationError
    from iotlib.fleet.faults import HeatEvent, Offline

    assert Offline(outage="3m").outage == timedelta(minutes=3)
    assert HeatEvent(buildings=(1,), start=120, duration="90s").duration == timedelta(seconds=90)
    with pytest.raises(ConfigurationError, match=r"Offline\.outage must be a duration"):
        Offline(outage=[3])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Offline.outage='soon' is not a duration"):
        Offline(outage="soon")  # type: ignore[arg-type]


def test_start_now_is_the_clock_to_the_second_and_shifts_by_a_duration() -> None:
    clock = datetime(2026, 3, 1, 12, 30, 45, 987_654, tzinfo=UTC)
    assert simulate.parse_start("now", now=clock) == datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC)
    assert simulate.parse_start("now-10m", now=clock) == datetime(2026, 3, 1, 12, 20, 45, tzinfo=UTC)
    assert simulate.parse_start(" NOW + 1h30m ", now=clock) == datetime(2026, 3, 1, 14, 0, 45, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="use now, now-10m or now\\+1h"):
        simulate.parse_start("nowish", now=clock)
    with pytest.raises(ConfigurationError, match="is not a duration"):
        simulate.parse_start("now-soon", now=clock)


def test_generate_from_now(registry: pl.DataFrame) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    frame = simulate.generate(registry.head(20), start="now", duration="2m", seed=3)
    after = datetime.now(UTC)
    assert before <= frame["time_observed"].min() and frame["time_observed"].max() < after + timedelta(minutes=2)
