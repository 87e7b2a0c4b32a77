"""Round trips through the emulator with the real azure-eventhub client (sync and aio)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer
from azure.eventhub.aio import EventHubProducerClient as AsyncProducer
from azure.eventhub.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
from emulator_helpers import FAST, ManualClock, receive, receive_many

import iotlib
from iotlib.ingest.partitioning import partition_index
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig

HUB = "telemetry"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    config = EmulatorConfig(entities=(EntityConfig(HUB, 4, ("$Default", "capture", "warm", "monitor")),))
    with Emulator.start(data_dir=tmp_path_factory.mktemp("eventhubs"), port=0, config=config) as running:
        yield running


@pytest.fixture(scope="module")
def prod(emu):
    """One producer for the module: each client the SDK opens costs about a second of polling."""
    with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
        yield p


def last_seq(prod, pid: str) -> int:
    return prod.get_partition_properties(pid)["last_enqueued_sequence_number"]


def test_session_stack_serves_the_sdk(local_stack):
    """The emulator the test session started (a subprocess) takes events and gives them back."""
    settings = iotlib.settings()
    assert settings.is_local and "eventhubs" in local_stack.services
    p = EventHubProducerClient.from_connection_string(
        settings.eventhub_connection_string, eventhub_name=settings.eventhub_name, **FAST
    )
    with p:
        before = p.get_partition_properties("7")["last_enqueued_sequence_number"]
        p.send_batch([EventData(b"from the session stack")], partition_id="7")
    got = receive(settings.eventhub_connection_string, partition_id="7", count=1, starting_position=before)
    assert [e.body_as_str() for e in got] == ["from the session stack"]
    assert got[0].sequence_number == before + 1


def test_batch_with_partition_key_keeps_order_and_properties(emu, prod):
    key = "device-000042"
    pid = str(partition_index(key, 4))
    start = last_seq(prod, pid)
    p = prod
    batch = p.create_batch(partition_key=key)
    for i in range(50):
        event = EventData(json.dumps({"DeviceId": key, "n": i}))
        event.properties = {"EventType": "UpdateTemperatureEvent", "EventTypeVersion": 1, "n": i}
        batch.add(event)
    p.send_batch(batch)
    got = receive(emu.connection_string, partition_id=pid, count=50, starting_position=start)
    assert [e.body_as_json()["n"] for e in got] == list(range(50))
    assert [e.sequence_number for e in got] == list(range(start + 1, start + 51))
    offsets = [int(e.offset) for e in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == 50
    first = got[0]
    assert first.partition_key == key.encode()
    assert first.properties[b"EventType"] == b"UpdateTemperatureEvent"
    assert first.properties[b"n"] == 0
    assert first.enqueued_time.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - first.enqueued_time).total_seconds()) < 60


def test_send_event_explicit_partition_and_body_kinds(emu, prod):
    start = last_seq(prod, "3")
    p = prod
    p.send_event(EventData(b"\x00\x01bytes"), partition_id="3")
    p.send_event(EventData("text é"), partition_id="3")
    p.send_batch([EventData(json.dumps({"t": 21.5}))], partition_id="3")
    got = receive(emu.connection_string, partition_id="3", count=3, starting_position=start)
    assert list(got[0].body) == [b"\x00\x01bytes"]  # one data section, as sent
    assert got[1].body_as_str() == "text é"
    assert got[2].body_as_json() == {"t": 21.5}
    assert got[0].partition_key is None


def test_same_key_same_partition_as_buffered_producer(emu, prod):
    """The emulator maps a key where the SDK's buffered producer would send it."""
    key = "device-buffered-7"
    pid = str(partition_index(key, 4))
    start = last_seq(prod, pid)
    p = prod
    p.send_batch([EventData(b"unbuffered")], partition_key=key)
    buffered = EventHubProducerClient.from_connection_string(
        emu.connection_string,
        eventhub_name=HUB,
        buffered_mode=True,
        on_success=lambda *_: None,
        on_error=lambda *_: None,
        max_wait_time=0.2,
        **FAST,
    )
    with buffered:
        buffered.send_event(EventData(b"buffered"), partition_key=key)
        buffered.flush()
    got = receive(emu.connection_string, partition_id=pid, count=2, starting_position=start)
    assert sorted(e.body_as_str() for e in got) == ["buffered", "unbuffered"]


