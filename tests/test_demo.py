"""The end-to-end journey (what `make demo` runs) on the session's stack, at a tiny scale."""

from __future__ import annotations

from iotlib.cli import journey as demo
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
