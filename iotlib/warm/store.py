"""The warm store: SQLite (standard library) with the original job's semantics, and the stream's state.

One file, by default ``warm.sqlite`` under the data folder
(:func:`iotlib.connections.home`, i.e. ``.iotlib/``). Tables:

- ``building_temperature(building_id PRIMARY KEY, last_observed_time, avg_temperature, …)`` — the
  original's SQL table: one row per building, **upserted newer-wins**: a window's row replaces the
  building's only if its ``last_observed_time`` is newer, so an older observation never overwrites a
  newer one and applying the same windows twice changes nothing;
- ``window_history`` — every window the job emitted (``closed_at`` is the arrival time at which it
  closed; null for windows emitted by a final flush);
- ``late_events``, ``adjusted_events``, ``dropped_events``, ``duplicate_events``, ``unmatched_events``,
  ``invalid_events`` — the side outputs of :mod:`iotlib.processing`, with their reasons;
- ``dead_letters`` — events that did not decode, with the reason and the raw body;
- ``alerts`` — rows of :mod:`iotlib.warm.alerts` (``sent_at`` once delivered to an alert hub);
- ``watermarks`` — every evaluation of the fleet watermark (the heartbeats among them let a batch
  run reproduce the stream exactly);
- ``progress`` — per partition, the last event whose effects are stored here;
- ``state`` — the window engine's snapshot and the job's settings; ``commits`` — one row per commit.

Everything one step of the stream produced goes in **one transaction** (:meth:`WarmStore.commit`)
with the engine snapshot and the progress that goes with it; the processor checkpoints the hub only
after that. A crash therefore loses nothing and doubles nothing: the restarted job restores the
snapshot and replays from ``progress``.

Times are stored as fixed-width ISO 8601 text in UTC (``2025-01-06T12:00:05.000000Z``), which sorts
as it reads; the query methods return polars frames with proper datetimes. Other tools can read the
file at the same time (WAL mode); only one processor may write it (a lock file says who).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

from iotlib.connections import home
from iotlib.errors import ConfigurationError, ProcessingError

UTC_US = pl.Datetime("us", "UTC")
DEFAULT_NAME = "warm.sqlite"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
_KINDS: dict[str, tuple[str, pl.DataType]] = {
    "text": ("TEXT", pl.String()),
    "int": ("INTEGER", pl.Int64()),
    "building": ("INTEGER", pl.Int32()),
    "real": ("REAL", pl.Float64()),
    "time": ("TEXT", UTC_US),
    "blob": ("BLOB", pl.Binary()),
}


@dataclass(frozen=True)
class Table:
    """A table's columns (name, kind) and the rest of its definition."""

    name: str
    columns: tuple[tuple[str, str], ...]
    extra: str = ""

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def ddl(self) -> str:
        cols = ", ".join(f'"{c}" {_KINDS[k][0]}' for c, k in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}{', ' + self.extra if self.extra else ''})"

    def schema(self) -> dict[str, pl.DataType]:
        return {c: _KINDS[k][1] for c, k in self.columns}


