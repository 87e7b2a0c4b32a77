"""What one run of the journey holds: its size, its results step by step, and the lines it printed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Demo:
    """One run of the journey. ``results`` fills step by step (each step reads the earlier ones'),
    ``lines`` is everything printed, ``figures`` the PNGs saved under ``out``."""

    devices: int
    minutes: int
    seed: int = 0
    #: How much faster than real time the readings are sent (live, paced by their send times).
    speed: float = 20.0
    #: Where the figures go (``out/`` of the current folder for ``make demo``).
    out: Path = Path("out")
    #: Names this run's own containers and warm store, so reruns never mix.
    tag: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    results: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)

    def say(self, step: str, text: str) -> None:
        """Print one line of the run, tagged with its step, and keep it."""
        for i, part in enumerate(text.splitlines() or [""]):
            line = f"[{step}] {part}" if i == 0 else f"{' ' * (len(step) + 3)}{part}"
            self.lines.append(line)
            print(line, flush=True)

    @property
    def capture_container(self) -> str:
        return f"demo-{self.tag}-capture"

    @property
    def checkpoint_containers(self) -> dict[str, str]:
        """Each consumer group the journey runs, and the container of its checkpoints."""
        return {"capture": f"demo-{self.tag}-checkpoints", "warm": f"demo-{self.tag}-warm"}
