"""The end-to-end journey (what `make demo` runs): on the session's stack at a tiny scale, and as a user runs it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import clikit

from iotlib.cli import journey as demo
from iotlib.local import stack
from iotlib.processing import EventTimePolicy, building_averages


def test_demo_runs_the_journey_end_to_end(local_stack: object) -> None:
    run = demo.run(devices=200, minutes=10, seed=1)
    text = "\n".join(run.lines)
    sent = run.results["ingest"].events_sent
    assert sent == run.results["events"].height
    assert run.results["capture"].events == sent
    assert "every event sent is in the cold store" in text
    assert run.results["cold"].height == sent
    windows = run.results["windows"]
    hot = windows.filter(windows["building_id"] == 1)["avg_temperature"].max()
    assert hot > windows.filter(windows["building_id"] != 1)["avg_temperature"].max()
    # The streaming job saw the windows the batch job sees through the same event-time policy (on a
    # loaded machine a retried send can arrive late, to the side output), all of them when none was
    # late; and the heat event raised alerts.
    stream = run.results["stream"]
    policy = EventTimePolicy(idle_timeout="15m")  # the demo's: its minutes plus five
    seen = building_averages(run.results["cold"], run.results["registry"], window="5s", policy=policy)
    assert stream.windows == seen.windows.height, (stream.counts, seen.counts)
    assert stream.late > 0 or stream.windows == windows.height
    alerts = run.results["alerts"]
    assert 1 in alerts.filter(alerts["rule"] == "building_too_hot")["building_id"].to_list()
    assert "stopped" not in text, "the demo must not stop a stack it did not start"
    assert "[stack] left running (azurite on " in text and "`iotlib down` stops it" in text
    assert "[next] the notebooks: `make lab`" in text and "`iotlib demo --full`" in text


def test_iotlib_demo_is_small_by_default_and_stops_the_stack_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTLIB_")}  # no stack, no scale
    env["IOTLIB_HOME"] = str(tmp_path)
    done = clikit.run("demo", "--minutes", "2", "--blob-port", "0", "--eventhub-port", "0", env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^\[scenario\] 1,000 devices ", out, re.MULTILINE), out  # small, though IOTLIB_SCALE is unset
    assert "[stack] stopped azurite, eventhubs: the demo started the stack, so it stops it" in out
    assert "[next] the notebooks: `iotlib up`, then `make lab`" in out and "`iotlib demo --full`" in out
    assert not stack.read_state(tmp_path).services
    assert all(not row.healthy for row in stack.status(tmp_path))
