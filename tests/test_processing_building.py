"""The building-average job: the original ASA query, its unmatched events, and its streaming twin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from processing_helpers import simulated

from iotlib.errors import ValidationError
from iotlib.fleet import scenario
from iotlib.processing.building import BUILDING_COLUMNS, BuildingAverager, building_averages
from iotlib.processing.policy import EventTimePolicy
from iotlib.processing.reference import Registry
from iotlib.processing.results import WindowOutput


@pytest.fixture(scope="module")
def fleet():
    return simulated(300, 6, seed=11)


def pandas_building_averages(events: pl.DataFrame, reg: pl.DataFrame) -> pd.DataFrame:
    """The same question asked of pandas: join, then a 5 s (start, end] resample per building."""
    ev = events.select(
        pl.col("device_id").cast(pl.String), "time_observed", pl.col("temperature").cast(pl.Float64)
    ).to_pandas()
    joined = ev.merge(reg.select("device_id", "building_id").to_pandas(), on="device_id", how="inner")
    g = joined.groupby(["building_id", pd.Grouper(key="time_observed", freq="5s", closed="right", label="right")])
    out = g.agg(
        avg_temperature=("temperature", "mean"),
        last_observed_time=("time_observed", "max"),
        events=("temperature", "size"),
    )
    return out[out["events"] > 0].reset_index().rename(columns={"time_observed": "window_end"})


def test_matches_pandas_resample(fleet):
    reg, ev = fleet
    res = building_averages(ev, reg)
    assert res.windows.columns == BUILDING_COLUMNS
    want = pandas_building_averages(ev, reg).sort_values(["window_end", "building_id"]).reset_index(drop=True)
    got = res.windows.to_pandas()
    assert len(got) == len(want)
    assert (got["building_id"].to_numpy() == want["building_id"].to_numpy()).all()
    assert (got["window_end"] == want["window_end"]).all()
    assert (got["last_observed_time"] == want["last_observed_time"]).all()
    assert (got["events"].to_numpy() == want["events"].to_numpy()).all()
    np.testing.assert_allclose(got["avg_temperature"], want["avg_temperature"], rtol=1e-12)
    assert res.counts.accepted == ev.height == got["events"].sum()


def test_unknown_devices_go_to_unmatched_with_a_reason(fleet):
    reg, ev = fleet
    known = reg.slice(10)
    res = building_averages(ev, known)
    lost = set(reg.head(10)["device_id"].to_list())
    assert set(res.unmatched["device_id"].cast(pl.String).unique().to_list()) == lost
    assert res.unmatched["reason"].unique().to_list() == ["unknown_device"]
    assert res.counts.unmatched + res.counts.accepted == ev.height
    assert res.windows["events"].sum() == res.counts.accepted


@pytest.mark.parametrize("device_dtype", ["enum", "string", "categorical"])
def test_device_id_as_enum_string_or_categorical_gives_the_same_answer(fleet, device_dtype):
    reg, ev = fleet
    base = building_averages(ev, reg.slice(3)).windows
    if device_dtype == "string":
        ev = ev.with_columns(pl.col("device_id").cast(pl.String))
    elif device_dtype == "categorical":
        ev = ev.with_columns(pl.col("device_id").cast(pl.String).cast(pl.Categorical))
    # Large frames go through codes or a join, small ones through a dictionary: same rows.
    big = building_averages(pl.concat([ev] * 12), reg.slice(3))
    assert big.windows.select(pl.exclude("avg_temperature", "events")).equals(
        base.select(pl.exclude("avg_temperature", "events"))
    )
    assert (big.windows["events"] == base["events"] * 12).all()
    small = building_averages(ev.head(500), reg.slice(3))
    assert small.counts.accepted + small.counts.unmatched == 500


def test_invalid_rows_are_reported(fleet):
    reg, ev = fleet
    broken = ev.head(50).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("temperature")).alias("temperature")
    )
    res = building_averages(broken, reg)
    assert res.counts.invalid == 1 and res.invalid["reason"].to_list() == ["missing temperature"]
    assert res.counts.accepted == 49


def test_a_generous_policy_reproduces_the_complete_answer(fleet):
    reg, ev = fleet
    complete = building_averages(ev, reg).windows
    everything = EventTimePolicy(late_arrival="1h", clock_ahead="1h", dedupe_horizon=None)
    streamed = building_averages(ev, reg, policy=everything)
    assert streamed.counts.late == streamed.counts.clock_ahead == 0
    a, b = complete, streamed.windows
    assert a.select(pl.exclude("avg_temperature")).equals(b.select(pl.exclude("avg_temperature")))
    np.testing.assert_allclose(a["avg_temperature"].to_numpy(), b["avg_temperature"].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("late_policy", ["side_output", "adjust"])
def test_the_streaming_job_equals_the_batch_job(fleet, late_policy):
    reg, ev = fleet
    policy = EventTimePolicy(late_policy=late_policy, out_of_order="1s")
    batch = building_averages(ev, reg.slice(4), policy=policy)
    job = BuildingAverager(reg.slice(4), policy=policy)
    rng = np.random.default_rng(1)
    outs, i = [], 0
    while i < ev.height:
        n = int(rng.integers(1, 400))
        outs.append(job.feed(ev.slice(i, n)))
        i += n
    outs.append(job.flush())
    inc = WindowOutput.concat(outs)
    for name in ("windows", "late", "adjusted", "duplicates", "unmatched", "watermarks"):
        assert getattr(inc, name).equals(getattr(batch, name)), name
    assert inc.counts == batch.counts == job.totals
    assert batch.counts.clock_ahead > 0 and batch.counts.duplicates > 0 and batch.counts.unmatched > 0
    assert inc.windows.columns == BUILDING_COLUMNS


def test_the_registry_is_validated():
    reg = scenario.build_registry(20, buildings=4, equal_buildings=True)
    with pytest.raises(ValidationError, match="more than once"):
        Registry(pl.concat([reg, reg.head(1)]))
    with pytest.raises(ValidationError, match="building_id"):
        Registry(reg.drop("building_id"))
    with pytest.raises(ValidationError, match="no column"):
        Registry(reg).enrich(pl.DataFrame({"device_id": ["x"]}), ["elevation"])
    matched, unmatched = Registry(reg).enrich(
        pl.DataFrame({"device_id": [reg["device_id"][0], "nobody"]}), ["room", "floor"]
    )
    assert matched["room"].to_list() == [reg["room"][0]] and unmatched["reason"].to_list() == ["unknown_device"]


def test_empty_input_and_empty_registry():
    reg, ev = simulated(20, 2, seed=1, faults=False)
    for policy in (None, EventTimePolicy()):
        res = building_averages(ev.clear(), reg, policy=policy)
        assert res.windows.height == 0 and res.windows.columns == BUILDING_COLUMNS
    nobody = building_averages(ev, reg.clear())
    assert nobody.counts.unmatched == ev.height and nobody.windows.height == 0
    job = BuildingAverager(reg)
    assert job.feed(ev.clear()).windows.height == 0 and job.flush().windows.height == 0
