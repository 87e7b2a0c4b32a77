"""The revoked-publisher list: which devices a hub must refuse, written by the registry, read by the emulator.

The device registry writes it beside its SQLite file whenever a device is revoked, disabled or
enabled (``<state folder>/devices/revoked-publishers.json``); a running emulator re-reads it
whenever it changes, checking its identity (inode, size, modification time: one ``stat``) before
each decision about a publisher token. The registry stays the one source of truth: a revocation
takes effect at the next send, holds across emulator restarts, and needs no connection or
credentials between the two. Azure keeps the same list inside the service, per hub (the legacy
``revokedpublishers`` REST API); here it is one list for every hub of the namespace.

The file is replaced atomically (written beside, then renamed), so a reader never sees half of it::

    {"format": "iotlib.revoked-publishers/1",
     "publishers": {"<device id>": {"state": "revoked", "since": "2024-05-01T12:00:00+00:00"}}}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from iotlib.errors import ValidationError

FORMAT = "iotlib.revoked-publishers/1"
FILE_NAME = "revoked-publishers.json"
STATES = ("revoked", "disabled")

_LOG = logging.getLogger("iotlib.devices.revocations")


@dataclass(frozen=True)
class Refused:
    """Why a publisher is refused: its ``state`` (revoked or disabled) and since when."""

    state: str
    since: str

    def describe(self, publisher: str) -> str:
        return f"publisher '{publisher}' is {self.state} (since {self.since})"


def write_list(path: Path, refused: Mapping[str, tuple[str, datetime]]) -> None:
    """Replace the list at ``path`` with ``refused`` (device id -> (state, since)), atomically."""
    for device, (state, _) in refused.items():
        if state not in STATES:
            raise ValidationError(f"device {device!r}: state {state!r} is not one of {', '.join(STATES)}")
    payload = {
        "format": FORMAT,
        "publishers": {d: {"state": s, "since": t.isoformat()} for d, (s, t) in sorted(refused.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(payload, indent=1))
    os.replace(scratch, path)


def read_list(path: Path) -> dict[str, Refused]:
    """The list at ``path`` (empty when there is no file)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValidationError(f"{path} is not a revoked-publisher list: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("publishers"), dict):
        raise ValidationError(f"{path} is not a revoked-publisher list (format {FORMAT})")
    return {str(d): Refused(str(v.get("state")), str(v.get("since"))) for d, v in raw["publishers"].items()}


class RevokedPublishers:
    """The list as a running emulator sees it: re-read whenever the file changes (``path=None``: empty)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._identity: tuple[int, int, int] | None = None
        self._refused: dict[str, Refused] = {}

    def refused(self, publisher: str) -> Refused | None:
        """Why ``publisher`` is refused now, or None when it may send."""
        self._refresh()
        return self._refused.get(publisher)

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._identity, self._refused = None, {}
            return
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        if identity == self._identity:
            return
        try:
            self._refused = read_list(self.path)
        except (OSError, ValidationError) as exc:  # keep what was known: refusing nobody would be worse
            _LOG.warning("cannot read the revoked-publisher list: %s", exc)
            return
        self._identity = identity
        _LOG.info("revoked-publisher list: %d publisher(s) refused", len(self._refused))
