"""The consumer skeleton's ``until_idle``, shared by capture and the warm job: every partition caught up by a
live owner, not only the ones this consumer holds.

Real emulator (private, over TCP), real Azurite, the real SDK's load balancing. Another consumer is
played by ownership records written through the SDK's own checkpoint store: a dead one claimed its
partitions and stopped renewing (a ``kill -9``); a live one renews its claim every half second.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from capturekit import hub_ids, private_hub, send, simulated

import iotlib
from iotlib.connections import Connections
from iotlib.errors import HubError
from iotlib.hub.consumer import Consumer, ConsumerOptions, Until


class Reader:
    """The least engine: remembers what it read."""

    def __init__(self) -> None:
        self.read: set[tuple[str, int]] = set()

    async def on_batch(self, context: Any, events: list[Any]) -> None:
        self.read |= {(context.partition_id, e.sequence_number) for e in events}

    async def on_claim(self, context: Any) -> None:
        pass

    async def on_close(self, context: Any, reason: Any) -> None:
        pass

    async def on_error(self, context: Any, error: Exception) -> None:
        pass

    async def tick(self, now: float) -> str | None:
        return None

    def caught_up(self) -> bool:
        return True

    def stopping(self) -> None:
        pass


async def _claim(consumer: Consumer, partitions: list[str], owner: str, held: list[dict] | None = None) -> list[dict]:
    """Ownership records for ``partitions`` in ``owner``'s name (renewed when ``held`` are given)."""
    records = held or [
        {"fully_qualified_namespace": consumer.eventhub.fully_qualified_namespace,
         "eventhub_name": consumer.eventhub.eventhub_name, "consumer_group": consumer.consumer_group,
         "partition_id": pid, "owner_id": owner}
        for pid in partitions
    ]  # fmt: skip
    return list(await consumer.checkpoints.claim_ownership(records))


async def _run(hub_conn: str, *, other: str, expiry: float, timeout: float = 90) -> tuple[str, Reader]:
    storage = iotlib.settings().storage_connection_string
    conns = Connections.parse(hub_conn, storage, eventhub_name="telemetry")
    container = f"own-{uuid.uuid4().hex[:10]}"
    async with conns.storage.service() as service:
        await service.create_container(container)
    options = ConsumerOptions(consumer_group="capture", checkpoint_container=container, load_balancing_interval=0.5,
                              ownership_expiry=expiry, max_wait_time=0.5)  # fmt: skip
    consumer = Consumer(conns.eventhub, conns.storage, options)
    held = await _claim(consumer, ["0", "1"], "the-other-one")
    renewing = None
    if other == "live":

        async def renew() -> None:
            nonlocal held
            while True:
                await asyncio.sleep(0.5)
                held = await _claim(consumer, [], "the-other-one", held)

        renewing = asyncio.create_task(renew())
    reader = Reader()
    positions = await consumer.positions()
    floor = await consumer.idle_floor(positions, "-1")
    try:
        reason = await consumer.run(reader, asyncio.Event(), Until(timeout=timeout, until_idle=1, floor=floor),
                                    start="-1", fail=HubError)  # fmt: skip
    finally:
        if renewing is not None:
            renewing.cancel()
        await consumer.close()
    return reason, reader


@pytest.fixture
def hub_with_events() -> Any:
    with private_hub(4) as hub:
        send(hub.connection_string, simulated(800, seed=31))
        yield hub


def test_idle_waits_for_a_dead_owners_partitions_and_reads_them(
    hub_with_events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="iotlib.hub"):
        reason, reader = asyncio.run(_run(hub_with_events.connection_string, other="dead", expiry=8))
    assert reason == "idle for 1 s"
    assert reader.read == hub_ids(hub_with_events.connection_string)  # all four partitions, not two
    waited = [r.getMessage() for r in caplog.records if r.getMessage().startswith("until idle: waiting for")]
    assert waited and "has not renewed its claim" in waited[0]


def test_a_live_owners_partitions_are_its_own(hub_with_events: Any) -> None:
    reason, reader = asyncio.run(_run(hub_with_events.connection_string, other="live", expiry=8))
    assert reason == "idle for 1 s"  # not a wait for partitions another live consumer holds
    assert {p for p, _ in reader.read} == {"2", "3"}
    assert reader.read == {(p, s) for p, s in hub_ids(hub_with_events.connection_string) if p in ("2", "3")}


def test_not_caught_up_by_the_timeout_is_an_error_naming_the_partitions(hub_with_events: Any) -> None:
    with pytest.raises(HubError, match="not caught up by a live owner") as caught:
        asyncio.run(_run(hub_with_events.connection_string, other="dead", expiry=600, timeout=8))
    text = str(caught.value)
    assert "partition 0 (" in text and "partition 1 (" in text and "expires in" in text
