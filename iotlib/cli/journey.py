"""The journey end to end on the local stack, at a small scale (``full=True``: Fabrikam's): what ``make demo`` runs.

Each step is a function of the previous steps' results and prints one line;
the run ends with a summary of what landed where, whether the stack is still
running (it is stopped only if the demo started it), and what to try next.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from iotlib.local import stack

# Small scale: the original journey's 1,000 devices over 10 buildings, ten minutes.
SMALL = {"devices": 1_000, "minutes": 10}
FULL = {"devices": 100_000, "minutes": 60}


@dataclass
class Demo:
    devices: int
    minutes: int
    seed: int = 0
    #: Names this run's own containers and warm store, so reruns never mix.
    tag: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    results: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def say(self, step: str, text: str) -> None:
        line = f"[{step}] {text}"
        self.lines.append(line)
        print(line, flush=True)


def _registry(demo: Demo) -> None:
    from iotlib.fleet import scenario

    reg = scenario.original_registry() if demo.devices <= 1_000 else scenario.default_registry()
    reg = reg.head(demo.devices)
    demo.results["registry"] = reg
    s = scenario.registry_summary(reg)
    demo.say(
        "scenario",
        f"{s['devices']:,} devices in {s['apartments']:,} apartments of {s['buildings']} "
        f"buildings ({s['floors_min']}-{s['floors_max']} floors), {s['time_zones']} time zone(s)",
    )


def _simulate(demo: Demo) -> None:
    from iotlib.fleet import simulate

    # The last few minutes, so event times sit just before their arrival, as live telemetry's do.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    events = simulate.generate(
        demo.results["registry"],
        start=now - timedelta(minutes=demo.minutes),
        duration=timedelta(minutes=demo.minutes),
        seed=demo.seed,
        faults=["heat:buildings=1,start=1m,duration=7m,rise=22,ramp=3m"],
    )
    demo.results["events"] = events
    demo.say(
        "simulate",
        f"{events.height:,} readings over {demo.minutes} min (seed {demo.seed}), "
        f"a heat event in building 1: {int(events['fault_heat'].sum()):,} hot readings",
    )


def _ingest(demo: Demo) -> None:
    from iotlib import hub
    from iotlib.ingest import IngestClient

    demo.results["positions_before"] = hub.positions()
    with IngestClient.from_settings() as client:
        report = client.send(demo.results["events"], progress=False)
    demo.results["ingest"] = report
    demo.say("ingest", report.summary())
    per = ", ".join(f"{pid}:{n:,}" for pid, n in sorted(report.per_partition.items(), key=lambda kv: int(kv[0])))
    demo.say("ingest", f"events per partition: {per}")


def _capture(demo: Demo) -> None:
    from iotlib.capture import CaptureWriter

    # Containers of this run's own, so the demo captures exactly what it sent.
    container, checkpoints = f"demo-{demo.tag}-capture", f"demo-{demo.tag}-checkpoints"
    with CaptureWriter.from_settings(
        container=container,
        checkpoint_container=checkpoints,
        time_window=60,
        starting_position=demo.results["positions_before"],
    ) as writer:
        report = writer.run(once=True)
    demo.results["capture"] = report
    demo.results["container"] = container
    nbytes = sum(f.size_in_bytes for f in report.files)
    demo.say(
        "capture",
        f"{report.events:,} events in {len(report.files)} Avro files ({nbytes / 1e6:,.2f} MB) "
        f"in Blob container '{container}' (checkpoints in '{checkpoints}')",
    )
    first = min(report.files, key=lambda f: f.name)
    demo.say(
        "capture",
        f"e.g. {first.name}: {first.event_count:,} events, sequence numbers "
        f"{first.first_sequence_number}-{first.last_sequence_number}",
    )


def _coldstore(demo: Demo) -> None:
    from iotlib import coldstore

    frame = coldstore.load(container=demo.results["container"])
    demo.results["cold"] = frame
    sent = demo.results["ingest"].events_sent
    bad = frame["decode_error"].is_not_null().sum()
    verdict = "every event sent is in the cold store" if frame.height == sent else "MISMATCH"
    demo.say(
        "coldstore",
        f"loaded {frame.height:,} events back from the Capture files ({sent:,} sent: {verdict}); "
        f"{bad} bodies failed to decode",
    )


def _processing(demo: Demo) -> None:
    import polars as pl

    from iotlib.processing import building_averages

    result = building_averages(demo.results["cold"], demo.results["registry"], window="5s")
    windows = result.windows
    peaks = windows.group_by("building_id").agg(pl.col("avg_temperature").max().alias("peak"))
    heated = peaks.filter(pl.col("building_id") == 1)["peak"].max()
    others = peaks.filter(pl.col("building_id") != 1)["peak"].max()
    assert isinstance(heated, float) and isinstance(others, float)  # the demo fleet has building 1 and others
    demo.results["windows"] = windows
    demo.say(
        "processing",
        f"{windows.height:,} five-second building averages (event time); building 1, with the "
        f"heat event, peaks at {heated:.1f} °C, the other buildings at most {others:.1f} °C",
    )


def _stream(demo: Demo) -> None:
    from iotlib.connections import home
    from iotlib.processing import EventTimePolicy
    from iotlib.warm import StreamProcessor, WarmStore

    path = home() / "demo" / f"warm-{demo.tag}.sqlite"
    with StreamProcessor.from_settings(
        registry=demo.results["registry"],
        warm_store=path,
        checkpoint_container=f"demo-{demo.tag}-warm",
        starting_position=demo.results["positions_before"],
        # The demo replays its minutes in a second or two: wait for quiet partitions as a backfill would.
        policy=EventTimePolicy(idle_timeout=f"{demo.minutes + 5}m"),
    ) as processor:
        report = processor.run(once=True, flush=True)  # everything sent so far; a quiet spell under load is no end
    demo.results["stream"] = report
    store = WarmStore(path)
    try:
        now = store.current_temperature(1)
        alerts = store.alerts()
        hot = alerts.filter(alerts["rule"] == "building_too_hot")
        demo.results["alerts"] = alerts
        per_rule = ", ".join(f"{n} {rule}" for rule, n in sorted(alerts.group_by("rule").len().iter_rows()))
        demo.say(
            "stream",
            f"{report.received:,} events through the warm job into {path}: "
            f"{report.windows:,} windows, alerts: {per_rule or 'none'}",
        )
        if now is not None:
            demo.say(
                "stream",
                f"building 1 now: {now.avg_temperature:.1f} °C (observed {now.last_observed_time:%H:%M:%S}); "
                f"too-hot alerts for building(s) {sorted(set(hot['building_id'].to_list()))}",
            )
    finally:
        store.close()


STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("scenario", _registry),
    ("simulate", _simulate),
    ("ingest", _ingest),
    ("capture", _capture),
    ("coldstore", _coldstore),
    ("processing", _processing),
    ("stream", _stream),
]


def run(
    *,
    devices: int | None = None,
    minutes: int | None = None,
    seed: int = 0,
    full: bool = False,
    stack_options: dict[str, Any] | None = None,
) -> Demo:
    """Start (or reuse) the local stack, run every step, stop what was started.

    Small unless ``full`` (:data:`SMALL`, :data:`FULL`); ``devices``/``minutes`` override either.
    ``stack_options`` go to :func:`iotlib.local.stack.up` when the demo starts the stack (ports).
    """
    sizes = FULL if full else SMALL
    demo = Demo(devices or sizes["devices"], minutes or sizes["minutes"], seed)
    began = time.monotonic()
    st = stack.up(**(stack_options or {}))
    demo.say(
        "stack",
        ", ".join(
            f"{n} on {s.address}" + (" (started)" if n in st.started else " (running)") for n, s in st.services.items()
        ),
    )
    saved = {k: os.environ.get(k) for k in st.environ()}
    os.environ.update(st.environ())
    try:
        for _, step in STEPS:
            step(demo)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stopped = st.down()
        if stopped:
            demo.say("stack", f"stopped {', '.join(stopped)}: the demo started the stack, so it stops it")
        else:
            where = ", ".join(f"{n} on {s.address}" for n, s in st.services.items())
            demo.say("stack", f"left running ({where}): it was running before the demo; `iotlib down` stops it")
    demo.say("done", f"the journey took {time.monotonic() - began:,.1f}s")
    for line in _next_steps(demo, running=not stopped):
        demo.say("next", line)
    return demo


def _next_steps(demo: Demo, *, running: bool) -> list[str]:
    """What to try after the demo."""
    lines = [
        ("the notebooks: `make lab`" if running else "the notebooks: `iotlib up`, then `make lab`")
        + " (01 to 06; full scale by hand, IOTLIB_SCALE=small for quick runs)",
        "the command line, piece by piece: `iotlib ingest --mode live --devices 1000 --duration 10m` and, in "
        "another shell, `iotlib process --until-idle 30`; `iotlib --help` lists every command",
    ]
    if (demo.devices, demo.minutes) != (FULL["devices"], FULL["minutes"]):
        lines.append(
            f"the same journey at Fabrikam's scale ({FULL['devices']:,} devices, {FULL['minutes']} minutes): "
            "`iotlib demo --full`"
        )
    return lines
