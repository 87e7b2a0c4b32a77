"""Run the processor beside a live ingestion, and watch its lag: for notebooks, tests and benchmarks.

:func:`run_alongside` starts a :class:`~iotlib.warm.StreamProcessor` in a
background thread, sends a simulated stretch with :class:`~iotlib.ingest.IngestClient`
(live, paced by ``sent_at``), samples :func:`iotlib.hub.monitor.lag` for the
processor's consumer group meanwhile, and stops the processor once it has
read everything that was sent (plus ``settle`` seconds, so heartbeats can
close what the quiet hub leaves open). The processor's own options — above
all its ``starting_position``, e.g. a :func:`iotlib.hub.positions` snapshot
taken before sending — decide what it reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from iotlib.errors import ProcessingError
from iotlib.frames import Frame, as_polars
from iotlib.hub import monitor
from iotlib.ingest import IngestClient, IngestReport
from iotlib.warm.processor import StreamProcessor
from iotlib.warm.report import ProcessReport

LAG_SCHEMA = {"seconds": pl.Float64, "unprocessed": pl.Int64, "received": pl.Int64}


@dataclass
class LiveRun:
    """What happened: the processor's report, the ingestion's report, and the lag over time.

    ``lag``: one row per sample — seconds since sending began, events the hub holds past
    the consumer group's checkpoints (``iotlib.hub.monitor.lag``), events the processor had read.
    """

    report: ProcessReport
    sent: IngestReport
    lag: pl.DataFrame
    caught_up_seconds: float


def run_alongside(
    processor: StreamProcessor,
    events: Frame,
    *,
    speed: float = 1.0,
    start_now: bool = False,
    send_malformed: bool = True,
    settle: float = 2.0,
    flush: bool = False,
    sample_every: float = 2.0,
    timeout: float = 600.0,
    ingest_options: dict[str, Any] | None = None,
) -> LiveRun:
    """Send ``events`` live to the processor's hub while it runs; stop it once all is read and settled.

    Sending starts once the processor owns its partitions, so the lag samples (``seconds`` since
    sending began) start from a consumer group that is in place. ``start_now`` shifts the
    stretch's times (``time_observed`` and ``sent_at`` alike) so that it begins as sending
    begins: event time and the hub's clock then run side by side, as with real devices.
    """
    events = as_polars(events, name="events")
    opts = processor.options
    eventhub, storage = processor.eventhub, processor.storage
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = processor.run(timeout=timeout, flush=flush)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="iotlib-stream-live", daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while (
        worker.is_alive()
        and time.monotonic() < deadline
        and (processor.report is None or len(processor.report.partitions) < 1)
    ):  # started and reading (a stop before it started would be lost)
        time.sleep(0.01)
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()
    if start_now and events.height:
        first_sent = events["sent_at"].min()
        assert isinstance(first_sent, datetime)  # a non-empty Datetime column
        shift = datetime.now(UTC) - first_sent
        events = events.with_columns(pl.col("time_observed", "sent_at") + shift)
    began = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            try:
                lag = monitor.lag({opts.consumer_group: opts.checkpoint_container},
                                  eventhub_connection_string=eventhub.connection_string,
                                  storage_connection_string=storage.connection_string,
                                  eventhub_name=opts.eventhub_name, lag_time=False)  # fmt: skip
                received = processor.report.received if processor.report else 0
                samples.append((time.monotonic() - began, int(lag["unprocessed"].sum()), received))
            except Exception:  # noqa: BLE001 - a missed sample
                pass
            done.wait(sample_every)

    sampler = threading.Thread(target=sample, name="iotlib-stream-lag", daemon=True)
    sampler.start()
    try:
        with IngestClient(eventhub) as client:
            sent = client.send(events, mode="live", speed=speed, send_malformed=send_malformed, progress=False,
                               **(ingest_options or {}))  # fmt: skip
        ended = time.monotonic()
        while processor.report is None or processor.report.received < sent.events_sent:
            if "error" in outcome or not worker.is_alive():
                break
            if time.monotonic() - ended > timeout:
                raise ProcessingError(
                    f"the processor did not read the {sent.events_sent:,} events sent within {timeout:g} s"
                )
            time.sleep(0.05)
        caught_up = time.monotonic() - ended
        time.sleep(settle)
    finally:
        processor.stop()
        worker.join()
        done.set()
        sampler.join()
    if "error" in outcome:
        raise outcome["error"]
    lag = pl.DataFrame(samples, schema=LAG_SCHEMA, orient="row")
    return LiveRun(outcome["report"], sent, lag, caught_up)
