"""``iotlib process --until-idle`` after a ``kill -9``: idle means every partition caught up by a live owner.

A processor holding every partition of a private hub is killed (SIGKILL: its ownership records stay
as they were). A second processor (its own warm store: another machine, say) started with
``--until-idle`` may take only its fair share at first; it must wait for the dead owner's claims to
expire and read those partitions too — not exit 0 "idle" with half the hub unread (issue 13 §2; the
consumer skeleton, :mod:`iotlib.hub.consumer`, is the one capture uses).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from capturekit import HUB, hub_ids, private_hub, send, simulated
from children import wait_for

import iotlib
from iotlib.fleet import scenario
from iotlib.warm import WarmStore

pytestmark = pytest.mark.slow

DEVICES = 200
EXPIRY = 15  # seconds a dead owner's claim is honoured (longer than the 10 s balancing interval)


def _process(hub_conn: str, store: Path, container: str, registry: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "IOTLIB_EVENTHUB_CONNECTION_STRING": hub_conn, "IOTLIB_EVENTHUB_NAME": HUB,
           "IOTLIB_STORAGE_CONNECTION_STRING": iotlib.settings().storage_connection_string}  # fmt: skip
    args = [sys.executable, "-m", "iotlib", "process", "--consumer-group", "capture", "--warm-store", str(store),
            "--checkpoint-container", container, "--registry", str(registry), "--no-heartbeat", "--no-progress",
            "--ownership-expiry", str(EXPIRY), *extra]  # fmt: skip
    return subprocess.Popen(args, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115


def _owners(container: str) -> list[str]:
    """The owner id of each partition's ownership record in the checkpoint container."""
    service = BlobServiceClient.from_connection_string(iotlib.settings().storage_connection_string)
    cc = service.get_container_client(container)
    if not cc.exists():
        return []
    return [b.metadata.get("ownerid", "") for b in cc.list_blobs(include=["metadata"]) if "/ownership/" in b.name]


def _commits(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM commits WHERE events > 0").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_until_idle_reads_the_partitions_a_killed_processor_held(tmp_path: Path) -> None:
    registry = scenario.save_registry(scenario.original_registry().head(DEVICES), tmp_path / "registry.json")
    container = f"warm-{uuid.uuid4().hex[:10]}"
    dead_log, log = tmp_path / "dead.log", tmp_path / "process.log"
    with private_hub(4) as hub:
        sent = send(hub.connection_string, simulated(1200, seed=21, devices=DEVICES))
        dead = _process(hub.connection_string, tmp_path / "dead.sqlite", container, registry, dead_log)
        try:
            # It holds all four partitions and has stored some of what it read ...
            wait_for(lambda: len(set(o := _owners(container))) == 1 and len(o) == 4 and o[0] != "",
                     "the first processor owning every partition", alive=dead, log=dead_log)  # fmt: skip
            wait_for(lambda: _commits(tmp_path / "dead.sqlite") >= 1, "a commit", alive=dead, log=dead_log)
        finally:
            dead.kill()  # ... and dies without releasing anything.
        assert dead.wait(10) == -signal.SIGKILL
        survivor = _process(hub.connection_string, tmp_path / "live.sqlite", container, registry, log,
                            "--until-idle", "1", "--flush", "--timeout", "150")  # fmt: skip
        try:
            code = survivor.wait(180)
        finally:
            survivor.kill()
        expected = hub_ids(hub.connection_string)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "until idle: waiting for partition" in text  # it did wait for the dead owner's claims, and said so
    assert f"{sent:,} events received" in text, text[-3000:]  # every partition read, not the fair share
    with WarmStore(tmp_path / "live.sqlite") as store:  # flushed: the effects of every event are stored
        stored = {pid: pos.sequence_number for pid, pos in store.positions().items()}
    assert stored == {pid: max(s for p, s in expected if p == pid) for pid in {p for p, _ in expected}}
