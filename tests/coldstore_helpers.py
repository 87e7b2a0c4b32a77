"""Capture files for the cold-store tests, written by plain fastavro (independent of iotlib's writer)."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro

UTC = UTC

# Azure's schema, spelled out here rather than imported, so the tests do not trust captureformat.
AZURE_SCHEMA = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
        {"name": "Properties", "type": {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
AZURE_SCHEMA_NO_NULL = json.loads(json.dumps(AZURE_SCHEMA))
AZURE_SCHEMA_NO_NULL["fields"][4]["type"]["values"] = ["long", "double", "string", "bytes"]


def dotnet(t: datetime) -> str:
    h = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {h}:{t.minute:02d}:{t.second:02d} {'AM' if t.hour < 12 else 'PM'}"


def body(device: str, t: datetime, temp: float) -> bytes:
    return json.dumps(
        {"DeviceId": device, "TimeObserved": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "Temperature": temp}
    ).encode()


def record(
    seq: int, t: datetime, *, device: str = "dev-1", temp: float = 21.5, with_ms: bool = True, raw_body: Any = "default"
) -> dict[str, Any]:
    sp: dict[str, Any] = {"x-opt-sequence-number": seq, "x-opt-offset": str(seq * 100)}
    if with_ms:
        sp["x-opt-enqueued-time"] = int(t.timestamp() * 1000)
    sp["x-opt-partition-key"] = device
    return {
        "SequenceNumber": seq,
        "Offset": str(seq * 100),
        "EnqueuedTimeUtc": dotnet(t),
        "SystemProperties": sp,
        "Properties": {"DeviceId": device, "EventType": "UpdateTemperatureEvent", "EventTypeVersion": 1},
        "Body": body(device, t, temp) if raw_body == "default" else raw_body,
    }


def avro_bytes(records: list[dict[str, Any]], *, codec: str = "null", schema: dict[str, Any] = AZURE_SCHEMA) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(
        buf, fastavro.parse_schema(json.loads(json.dumps(schema))), records, codec=codec, sync_interval=2000
    )
    return buf.getvalue()


def name(partition: int | str, window_start: datetime, ns: str = "fabrikam", hub: str = "telemetry") -> str:
    return f"{ns}/{hub}/{partition}/{window_start:%Y/%m/%d/%H/%M/%S}.avro"


def put(root: Any, blob: str, data: bytes) -> None:
    if hasattr(root, "upload_blob"):
        root.upload_blob(blob, data, overwrite=True)
        return
    path = os.path.join(root, *blob.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


T0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)


def small_store(
    root: Any, *, hours: int = 3, partitions: int = 2, per_window: int = 5, codec: str = "null"
) -> dict[str, int]:
    """5-minute windows over ``hours`` hours, ``per_window`` events each (1 min apart, +10 s); returns name → events."""
    out = {}
    for p in range(partitions):
        seq = 0
        for w in range(hours * 12):
            ws = T0 + timedelta(minutes=5 * w)
            recs = []
            for i in range(per_window):
                recs.append(record(seq, ws + timedelta(seconds=10 + 55 * i), device=f"dev-{p}-{i}", temp=20 + i / 4))
                seq += 1
            put(root, name(p, ws), avro_bytes(recs, codec=codec))
            out[name(p, ws)] = per_window
    return out
