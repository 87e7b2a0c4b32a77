"""`iotlib demo` as a user runs it: no stack and no scale set, a stack of its own on free ports.

Its own module, so that it runs beside the in-process journey (tests/test_demo.py) on another worker.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import clikit

from iotlib.local import stack


def test_iotlib_demo_is_small_by_default_and_stops_the_stack_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTLIB_")}  # no stack, no scale
    env["IOTLIB_HOME"] = str(tmp_path / "home")
    out = tmp_path / "figures"
    done = clikit.run(
        "demo", "--minutes", "2", "--blob-port", "0", "--eventhub-port", "0", "--out", str(out), env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert re.search(r"^\[scenario\] 1,000 devices ", text, re.MULTILINE), text  # small, though IOTLIB_SCALE is unset
    assert "[stack] stopped azurite, eventhubs: the demo started the stack, so it stops it" in text
    assert "[next] the notebooks: `iotlib up`, then `make lab`" in text and "`iotlib demo --full`" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["lag.png", "buildings.png", "buildings-in-heat.png", "events-per-device.png"]
    )
    assert all(p.stat().st_size > 10_000 for p in out.iterdir())
    assert not stack.read_state(tmp_path / "home").services
    assert all(not row.healthy for row in stack.status(tmp_path / "home"))
