"""The generic path: any Avro schema, read record by record with fastavro.

Used for files whose header schema is not one of the Capture variants the fast decoder knows
(extra fields, other union orders …), and as the reference the fast path is tested against.
Every record needs ``SequenceNumber``; the other Capture fields may be missing (null columns).
"""

from __future__ import annotations

import io
from typing import Any, cast

import fastavro
import polars as pl

from iotlib.capture import format as cf
from iotlib.coldstore.columns import raw_frame_from_records
from iotlib.coldstore.container import CorruptFile


def decode_file(data: bytes, path: cf.BlobPath) -> pl.DataFrame:
    """Raw columns (see :mod:`iotlib.coldstore.columns`) of one Avro file read with fastavro."""
    try:
        records = list(fastavro.reader(io.BytesIO(data)))
    except (EOFError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise CorruptFile(f"fastavro cannot read it: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # zlib.error, fastavro's own schema errors …
        raise CorruptFile(f"fastavro cannot read it: {type(exc).__name__}: {exc}") from None
    if records and not (isinstance(records[0], dict) and "SequenceNumber" in records[0]):
        raise CorruptFile("records have no SequenceNumber field: not an Event Hubs Capture file")
    return raw_frame_from_records(cast(list[dict[str, Any]], records), path)  # a record schema: all are dicts
