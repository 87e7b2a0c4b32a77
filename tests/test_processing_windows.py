"""Window kinds against brute-force definitions (Azure Stream Analytics semantics)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from iotlib.durations import describe, to_us
from iotlib.errors import ConfigurationError, ValidationError
from iotlib.processing import Agg, Hopping, Session, Sliding, Tumbling, stats, windowed

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
US = 1_000_000


def frame(seconds, devices=None, temps=None) -> pl.DataFrame:
    n = len(seconds)
    return pl.DataFrame(
        {
            "device_id": devices or ["d1"] * n,
            "time_observed": [T0 + timedelta(seconds=s) for s in seconds],
            "temperature": temps or [float(i) for i in range(n)],
        }
    ).with_columns(pl.col("time_observed").dt.cast_time_unit("us"))


def random_frame(seed: int, n: int = 300, devices: int = 3, span_s: float = 120) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    secs = np.round(rng.uniform(0, span_s, n), 1)  # 0.1 s grid: many exact boundary hits
    return frame(secs.tolist(), [f"d{i}" for i in rng.integers(0, devices, n)], rng.normal(20, 3, n).round(2).tolist())


def us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def brute_fixed(df: pl.DataFrame, size_s: float, hop_s: float, by_device: bool) -> dict:
    """Window end -> (count, mean, last) by enumerating candidate ends around each event."""
    size, hop = int(size_s * US), int(hop_s * US)
    out: dict = {}
    for i, (dev, t, v) in enumerate(df.select("device_id", "time_observed", "temperature").iter_rows()):
        tu = us(t)
        k = tu // hop - math.ceil(size / hop) - 1
        while k * hop <= tu + size + hop:
            end = k * hop
            if end - size < tu <= end:  # ASA: (start, end]
                out.setdefault((dev if by_device else None, end), []).append((tu, i, v))
            k += 1
    return {
        # "last": newest time; among equal times, the later row (arrival order).
        key: (len(vs), sum(v for *_, v in vs) / len(vs), max(vs)[2])
        for key, vs in out.items()
    }


def as_dict(res: pl.DataFrame, by_device: bool) -> dict:
    d = {}
    for row in res.iter_rows(named=True):
        key = (row["device_id"] if by_device else None, us(row["window_end"]))
        d[key] = (row["events"], row["temperature_mean"], row["temperature_last"])
    return d


@pytest.mark.parametrize("size,hop", [(5, 5), (10, 5), (10, 2.5), (3, 1)])
@pytest.mark.parametrize("by_device", [False, True])
def test_tumbling_and_hopping_match_the_definition(size, hop, by_device):
    df = random_frame(seed=int(size * 10 + hop * 3))
    w = Tumbling(f"{int(size * 1000)}ms") if size == hop else Hopping(f"{int(size * 1000)}ms", f"{int(hop * 1000)}ms")
    res = windowed(df, w, by=["device_id"] if by_device else [], aggs=stats("temperature", "mean", "count", "last"))
    got, want = as_dict(res.windows, by_device), brute_fixed(df, size, hop, by_device)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k][0] == want[k][0] and got[k][2] == want[k][2]
        assert got[k][1] == pytest.approx(want[k][1], rel=1e-12)
    assert (res.windows["window_end"] - res.windows["window_start"]).unique().to_list() == [timedelta(seconds=size)]


def test_event_on_a_boundary_belongs_to_the_window_it_ends():
    # ASA: a 12:00:00-12:00:05 window includes an event at exactly 12:00:05, not one at 12:00:00.
    res = windowed(frame([0.0, 5.0, 5.000001]), Tumbling("5s")).windows
    assert res["window_end"].to_list() == [T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=10)]
    assert res["events"].to_list() == [1, 1, 1]
    left = windowed(frame([0.0, 5.0, 5.000001]), Tumbling("5s", closed="left")).windows
    assert left["window_start"].to_list() == [T0, T0 + timedelta(seconds=5)]
    assert left["events"].to_list() == [1, 2]


def test_offset_shifts_the_window_grid():
    res = windowed(frame([0.5, 1.5, 2.5]), Tumbling("2s", offset="1s")).windows
    assert res["window_end"].to_list() == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)]
    assert res["events"].to_list() == [1, 2]


def test_hopping_agrees_with_polars_group_by_dynamic():
    df = random_frame(seed=7, devices=1)
    ours = windowed(df, Hopping("10s", "2s"), aggs=[Agg("n", "count", "time_observed")]).windows
    theirs = (
        df.sort("time_observed")
        .group_by_dynamic(
            "time_observed", every="2s", period="10s", closed="right", label="right", start_by="window", offset="-10s"
        )
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") > 0)
    )
    got = dict(zip(ours["window_end"].to_list(), ours["n"].to_list()))
    want = dict(zip(theirs["time_observed"].to_list(), theirs["n"].to_list()))
    assert got == want


def brute_sliding(df: pl.DataFrame, size_s: float) -> dict:
    size = int(size_s * US)
    times = [us(t) for t in df["time_observed"].to_list()]
    vals = df["temperature"].to_list()
    out = {}
    for end in sorted(set(times) | {t + size for t in times}):
        inside = [v for t, v in zip(times, vals) if end - size < t <= end]
        if inside:
            out[end] = (len(inside), max(inside))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sliding_outputs_when_an_event_enters_or_leaves(seed):
    df = random_frame(seed=seed, n=80, devices=1, span_s=60)
    res = windowed(
        df, Sliding("5s"), aggs=[Agg("n", "count", "time_observed"), Agg("hi", "max", "temperature")]
    ).windows
    got = {us(e): (n, hi) for e, n, hi in res.select("window_end", "n", "hi").iter_rows()}
    assert got == brute_sliding(df, 5)


def test_sliding_per_group_and_exit_points():
    df = frame([0, 1, 2], ["a", "b", "a"], [1.0, 2.0, 3.0])
    res = windowed(df, Sliding("2s"), by=["device_id"], aggs=[Agg("n", "count", "time_observed")]).windows
    rows = {(d, (e - T0).total_seconds()): n for d, e, n in res.select("device_id", "window_end", "n").iter_rows()}
    # a: enters 0 and 2, leaves 2 (window (0,2] holds only the event at 2) and 4 (empty: not reported)
    assert rows == {("a", 0.0): 1, ("a", 2.0): 1, ("b", 1.0): 1}


def brute_session(times_s: list[float], timeout: float, max_d: float | None) -> list[tuple[float, float, int]]:
    """(start, end, count) per session, following ASA's description step by step."""
    out, i, times = [], 0, sorted(times_s)
    while i < len(times):
        start, last, n = times[i], times[i], 1
        i += 1
        while True:
            end = last + timeout
            if max_d:
                check = math.ceil((start + max_d) / max_d) * max_d if start % max_d else start + max_d
                check = max(check, math.ceil(start / max_d) * max_d)
                while check - start < max_d:
                    check += max_d
                end = min(end, check)
            if i < len(times) and times[i] <= end:
                last, n = times[i], n + 1
                i += 1
                continue
            if i < len(times) and max_d and end == check and times[i] <= last + timeout:
                out.append((start, end, n))  # split at the check point: a new session opens there
                start, last, n = end, times[i], 1
                i += 1
                continue
            out.append((start, end, n))
            break
    return out


