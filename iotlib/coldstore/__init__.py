"""Loading the cold store: Event Hubs Capture Avro files → polars (or pandas), fast.

>>> import iotlib
>>> from iotlib import coldstore
>>> df = coldstore.load(iotlib.settings().storage_connection_string, container="capture",
...                     start="2024-03-01T10:00Z", end="2024-03-01T11:00Z")   # doctest: +SKIP
>>> df.report.summary()                                                        # doctest: +SKIP

One concept per module: :mod:`.sources` (Blob container or local directory), :mod:`.listing`
(time-pruned listing), :mod:`.container` (Avro blocks), :mod:`.fastdecode` (compiled Capture
decoder), :mod:`.generic` (fastavro, any schema), :mod:`.columns` (the frame's columns),
:mod:`.bodies` (thermostat JSON bodies), :mod:`.loader` (``load``, ``scan``), :mod:`.cache` (Parquet),
:mod:`.precompile` (the compiled decoders into numba's cache, ahead of use).
The file format itself is :mod:`iotlib.capture.format`.
"""

from iotlib.coldstore.cache import read_cache, to_parquet
from iotlib.coldstore.columns import RAW_SCHEMA, property_value
from iotlib.coldstore.loader import DEDUPE_KEY, LoadReport, SkippedBlob, load, scan
from iotlib.coldstore.sources import BlobContainer, LocalDirectory

__all__ = [
    "DEDUPE_KEY",
    "RAW_SCHEMA",
    "BlobContainer",
    "LoadReport",
    "LocalDirectory",
    "SkippedBlob",
    "load",
    "property_value",
    "read_cache",
    "scan",
    "to_parquet",
]