def test_round_robin_without_key_uses_every_partition(emu, prod):
    before = {pid: last_seq(prod, pid) for pid in "0123"}
    p = prod
    for _ in range(8):
        p.send_batch([EventData(b"rr")])
    after = {pid: last_seq(prod, pid) for pid in "0123"}
    assert all(after[pid] - before[pid] == 2 for pid in "0123"), (before, after)


def test_annotated_message_bodies_and_mixed_batch(emu, prod):
    start = last_seq(prod, "1")
    multi = AmqpAnnotatedMessage(
        data_body=[b"part-1", b"part-2", b"part-3"],
        annotations={"x-opt-mine": "kept"},
        properties={
            "message_id": "m-1",
            "subject": "thermostat",
            "content_type": "text/plain",
            "correlation_id": "c-9",
        },
        header={"priority": 7, "durable": True, "time_to_live": 60000},
        application_properties={"EventType": "Multi"},
        footer={"x-opt-foot": "f"},
    )
    sequence = AmqpAnnotatedMessage(sequence_body=[[1, "two", 3.0]])
    value = AmqpAnnotatedMessage(value_body={"DeviceId": "d-1", "Temperature": 22.5})
    p = prod
    p.send_event(multi, partition_id="1")
    batch = p.create_batch(partition_id="1")
    batch.add(sequence)
    batch.add(EventData(b"plain"))
    batch.add(value)
    p.send_batch(batch)
    got = receive(emu.connection_string, partition_id="1", count=4, starting_position=start)
    assert len(got) == 4
    m = got[0].raw_amqp_message
    assert m.body_type == AmqpMessageBodyType.DATA
    assert list(m.body) == [b"part-1", b"part-2", b"part-3"]
    assert m.annotations[b"x-opt-mine"] == b"kept"
    assert m.annotations[b"x-opt-sequence-number"] == start + 1
    assert m.properties.message_id == b"m-1" and m.properties.subject == b"thermostat"
    assert m.properties.correlation_id == b"c-9"
    assert m.header.priority == 7 and m.header.durable
    assert m.application_properties[b"EventType"] == b"Multi"
    assert m.footer[b"x-opt-foot"] == b"f"
    s = got[1].raw_amqp_message
    assert s.body_type == AmqpMessageBodyType.SEQUENCE
    assert list(s.body) == [[1, b"two", 3.0]]
    assert got[2].body_as_str() == "plain"
    v = got[3].raw_amqp_message
    assert v.body_type == AmqpMessageBodyType.VALUE
    assert v.body == {b"DeviceId": b"d-1", b"Temperature": 22.5}
    assert [e.sequence_number for e in got] == list(range(start + 1, start + 5))


def test_service_annotations_sent_by_a_producer_are_replaced(emu, prod):
    """A producer cannot forge sequence numbers or offsets: the service's own replace them."""
    start = last_seq(prod, "2")
    forged = AmqpAnnotatedMessage(
        data_body=b"forged",
        annotations={b"x-opt-sequence-number": 99, b"x-opt-offset": "12345", b"x-opt-mine": 1},
    )
    p = prod
    p.send_event(forged, partition_id="2")
    got = receive(emu.connection_string, partition_id="2", count=1, starting_position=start)[0]
    annotations = got.raw_amqp_message.annotations
    assert got.sequence_number == start + 1
    assert got.offset != "12345"
    assert annotations[b"x-opt-mine"] == 1
    assert list(annotations).count(b"x-opt-sequence-number") == 1


