"""``iotlib process`` as a newcomer meets it: a historical replay is noticed and explained, and
Ctrl-C stops it cleanly with its summary."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime

import pytest
from children import wait_for
from warm_cli import process_cli, rows

from iotlib.fleet import scenario, simulate
from iotlib.ingest import IngestClient


def _cli(eventhub_name: str, tmp_path, *extra: str) -> list[str]:
    registry = scenario.save_registry(scenario.build_registry(200, buildings=4, seed=5), tmp_path / "registry.json")
    store, container = tmp_path / f"w-{uuid.uuid4().hex[:6]}.sqlite", f"warm-{uuid.uuid4().hex[:10]}"
    cli = process_cli(eventhub_name, store, container, registry, *extra)
    cli[cli.index("--idle-timeout") + 1] = "30s"  # the default: a replay of last year is far behind it
    return cli


@pytest.mark.slow
def test_a_historical_replay_is_noticed_and_arrival_time_processes_it(local_stack, eventhub_name, tmp_path):
    registry = scenario.build_registry(200, buildings=4, seed=5)
    old = simulate.generate(registry, start=datetime(2025, 1, 6, tzinfo=UTC), duration="5m", seed=5)  # last year
    with IngestClient.from_settings(eventhub_name=eventhub_name) as client:
        sent = client.send(old, progress=False)  # replay: as fast as the hub takes them, enqueued now
    on_event_time = subprocess.run(_cli(eventhub_name, tmp_path, "--once"), capture_output=True, text=True,
                                   timeout=180, env=os.environ.copy(), check=False)  # fmt: skip
    out = on_event_time.stdout + on_event_time.stderr
    assert on_event_time.returncode == 0, out
    assert f"{sent.events_sent:,} of {sent.events_sent:,} events were observed more than 30s" in out
    assert "historical replay" in out and "--time arrival" in out and "--late-policy adjust" in out
    assert "0 windows written" in out  # every reading late: nothing to show for it ...

    on_arrival = subprocess.run(_cli(eventhub_name, tmp_path, "--once", "--flush", "--time", "arrival"),
                                capture_output=True, text=True, timeout=180, env=os.environ.copy(), check=False)  # fmt: skip
    out = on_arrival.stdout + on_arrival.stderr
    assert on_arrival.returncode == 0, out
    assert "windows by arrival at the hub" in out and "historical replay" not in out
    assert " 0 late" in out and "0 windows written" not in out  # ... and by arrival time, everything counts


def test_ctrl_c_stops_process_cleanly_with_its_summary(local_stack, eventhub_name, tmp_path):
    cli = _cli(eventhub_name, tmp_path)
    store = cli[cli.index("--warm-store") + 1]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        wait_for(lambda: rows(store, "SELECT 1 FROM partitions"), "partitions claimed", timeout=90, alive=proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "stopped: interrupted" in out and "Traceback" not in err, out + err
    assert not rows(store, "SELECT 1 FROM processes")  # the run ended cleanly: unregistered
