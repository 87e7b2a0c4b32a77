"""The warm store: SQLite (standard library) with the original job's semantics, and the stream's state.

One file, by default ``warm.sqlite`` under the data folder (:func:`iotlib.connections.home`, i.e.
``.iotlib/``), shared by every processor of the warm job on this machine. What a user reads:

- ``building_temperature(building_id PRIMARY KEY, last_observed_time, avg_temperature, …)`` — the
  original's SQL table: one row per building, the latest **complete** window, **upserted newer-wins**
  (a window's row replaces the building's only if its ``last_observed_time`` is newer, so an older
  observation never overwrites a newer one and applying the same windows twice changes nothing);
- ``window_history`` — every building window, once final (``closed_at``: the arrival time at which
  every partition's watermark had passed it, null for windows emitted by a final flush;
  ``stored_at``: when its row landed here);
- ``late_events``, ``adjusted_events``, ``dropped_events``, ``duplicate_events``, ``unmatched_events``,
  ``invalid_events`` — the side outputs of :mod:`iotlib.processing`, with their reasons;
- ``dead_letters`` — events that did not decode, with the reason and the raw body;
- ``alerts`` — rows of :mod:`iotlib.warm.alerts` (``sent_at`` once delivered to an alert hub).

What the processors share (:mod:`iotlib.warm.job`): each partition of the hub is windowed on its own,
so several processes can share the partitions of consumer group ``warm``.

- ``partials`` — each partition's partial windows (sum, count, latest observation per building and
  window), kept until the building window is final, then merged into it (:mod:`iotlib.warm.merge`);
- ``partitions`` — per partition: the run that holds it, its watermark and frontier (what every
  process reads to know which windows are final), its totals and its engine's core state;
- ``watermarks`` — every evaluation of each partition's watermark (the heartbeats among them let a
  batch run reproduce the stream exactly);
- ``progress`` — per partition, the last event whose effects are stored here;
- ``state_chunks`` — the partitions' state as a changelog (:mod:`iotlib.processing.changelog`): the
  device records touched in each commit (a full dump now and then replaces the older ones), the
  open-window rows and duplicate sightings added (dropped once obsolete);
- ``building_streaks`` (the too-hot rule's state), ``processes`` (who runs), ``commits`` (one row
  per commit), ``state`` (settings).

Everything one commit of a process produced goes in **one transaction** (:meth:`WarmStore.commit`) with
the state changes and the progress that go with it; the processor checkpoints the hub only after that.
A partition's steps are refused if another run has claimed the partition since (a fencing token:
``partitions.owner_id``), so a process that lost a partition never writes over its new holder; a run
refused a partition its client still holds gives it back to the load balancer (the claim that beat it
may be a late one of the run that lost it), so that it is claimed again in both. A crash loses
nothing and doubles nothing: whoever claims the partition next restores its state
(:meth:`WarmStore.claim`) and reads again from ``progress``.

Several processes may write the file at once (SQLite serialises their transactions; WAL mode lets
readers read meanwhile). The file must be on a local disk of one machine: for processors on several
machines the same tables would live in a shared database (Azure SQL, PostgreSQL) — see the README.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from iotlib.connections import home
from iotlib.errors import ConfigurationError, ProcessingError
from iotlib.processing.windows import END
from iotlib.warm.alerts import BuildingTooHot, no_alerts, too_hot
from iotlib.warm.commit import (
    END_OF_STREAM,
    Commit,
    CommitResult,
    PartitionStep,
    PartitionTotals,
    Position,
    StoredPartition,
)
from iotlib.warm.merge import final_windows
from iotlib.warm.tables import (
    INDEXES,
    ORDER,
    SIDE_TABLES,
    TABLES,
    UTC_US,
    Table,
    iso,
    iso_us,
    now_text,
    text_times,
    typed,
)

DEFAULT_NAME = "warm.sqlite"
_UPSERT = """
INSERT INTO building_temperature (building_id, last_observed_time, avg_temperature, window_start, window_end, events, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (building_id) DO UPDATE SET
    last_observed_time = excluded.last_observed_time, avg_temperature = excluded.avg_temperature,
    window_start = excluded.window_start, window_end = excluded.window_end,
    events = excluded.events, updated_at = excluded.updated_at
WHERE excluded.last_observed_time > building_temperature.last_observed_time
"""
#: Tables whose rows a commit replaces (a partition writes its partial window or watermark again).
_REPLACED = frozenset({"partials", "watermarks"})
_PARTITION_UPSERT = """
INSERT INTO partitions (partition_id, owner_id, watermark_us, frontier_us, flushed, totals, core, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (partition_id) DO UPDATE SET
    watermark_us = excluded.watermark_us, frontier_us = excluded.frontier_us, flushed = excluded.flushed,
    totals = excluded.totals, core = excluded.core, updated_at = excluded.updated_at
"""

__all__ = ["SIDE_TABLES", "TABLES", "BuildingTemperature", "Commit", "Position", "WarmStore", "default_path"]


@dataclass(frozen=True)
class BuildingTemperature:
    """A building's current temperature as the warm store knows it (the original's answer).

    ``complete``: the window was closed by the watermarks (every reading that belongs in it was
    there); false for a window emitted by the end of the stream (``--flush``), which may hold only
    the first readings of its five seconds.
    """

    building_id: int
    avg_temperature: float
    last_observed_time: datetime
    window_start: datetime | None
    window_end: datetime | None
    events: int | None
    updated_at: datetime | None
    complete: bool = True

    def __str__(self) -> str:
        end = self.window_end.strftime("%Y-%m-%d %H:%M:%S") if self.window_end else "?"
        readings = f"{self.events} reading{'' if self.events == 1 else 's'}"
        kind = "window" if self.complete else "partial window (emitted at the end of the stream, not complete)"
        return f"building {self.building_id}: {self.avg_temperature:.2f} °C, the average of {readings} in the {kind} ending {end} UTC"


class _Checkpointer:
    """Copies a writer's WAL back into the database every few seconds, off the committing thread.

    SQLite does this inside a commit once the WAL passes 1,000 pages (a pause, with an fsync, in the
    middle of the stream); here the writer only appends, and this thread checkpoints passively
    (never blocking writers or readers), with the GIL released while SQLite works.
    """

    INTERVAL = 2.0

    def __init__(self, path: Path) -> None:
        self._stop = threading.Event()
        self._path = path
        self._thread = threading.Thread(target=self._run, name="iotlib-warm-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, timeout=60, isolation_level=None)
        try:
            while not self._stop.wait(self.INTERVAL):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # busy or gone: next time
                    pass
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def default_path() -> Path:
    """``warm.sqlite`` in the data folder (:func:`iotlib.connections.home`)."""
    return home() / DEFAULT_NAME


class WarmStore:
    """The warm store in one SQLite file. ``WarmStore()`` opens (creating) the default file.

    ``writer=True`` is for processors: they claim partitions and commit stream steps (several may
    write at once). Readers use the query methods, which return polars frames.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, writer: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self._mutex = threading.Lock()
        self._hub_partitions: list[str] | None = None
        self._building_rule: BuildingTooHot | None = None
        self._checkpointer: _Checkpointer | None = None
        try:
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
            if writer:  # commits only append to the WAL; a thread of its own copies it back (and syncs)
                self._db.execute("PRAGMA wal_autocheckpoint=0")
                self._checkpointer = _Checkpointer(self.path)
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for table in TABLES.values():
                    self._db.execute(table.ddl())
                    self._check_columns(table)
                for index in INDEXES:
                    self._db.execute(index)
        except sqlite3.DatabaseError as exc:
            raise ProcessingError(f"cannot open the warm store {self.path}: {exc}") from exc

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

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._mutex:
            self._db.close()

    def __enter__(self) -> WarmStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WarmStore({str(self.path)!r}{', writer=True' if self.writer else ''})"

    def _writing(self) -> None:
        if not self.writer:
            raise ProcessingError("this WarmStore was opened for reading; open it with writer=True to write")

    # -- setting up (processors) ---------------------------------------------------------

    def configure(
        self,
        settings: Mapping[str, object],
        *,
        partitions: Sequence[str],
        source: Mapping[str, str] | None = None,
        building_rule: BuildingTooHot | None = None,
    ) -> None:
        """Record what the store is built from (the job's settings, the hub's partitions, the hub and
        consumer group) or check that it matches what was recorded: every writer must agree."""
        self._writing()
        wanted = {
            "settings": dict(settings),
            "partitions": [str(p) for p in partitions],
            "source": dict(source or {}),
            "building_rule": None if building_rule is None else [building_rule.threshold, building_rule.windows],
        }
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for key, value in wanted.items():
                row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
                if row is None:
                    self._db.execute("INSERT INTO state VALUES (?, ?)", (key, json.dumps(value).encode()))
                    continue
                stored = json.loads(row[0])
                if stored != value:
                    what = {"settings": "job settings", "partitions": "partitions", "source": "hub and consumer group",
                            "building_rule": "too-hot rule"}[key]  # fmt: skip
                    raise ConfigurationError(
                        f"the warm store {self.path} was built with other {what}; use the same or a new warm store.\n"
                        f"  stored: {stored}\n  given:  {value}"
                    )
        self._hub_partitions = wanted["partitions"]  # type: ignore[assignment]
        self._building_rule = building_rule

    def hub_partitions(self) -> list[str]:
        """The hub's partitions, as the first processor recorded them (empty before)."""
        with self._mutex:
            return self._partitions()

    def _partitions(self) -> list[str]:
        if self._hub_partitions is None:
            raw = self._state("partitions")
            if raw is None:
                return []
            self._hub_partitions = [str(p) for p in json.loads(raw)]
        return list(self._hub_partitions)

    def _rule(self) -> BuildingTooHot | None:
        if self._building_rule is None:
            raw = self._state("building_rule")
            found = None if raw is None else json.loads(raw)
            if found:
                self._building_rule = BuildingTooHot(float(found[0]), int(found[1]))
        return self._building_rule

    # -- partitions changing hands ---------------------------------------------------------

    def claim(self, partition_id: str, owner: str) -> StoredPartition | None:
        """Take a partition for the run ``owner``; its stored state, or ``None`` if it has none yet.

        From now on commits of other runs for this partition are refused.
        """
        self._writing()
        pid = str(partition_id)
        with self._mutex, self._db:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT core, totals, flushed FROM partitions WHERE partition_id = ?", (pid,)).fetchone()
            if row is None:
                db.execute("INSERT INTO partitions (partition_id, owner_id, claimed_at) VALUES (?, ?, ?)",
                           (pid, owner, now_text()))  # fmt: skip
                return None
            db.execute(
                "UPDATE partitions SET owner_id = ?, claimed_at = ? WHERE partition_id = ?", (owner, now_text(), pid)
            )
            core, totals, flushed = row
            if core is None:
                return None
            progress = db.execute(
                "SELECT sequence_number, offset, enqueued_time FROM progress WHERE partition_id = ?", (pid,)
            ).fetchone()
            chunks = db.execute(
                "SELECT kind, data FROM state_chunks WHERE partition_id = ? ORDER BY chunk_id", (pid,)
            ).fetchall()
        position = None
        if progress is not None:
            when = None if progress[2] is None else datetime.fromisoformat(progress[2].replace("Z", "+00:00"))
            position = Position(int(progress[0]), str(progress[1]), when)
        logged: dict[str, dict[str, Any]] = {"devices": {}, "alert_devices": {}}
        count = 0
        for kind, data in chunks:
            if kind in logged:
                records = pickle.loads(data)
                logged[kind].update((r[0], r) for r in records)  # the latest record of each device wins
                count += len(records)
        return StoredPartition(
            partition_id=pid,
            position=position,
            core=bytes(core),
            devices=list(logged["devices"].values()),
            rows=[pl.read_ipc(io.BytesIO(data)) for kind, data in chunks if kind == "rows"],
            sightings=[s for kind, data in chunks if kind == "sightings" for s in pickle.loads(data)],
            alert_devices=list(logged["alert_devices"].values()),
            totals=PartitionTotals.of(json.loads(totals)),
            flushed=bool(flushed),
            logged=count,
        )

    def register(self, run_id: str) -> None:
        """A processor run starts on this store (this process, this host)."""
        self._writing()
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?, NULL)",
                             (run_id, os.getpid(), socket.gethostname(), now_text()))  # fmt: skip

    def set_hub_owner(self, run_id: str, hub_owner_id: str) -> None:
        """The owner id under which the run's client claims partitions on the hub (its checkpoint store)."""
        self._writing()
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE processes SET hub_owner_id = ? WHERE run_id = ?", (hub_owner_id, run_id))

    def unregister(self, run_id: str) -> None:
        """The run ended cleanly."""
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM processes WHERE run_id = ?", (run_id,))

    def processes(self) -> pl.DataFrame:
        """Processor runs that started on this store and did not end cleanly (yet)."""
        return self.table("processes", order_by="started_at")

    # -- writing -----------------------------------------------------------------------

    def commit(self, step: Commit) -> CommitResult:
        """Store one commit in one transaction; what became final, and the partitions refused."""
        self._writing()
        t0 = time.perf_counter()
        now = now_text()
        refused: list[str] = []
        state_bytes = late = dead = alerts = 0
        with self._mutex, self._db:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            owners = dict(db.execute("SELECT partition_id, owner_id FROM partitions").fetchall())
            rows: dict[str, list[pl.DataFrame]] = {}  # table → the partitions' rows, inserted once per table
            for part in step.steps:
                if owners.get(part.partition_id) != step.owner:
                    refused.append(part.partition_id)
                    continue
                state_bytes += self._write_partition(part, step.owner, now, rows)
                late += sum(
                    part.side_outputs[k].height for k in ("late", "adjusted", "dropped") if k in part.side_outputs
                )
                dead += part.dead_letters.height
                alerts += part.alerts.height
            for name, frames in rows.items():
                frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
                self._insert(TABLES[name], frame, replace=name in _REPLACED)
            windows, hot = self._finalize(now)
            alerts += hot.height
            if step.snapshot is not None:  # the benchmark's baseline: the whole job, as before changelogs
                db.execute("INSERT OR REPLACE INTO state VALUES ('snapshot', ?)", (step.snapshot,))
                state_bytes += len(step.snapshot)
            seconds = time.perf_counter() - t0
            cur = db.execute(
                "INSERT INTO commits (committed_at, run_id, partitions, events, windows, late, dead_letters, alerts, "
                "state_bytes, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, step.owner, len(step.steps) - len(refused), sum(s.events for s in step.steps if s.partition_id not in refused),
                 windows.height, late, dead, alerts, state_bytes, seconds),
            )  # fmt: skip
            commit_id = int(cur.lastrowid or 0)
        return CommitResult(commit_id, windows, hot, refused, time.perf_counter() - t0)

    def _write_partition(
        self, part: PartitionStep, owner: str | None, now: str, rows: dict[str, list[pl.DataFrame]]
    ) -> int:
        """One partition's step (inside the commit's transaction; its table rows added to ``rows``, which the
        commit inserts for all partitions at once); returns the state bytes written."""
        db, pid = self._db, part.partition_id
        tables = [("partials", part.partials), ("dead_letters", part.dead_letters), ("alerts", part.alerts),
                  *((SIDE_TABLES[name], frame) for name, frame in part.side_outputs.items())]  # fmt: skip
        if part.watermarks.height:
            tables.append(("watermarks", part.watermarks.with_columns(pl.lit(pid).alias("partition_id"))))
        for name, frame in tables:
            if frame.height:
                rows.setdefault(name, []).append(frame)
        if part.position is not None:
            pos = part.position
            db.execute("INSERT OR REPLACE INTO progress VALUES (?, ?, ?, ?, ?)",
                       (pid, pos.sequence_number, pos.offset, iso(pos.enqueued_time), now))  # fmt: skip
        changes = part.engine
        db.execute(_PARTITION_UPSERT, (pid, owner, part.watermark, part.frontier, int(part.flushed),
                                       json.dumps(part.totals.as_dict()), changes.core, now))  # fmt: skip
        written = len(changes.core)
        # Device records are logged (appended in chunks, cheap whatever the fleet's size); a compaction
        # (every device's record) replaces the log.
        if part.compact:
            db.execute(
                "DELETE FROM state_chunks WHERE partition_id = ? AND kind IN ('devices', 'alert_devices')", (pid,)
            )
        for kind, records in (("devices", changes.devices), ("alert_devices", part.alert_devices)):
            if records:
                blob = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
                db.execute("INSERT INTO state_chunks (partition_id, kind, newest, data) VALUES (?, ?, 0, ?)",
                           (pid, kind, blob))  # fmt: skip
                written += len(blob)
        if changes.rows.height and not part.flushed:
            data = io.BytesIO()
            changes.rows.write_ipc(data)
            blob = data.getvalue()
            db.execute("INSERT INTO state_chunks (partition_id, kind, newest, data) VALUES (?, 'rows', ?, ?)",
                       (pid, int(changes.rows[END].max()), blob))  # type: ignore[arg-type]  # fmt: skip
            written += len(blob)
        if changes.sightings:
            blob = pickle.dumps(changes.sightings, protocol=pickle.HIGHEST_PROTOCOL)
            db.execute("INSERT INTO state_chunks (partition_id, kind, newest, data) VALUES (?, 'sightings', ?, ?)",
                       (pid, max(s[0] for s in changes.sightings), blob))  # fmt: skip
            written += len(blob)
        # Chunks nothing can use any more: open-window rows of closed windows, sightings past the horizon.
        if part.flushed:
            db.execute("DELETE FROM state_chunks WHERE partition_id = ? AND kind = 'rows'", (pid,))
        elif changes.frontier is not None:
            db.execute("DELETE FROM state_chunks WHERE partition_id = ? AND kind = 'rows' AND newest < ?",
                       (pid, changes.frontier))  # fmt: skip
        if changes.forget_before is not None:
            db.execute("DELETE FROM state_chunks WHERE partition_id = ? AND kind = 'sightings' AND newest < ?",
                       (pid, changes.forget_before))  # fmt: skip
        return written

    def _finalize(self, now: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Merge the partials of every window all partitions have closed; upsert and alert (in the transaction)."""
        db = self._db
        parts = self._partitions()
        frontiers = dict(db.execute("SELECT partition_id, frontier_us FROM partitions").fetchall())
        if not parts or any(frontiers.get(p) is None for p in parts):
            return pl.DataFrame(), no_alerts()
        lowest = min(int(frontiers[p]) for p in parts)
        row = db.execute("SELECT value FROM state WHERE key = 'final_frontier'").fetchone()
        if row is not None and lowest <= int(row[0]):
            return pl.DataFrame(), no_alerts()
        where, params = ("", ()) if lowest >= END_OF_STREAM else ("window_end < ?", (iso_us(lowest),))
        partials = self._select(TABLES["partials"], where, params)
        windows, hot = pl.DataFrame(), no_alerts()
        if partials.height:
            first = iso(partials["window_end"].min())  # type: ignore[arg-type]
            marks = self._select(TABLES["watermarks"], "frontier > ?", (first,))
            windows = final_windows(partials, marks, parts).with_columns(
                pl.lit(now).str.to_datetime(time_unit="us", time_zone="UTC").alias("stored_at")
            )
            self._insert(TABLES["window_history"], windows)
            complete = text_times(windows.filter(pl.col("closed_at").is_not_null()), TABLES["window_history"])
            db.executemany(_UPSERT, complete.select(
                "building_id", "last_observed_time", "avg_temperature", "window_start", "window_end", "events",
                pl.lit(now).alias("updated_at")).iter_rows())  # fmt: skip
            rule = self._rule()
            if rule is not None:
                streaks = {int(b): [int(s), int(f)] for b, s, f in db.execute("SELECT * FROM building_streaks")}
                hot = too_hot(rule, windows, streaks)
                db.executemany("INSERT OR REPLACE INTO building_streaks VALUES (?, ?, ?)",
                               [(b, s, f) for b, (s, f) in streaks.items()])  # fmt: skip
                if hot.height:
                    self._insert(TABLES["alerts"], hot)
            db.execute(f"DELETE FROM partials{' WHERE ' + where if where else ''}", params)
        db.execute("INSERT OR REPLACE INTO state VALUES ('final_frontier', ?)", (str(lowest).encode(),))
        return windows, hot

    def _insert(self, table: Table, frame: pl.DataFrame, *, replace: bool = False) -> None:
        names = [n for n in table.names if n not in ("alert_id", "chunk_id")]  # ids are the store's own
        rows = text_times(frame, table, names)
        marks = ", ".join("?" * len(names))
        cols = ", ".join(f'"{n}"' for n in names)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self._db.executemany(f"{verb} INTO {table.name} ({cols}) VALUES ({marks})", rows.iter_rows())

    def _select(self, table: Table, where: str = "", params: Sequence[Any] = ()) -> pl.DataFrame:
        cols = ", ".join(f'"{c}"' for c in table.names)
        sql = f"SELECT {cols} FROM {table.name}" + (f" WHERE {where}" if where else "")
        return typed(table, self._db.execute(sql, tuple(params)).fetchall())

    def mark_sent(self, alert_ids: Sequence[int], *, at: datetime | None = None) -> None:
        """Alerts delivered to the alert hub."""
        stamp = iso(at or datetime.now(UTC))
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE alerts SET sent_at = ? WHERE alert_id = ?", [(stamp, int(i)) for i in alert_ids]
            )

    # -- reading -----------------------------------------------------------------------

    def state(self, key: str) -> bytes | None:
        with self._mutex:
            return self._state(key)

    def _state(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def positions(self) -> dict[str, Position]:
        """Per partition: the last event whose effects are stored."""
        frame = self.table("progress")
        return {
            r["partition_id"]: Position(r["sequence_number"], r["offset"], r["enqueued_time"])
            for r in frame.iter_rows(named=True)
        }

    def partitions(self) -> pl.DataFrame:
        """Per partition: who holds it, its watermark and frontier (null before its first evaluation;
        ``flushed`` at the end of the stream), when it last committed."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT partition_id, owner_id, claimed_at, watermark_us, frontier_us, flushed, updated_at FROM partitions "
                f"ORDER BY {ORDER['partitions']}"
            ).fetchall()
        frame = pl.DataFrame(rows, schema={"partition_id": pl.String, "owner_id": pl.String, "claimed_at": pl.String,
                                           "watermark": pl.Int64, "frontier": pl.Int64, "flushed": pl.Int64,
                                           "updated_at": pl.String}, orient="row")  # fmt: skip
        done = pl.col("frontier") >= END_OF_STREAM
        return frame.with_columns(
            pl.col("claimed_at", "updated_at").str.to_datetime(time_unit="us", time_zone="UTC"),
            pl.col("watermark").cast(UTC_US),
            pl.when(done).then(None).otherwise(pl.col("frontier")).cast(UTC_US).alias("frontier"),
            pl.col("flushed").cast(pl.Boolean),
        )

    def totals(self) -> PartitionTotals:
        """What the job did since the store began, over every partition (as of the last commits)."""
        with self._mutex:
            rows = self._db.execute("SELECT totals FROM partitions WHERE totals IS NOT NULL").fetchall()
        out = PartitionTotals()
        for (text,) in rows:
            out = out + PartitionTotals.of(json.loads(text))
        return out

    @property
    def finished(self) -> bool:
        """Every partition was flushed (end of stream): nothing more may be written."""
        with self._mutex:
            parts = self._partitions()
            if not parts:
                return False
            flushed = {p for (p,) in self._db.execute("SELECT partition_id FROM partitions WHERE flushed = 1")}
        return set(parts) <= flushed

    def table(
        self, name: str, *, where: str = "", params: Sequence[Any] = (), order_by: str | None = None
    ) -> pl.DataFrame:
        """Rows of one table as a polars frame with typed columns (``where``: an SQL condition)."""
        table = TABLES.get(name)
        if table is None:
            raise ConfigurationError(f"no table {name!r} in the warm store; tables: {', '.join(TABLES)}")
        cols = ", ".join(f'"{c}"' for c in table.names)
        sql = f"SELECT {cols} FROM {name}" + (f" WHERE {where}" if where else "")
        sql += f" ORDER BY {order_by or ORDER.get(name, 'rowid')}"
        with self._mutex:
            rows = self._db.execute(sql, tuple(params)).fetchall()
        return typed(table, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """Any SQL; columns come back as SQLite gives them (times as ISO text)."""
        with self._mutex:
            cur = self._db.execute(sql, tuple(params))
            names = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def building_temperature(self) -> pl.DataFrame:
        """The original's table: the latest complete window per building."""
        return self.table("building_temperature")

    def current_temperature(self, building_id: int) -> BuildingTemperature | None:
        """ "What is the average temperature in building ``building_id`` now?" (``None`` if never seen).

        The answer is the building's latest complete window: its average, its reading count and its
        end. A building whose only windows were emitted by the end of the stream gets its latest such
        window, marked ``complete=False``.
        """
        row = self.table("building_temperature", where="building_id = ?", params=(int(building_id),))
        if row.height:
            return BuildingTemperature(**row.row(0, named=True))
        partial = self.table("window_history", where="building_id = ?", params=(int(building_id),),
                             order_by="last_observed_time DESC LIMIT 1")  # fmt: skip
        if partial.height == 0:
            return None
        r = partial.row(0, named=True)
        return BuildingTemperature(
            r["building_id"], r["avg_temperature"], r["last_observed_time"], r["window_start"], r["window_end"],
            r["events"], r["stored_at"], complete=r["closed_at"] is not None,
        )  # fmt: skip

    def history(self, building_id: int | None = None) -> pl.DataFrame:
        """Every final window (optionally one building's), in window-end order."""
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
        """Every evaluation of each partition's watermark."""
        return self.table("watermarks")

    def commits(self) -> pl.DataFrame:
        return self.table("commits")

    def count(self, name: str) -> int:
        """Rows in one table."""
        if name not in TABLES:
            raise ConfigurationError(f"no table {name!r} in the warm store; tables: {', '.join(TABLES)}")
        with self._mutex:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self._mutex:
            return {name: int(self._db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]) for name in TABLES}
