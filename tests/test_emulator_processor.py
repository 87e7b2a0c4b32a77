"""Event processors on the emulator: checkpoints in Azurite, load balancing, owner levels, runtime metrics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.amqp import AmqpAnnotatedMessage
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import BlobServiceClient
from emulator_helpers import FAST

import iotlib
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig

HUB = "telemetry"
GROUPS = ("$Default", "capture", "warm", "monitor", "balance", "resume", "owners", "metrics")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    config = EmulatorConfig(entities=(EntityConfig(HUB, 4, GROUPS),))
    with Emulator.start(data_dir=tmp_path_factory.mktemp("eventhubs"), port=0, config=config) as running:
        yield running


async def _container(local_stack) -> tuple[BlobCheckpointStore, str]:
    """A fresh container on the session's Azurite (the store needs it to exist)."""
    storage = iotlib.settings().storage_connection_string
    name = f"checkpoints-{uuid.uuid4().hex[:10]}"
    async with BlobServiceClient.from_connection_string(storage) as service:
        await service.create_container(name)
    return BlobCheckpointStore.from_connection_string(storage, name), name


async def _send(emu, per_partition: dict[str, list[str]]) -> None:
    async with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
        for pid, bodies in per_partition.items():
            await p.send_batch([EventData(b) for b in bodies], partition_id=pid)


def _consumer(emu, group: str, store=None, **kwargs) -> EventHubConsumerClient:
    return EventHubConsumerClient.from_connection_string(
        emu.connection_string,
        consumer_group=group,
        eventhub_name=HUB,
        checkpoint_store=store,
        load_balancing_interval=0.5,
        **FAST,
        **kwargs,
    )


async def _stop(client: EventHubConsumerClient, task: asyncio.Task) -> None:
    await client.close()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


