"""Functions that take a frame take a pandas DataFrame too, and give the same answer as with polars."""

from __future__ import annotations

import polars as pl
import pytest

from iotlib.errors import ConfigurationError
from iotlib.fleet import scenario, simulate
from iotlib.fleet.delivery import Delivery, deliver
from iotlib.frames import as_polars
from iotlib.ingest.plan import as_frame
from iotlib.processing import EventTimePolicy, building_averages, enrich, windowed, windows_with_policy


def plain(frame: pl.DataFrame) -> pl.DataFrame:
    """Categories as text: a trip through pandas turns polars enums into categoricals."""
    return frame.with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))


@pytest.fixture(scope="module")
def registry() -> pl.DataFrame:
    return scenario.build_registry(80, buildings=4, seed=2)


@pytest.fixture(scope="module")
def events(registry: pl.DataFrame) -> pl.DataFrame:
    return simulate.generate(registry, start=simulate.DEFAULT_START, duration="6m", seed=2)


def test_simulate_takes_a_pandas_registry(registry: pl.DataFrame, events: pl.DataFrame) -> None:
    again = simulate.generate(registry.to_pandas(), start=simulate.DEFAULT_START, duration="6m", seed=2)
    assert again.equals(events)


def test_processing_takes_pandas_frames(registry: pl.DataFrame, events: pl.DataFrame) -> None:
    pdf, preg = events.to_pandas(), registry.to_pandas()
    assert building_averages(pdf, preg).windows.equals(building_averages(events, registry).windows)
    policy = EventTimePolicy(late_arrival="10s")
    assert building_averages(pdf, preg, policy=policy).windows.equals(
        building_averages(events, registry, policy=policy).windows
    )
    assert windowed(pdf, "1m").windows.equals(windowed(events, "1m").windows)
    arrived = deliver(events, Delivery(partitions=2))
    assert plain(deliver(pdf, Delivery(partitions=2))).equals(plain(arrived))
    assert windows_with_policy(arrived.to_pandas(), "1m").windows.equals(windows_with_policy(arrived, "1m").windows)
    matched, unmatched = enrich(pdf, preg)
    assert plain(matched).equals(plain(enrich(events, registry)[0])) and unmatched.height == 0


def test_ingest_takes_a_pandas_frame(events: pl.DataFrame) -> None:
    assert plain(as_frame(events.to_pandas())).equals(plain(as_frame(events)))


def test_anything_else_is_named() -> None:
    with pytest.raises(ConfigurationError, match="events must be a polars or pandas DataFrame, not dict"):
        as_polars({"device_id": []}, name="events")
    with pytest.raises(ConfigurationError, match="registry must be a polars or pandas DataFrame"):
        building_averages(pl.DataFrame(), [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("height", "size", "first"), [(0, 50, 2), (1, 50, 2), (700, 50, 2), (700, 50, None), (9, 4, 10)]
)
def test_replay_chunks_grow_from_the_first_to_the_size_and_cover_the_frame_once(height, size, first) -> None:
    from iotlib.ingest.plan import chunks

    frame = pl.DataFrame({"i": range(height)})
    sizes = [c.height for c in chunks(frame, size, first=first)]
    assert sum(sizes) == height and pl.concat([frame.head(0), *chunks(frame, size, first=first)]).equals(frame)
    if height > 60 and first:
        assert sizes[:6] == [2, 4, 8, 16, 32, 50]  # small first, doubling, then the size
    if height and not first:
        assert set(sizes[:-1]) <= {size}
