"""One starting-position vocabulary for the capture writer and the warm job.

"earliest" | "latest" | a datetime (enqueued time) | an int (sequence number) | one per partition |
a hub.positions() snapshot; anything else is a ConfigurationError. Both engines are run against
the real hub: each starts after a point between two batches and reads exactly the second one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iotlib import coldstore, hub
from iotlib.capture import CaptureWriter
from iotlib.errors import ConfigurationError
from iotlib.fleet import scenario, simulate
from iotlib.hub.partitions import PartitionPosition
from iotlib.hub.starting import check_starting_position, parse_starting_position, resolve
from iotlib.ingest import IngestClient
from iotlib.warm import StreamProcessor

pytestmark = pytest.mark.usefixtures("local_stack")
WHEN = datetime(2024, 3, 1, 10, tzinfo=UTC)


def _position(pid: str, last: int, *, empty: bool = False) -> PartitionPosition:
    return PartitionPosition(pid, 0, -1 if empty else last, str(last * 100), WHEN, empty)


def test_the_vocabulary() -> None:
    for ok in ("earliest", "latest", WHEN, 0, 41, {"0": 3, "1": "latest"}):
        assert check_starting_position(ok) == ok
    assert check_starting_position({0: WHEN}) == {"0": WHEN}  # partition ids are text
    snapshot = {"0": _position("0", 7), "1": _position("1", 0, empty=True)}
    assert check_starting_position(snapshot) == snapshot


@pytest.mark.parametrize("bad", ["-1", "@latest", "middle", True, -2, 1.5, datetime(2024, 3, 1), _position("0", 1)])
def test_anything_else_is_named(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="starting_position"):
        check_starting_position(bad)


def test_what_the_sdk_is_given() -> None:
    now = {"0": _position("0", 9), "1": _position("1", 0, empty=True)}
    assert resolve("earliest") == "-1" and resolve(5) == 5 and resolve(WHEN) == WHEN
    assert resolve("latest", now) == {"0": 9, "1": "-1"}
    assert resolve({"0": _position("0", 4)}, now) == {"0": 4, "1": "-1"}  # after the snapshot; unnamed: earliest
    assert resolve({"1": WHEN}) == {"1": WHEN}
    with pytest.raises(ConfigurationError, match="latest"):
        resolve("latest")


def test_the_command_lines_spelling() -> None:
    assert parse_starting_position("latest") == "latest" and parse_starting_position("17") == 17
    assert parse_starting_position("2024-03-01T10:00Z") == WHEN
    for bad in ("2024-03-01T10:00", "soon"):
        with pytest.raises(ConfigurationError):
            parse_starting_position(bad)


def _frames(n: int, seed: int) -> pl.DataFrame:
    registry = scenario.original_registry().head(60)
    return simulate.generate(registry, start=simulate.DEFAULT_START, duration="10m", seed=seed).head(n)


def test_both_engines_start_after_a_time_or_a_sequence_number(eventhub_name: str, tmp_path) -> None:
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        client.send(_frames(300, 1), progress=False)
        middle = hub.positions(eventhub_name=eventhub_name)
        second = client.send(_frames(200, 2), progress=False).events_sent
    back = hub.read(eventhub_name=eventhub_name, since=middle)
    assert back.height == second == 200
    # The first event after the middle, per partition: its enqueued time (inclusive) and sequence number.
    firsts = back.group_by("partition_id").agg(pl.col("sequence_number").min(), pl.col("enqueued_time").min())
    after_seq = {p: pos.last_enqueued_sequence_number for p, pos in middle.items()}
    # A millisecond after the first batch's last event (the hub's clock has milliseconds).
    after_time = max(pos.last_enqueued_time_utc for pos in middle.values() if not pos.is_empty) + timedelta(
        milliseconds=1
    )
    assert all(t > after_time for t in firsts["enqueued_time"]), "the batches must not share an enqueued time"

    tag = uuid.uuid4().hex[:8]
    with CaptureWriter.from_settings(eventhub_name=eventhub_name, container=f"c-{tag}", checkpoint_container=f"k-{tag}",
                                     time_window=60, starting_position=after_seq) as writer:  # fmt: skip
        report = writer.run(once=True, timeout=120)
    # Idle means "read what the hub held, then quiet": checkpointed at the end, a restart is idle at once.
    with CaptureWriter.from_settings(eventhub_name=eventhub_name, container=f"c-{tag}", checkpoint_container=f"k-{tag}",
                                     time_window=60, starting_position=after_seq) as writer:  # fmt: skip
        again = writer.run(until_idle=1, timeout=60)
    assert again.stop_reason == "idle for 1 s" and again.events == 0
    captured = coldstore.load(container=f"c-{tag}", eventhub=eventhub_name)
    assert report.events == captured.height == second
    assert (
        captured.select("partition_id", "sequence_number")
        .sort(pl.all())
        .equals(back.select("partition_id", "sequence_number").sort(pl.all()))
    )

    with StreamProcessor.from_settings(eventhub_name=eventhub_name, warm_store=tmp_path / "warm.sqlite",
                                       checkpoint_container=f"w-{tag}", starting_position=after_time) as processor:  # fmt: skip
        processed = processor.run(once=True, timeout=120)
    assert processed.received == second
    assert {p: s for p, s in processed.positions.items() if p in after_seq} == {
        p: max([after_seq[p], *back.filter(pl.col("partition_id") == p)["sequence_number"]]) for p in after_seq
    }
