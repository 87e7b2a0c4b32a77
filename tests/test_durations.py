"""One time grammar: a bare number is seconds everywhere; text as polars writes it; bools refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from iotlib.capture import CaptureOptions
from iotlib.durations import EPOCH, describe, epoch_us, to_seconds, to_timedelta, to_us
from iotlib.errors import ConfigurationError
from iotlib.fleet.delivery import Delivery
from iotlib.fleet.faults import Duplicates, Offline, parse_fault
from iotlib.processing import EventTimePolicy, Tumbling
from iotlib.processing.arrival import ArrivalMerger
from iotlib.warm.alerts import DeviceSilent
from iotlib.warm.options import ProcessorOptions


@pytest.mark.parametrize("five", [5, 5.0, "5", "5s", "5000ms", timedelta(seconds=5), " 5 s "])
def test_five_seconds_is_spelled_many_ways(five: object) -> None:
    assert to_us(five) == 5_000_000  # type: ignore[arg-type]


def test_the_grammar() -> None:
    assert to_us("1m30s") == 90_000_000 and to_us("1.5h") == 5_400_000_000 and to_us("2min") == 120_000_000
    assert to_us("250us") == 250 and to_us(0.25) == 250_000 and to_us("1d") == 86_400_000_000
    assert to_timedelta("1h30m") == timedelta(minutes=90) and to_seconds("250ms") == 0.25
    for text in ("0s", "1d2h3m4s5ms6us", "90s"):
        assert to_us(describe(to_us(text))) == to_us(text)
    assert epoch_us(EPOCH + timedelta(seconds=1, microseconds=2)) == 1_000_002


@pytest.mark.parametrize("bad", [True, False, -1, "-1s", "soon", "5 parsecs", "", [5], float("nan")])
def test_anything_else_is_named(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="grace") as err:
        to_us(bad, name="grace")  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError)


def test_zero_where_it_makes_no_sense() -> None:
    with pytest.raises(ConfigurationError, match="tick=0 must be positive"):
        EventTimePolicy(tick=0)


def test_a_bare_number_means_seconds_everywhere() -> None:
    """Regression: EventTimePolicy(late_arrival=5) was 5 µs while Offline(outage=5) was 5 s."""
    assert EventTimePolicy(late_arrival=5) == EventTimePolicy(late_arrival="5s")
    assert EventTimePolicy(late_arrival=5).late_arrival_us == 5_000_000
    assert EventTimePolicy(out_of_order=1.5, idle_timeout=60) == EventTimePolicy(
        out_of_order="1500ms", idle_timeout="1m"
    )
    assert Offline(outage=5).outage == Offline(outage="5s").outage == timedelta(seconds=5)
    assert parse_fault("offline:outage=5") == Offline(outage=timedelta(seconds=5))
    assert Duplicates(delay=2).delay == timedelta(seconds=2)
    assert Delivery(latency=1).latency == timedelta(seconds=1)
    assert Tumbling(5).size_us == Tumbling("5s").size_us == 5_000_000
    assert DeviceSilent(after=300).after_us == DeviceSilent(after="5m").after_us
    assert ArrivalMerger(["0"], idle_timeout=2).idle_timeout_us == 2_000_000
    capture = CaptureOptions.create(eventhub_name="h", default_namespace="n", grace=5, time_window="1m")
    assert (capture.grace, capture.time_window) == (5.0, 60)
    assert CaptureOptions.create(eventhub_name="h", default_namespace="n", max_wait_time="500ms").max_wait_time == 0.5
    warm = ProcessorOptions.create(eventhub_name="h", commit_interval="1.5s", heartbeat_interval=2, max_wait_time="2s")
    assert (warm.commit_interval, warm.heartbeat_interval, warm.max_wait_time) == (1.5, 2.0, 2.0)
    with pytest.raises(ConfigurationError, match="late_arrival"):
        EventTimePolicy(late_arrival=True)