@pytest.mark.parametrize(
    "times,timeout,max_d",
    [
        ([0, 1, 5, 5.5, 9, 10, 12, 30, 31], 3, 10),
        ([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22], 3, 10),
        ([1, 25], 30, 10),
        ([0.5, 1, 1.5, 40], 2, None),
    ],
)
def test_session_windows_follow_timeout_and_max_duration(times, timeout, max_d):
    res = windowed(
        frame(times), Session(f"{timeout}s", f"{max_d}s" if max_d else None), aggs=[Agg("n", "count", "time_observed")]
    ).windows
    got = [
        ((s - T0).total_seconds(), (e - T0).total_seconds(), n)
        for s, e, n in res.select("window_start", "window_end", "n").iter_rows()
    ]
    # The grid of checks is the epoch's: T0 is a whole hour, so offsets from it keep the grid.
    assert got == brute_session(times, timeout, max_d)
    assert sum(n for *_, n in got) == len(times)


def test_percentiles_first_last_and_ties():
    df = frame([1, 2, 2, 3], temps=[10.0, 20.0, 30.0, 40.0])
    res = windowed(
        df, Tumbling("10s"), aggs=stats("temperature", "p50", "p90", "median", "first", "last", "min", "max", "sum")
    ).windows
    row = res.row(0, named=True)
    assert row["temperature_p50"] == pytest.approx(25.0) and row["temperature_median"] == pytest.approx(25.0)
    assert row["temperature_p90"] == pytest.approx(np.percentile([10, 20, 30, 40], 90))
    assert (row["temperature_first"], row["temperature_last"]) == (10.0, 40.0)
    assert (row["temperature_min"], row["temperature_max"], row["temperature_sum"]) == (10.0, 40.0, 100.0)
    # Two readings at the same time: the one that arrived later is "last".
    tie = windowed(frame([2, 2], temps=[1.0, 2.0]), "10s", aggs=stats("temperature", "last")).windows
    assert tie["temperature_last"].to_list() == [2.0]


def test_arrival_time_windows_use_enqueued_time():
    df = frame([0, 1, 2]).with_columns((pl.col("time_observed") + pl.duration(seconds=4)).alias("enqueued_time"))
    res = windowed(df, "5s", time="arrival", aggs=[Agg("n", "count", "enqueued_time")]).windows
    assert [(e - T0).total_seconds() for e in res["window_end"].to_list()] == [5.0, 10.0]
    assert res["n"].to_list() == [2, 1]


def test_invalid_rows_are_reported_not_dropped():
    df = frame([0, 1, 2]).with_columns(
        pl.Series("temperature", [1.0, None, float("nan")]), pl.Series("device_id", ["a", "b", None])
    )
    res = windowed(df, "5s")
    assert res.counts.invalid == 2 and res.counts.accepted == 1
    assert res.invalid["reason"].to_list() == ["missing temperature", "missing device_id"]


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: Tumbling("5 parsecs"), ConfigurationError, "not a duration"),
        (lambda: Tumbling("0s"), ConfigurationError, "positive"),
        (lambda: Hopping("5s", "10s"), ConfigurationError, "longer than the window"),
        (lambda: Tumbling("5s", closed="both"), ConfigurationError, "closed="),
        (lambda: Agg("x", "p101", "temperature"), ConfigurationError, "outside 0-100"),
        (lambda: Agg("x", "mode", "temperature"), ConfigurationError, "unknown statistic"),
        (lambda: windowed(frame([0]), "5s", by=["building_id"]), ConfigurationError, "not in the events"),
        (lambda: windowed(frame([0]).drop("time_observed"), "5s"), ValidationError, "no 'time_observed' column"),
        (lambda: windowed(frame([0]), "5s", time="arrival"), ValidationError, "arrival time"),
    ],
)
def test_bad_input_gets_a_clear_error(make, error, message):
    """Bad arguments are ConfigurationErrors, frames that lack what a window needs ValidationErrors."""
    with pytest.raises(error, match=message):
        make()


def test_durations_round_trip():
    for text in ["5s", "250ms", "1m30s", "2h", "1d", "7us"]:
        assert describe(to_us(text)) == text
    assert to_us(timedelta(minutes=1, microseconds=3)) == 60_000_003
