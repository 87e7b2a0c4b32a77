"""Kill -9 the processor mid-stream, restart it: the warm store ends exactly as an uninterrupted run's.

The processor runs as ``iotlib process`` in a subprocess while the stretch is sent live; it is
killed (SIGKILL: no clean-up at all) after a few commits, restarted once everything is in the hub,
and compared with a run that was never interrupted over the same events. The restart re-reads only
what the killed run had not committed, and takes its partitions back at once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid

import polars as pl
import pytest
from children import spawn, wait_for
from warm_cli import live_stretch, process_cli, rows

from iotlib import hub
from iotlib.fleet import scenario
from iotlib.ingest import IngestClient
from iotlib.processing import EventTimePolicy
from iotlib.warm import StreamProcessor, WarmStore, default_rules

FAULTS = ["skew:fraction=0.1,min_skew=20s,max_skew=3m", "offline:fraction=0.1,outage=40s", "duplicates:probability=0.03",
          "malformed:probability=0.02", "spikes:probability=0.02", "heat:buildings=3,rise=30,ramp=0s"]  # fmt: skip
SPEED = 15
OWNERSHIP_EXPIRY = 600  # a dead owner's claim lasts ten minutes: a restart that waited it out could not pass
EXPIRY = ("--ownership-expiry", str(OWNERSHIP_EXPIRY))


@pytest.mark.slow
def test_a_killed_processor_resumes_exactly(local_stack, eventhub_name, tmp_path):
    registry = scenario.build_registry(300, buildings=5, seed=11)
    registry_file = scenario.save_registry(registry, tmp_path / "registry.json")
    events = live_stretch(registry, seed=11, speed=SPEED, faults=FAULTS)
    before = hub.positions(eventhub_name=eventhub_name)
    killed, container = tmp_path / "killed.sqlite", f"warm-{uuid.uuid4().hex[:10]}"

    # 1. The processor starts at the hub's end ("latest") before anything is sent ...
    log = tmp_path / "killed.log"
    first = spawn(process_cli(eventhub_name, killed, container, registry_file, *EXPIRY, "--no-heartbeat",
                              "--starting-position", "latest"), log)  # fmt: skip
    wait_for(lambda: rows(killed, "SELECT 1 FROM state WHERE key = 'settings'"), "the processor to start",
             timeout=60, alive=first, log=log)  # fmt: skip
    # Two thirds of the stretch go out before the kill, the rest after it: the kill is mid-stream
    # however slowly a loaded machine sends or commits.
    first_sent, last_sent = events["sent_at"].min(), events["sent_at"].max()
    cut = first_sent + (last_sent - first_sent) * 2 / 3  # type: ignore[operator]
    killed_now = threading.Event()

    def send_stretch() -> None:
        client = IngestClient.from_settings(eventhub_name=eventhub_name)
        for part in (events.filter(pl.col("sent_at") < cut), events.filter(pl.col("sent_at") >= cut)):
            client.send(part, mode="live", speed=SPEED, send_malformed=True, progress=False)
            killed_now.wait(120)

    sending = threading.Thread(target=send_stretch)
    sending.start()
    # ... and is killed mid-stream, a few commits in.
    wait_for(lambda: (rows(killed, "SELECT COUNT(*) FROM commits WHERE events > 0") or [(0,)])[0][0] >= 2, "commits",
             timeout=60, alive=first, log=log)  # fmt: skip
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    killed_now.set()
    committed = {p: s for p, s in rows(killed, "SELECT partition_id, sequence_number FROM progress")}
    sending.join()
    after = hub.positions(eventhub_name=eventhub_name)
    total = sum(after[p].last_enqueued_sequence_number - before[p].last_enqueued_sequence_number for p in after)
    remaining = sum(after[p].last_enqueued_sequence_number - max(committed.get(p, -1), before[p].last_enqueued_sequence_number)
                    for p in after)  # fmt: skip
    assert 0 < remaining < total

    # 2. Restarted: it takes its partitions back at once and re-reads only what was not committed.
    began = time.monotonic()
    out = subprocess.run(process_cli(eventhub_name, killed, container, registry_file, *EXPIRY, "--no-heartbeat", "--once", "--flush"),
                         capture_output=True, text=True, timeout=OWNERSHIP_EXPIRY / 2, env=os.environ.copy(), check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - began < OWNERSHIP_EXPIRY / 2  # it released the dead process's claim, not waited it out
    received = int(re.search(r"([\d,]+) events received", out.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert received == remaining

    # 3. A run that was never interrupted, over the same events, with the same settings.
    whole = tmp_path / "whole.sqlite"
    with StreamProcessor.from_settings(
        eventhub_name=eventhub_name, registry=registry, warm_store=whole, starting_position=before,
        checkpoint_container=f"warm-{uuid.uuid4().hex[:10]}", policy=EventTimePolicy(idle_timeout="10m"),
        alerts=default_rules(), heartbeat=False, max_batch_size=500,
    ) as processor:  # fmt: skip
        report = processor.run(once=True, flush=True, timeout=60)
    assert report.received == total

    with WarmStore(killed) as a, WarmStore(whole) as b:
        assert a.history().height > 50
        assert a.history().drop("stored_at").equals(b.history().drop("stored_at"))  # stored: wall time
        assert a.building_temperature().drop("updated_at").equals(b.building_temperature().drop("updated_at"))
        for table in ("late_events", "duplicate_events", "dead_letters"):
            key = ["partition_id", "sequence_number"]
            assert a.table(table).sort(key).equals(b.table(table).sort(key)), table
        key = ["raised_at", "rule", "building_id", "device_id"]
        assert a.alerts().drop("alert_id").sort(key).equals(b.alerts().drop("alert_id").sort(key))
        assert "building_too_hot" in a.alerts()["rule"].to_list()
        assert a.positions() == {p: pos for p, pos in b.positions().items()}
        assert a.table("late_events").height > 0 and a.dead_letters().height > 0