def test_every_starting_position(emu, prod):
    pid = "0"
    p = prod
    p.send_batch([EventData(f"pos-{i}") for i in range(5)], partition_id=pid)
    props = p.get_partition_properties(pid)
    last = props["last_enqueued_sequence_number"]
    everything = receive(emu.connection_string, partition_id=pid, count=last + 1, starting_position="-1")
    assert [e.sequence_number for e in everything] == list(range(0, last + 1))
    assert props["last_enqueued_offset"] == everything[-1].offset
    third_last = everything[-3]
    early = everything[0].enqueued_time - dt.timedelta(seconds=1)
    late_time = everything[-1].enqueued_time + dt.timedelta(seconds=5)
    spec = {"partition_id": pid, "timeout": 8}
    by_seq, by_seq_incl, by_offset, by_offset_incl, by_time, by_time_incl, late = receive_many(
        emu.connection_string,
        {**spec, "count": 2, "starting_position": third_last.sequence_number},
        {**spec, "count": 3, "starting_position": third_last.sequence_number, "inclusive": True},
        {**spec, "count": 2, "starting_position": third_last.offset},
        {**spec, "count": 3, "starting_position": third_last.offset, "inclusive": True},
        {**spec, "count": last + 1, "starting_position": early},
        {**spec, "count": 3, "starting_position": third_last.enqueued_time, "inclusive": True},
        {**spec, "count": 1, "starting_position": late_time, "timeout": 2},
    )
    assert [e.body_as_str() for e in by_seq] == ["pos-3", "pos-4"]
    assert [e.body_as_str() for e in by_seq_incl] == ["pos-2", "pos-3", "pos-4"]
    assert [e.body_as_str() for e in by_offset] == ["pos-3", "pos-4"]
    assert [e.body_as_str() for e in by_offset_incl] == ["pos-2", "pos-3", "pos-4"]
    assert len(by_time) == last + 1
    assert [e.body_as_str() for e in by_time_incl][-3:] == ["pos-2", "pos-3", "pos-4"]
    assert late == []

    def send_new() -> None:
        p = prod
        p.send_event(EventData("after-latest"), partition_id=pid)

    latest = receive(emu.connection_string, partition_id=pid, count=1, starting_position="@latest", on_ready=send_new)
    assert [e.body_as_str() for e in latest] == ["after-latest"]


@pytest.mark.parametrize("at", ["first", "middle", "last"])
def test_inclusive_and_exclusive_starts_by_time_offset_and_sequence_number(tmp_path, at):
    """Each kind of position, inclusive and exclusive, at the partition's first, a middle and its last event."""
    clock = ManualClock()  # one second between events: every event has its own enqueued time
    config = EmulatorConfig(entities=(EntityConfig(HUB, 1),))
    with Emulator.start(data_dir=tmp_path, port=0, config=config, clock=clock) as fresh:
        with EventHubProducerClient.from_connection_string(fresh.connection_string, eventhub_name=HUB, **FAST) as p:
            for i in range(5):
                p.send_event(EventData(f"e{i}"), partition_id="0")
                clock.advance(1)
            stored = receive(fresh.connection_string, partition_id="0", count=5)
            assert len({e.enqueued_time for e in stored}) == 5
            p.send_event(EventData("sentinel"), partition_id="0")  # what every reader ends with: no waiting for nothing
        i = {"first": 0, "middle": 2, "last": 4}[at]
        event = stored[i]
        positions = {"time": event.enqueued_time, "offset": event.offset, "sequence": event.sequence_number}
        cases = [(kind, inclusive) for kind in positions for inclusive in (True, False)]
        results = receive_many(
            fresh.connection_string,
            *(
                {
                    "partition_id": "0",
                    "starting_position": positions[kind],
                    "inclusive": inclusive,
                    "count": (5 - i if inclusive else 4 - i) + 1,
                }
                for kind, inclusive in cases
            ),
        )
    for (kind, inclusive), got in zip(cases, results):
        first = i if inclusive else i + 1
        expected = [f"e{k}" for k in range(first, 5)] + ["sentinel"]
        assert [e.body_as_str() for e in got] == expected, (kind, "inclusive" if inclusive else "exclusive")


