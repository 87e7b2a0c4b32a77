"""Loading the cold store: Event Hubs Capture Avro files → polars (or pandas), fast.

>>> import iotlib
>>> from iotlib import coldstore
>>> df, report = coldstore.load(start="2024-03-01T10:00Z", end="2024-03-01T11:00Z",
...                             with_report=True)     # iotlib.settings()'s "capture" container  # doctest: +SKIP
>>> print(report.summary())                                                     # doctest: +SKIP

One concept per module: :mod:`.sources` (Blob container or local directory), :mod:`.listing`
(time-pruned listing), :mod:`.container` (Avro blocks), :mod:`.fastdecode` (compiled Capture
decoder), :mod:`.generic` (fastavro, any schema), :mod:`.columns` (the frame's columns),
:mod:`.bodies` (thermostat JSON bodies), :mod:`.options` (``load``'s parameters, declared once),
:mod:`.reader` (files → frame), :mod:`.report` (what a load did), :mod:`.cache` (Parquet, on top of
the reader), :mod:`.loader` (``load``, ``scan``) and :mod:`.precompile` (the compiled decoders into
numba's cache, ahead of use).
The file format itself is :mod:`iotlib.capture.format`.
"""

from iotlib.coldstore.cache import read_cache, to_parquet
from iotlib.coldstore.columns import RAW_SCHEMA, property_value
from iotlib.coldstore.loader import load, scan
from iotlib.coldstore.options import LoadOptions, LoadParameters
from iotlib.coldstore.reader import DEDUPE_KEY
from iotlib.coldstore.report import LoadReport, SkippedBlob
from iotlib.coldstore.sources import BlobContainer, LocalDirectory

__all__ = [
    "DEDUPE_KEY",
    "RAW_SCHEMA",
    "BlobContainer",
    "LoadOptions",
    "LoadParameters",
    "LoadReport",
    "LocalDirectory",
    "SkippedBlob",
    "load",
    "property_value",
    "read_cache",
    "scan",
    "to_parquet",
]
