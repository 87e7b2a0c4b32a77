"""Alerts as events on another event hub, for whoever acts on them (a notifier, a ticketing job).

Each alert row becomes one JSON event (``TemperatureAlert``), partitioned by
its building (or device), with ``EventType``/``EventTypeVersion``/``Rule``
application properties. Delivery is at least once: the warm store marks an
alert sent only after the hub accepted it (an outbox), and a restarted
processor sends what was left unsent.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl
from azure.eventhub import EventData

EVENT_TYPE = "TemperatureAlert"
EVENT_TYPE_VERSION = "1"


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def alert_events(alerts: pl.DataFrame) -> dict[str, list[EventData]]:
    """The alerts as events, grouped by partition key (building id, else device id)."""
    out: dict[str, list[EventData]] = {}
    for row in alerts.iter_rows(named=True):
        body = {
            "AlertId": row.get("alert_id"),
            "Rule": row["rule"],
            "RaisedAt": _text(row["raised_at"]),
            "BuildingId": row["building_id"],
            "DeviceId": row["device_id"],
            "Room": row["room"],
            "Value": row["value"],
            "Threshold": row["threshold"],
            "WindowStart": _text(row["window_start"]),
            "WindowEnd": _text(row["window_end"]),
            "Message": row["message"],
        }
        event = EventData(json.dumps(body, separators=(",", ":")))
        event.properties = {"EventType": EVENT_TYPE, "EventTypeVersion": EVENT_TYPE_VERSION, "Rule": row["rule"]}
        key = str(row["building_id"] if row["building_id"] is not None else row["device_id"])
        out.setdefault(key, []).append(event)
    return out


async def send(producer: Any, alerts: pl.DataFrame) -> int:
    """Send ``alerts`` (rows of the warm store's ``alerts`` table); returns how many went out."""
    sent = 0
    for key, events in alert_events(alerts).items():
        await producer.send_batch(events, partition_key=key)
        sent += len(events)
    return sent
