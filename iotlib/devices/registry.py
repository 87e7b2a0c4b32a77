"""The device identity registry: which of the fleet's devices may send, with which token, since when.

A SQLite file under the stack's state folder (``<state>/devices/registry.sqlite``), keyed by the
fleet registry's device ids. Each device is in one of three states:

- ``provisioned`` — it holds a publisher token (:mod:`iotlib.devices.tokens`) and may send;
- ``disabled`` — refused for now (maintenance, a suspicion); :meth:`DeviceRegistry.enable` undoes it;
- ``revoked`` — compromised: refused, and reinstated only once every token ever issued to it has
  expired, because Event Hubs cannot tell an old token of a publisher from a new one.

Every change rewrites the revoked-publisher list beside the file
(:mod:`iotlib.devices.revocations`), which a running emulator re-reads before its next decision:
revoking a device cuts it off at its next send, and the rest of the fleet never notices.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from iotlib.connections import Settings, home
from iotlib.devices.revocations import FILE_NAME, write_list
from iotlib.devices.tokens import DeviceCredentials, PublisherPolicy
from iotlib.durations import Duration, to_timedelta
from iotlib.errors import ConfigurationError

STATES = ("provisioned", "disabled", "revoked")
DEFAULT_EXPIRY = "24h"
REGISTRY_FILE = "registry.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id      TEXT PRIMARY KEY,
    state          TEXT NOT NULL CHECK (state IN ('provisioned', 'disabled', 'revoked')),
    eventhub       TEXT NOT NULL,
    audience       TEXT NOT NULL,
    token          TEXT NOT NULL,
    expires        TEXT NOT NULL,  -- the current token's expiry
    latest_expiry  TEXT NOT NULL,  -- the latest expiry of any token ever issued to the device
    provisioned_at TEXT NOT NULL,
    changed_at     TEXT NOT NULL,
    reason         TEXT
);
CREATE TABLE IF NOT EXISTS history (
    at        TEXT NOT NULL,
    device_id TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT
);
"""

LIST_SCHEMA: dict[str, Any] = {
    "device_id": pl.String,
    "state": pl.String,
    "eventhub": pl.String,
    "expires": pl.Datetime("us", "UTC"),
    "provisioned_at": pl.Datetime("us", "UTC"),
    "changed_at": pl.Datetime("us", "UTC"),
    "reason": pl.String,
}


@dataclass(frozen=True)
class DeviceState:
    """One device's row: its state, its token's expiry, when it last changed and why."""

    device_id: str
    state: str
    eventhub_name: str
    expires: datetime
    latest_expiry: datetime
    changed_at: datetime
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "state": self.state,
            "eventhub": self.eventhub_name,
            "expires": self.expires.isoformat(),
            "changed_at": self.changed_at.isoformat(),
            "reason": self.reason,
        }


def _fleet_ids(fleet: pl.DataFrame | Iterable[str] | None) -> frozenset[str]:
    if fleet is None:
        from iotlib.fleet import scenario

        fleet = scenario.default_registry()
    if isinstance(fleet, pl.DataFrame):
        if "device_id" not in fleet.columns:
            raise ConfigurationError("fleet must be a registry frame with a device_id column, or device ids")
        return frozenset(fleet["device_id"].cast(pl.String).to_list())
    return frozenset(str(d) for d in fleet)


