"""Compile the cold store's numba decoders into numba's on-disk cache, ahead of their first use.

The decoders are compiled with ``cache=True``: the machine code lands in ``__pycache__`` beside
their modules and later processes load it in a second or two. A fresh checkout has no cache
and spends about a minute of CPU compiling at its first load; every process that starts cold
at the same time pays it again. ``make test`` runs this module once before the test workers
and the notebooks start (``python -m iotlib.coldstore.precompile``), so they all find the
cache warm.

Compilation is per argument type (a read-only buffer is another type than a writable one), so
this decodes what the loader decodes: a few Capture files in both codecs (a stored file is read
as a read-only buffer, an inflated one is writable) with and without the body columns, and
calls the two timestamp parsers on text bytes as their Python callers do.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from iotlib.coldstore import loader, synthetic
from iotlib.coldstore.timestamps import enqueued_text_micros, rfc3339_micros


def compile_decoders() -> float:
    """Compile (or load from numba's cache) every decoder entry point; returns the seconds it took."""
    t0 = time.perf_counter()
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for codec in ("null", "deflate"):
        with tempfile.TemporaryDirectory(prefix="iotlib-precompile-") as folder:
            synthetic.write_store(folder, devices=3, start=start, duration=timedelta(minutes=3), codec=codec)
            for decode in ("json", None):
                loader.load(folder, decode=decode, decoder="fast", workers=1)
    for text in (b"2024-03-01T10:00:00.123Z", b"3/1/2024 10:00:00 AM"):
        raw = np.frombuffer(text, np.uint8)
        rfc3339_micros(raw, 0, len(raw))
        enqueued_text_micros(raw, 0, len(raw))
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"numba decoders ready in {compile_decoders():.1f} s")
