"""Child processes in tests (``iotlib capture``, ``iotlib process``): output to a log file, and waiting
on a condition rather than on the clock, failing at once if a child exits and showing what it said."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def spawn(cli: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``cli`` in a subprocess whose output is appended to ``log``: a pipe nobody reads while the test
    waits would fill and block the child's logging, and a file can be shown when a wait fails."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(list(cli), stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy())


def tail(log: Path, chars: int = 4000) -> str:
    """The end of a child's output (see :func:`spawn`)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"--- {log.name} ({len(text):,} chars) ---\n" + text[-chars:]


def wait_for(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float = 180,
    alive: subprocess.Popen[Any] | Sequence[subprocess.Popen[Any]] = (),
    log: Path | Sequence[Path] = (),
    every: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds: tests wait on the system's progress, not on the clock.

    ``timeout`` only guards against a hang; a child of ``alive`` that exits meanwhile fails the wait at
    once. A failure names ``what`` and shows the tail of each ``log`` and what ``explain()`` says.
    """
    children = [alive] if isinstance(alive, subprocess.Popen) else list(alive)
    logs = [log] if isinstance(log, Path) else list(log)
    deadline = time.monotonic() + timeout
    while not condition():
        gone = [p for p in children if p.poll() is not None]
        if gone or time.monotonic() > deadline:
            why = f"process {gone[0].pid} exited with {gone[0].returncode}" if gone else f"not reached in {timeout:g} s"
            shown = [tail(path) for path in logs] + ([explain()] if explain is not None else [])
            raise AssertionError("\n".join([f"waiting for {what}: {why}", *shown]))
        time.sleep(every)