class DeviceRegistry:
    """The device identity registry (see the module docstring). ``with DeviceRegistry() as reg: ...``

    ``path``: the SQLite file (default ``<state folder>/devices/registry.sqlite``, the stack's);
    ``fleet``: the devices that exist (a registry frame or ids; default the Fabrikam fleet);
    ``policy``: what signs tokens (default :meth:`PublisherPolicy.from_settings`); ``clock``:
    seconds since the epoch (tokens' expiry; tests move it instead of waiting).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        fleet: pl.DataFrame | Iterable[str] | None = None,
        policy: PublisherPolicy | None = None,
        settings: Settings | None = None,
        eventhub_name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path) if path is not None else home() / "devices" / REGISTRY_FILE
        self.revocation_file = self.path.parent / FILE_NAME
        self.policy = policy or PublisherPolicy.from_settings(settings, eventhub_name=eventhub_name)
        self.clock = clock
        self._fleet_source = fleet
        self._fleet: frozenset[str] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        if not self.revocation_file.exists():
            self._publish()

    def __enter__(self) -> DeviceRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"DeviceRegistry({str(self.path)!r}, eventhub={self.policy.eventhub_name!r})"

    # --- what callers do ----------------------------------------------------------------

    def provision(self, device_id: str, *, expiry: Duration = DEFAULT_EXPIRY) -> DeviceCredentials:
        """The device's credentials: its current token while that is valid, else a new one for ``expiry``.

        Idempotent: provisioning a provisioned device returns the same token. A disabled or
        revoked device is refused (enable it first).
        """
        row = self._row(self._known(device_id))
        if row is not None:
            self._require(row, "provisioned", "provision")
            if _time(row["expires"]) > self._now() and row["eventhub"] == self.policy.eventhub_name:
                return self._credentials(row)
        return self._issue(device_id, expiry, "provision" if row is None else "reprovision")

    def renew(self, device_id: str, *, expiry: Duration = DEFAULT_EXPIRY) -> DeviceCredentials:
        """A new token for a provisioned device (the old one stays valid until it expires)."""
        row = self._row(self._known(device_id))
        if row is None:
            raise ConfigurationError(f"device {device_id!r} is not provisioned: provision it first")
        self._require(row, "provisioned", "renew the token of")
        return self._issue(device_id, expiry, "renew")

    def credentials(self, device_id: str) -> DeviceCredentials:
        """The device's current token (whatever its state: the emulator decides what it is worth)."""
        row = self._row(self._known(device_id))
        if row is None:
            raise ConfigurationError(f"device {device_id!r} is not provisioned: provision it first")
        return self._credentials(row)

    def revoke(self, device_id: str, *, reason: str | None = None) -> DeviceState:
        """Cut the device off: its tokens are refused from its next send on."""
        return self._change(device_id, "revoked", reason, allowed=("provisioned", "disabled", "revoked"))

    def disable(self, device_id: str, *, reason: str | None = None) -> DeviceState:
        """Refuse the device for now; :meth:`enable` undoes it."""
        return self._change(device_id, "disabled", reason, allowed=("provisioned", "disabled"))

    def enable(self, device_id: str) -> DeviceState:
        """Accept a disabled device again, or a revoked one once every token it ever had has expired."""
        row = self._row(self._known(device_id))
        if row is not None and row["state"] == "revoked":
            last = _time(row["latest_expiry"])
            if last > self._now():
                raise ConfigurationError(
                    f"device {device_id!r} was revoked ({row['reason'] or 'no reason given'}); a token issued "
                    f"to it is valid until {last.isoformat()}, and Event Hubs cannot tell that token from a new "
                    "one, so enabling it now would let a stolen token send again. Enable it after that time"
                )
        return self._change(device_id, "provisioned", None, allowed=("provisioned", "disabled", "revoked"))

    def get(self, device_id: str) -> DeviceState:
        row = self._row(self._known(device_id))
        if row is None:
            raise ConfigurationError(f"device {device_id!r} is not provisioned")
        return _state(row)

    def list(self, *, state: str | None = None) -> pl.DataFrame:
        """The registered devices (no tokens), ``state`` only if given."""
        if state is not None and state not in STATES:
            raise ConfigurationError(f"state {state!r} is not one of {', '.join(STATES)}")
        query = "SELECT device_id, state, eventhub, expires, provisioned_at, changed_at, reason FROM devices"
        rows = self._db.execute(query + (" WHERE state = ?" if state else "") + " ORDER BY device_id",
                                (state,) if state else ()).fetchall()  # fmt: skip
        typed = [(d, s, h, _time(e), _time(p), _time(c), r) for d, s, h, e, p, c, r in rows]
        return pl.DataFrame(typed, schema=LIST_SCHEMA, orient="row")

    def history(self) -> pl.DataFrame:
        """Every action, oldest first."""
        rows = self._db.execute("SELECT at, device_id, action, detail FROM history ORDER BY rowid").fetchall()
        return pl.DataFrame(
            [(_time(a), d, act, det) for a, d, act, det in rows],
            schema={"at": pl.Datetime("us", "UTC"), "device_id": pl.String, "action": pl.String, "detail": pl.String},
            orient="row",
        )

    # --- inside ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _known(self, device_id: str) -> str:
        if not isinstance(device_id, str) or not device_id.strip():
            raise ConfigurationError(f"a device id is the fleet registry's device_id text, not {device_id!r}")
        if self._fleet is None:
            self._fleet = _fleet_ids(self._fleet_source)
        if device_id not in self._fleet:
            raise ConfigurationError(
                f"unknown device {device_id!r}: it is not in the fleet registry ({len(self._fleet):,} devices); "
                "device ids are the registry's device_id values"
            )
        return device_id

    def _row(self, device_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return row

    def _require(self, row: sqlite3.Row, state: str, action: str) -> None:
        if row["state"] != state:
            hint = "enable it first" if row["state"] == "disabled" else "a revoked device is enabled only later"
            raise ConfigurationError(f"cannot {action} device {row['device_id']!r}: it is {row['state']} ({hint})")

    def _credentials(self, row: sqlite3.Row) -> DeviceCredentials:
        return DeviceCredentials(
            row["device_id"],
            row["token"],
            row["audience"],
            _time(row["expires"]),
            row["eventhub"],
            self.policy.endpoint,
            self.policy.is_local,
        )

    def _issue(self, device_id: str, expiry: Duration, action: str) -> DeviceCredentials:
        lifetime = to_timedelta(expiry, name="expiry", allow_zero=False)
        if lifetime < timedelta(seconds=1):
            raise ConfigurationError(
                f"expiry={expiry!r} is shorter than a second: a token's expiry is in whole seconds"
            )
        now = self._now()
        creds = self.policy.issue(device_id, now + lifetime)
        stamp, until = now.isoformat(), creds.expires.isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                """INSERT INTO devices (device_id, state, eventhub, audience, token, expires, latest_expiry,
                                        provisioned_at, changed_at, reason)
                   VALUES (?, 'provisioned', ?, ?, ?, ?, ?, ?, ?, NULL)
                   ON CONFLICT (device_id) DO UPDATE SET
                       eventhub = excluded.eventhub, audience = excluded.audience, token = excluded.token,
                       expires = excluded.expires, changed_at = excluded.changed_at,
                       latest_expiry = max(devices.latest_expiry, excluded.latest_expiry)""",
                (device_id, creds.eventhub_name, creds.audience, creds.token, until, until, stamp, stamp),
            )
            self._db.execute(
                "INSERT INTO history VALUES (?, ?, ?, ?)", (stamp, device_id, action, f"token until {until}")
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return creds

    def _change(self, device_id: str, state: str, reason: str | None, *, allowed: tuple[str, ...]) -> DeviceState:
        row = self._row(self._known(device_id))
        if row is None:
            raise ConfigurationError(f"device {device_id!r} is not provisioned: provision it first")
        if row["state"] not in allowed:
            raise ConfigurationError(f"device {device_id!r} is {row['state']}; it cannot become {state} from there")
        if row["state"] != state:
            stamp = self._now().isoformat()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE devices SET state = ?, changed_at = ?, reason = ? WHERE device_id = ?",
                    (state, stamp, reason, device_id),
                )
                self._db.execute("INSERT INTO history VALUES (?, ?, ?, ?)", (stamp, device_id, state, reason))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._publish()
        return self.get(device_id)

    def _publish(self) -> None:
        """Rewrite the revoked-publisher list from the table (the emulator picks it up at once)."""
        rows = self._db.execute(
            "SELECT device_id, state, changed_at FROM devices WHERE state IN ('disabled', 'revoked')"
        ).fetchall()
        write_list(self.revocation_file, {d: (s, _time(c)) for d, s, c in rows})


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _state(row: sqlite3.Row) -> DeviceState:
    return DeviceState(
        row["device_id"],
        row["state"],
        row["eventhub"],
        _time(row["expires"]),
        _time(row["latest_expiry"]),
        _time(row["changed_at"]),
        row["reason"],
    )
