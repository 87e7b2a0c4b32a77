"""What a load did: :class:`LoadReport` (listing, pruning, blobs read and skipped, rows removed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class SkippedBlob:
    name: str
    reason: str


@dataclass
class LoadReport:
    """What a load did: what the listing saw and pruned, what was read, skipped, removed."""

    source: str
    start: datetime | None
    end: datetime | None
    prefixes_walked: list[str] = field(default_factory=list)
    prefixes_listed: list[str] = field(default_factory=list)
    blobs_listed: int = 0
    blobs_pruned: list[str] = field(default_factory=list)
    blobs_read: list[str] = field(default_factory=list)
    bytes_read: int = 0
    empty_blobs: list[str] = field(default_factory=list)
    generic_blobs: list[str] = field(default_factory=list)
    skipped: list[SkippedBlob] = field(default_factory=list)
    events_decoded: int = 0
    events_outside_range: int = 0
    duplicates_removed: int = 0
    decode_errors: int = 0
    events: int = 0
    cache: str = "not used"
    seconds: dict[str, float] = field(default_factory=dict)
    #: Why the load found nothing, or what it passed over (names that do not fit the path format).
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.events:,} events from {len(self.blobs_read)} blobs "
            f"({self.bytes_read / 1e6:,.1f} MB; {len(self.empty_blobs)} header-only)",
            f"listing: {len(self.prefixes_walked)} folder walks + {len(self.prefixes_listed)} prefix listings, "
            f"{self.blobs_listed} blobs listed, {len(self.blobs_pruned)} pruned by name",
            f"decoded {self.events_decoded:,}; outside range {self.events_outside_range:,}; "
            f"duplicates removed {self.duplicates_removed:,}; bodies not decoded {self.decode_errors:,}",
        ]
        if self.skipped:
            lines.append(
                f"skipped {len(self.skipped)} blobs: " + "; ".join(f"{s.name}: {s.reason}" for s in self.skipped)
            )
        if self.cache != "not used":
            lines.append(f"cache: {self.cache}")
        return "\n".join(lines)
