"""The end-to-end journey (what `make demo` runs) on the session's stack, at a tiny scale."""

from __future__ import annotations

from iotlib.cli import journey as demo


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
    # The streaming job saw the same windows as the batch job, and the heat event raised alerts.
    stream = run.results["stream"]
    assert stream.windows == windows.height, (stream.counts, stream.heartbeats, stream.stop_reason, stream.errors)
    alerts = run.results["alerts"]
    assert 1 in alerts.filter(alerts["rule"] == "building_too_hot")["building_id"].to_list()
    assert "stopped" not in text, "the demo must not stop a stack it did not start"
