"""The warm store's tables: their columns, and the conversions between polars frames and SQLite rows.

Times are stored as fixed-width ISO 8601 text in UTC (``2025-01-06T12:00:05.000000Z``), which sorts
as it reads; a few bookkeeping columns (watermarks, frontiers in ``partitions``) are integers of
microseconds, for comparisons. See :mod:`iotlib.warm.store` for what each table holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

UTC_US = pl.Datetime("us", "UTC")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
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
    without_rowid: bool = False

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def ddl(self) -> str:
        cols = ", ".join(f'"{c}" {_KINDS[k][0]}' for c, k in self.columns)
        tail = " WITHOUT ROWID" if self.without_rowid else ""
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}{', ' + self.extra if self.extra else ''}){tail}"

    def schema(self) -> dict[str, pl.DataType]:
        return {c: _KINDS[k][1] for c, k in self.columns}


_EVENT = (
    ("partition_id", "text"), ("sequence_number", "int"), ("enqueued_time", "time"), ("device_id", "text"),
    ("building_id", "building"), ("room", "text"), ("time_observed", "time"), ("temperature", "real"),
    ("reason", "text"),
)  # fmt: skip
_WINDOW = (
    ("building_id", "building"), ("window_start", "time"), ("window_end", "time"), ("avg_temperature", "real"),
    ("last_observed_time", "time"), ("events", "int"),
)  # fmt: skip
TABLES = {
    t.name: t
    for t in [
        Table("building_temperature", (*_WINDOW, ("updated_at", "time")), "PRIMARY KEY (building_id)"),
        Table(
            "window_history",
            (*_WINDOW, ("closed_at", "time"), ("stored_at", "time")),
            "PRIMARY KEY (building_id, window_start, window_end)",
        ),
        Table(
            "partials",
            (
                ("partition_id", "text"),
                ("building_id", "building"),
                ("window_start", "time"),
                ("window_end", "time"),
                ("temperature_sum", "real"),
                ("last_observed_time", "time"),
                ("events", "int"),
                ("closed_at", "time"),
            ),
            "PRIMARY KEY (partition_id, building_id, window_start, window_end)",
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
            (("partition_id", "text"), ("tick_start", "time"), ("watermark", "time"), ("frontier", "time")),
            "PRIMARY KEY (partition_id, tick_start)",
        ),
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
            "partitions",
            (
                ("partition_id", "text"),
                ("owner_id", "text"),
                ("claimed_at", "time"),
                ("watermark_us", "int"),
                ("frontier_us", "int"),
                ("flushed", "int"),
                ("totals", "text"),
                ("core", "blob"),
                ("updated_at", "time"),
            ),
            "PRIMARY KEY (partition_id)",
        ),  # fmt: skip
        Table(
            "state_chunks",
            (("chunk_id", "int"), ("partition_id", "text"), ("kind", "text"), ("newest", "int"), ("data", "blob")),
            "PRIMARY KEY (chunk_id)",
        ),
        Table(
            "building_streaks",
            (("building_id", "building"), ("streak", "int"), ("first_start", "int")),
            "PRIMARY KEY (building_id)",
        ),  # fmt: skip
        Table(
            "processes",
            (("run_id", "text"), ("pid", "int"), ("host", "text"), ("started_at", "time"), ("hub_owner_id", "text")),
            "PRIMARY KEY (run_id)",
        ),
        Table(
            "commits",
            (
                ("commit_id", "int"),
                ("committed_at", "time"),
                ("run_id", "text"),
                ("partitions", "int"),
                ("events", "int"),
                ("windows", "int"),
                ("late", "int"),
                ("dead_letters", "int"),
                ("alerts", "int"),
                ("state_bytes", "int"),
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
INDEXES = (
    "CREATE INDEX IF NOT EXISTS window_history_end ON window_history (window_end)",
    "CREATE INDEX IF NOT EXISTS partials_end ON partials (window_end)",
    "CREATE INDEX IF NOT EXISTS watermarks_frontier ON watermarks (frontier)",
    "CREATE INDEX IF NOT EXISTS state_chunks_partition ON state_chunks (partition_id, kind, newest)",
    "CREATE INDEX IF NOT EXISTS alerts_unsent ON alerts (sent_at) WHERE sent_at IS NULL",
)
#: How each table is read back by default.
ORDER = {
    "building_temperature": "building_id",
    "window_history": "window_end, building_id, window_start",
    "partials": "window_end, building_id, window_start, CAST(partition_id AS INTEGER), partition_id",
    "alerts": "alert_id",
    "watermarks": "CAST(partition_id AS INTEGER), partition_id, tick_start",
    "progress": "CAST(partition_id AS INTEGER), partition_id",
    "partitions": "CAST(partition_id AS INTEGER), partition_id",
    "commits": "commit_id",
}


def text_times(frame: pl.DataFrame, table: Table, names: Sequence[str] | None = None) -> pl.DataFrame:
    """The table's columns from ``frame`` (missing ones null), times as ISO text, ready for SQLite."""
    exprs = []
    for name, kind in table.columns:
        if names is not None and name not in names:
            continue
        col = pl.col(name) if name in frame.columns else pl.lit(None)
        if kind == "time":
            col = col.cast(UTC_US).dt.strftime(TIME_FORMAT) if name in frame.columns else pl.lit(None, dtype=pl.String)
        elif kind == "building":
            col = col.cast(pl.Int64)
        exprs.append(col.alias(name))
    return frame.select(exprs)


def typed(table: Table, rows: list[tuple], names: Sequence[str] | None = None) -> pl.DataFrame:
    """SQLite rows of ``table`` (or of its columns ``names``) as a frame with proper types."""
    kinds = dict(table.columns)
    cols = list(names) if names is not None else table.names
    raw = {c: (pl.String() if kinds[c] == "time" else _KINDS[kinds[c]][1]) for c in cols}
    frame = pl.DataFrame(rows, schema=raw, orient="row")
    times = [c for c in cols if kinds[c] == "time"]
    return frame.with_columns(pl.col(c).str.to_datetime(TIME_FORMAT, time_unit="us", time_zone="UTC") for c in times)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_us(us: int) -> str:
    """Microseconds since the epoch as the store's time text."""
    return (
        datetime.fromtimestamp(us // 1_000_000, tz=UTC)
        .replace(microsecond=us % 1_000_000)
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )


def now_text() -> str:
    return iso(datetime.now(UTC))  # type: ignore[return-value]
