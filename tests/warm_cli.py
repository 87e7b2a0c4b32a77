"""Helpers for tests that run ``iotlib process`` in subprocesses: the command line, the store read
from outside (as another process would), and waiting on a condition rather than on the clock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from iotlib.fleet import simulate


def process_cli(eventhub_name: str, store: Path, container: str, registry: Path, *extra: str) -> list[str]:
    """``iotlib process`` on ``eventhub_name`` into ``store``, with a backfill-friendly idle timeout."""
    return [sys.executable, "-m", "iotlib", "process", "--eventhub", eventhub_name, "--warm-store", str(store),
            "--checkpoint-container", container, "--registry", str(registry), "--idle-timeout", "10m",
            "--commit-interval", "0.3", "--max-batch-size", "50", "--no-progress", *extra]  # fmt: skip


def live_stretch(registry: pl.DataFrame, *, seed: int, speed: float, faults: list[str],
                 duration: timedelta = timedelta(minutes=3)) -> pl.DataFrame:  # fmt: skip
    """A simulated stretch that ends about now once sent live at ``speed``: event times trail arrival."""
    start = datetime.now(UTC).replace(microsecond=0) - duration + duration / speed
    return simulate.generate(registry, start=start, duration=duration, seed=seed, faults=faults)


def rows(path: Path, sql: str) -> list[tuple]:
    """Rows of a query on the warm store, read-only (nothing if it does not exist yet)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def spawn(cli: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``cli`` in a subprocess whose output goes to ``log``: a pipe nobody reads while the test waits
    would fill and block the process's logging, and a file can be shown when a wait fails."""
    with log.open("wb") as out:
        return subprocess.Popen(cli, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


def tail(log: Path, chars: int = 4000) -> str:
    """The end of a process's output (see :func:`spawn`)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"--- {log.name} ({len(text):,} chars) ---\n" + text[-chars:]


def wait(predicate: Callable[[], object], timeout: float, what: str, *,
         alive: Sequence[subprocess.Popen[bytes]] = (), explain: Callable[[], str] | None = None) -> None:  # fmt: skip
    """Wait until ``predicate()`` holds (polling), failing after ``timeout`` seconds, or at once when
    a process of ``alive`` exits; ``explain()`` adds what the failure message should show."""
    deadline = time.monotonic() + timeout
    while not predicate():
        gone = [p for p in alive if p.poll() is not None]
        if gone or time.monotonic() >= deadline:
            why = (f"process {gone[0].pid} exited with {gone[0].returncode} while waiting for {what}" if gone
                   else f"timed out waiting for {what} ({timeout:g} s)")  # fmt: skip
            raise AssertionError(why + (f"\n{explain()}" if explain is not None else ""))
        time.sleep(0.05)
