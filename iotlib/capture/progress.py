"""Progress of a running capture: a tqdm bar of events with a compact per-partition line.

``events 12,345 [00:10, 1,234 events/s] files 16 | 0:1,5k 1:1,6k 2:1,4k … ckpt ok``; a tripped
breaker shows as ``3:STALLED``.
"""

from __future__ import annotations

from typing import Any

from iotlib.capture.report import CaptureReport, _pid_key


def partition_line(report: CaptureReport) -> str:
    """``0:1.5k 1:1.6k …`` — events per partition, ``!`` after one whose breaker is tripped."""
    tripped = set()
    for b in report.breaker:
        if b.state == "tripped":
            tripped.add(b.partition_id)
        elif b.state == "resumed":
            tripped.discard(b.partition_id)
    parts = []
    for p in sorted(report.partitions.values(), key=lambda p: _pid_key(p.partition_id)):
        parts.append(f"{p.partition_id}:{_short(p.events)}{'!' if p.partition_id in tripped else ''}")
    return " ".join(parts)


def _short(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1e6:.1f}M"


class Progress:
    """A callable for :meth:`CaptureWriter.run(progress=...)`: updates a tqdm bar from the report."""

    def __init__(self, *, targets: int | None = None) -> None:
        self.targets = targets
        self._bar: Any = None
        self._shown = 0

    def __call__(self, report: CaptureReport, *, final: bool = False) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.targets, desc="captured", unit=" events", unit_scale=True, leave=True)
        events = report.events
        self._bar.update(events - self._shown)
        self._shown = events
        self._bar.set_postfix_str(f"files {len(report.files)} | {partition_line(report)}", refresh=False)
        self._bar.refresh()
        if final:
            self._bar.close()