_EVENT = (
    ("partition_id", "text"), ("sequence_number", "int"), ("enqueued_time", "time"), ("device_id", "text"),
    ("building_id", "building"), ("room", "text"), ("time_observed", "time"), ("temperature", "real"),
    ("reason", "text"),
)  # fmt: skip
TABLES = {
    t.name: t
    for t in [
        Table(
            "building_temperature",
            (
                ("building_id", "building"),
                ("last_observed_time", "time"),
                ("avg_temperature", "real"),
                ("window_start", "time"),
                ("window_end", "time"),
                ("events", "int"),
                ("updated_at", "time"),
            ),
            "PRIMARY KEY (building_id)",
        ),  # fmt: skip
        Table(
            "window_history",
            (
                ("building_id", "building"),
                ("window_start", "time"),
                ("window_end", "time"),
                ("avg_temperature", "real"),
                ("last_observed_time", "time"),
                ("events", "int"),
                ("closed_at", "time"),
            ),
            "PRIMARY KEY (building_id, window_start, window_end)",
        ),  # fmt: skip
        Table("late_events", (*_EVENT, ("frontier", "time"))),
        Table("adjusted_events", (*_EVENT, ("adjusted_time", "time"))),
        Table("dropped_events", (*_EVENT, ("frontier", "time"))),
        Table("duplicate_events", _EVENT),
        Table("unmatched_events", _EVENT),
        Table("invalid_events", _EVENT),
        Table(
            "dead_letters",
            (
                ("partition_id", "text"),
                ("sequence_number", "int"),
                ("offset", "text"),
                ("enqueued_time", "time"),
                ("reason", "text"),
                ("body", "blob"),
            ),
        ),  # fmt: skip
        Table(
            "alerts",
            (
                ("alert_id", "int"),
                ("raised_at", "time"),
                ("rule", "text"),
                ("building_id", "building"),
                ("device_id", "text"),
                ("room", "text"),
                ("value", "real"),
                ("threshold", "real"),
                ("window_start", "time"),
                ("window_end", "time"),
                ("message", "text"),
                ("sent_at", "time"),
            ),
            "PRIMARY KEY (alert_id)",
        ),  # fmt: skip
        Table(
            "watermarks",
            (("tick_start", "time"), ("watermark", "time"), ("frontier", "time")),
            "PRIMARY KEY (tick_start)",
        ),  # fmt: skip
        Table(
            "progress",
            (
                ("partition_id", "text"),
                ("sequence_number", "int"),
                ("offset", "text"),
                ("enqueued_time", "time"),
                ("committed_at", "time"),
            ),
            "PRIMARY KEY (partition_id)",
        ),  # fmt: skip
        Table(
            "commits",
            (
                ("commit_id", "int"),
                ("committed_at", "time"),
                ("events", "int"),
                ("windows", "int"),
                ("late", "int"),
                ("dead_letters", "int"),
                ("alerts", "int"),
                ("snapshot_bytes", "int"),
                ("seconds", "real"),
            ),
            "PRIMARY KEY (commit_id)",
        ),  # fmt: skip
        Table("state", (("key", "text"), ("value", "blob")), "PRIMARY KEY (key)"),
    ]
}
#: Side outputs of the window job and the table each goes to.
SIDE_TABLES = {
    "late": "late_events",
    "adjusted": "adjusted_events",
    "dropped": "dropped_events",
    "duplicates": "duplicate_events",
    "unmatched": "unmatched_events",
    "invalid": "invalid_events",
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS window_history_end ON window_history (window_end)",
    "CREATE INDEX IF NOT EXISTS alerts_unsent ON alerts (sent_at) WHERE sent_at IS NULL",
)
_UPSERT = """
INSERT INTO building_temperature (building_id, last_observed_time, avg_temperature, window_start, window_end, events, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (building_id) DO UPDATE SET
    last_observed_time = excluded.last_observed_time, avg_temperature = excluded.avg_temperature,
    window_start = excluded.window_start, window_end = excluded.window_end,
    events = excluded.events, updated_at = excluded.updated_at
WHERE excluded.last_observed_time > building_temperature.last_observed_time
"""


@dataclass(frozen=True)
class Position:
    """Where a partition stands: the last event whose effects are stored (or the start, exclusive)."""

    sequence_number: int
    offset: str
    enqueued_time: datetime | None = None


@dataclass
class Commit:
    """Everything one step of the stream produced, stored in one transaction."""

    windows: pl.DataFrame
    side_outputs: dict[str, pl.DataFrame] = field(default_factory=dict)
    dead_letters: pl.DataFrame = field(default_factory=pl.DataFrame)
    alerts: pl.DataFrame = field(default_factory=pl.DataFrame)
    watermarks: pl.DataFrame = field(default_factory=pl.DataFrame)
    progress: dict[str, Position] = field(default_factory=dict)
    snapshot: bytes | None = None
    state: dict[str, bytes] = field(default_factory=dict)
    events: int = 0


@dataclass(frozen=True)
class BuildingTemperature:
    """A building's current temperature as the warm store knows it (the original's answer)."""

    building_id: int
    avg_temperature: float
    last_observed_time: datetime
    window_start: datetime | None
    window_end: datetime | None
    events: int | None
    updated_at: datetime | None

    def __str__(self) -> str:
        when = self.last_observed_time.strftime("%Y-%m-%d %H:%M:%S")
        return (f"building {self.building_id}: {self.avg_temperature:.2f} °C "
                f"(average of {self.events} readings, latest observed {when} UTC)")  # fmt: skip


def default_path() -> Path:
    """``warm.sqlite`` in the data folder (:func:`iotlib.connections.home`)."""
    return home() / DEFAULT_NAME


