"""A received ``EventData`` as the Capture record Azure would write for it.

- ``SequenceNumber``, ``Offset``, ``EnqueuedTimeUtc`` (.NET text, whole seconds) from the
  service annotations the event arrived with.
- ``SystemProperties``: as Azure's Capture writes them today
  (:func:`iotlib.capture.format.system_properties`: the partition key when the event had one, then
  the enqueued time in ms; the sequence number and offset are record fields only), plus any other
  message annotation the message carried (e.g. a sender's own, or IoT Hub's ``iothub-*``).
- ``Properties``: the application properties.
- ``Body``: the data section(s) as sent; a message with an AMQP value or sequence body (rare for
  Event Hubs) is written as its JSON text.

Values the Avro union (long, double, string, bytes, null) cannot hold are converted: ``bool``
→ ``"True"``/``"False"`` (.NET's text), datetimes → ISO 8601 text, UUIDs and anything else →
their text. The Python client decodes AMQP strings and binaries both to ``bytes``, so a
property's bytes are written as a string when they are valid UTF-8 (every string is), as
bytes otherwise.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from azure.eventhub import EventData
from azure.eventhub.amqp import AmqpMessageBodyType

from iotlib.capture import format as cf

_SEQ = b"x-opt-sequence-number"
_OFFSET = b"x-opt-offset"
_ENQUEUED = b"x-opt-enqueued-time"
_KEY = b"x-opt-partition-key"
_SERVICE = {_SEQ, _OFFSET, _ENQUEUED, _KEY, "x-opt-sequence-number", "x-opt-offset", "x-opt-enqueued-time",
            "x-opt-partition-key"}  # fmt: skip


class RecordEncoder:
    """Encodes received events as Capture records; caches the .NET text of the current second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def enqueued_text(self, enqueued_ms: int) -> str:
        second = enqueued_ms // 1000
        if second != self._second:
            self._second = second
            self._text = cf.format_enqueued_time(datetime.fromtimestamp(second, UTC))
        return self._text

    def encode(self, event: EventData) -> tuple[int, int, bytes]:
        """``(sequence_number, enqueued_ms, record bytes)`` of one received event."""
        msg = event.raw_amqp_message
        ann = msg.annotations or {}
        seq = int(ann[_SEQ])
        offset = _text(ann[_OFFSET])
        enqueued = ann[_ENQUEUED]
        ms = enqueued if isinstance(enqueued, int) else cf.epoch_millis(enqueued)
        key = ann.get(_KEY)
        system = cf.system_properties(ms, None if key is None else _text(key))
        if len(ann) > 3 + (key is not None):
            for k, v in ann.items():
                if k not in _SERVICE:
                    system[_text(k)] = _avro_value(v, nullable=False)
        props = msg.application_properties
        properties = {_text(k): _avro_value(v, nullable=True) for k, v in props.items()} if props else {}
        record = cf.encode_record(seq, offset, self.enqueued_text(ms), system, properties, _body(msg))
        return seq, ms, record


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _avro_value(value: Any, *, nullable: bool) -> Any:
    kind = type(value)
    if kind is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if kind is str or kind is float:
        return value
    if kind is bool:
        return "True" if value else "False"
    if kind is int:
        return value if -(2**63) <= value < 2**63 else str(value)
    if value is None:
        return None if nullable else ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (uuid.UUID,)):
        return str(value)
    if isinstance(value, int):  # other int subclasses
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _body(msg: Any) -> bytes | None:
    kind = msg.body_type
    if kind == AmqpMessageBodyType.DATA:
        parts = list(msg.body)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    body = msg.body
    if kind == AmqpMessageBodyType.SEQUENCE:
        body = list(body)
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    return json.dumps(body, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