def test_management_calls(emu, prod):
    p = prod
    props = p.get_eventhub_properties()
    assert props["eventhub_name"] == HUB
    assert props["partition_ids"] == ["0", "1", "2", "3"]
    assert isinstance(props["created_at"], dt.datetime)
    assert p.get_partition_ids() == ["0", "1", "2", "3"]
    before = p.get_partition_properties("2")
    p.send_event(EventData(b"mgmt"), partition_id="2")
    part = p.get_partition_properties("2")
    assert part["id"] == "2" and part["eventhub_name"] == HUB
    assert part["is_empty"] is False
    assert part["beginning_sequence_number"] == 0
    assert part["last_enqueued_sequence_number"] == before["last_enqueued_sequence_number"] + 1
    assert int(part["last_enqueued_offset"]) > int(before["last_enqueued_offset"])  # "-1" when it was empty
    (got,) = receive(
        emu.connection_string, partition_id="2", count=1, starting_position=before["last_enqueued_sequence_number"]
    )
    assert (got.body_as_str(), got.offset) == ("mgmt", part["last_enqueued_offset"])
    consumer = EventHubConsumerClient.from_connection_string(
        emu.connection_string, consumer_group="$Default", eventhub_name=HUB, **FAST
    )
    with consumer:
        assert consumer.get_partition_ids() == ["0", "1", "2", "3"]
        assert (
            consumer.get_partition_properties("2")["last_enqueued_sequence_number"]
            == part["last_enqueued_sequence_number"]
        )


def test_empty_partition_properties(tmp_path):
    config = EmulatorConfig(entities=(EntityConfig("fresh", 2),))
    with Emulator.start(data_dir=tmp_path, port=0, config=config) as fresh:
        with EventHubProducerClient.from_connection_string(fresh.connection_string, eventhub_name="fresh", **FAST) as p:
            part = p.get_partition_properties("1")
    assert part["is_empty"] is True
    assert part["last_enqueued_sequence_number"] == -1
    assert part["beginning_sequence_number"] == 0


def test_aio_round_trip(emu):
    async def scenario() -> list[EventData]:
        async with AsyncProducer.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
            start = (await p.get_partition_properties("3"))["last_enqueued_sequence_number"]
            batch = await p.create_batch(partition_id="3")
            for i in range(20):
                batch.add(EventData(f"aio-{i}"))
            await p.send_batch(batch)
            await p.send_event(EventData("aio-single"), partition_id="3")
        got: list[EventData] = []
        done = asyncio.Event()
        consumer = AsyncConsumer.from_connection_string(
            emu.connection_string, consumer_group="warm", eventhub_name=HUB, **FAST
        )

        async def on_event(_ctx, event) -> None:
            got.append(event)
            if len(got) >= 21:
                done.set()

        async with consumer:
            task = asyncio.create_task(consumer.receive(on_event, partition_id="3", starting_position=start))
            await asyncio.wait_for(done.wait(), 15)
            await consumer.close()
            task.cancel()
        return got

    got = asyncio.run(scenario())
    assert [e.body_as_str() for e in got] == [f"aio-{i}" for i in range(20)] + ["aio-single"]


def test_aio_receive_batch_all_partitions(emu):
    async def scenario() -> dict[str, int]:
        async with AsyncProducer.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
            for pid in "0123":
                await p.send_batch([EventData(f"all-{pid}-{i}") for i in range(10)], partition_id=pid)
        seen: dict[str, int] = {}
        done = asyncio.Event()
        consumer = AsyncConsumer.from_connection_string(
            emu.connection_string, consumer_group="monitor", eventhub_name=HUB, **FAST
        )

        async def on_batch(ctx, batch) -> None:
            seen[ctx.partition_id] = seen.get(ctx.partition_id, 0) + sum(
                1 for e in batch if e.body_as_str().startswith("all-")
            )
            if len(seen) == 4 and all(v >= 10 for v in seen.values()):
                done.set()

        async with consumer:
            task = asyncio.create_task(consumer.receive_batch(on_batch, starting_position="-1"))
            await asyncio.wait_for(done.wait(), 20)
            await consumer.close()
            task.cancel()
        return seen

    seen = asyncio.run(scenario())
    assert set(seen) == {"0", "1", "2", "3"} and all(v >= 10 for v in seen.values())
