"""The journey end to end on the local stack, at a small scale (``full=True``: Fabrikam's): what ``make demo`` runs.

Registry → simulated readings with a heat event and faults → sent live, sped up, while the capture
writer and the warm job run beside the hub and a lag monitor looks → the cold store loaded back →
a few analysis answers and the lag table → a short report, its figures saved as PNG under ``out/``.
Each step is a function of the earlier steps' results and prints its lines; the run ends saying
whether the stack is still running (it is stopped only if the demo started it) and what to try next.

- :mod:`~iotlib.cli.journey.state` — :class:`Demo`, what one run holds;
- :mod:`~iotlib.cli.journey.fleet` — the registry and the simulation;
- :mod:`~iotlib.cli.journey.live` — live sending with capture, the warm job and the monitor beside it;
- :mod:`~iotlib.cli.journey.answers` — capture, warm store, cold store, batch windows, analysis;
- :mod:`~iotlib.cli.journey.figures` — the PNGs; :mod:`~iotlib.cli.journey.report` — the closing pages.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iotlib.cli.journey import answers, figures, fleet, live, report
from iotlib.cli.journey.state import Demo
from iotlib.local import stack

__all__ = ["FULL", "SMALL", "STEPS", "Demo", "run"]

# Small scale: the original journey's 1,000 devices over 10 buildings, ten minutes sent in half a minute.
SMALL: dict[str, Any] = {"devices": 1_000, "minutes": 10, "speed": 20.0}
# Fabrikam's scale: 100,000 devices, an hour (sent as fast as the hub takes it).
FULL: dict[str, Any] = {"devices": 100_000, "minutes": 60, "speed": 60.0}

STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("scenario", fleet.registry),
    ("simulate", fleet.simulate),
    ("live", live.live),
    ("capture", answers.captured),
    ("stream", answers.streamed),
    ("coldstore", answers.coldstore),
    ("processing", answers.processing),
    ("analysis", answers.analysis),
    ("lag", report.lag_table),
    ("figures", figures.figures),
    ("report", report.summary),
]

#: What each notebook answers, for the closing lines.
NOTEBOOKS = (
    ("01", "the Fabrikam fleet and its simulated telemetry, faults and all"),
    ("02", "how the hub takes the load: throughput, partitions, batching, throttling"),
    ("03", "every event kept in the Event Hubs Capture format, at least once"),
    ("04", "loading the cold store for analysis, fast"),
    ("05", "windows, event time, late and out-of-order data"),
    ("06", "the warm store: a building's temperature now, and alerts"),
    ("07", "ad-hoc questions over a day of cold store, in polars and DuckDB SQL"),
    ("08", "the batch questions of a day (and on Apache Spark)"),
    ("09", "monitoring: is every consumer keeping up?"),
    ("10", "device provisioning: one compromised device cut off, the others unaffected"),
)


def run(
    *,
    devices: int | None = None,
    minutes: int | None = None,
    seed: int = 0,
    full: bool = False,
    speed: float | None = None,
    out: str | os.PathLike[str] = "out",
    stack_options: dict[str, Any] | None = None,
) -> Demo:
    """Start (or reuse) the local stack, run every step, stop what was started.

    Small unless ``full`` (:data:`SMALL`, :data:`FULL`); ``devices``/``minutes``/``speed`` override
    either. Figures go to ``out``. ``stack_options`` go to :func:`iotlib.local.stack.up` when the
    demo starts the stack (ports).
    """
    sizes = FULL if full else SMALL
    demo = Demo(
        devices or sizes["devices"], minutes or sizes["minutes"], seed, speed=speed or sizes["speed"], out=Path(out)
    )
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
        + " (full scale by hand, IOTLIB_SCALE=small for quick runs); each answers a question:",
        *(f"  {number}: {question}" for number, question in NOTEBOOKS),
        "the command line, piece by piece: `iotlib ingest --mode live --devices 1000 --duration 10m` and, in "
        "another shell, `iotlib process --until-idle 30`; `iotlib monitor --watch 5` shows the lag; "
        "`iotlib --help` lists every command",
    ]
    if (demo.devices, demo.minutes) != (FULL["devices"], FULL["minutes"]):
        lines.append(
            f"the same journey at Fabrikam's scale ({FULL['devices']:,} devices, {FULL['minutes']} minutes): "
            "`iotlib demo --full`"
        )
    return lines