async def _until(predicate, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def test_two_processors_share_the_partitions(emu, local_stack):
    async def scenario():
        store, _ = await _container(local_stack)
        owned: dict[str, set[str]] = {"a": set(), "b": set()}
        seen: dict[str, list[str]] = {"a": [], "b": []}
        clients, tasks = {}, {}
        for name in ("a", "b"):
            client = _consumer(emu, "balance", store)

            async def on_event(ctx, event, name=name):
                if event is not None:
                    seen[name].append(event.body_as_str())

            async def on_init(ctx, name=name):
                owned[name].add(ctx.partition_id)

            async def on_close(ctx, reason, name=name):
                owned[name].discard(ctx.partition_id)

            clients[name] = client
            tasks[name] = asyncio.create_task(
                client.receive(
                    on_event,
                    starting_position="@latest",
                    on_partition_initialize=on_init,
                    on_partition_close=on_close,
                    max_wait_time=0.5,
                )
            )
            await asyncio.sleep(0.3)
        balanced = await _until(
            lambda: len(owned["a"]) == 2 and len(owned["b"]) == 2 and not owned["a"] & owned["b"], 25
        )
        assert balanced, owned
        await asyncio.sleep(1.0)  # both processors' links are up
        await _send(emu, {pid: [f"bal-{pid}-{i}" for i in range(3)] for pid in "0123"})
        wanted = {f"bal-{pid}-{i}" for pid in "0123" for i in range(3)}
        got_all = await _until(lambda: wanted <= set(seen["a"]) | set(seen["b"]), 15)
        snapshot = {k: set(v) for k, v in owned.items()}
        for name in clients:
            await _stop(clients[name], tasks[name])
        await store.close()
        return got_all, snapshot, seen

    got_all, owned, seen = asyncio.run(scenario())
    assert got_all, seen
    assert owned["a"] and owned["b"] and not owned["a"] & owned["b"]
    for name, pids in owned.items():  # each processor got the events of the partitions it owned
        assert {b.split("-")[1] for b in seen[name] if b.startswith("bal-")} <= pids | owned[
            "a" if name == "b" else "b"
        ]


def test_processor_resumes_from_checkpoint(emu, local_stack):
    async def scenario():
        store, _ = await _container(local_stack)
        async with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
            before = (await p.get_partition_properties("2"))["last_enqueued_sequence_number"]
        await _send(emu, {"2": [f"first-{i}" for i in range(5)]})
        first: list[str] = []
        client = _consumer(emu, "resume", store)

        async def on_event(ctx, event):
            await ctx.update_checkpoint(event)
            first.append(event.body_as_str())  # counted once its checkpoint is stored

        task = asyncio.create_task(client.receive(on_event, partition_id="2", starting_position=before))
        assert await _until(lambda: len(first) >= 5, 15), first
        await _stop(client, task)
        checkpoints = await store.list_checkpoints(f"localhost:{emu.port}", HUB, "resume")
        await _send(emu, {"2": [f"second-{i}" for i in range(3)]})
        second: list[str] = []
        again = _consumer(emu, "resume", store)

        async def on_event2(ctx, event):
            second.append(event.body_as_str())

        task = asyncio.create_task(again.receive(on_event2, partition_id="2", starting_position="-1"))
        await _until(lambda: len(second) >= 3, 15)
        await asyncio.sleep(0.5)  # nothing older may follow
        await _stop(again, task)
        await store.close()
        return first, second, checkpoints, before

    first, second, checkpoints, before = asyncio.run(scenario())
    assert first == [f"first-{i}" for i in range(5)]
    assert second == [f"second-{i}" for i in range(3)]
    assert [c["partition_id"] for c in checkpoints] == ["2"]
    assert checkpoints[0]["sequence_number"] == before + 5


def test_owner_level_takeover_and_refusal(emu):
    async def scenario():
        received = {"low": [], "high": [], "late": []}
        errors = {"low": [], "high": [], "late": []}
        clients, tasks = {}, {}

        async def start(name: str, level: int | None):
            client = _consumer(emu, "owners")

            async def on_event(ctx, event):
                if event is not None:
                    received[name].append(event.body_as_str())

            async def on_error(ctx, exc):
                errors[name].append(exc)

            kwargs = {"owner_level": level} if level is not None else {}
            clients[name] = client
            tasks[name] = asyncio.create_task(
                client.receive(
                    on_event,
                    partition_id="1",
                    starting_position="@latest",
                    on_error=on_error,
                    max_wait_time=0.3,
                    **kwargs,
                )
            )

        await start("low", 1)
        await asyncio.sleep(1.5)
        await _send(emu, {"1": ["before"]})
        assert await _until(lambda: "before" in received["low"], 10), received
        await start("high", 2)
        assert await _until(lambda: errors["low"], 10), "the low owner was not disconnected"
        await asyncio.sleep(0.5)
        await start("late", None)
        assert await _until(lambda: errors["late"], 10), "a reader without owner level was admitted"
        await _send(emu, {"1": ["after"]})
        assert await _until(lambda: "after" in received["high"], 10), received
        for name in clients:
            await _stop(clients[name], tasks[name])
        return received, errors

    received, errors = asyncio.run(scenario())
    assert "after" not in received["low"] and "after" not in received["late"]
    assert any("stolen" in str(e).lower() or "epoch" in str(e).lower() for e in errors["low"]), errors["low"]
    assert any("owner level" in str(e).lower() or "stolen" in str(e).lower() for e in errors["late"]), errors["late"]
    assert not errors["high"]


def test_last_enqueued_event_properties(emu):
    async def scenario():
        await _send(emu, {"3": [f"m-{i}" for i in range(4)]})
        async with EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST) as p:
            # An event with delivery annotations of its own: the service's are merged in.
            await p.send_event(
                AmqpAnnotatedMessage(data_body=b"own-da", delivery_annotations={b"x-opt-user": 5}), partition_id="3"
            )
            props = await p.get_partition_properties("3")
        seen = []
        client = _consumer(emu, "metrics")

        async def on_event(ctx, event):
            seen.append(
                (event.sequence_number, ctx.last_enqueued_event_properties, event.raw_amqp_message.delivery_annotations)
            )

        task = asyncio.create_task(
            client.receive(
                on_event, partition_id="3", starting_position="-1", track_last_enqueued_event_properties=True
            )
        )
        await _until(lambda: len(seen) >= 5, 15)
        await _stop(client, task)
        return props, seen

    props, seen = asyncio.run(scenario())
    assert len(seen) >= 5
    last = seen[-1][1]
    assert seen[-1][2][b"x-opt-user"] == 5
    assert seen[-1][2][b"last_enqueued_sequence_number"] == props["last_enqueued_sequence_number"]
    assert last["sequence_number"] == props["last_enqueued_sequence_number"]
    assert last["offset"] == props["last_enqueued_offset"]
    assert last["enqueued_time"] == props["last_enqueued_time_utc"]
    assert last["retrieval_time"] is not None
