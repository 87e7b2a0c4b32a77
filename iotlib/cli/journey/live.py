"""The journey's live step: the readings sent live (sped up) while the capture writer and the warm
job run beside the hub, each on a thread of its own, and a lag monitor looks every few seconds.

Once every event sent has been read by both, they are stopped (capture flushes its open windows,
the warm job closes its open windows: end of stream) and one last look is the lag table.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotlib.cli.journey.state import Demo

#: Seconds between the monitor's looks while the fleet sends.
LOOK_EVERY = 2.0
#: Only a guard: how long the engines may take to read what was sent before the journey gives up.
CATCH_UP_GUARD = 900.0


@dataclass
class Beside:
    """An engine (capture writer, stream processor) running on a thread of its own until stopped."""

    name: str
    engine: Any
    outcome: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def start(self, **run_options: Any) -> Beside:
        def main() -> None:
            try:
                self.outcome["report"] = self.engine.run(**run_options)
            except BaseException as exc:  # noqa: BLE001 - handed to finish()
                self.outcome["error"] = exc

        self.thread = threading.Thread(target=main, name=f"iotlib-demo-{self.name}", daemon=True)
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Ask the engine to finish cleanly and wait for it (its report or error stays in ``outcome``)."""
        while self.alive:  # asked again until seen: a stop just before the run began is forgotten by it
            self.engine.stop()
            assert self.thread is not None
            self.thread.join(0.5)
        self.engine.close()

    def report(self) -> Any:
        """The report of the run :meth:`stop` ended, or the error it failed with."""
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["report"]


def live(demo: Demo) -> None:
    from iotlib import hub
    from iotlib.capture import CaptureWriter
    from iotlib.connections import home
    from iotlib.hub.monitor import LagMonitor
    from iotlib.ingest import IngestClient
    from iotlib.processing import EventTimePolicy
    from iotlib.warm import StreamProcessor

    before = demo.results["positions_before"] = hub.positions()
    groups = demo.checkpoint_containers
    warm_store = demo.results["warm_store"] = home() / "demo" / f"warm-{demo.tag}.sqlite"
    capture = Beside(
        "capture",
        CaptureWriter.from_settings(
            container=demo.capture_container,
            checkpoint_container=groups["capture"],
            time_window=10,  # files every 10 s of enqueued time: the capture group's lag moves as it works
            starting_position=before,
        ),
    )
    warm = Beside(
        "warm",
        StreamProcessor.from_settings(
            registry=demo.results["registry"],
            warm_store=warm_store,
            checkpoint_container=groups["warm"],
            starting_position=before,
            # Minutes of readings arrive sped up: wait for quiet partitions as a backfill would.
            policy=EventTimePolicy(idle_timeout=f"{demo.minutes + 5}m"),
        ),
    )
    monitor = LagMonitor.from_settings(consumer_groups=groups)
    try:
        engines = [capture.start(), warm.start(flush=True)]
        recording = monitor.record(LOOK_EVERY)
        try:
            began = datetime.now(UTC)
            with IngestClient.from_settings() as client:
                sent = client.send(demo.results["events"], mode="live", speed=demo.speed, progress=False)
            demo.results["ingest"] = sent
            demo.results["sending"] = (began, datetime.now(UTC))
            demo.say("ingest", f"{sent.summary()}; capture and the warm job read beside it")
            demo.say("ingest", f"events per partition: {sent.partition_line()}")
            _wait_for(sent.events_sent, capture, warm)
        finally:
            for engine in engines:
                engine.stop()
            looks = recording.stop()
        reports = {engine.name: engine.report() for engine in engines}
        last = monitor.sample()  # after both stopped: their final checkpoints
    finally:
        monitor.close()
    import polars as pl

    demo.results["capture"] = reports["capture"]
    demo.results["stream"] = reports["warm"]
    demo.results["lag"] = last.frame
    demo.results["looks"] = pl.concat([looks, last.frame]) if looks.height else last.frame
    demo.say(
        "monitor",
        f"{demo.results['looks']['sampled_at'].n_unique()} looks at both consumer groups' lag while it ran; "
        f"the last, after both stopped: {int(last.frame['unprocessed'].sum()):,} events unprocessed",
    )


def _wait_for(events: int, capture: Beside, warm: Beside) -> None:
    """Until both engines have read ``events`` (their own counters), one of them stops, or the guard."""
    guard = time.monotonic() + CATCH_UP_GUARD
    while time.monotonic() < guard:
        captured = capture.engine.report.events if capture.engine.report else 0
        read = warm.engine.report.received if warm.engine.report else 0
        if (captured >= events and read >= events) or not (capture.alive and warm.alive):
            return
        time.sleep(0.1)
