"""A tqdm progress bar for a processor run: events received, events/s, windows, late, dead letters, alerts."""

from __future__ import annotations

from typing import Any

from iotlib.warm.report import ProcessReport


class Progress:
    """Call with ``(report, final)``; shows a bar that counts received events."""

    def __init__(self, *, desc: str = "processing") -> None:
        from tqdm.auto import tqdm

        self._bar: Any = tqdm(total=None, unit="ev", desc=desc, smoothing=0.1)
        self._shown = 0

    def __call__(self, report: ProcessReport, final: bool = False) -> None:
        self._bar.update(report.received - self._shown)
        self._shown = report.received
        self._bar.set_postfix(
            {
                "windows": f"{report.windows:,}",
                "late": f"{report.late:,}",
                "dead": f"{report.dead_letters:,}",
                "alerts": f"{report.alerts:,}",
                "partitions": len(report.partitions),
            },
            refresh=False,
        )
        if final:
            self._bar.close()
