"""``load`` and ``scan``: the cold store's captured events as a polars (or pandas) frame.

The parameters are declared once, in :class:`~iotlib.coldstore.options.LoadParameters`; the work
is done by :mod:`.reader` (decode) and :mod:`.cache` (the Parquet cache on top of it).
"""

from __future__ import annotations

from typing import Any, Unpack

import polars as pl

from iotlib.coldstore.cache import load_through_cache, refresh_cache, scan_cache
from iotlib.coldstore.options import Backend, LoadParameters, load_options
from iotlib.coldstore.reader import load_frame
from iotlib.coldstore.sources import open_source
from iotlib.errors import ConfigurationError


def load(source: Any = None, *, backend: Backend = "polars", with_report: bool = False,
         **parameters: Unpack[LoadParameters]) -> Any:  # fmt: skip
    """Load captured events enqueued in ``[start, end)`` into a polars DataFrame.

    ``source``: a local directory in the Capture layout, a storage connection string with
    ``container=``, or a ``ContainerClient``; by default the storage account of
    :func:`iotlib.settings` and its ``capture`` container. The other parameters are those of
    :class:`~iotlib.coldstore.options.LoadParameters`. Columns are those of
    :mod:`iotlib.coldstore.columns`, plus with ``decode="json"`` the thermostat body columns of
    :mod:`iotlib.coldstore.bodies` (``device_id``, ``time_observed``, ``temperature``,
    ``decode_error``). ``dedupe`` keeps one row per (namespace, eventhub, partition_id,
    sequence_number): the first in name order.

    ``backend="pandas"`` returns a pandas DataFrame. ``with_report=True`` returns
    ``(frame, report)``, the :class:`~iotlib.coldstore.report.LoadReport` of what the load did
    (listing, pruning, blobs read and skipped, rows removed, cache use). ``cache`` is a Parquet
    cache folder (:mod:`iotlib.coldstore.cache`): used when it is up to date with the listed
    blobs, rebuilt otherwise. Raises :class:`~iotlib.errors.ColdStoreError` at a truncated or
    corrupted file (naming it) unless ``errors="skip"``.
    """
    if backend not in ("polars", "pandas"):
        raise ConfigurationError(f"backend={backend!r}: use 'polars' or 'pandas'")
    opts = load_options(**parameters)
    src = open_source(source, opts.container)
    df, report = load_through_cache(src, opts, opts.cache) if opts.cache is not None else load_frame(src, opts)
    frame: Any = df.to_pandas() if backend == "pandas" else df
    return (frame, report) if with_report else frame


def scan(source: Any = None, **parameters: Unpack[LoadParameters]) -> pl.LazyFrame:
    """The captured events as a polars LazyFrame; parameters as :func:`load`.

    With ``cache`` (a local folder) the Parquet cache is first brought up to date — decoding Avro
    only when the listed blobs changed — and then scanned lazily, so later filters and column
    choices read only the Parquet they need: the way to query a long stretch repeatedly. Without
    a cache, the events are loaded and handed over as a LazyFrame.
    """
    opts = load_options(**parameters)
    src = open_source(source, opts.container)
    if opts.cache is None:
        return load_frame(src, opts)[0].lazy()
    refresh_cache(src, opts, opts.cache)  # decodes out of core, and only when the blobs changed
    return scan_cache(opts.cache, opts)
