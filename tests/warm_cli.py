"""Helpers for tests that run ``iotlib process`` in subprocesses: the command line, a live stretch, and
the store read from outside (as another process would). Starting and waiting on them: ``children``."""

from __future__ import annotations

import sqlite3
import sys
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