def _text_times(frame: pl.DataFrame, table: Table) -> pl.DataFrame:
    """The table's columns from ``frame`` (missing ones null), times as ISO text, ready for SQLite."""
    exprs = []
    for name, kind in table.columns:
        col = pl.col(name) if name in frame.columns else pl.lit(None)
        if kind == "time":
            col = col.cast(UTC_US).dt.strftime(_TIME_FORMAT) if name in frame.columns else pl.lit(None, dtype=pl.String)
        elif kind == "building":
            col = col.cast(pl.Int64)
        exprs.append(col.alias(name))
    return frame.select(exprs)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _utc_text(moment)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return _utc_text(datetime.now(UTC))


class WarmStore:
    """The warm store in one SQLite file. ``WarmStore()`` opens (creating) the default file.

    ``writer=True`` is for the processor: it takes the file's lock (one writer at a time)
    and commits stream steps. Readers use the query methods, which return polars frames.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, writer: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self._lock_file: IO[str] | None = None
        if writer:
            self._take_lock()
        self._mutex = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
            with self._db:
                self._db.execute("BEGIN")
                for table in TABLES.values():
                    self._db.execute(table.ddl())
                    self._check_columns(table)
                for index in _INDEXES:
                    self._db.execute(index)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise ProcessingError(f"cannot open the warm store {self.path}: {exc}") from exc
        except ConfigurationError:
            self._release_lock()
            raise

    def _check_columns(self, table: Table) -> None:
        """A store written by another iotlib version (other columns) is named, not half-used."""
        have = [row[1] for row in self._db.execute(f"PRAGMA table_info({table.name})")]
        want = [c for c, _ in table.columns]
        if have != want:
            raise ConfigurationError(
                f"the warm store {self.path} was written by another iotlib version (table {table.name} has "
                f"columns {have}, this version writes {want}); use a new warm store"
            )

    # -- lifecycle ---------------------------------------------------------------------

    def _take_lock(self) -> None:
        lock = open(f"{self.path}.lock", "a+")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            who = lock.read().strip() or "another process"
            lock.close()
            raise ProcessingError(
                f"the warm store {self.path} is being written by {who}; one processor per warm store"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()}")
        lock.flush()
        self._lock_file = lock

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        self._release_lock()

    def __enter__(self) -> WarmStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WarmStore({str(self.path)!r}{', writer=True' if self.writer else ''})"

    # -- writing -----------------------------------------------------------------------

    def commit(self, step: Commit, *, seconds: float | None = None) -> int:
        """Store one step in one transaction; returns the commit's id."""
        if not self.writer:
            raise ProcessingError("this WarmStore was opened for reading; open it with writer=True to commit")
        now = _now()
        late = sum(step.side_outputs.get(k, pl.DataFrame()).height for k in ("late", "adjusted", "dropped"))
        with self._mutex, self._db:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            windows = step.windows
            if windows.height:
                self._insert(TABLES["window_history"], windows)
                rows = _text_times(windows.sort("window_end"), TABLES["window_history"]).select(
                    "building_id",
                    "last_observed_time",
                    "avg_temperature",
                    "window_start",
                    "window_end",
                    "events",
                    pl.lit(now).alias("updated_at"),
                )
                db.executemany(_UPSERT, rows.iter_rows())
            for name, frame in step.side_outputs.items():
                if frame.height:
                    self._insert(TABLES[SIDE_TABLES[name]], frame)
            if step.dead_letters.height:
                self._insert(TABLES["dead_letters"], step.dead_letters)
            if step.alerts.height:
                self._insert(TABLES["alerts"], step.alerts)
            if step.watermarks.height:
                rows = _text_times(step.watermarks, TABLES["watermarks"])
                db.executemany("INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?)", rows.iter_rows())
            db.executemany(
                "INSERT OR REPLACE INTO progress VALUES (?, ?, ?, ?, ?)",
                [
                    (p, pos.sequence_number, pos.offset, _iso(pos.enqueued_time), now)
                    for p, pos in step.progress.items()
                ],
            )
            state = dict(step.state)
            if step.snapshot is not None:
                state["snapshot"] = step.snapshot
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", list(state.items()))
            cur = db.execute(
                "INSERT INTO commits (committed_at, events, windows, late, dead_letters, alerts, snapshot_bytes, seconds)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now, step.events, windows.height, late, step.dead_letters.height, step.alerts.height,
                 len(step.snapshot or b""), seconds),
            )  # fmt: skip
            return int(cur.lastrowid or 0)

    def _insert(self, table: Table, frame: pl.DataFrame) -> None:
        names = [n for n in table.names if n != "alert_id"]  # alert ids are the store's own
        rows = _text_times(frame, table).select(names)
        marks = ", ".join("?" * len(names))
        cols = ", ".join(f'"{n}"' for n in names)
        self._db.executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", rows.iter_rows())

    def set_state(self, values: Mapping[str, bytes]) -> None:
        """Store settings beside the snapshot (outside a stream step)."""
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", list(values.items()))

    def mark_sent(self, alert_ids: Sequence[int], *, at: datetime | None = None) -> None:
        """Alerts delivered to the alert hub."""
        stamp = _iso(at or datetime.now(UTC))
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE alerts SET sent_at = ? WHERE alert_id = ?", [(stamp, int(i)) for i in alert_ids]
            )

    # -- reading -----------------------------------------------------------------------

    def state(self, key: str) -> bytes | None:
        with self._mutex:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def positions(self) -> dict[str, Position]:
        """Per partition: the last event whose effects are stored."""
        frame = self.table("progress")
        return {
            r["partition_id"]: Position(r["sequence_number"], r["offset"], r["enqueued_time"])
            for r in frame.iter_rows(named=True)
        }

    def table(
        self, name: str, *, where: str = "", params: Sequence[Any] = (), order_by: str | None = None
    ) -> pl.DataFrame:
        """Rows of one table as a polars frame with typed columns (``where``: an SQL condition)."""
        table = TABLES.get(name)
        if table is None:
            raise ConfigurationError(f"no table {name!r} in the warm store; tables: {', '.join(TABLES)}")
        cols = ", ".join(f'"{c}"' for c in table.names)
        sql = f"SELECT {cols} FROM {name}" + (f" WHERE {where}" if where else "")
        sql += f" ORDER BY {order_by or _ORDER.get(name, 'rowid')}"
        with self._mutex:
            rows = self._db.execute(sql, tuple(params)).fetchall()
        return self._typed(table, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """Any SQL; columns come back as SQLite gives them (times as ISO text)."""
        with self._mutex:
            cur = self._db.execute(sql, tuple(params))
            names = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    @staticmethod
    def _typed(table: Table, rows: list[tuple]) -> pl.DataFrame:
        raw = {c: (pl.String() if k == "time" else _KINDS[k][1]) for c, k in table.columns}
        frame = pl.DataFrame(rows, schema=raw, orient="row")
        times = [c for c, k in table.columns if k == "time"]
        return frame.with_columns(
            pl.col(c).str.to_datetime(_TIME_FORMAT, time_unit="us", time_zone="UTC") for c in times
        )

    def building_temperature(self) -> pl.DataFrame:
        """The original's table: the latest row per building."""
        return self.table("building_temperature")

    def current_temperature(self, building_id: int) -> BuildingTemperature | None:
        """ "What is the average temperature in building ``building_id`` now?" (``None`` if never seen)."""
        row = self.table("building_temperature", where="building_id = ?", params=(int(building_id),))
        if row.height == 0:
            return None
        return BuildingTemperature(**row.row(0, named=True))

    def history(self, building_id: int | None = None) -> pl.DataFrame:
        """Every window emitted (optionally one building's), in window-end order."""
        if building_id is None:
            return self.table("window_history")
        return self.table("window_history", where="building_id = ?", params=(int(building_id),))

    def alerts(self, rule: str | None = None) -> pl.DataFrame:
        if rule is None:
            return self.table("alerts")
        return self.table("alerts", where="rule = ?", params=(rule,))

    def dead_letters(self) -> pl.DataFrame:
        return self.table("dead_letters")

    def late_events(self) -> pl.DataFrame:
        return self.table("late_events")

    def watermarks(self) -> pl.DataFrame:
        return self.table("watermarks")

    def commits(self) -> pl.DataFrame:
        return self.table("commits")

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self._mutex:
            return {name: int(self._db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]) for name in TABLES}


_ORDER = {
    "building_temperature": "building_id",
    "window_history": "window_end, building_id, window_start",
    "alerts": "alert_id",
    "watermarks": "tick_start",
    "progress": "CAST(partition_id AS INTEGER), partition_id",
    "commits": "commit_id",
}
