"""``load``'s parameters, declared once: :class:`LoadParameters` for ``load``, ``scan``,
``to_parquet`` and ``aio.load``, and :class:`LoadOptions`, the checked form the reader uses."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from iotlib.capture import format as cf
from iotlib.coldstore import bodies
from iotlib.coldstore import columns as columns_module
from iotlib.errors import ConfigurationError

Decode = Literal["json", "none"]
Errors = Literal["raise", "skip"]
Decoder = Literal["auto", "fast", "generic"]
Backend = Literal["polars", "pandas"]


class LoadParameters(TypedDict, total=False):
    """What to load and how: the keywords of ``load``, ``scan``, ``to_parquet`` and ``aio.load``.

    - ``container``: the Blob container, when the source is a storage connection string
      (default with no source: ``"capture"``);
    - ``start``/``end``: UTC datetimes or ISO text; events enqueued in ``[start, end)``; they also
      prune the listing by blob name;
    - ``namespace``/``eventhub``/``partitions``: only these;
    - ``decode``: ``"json"`` (default) adds the thermostat body columns, ``None`` keeps bodies as bytes;
    - ``dedupe``: keep one row per (namespace, eventhub, partition_id, sequence_number) (default on);
    - ``errors``: ``"raise"`` (default) at a truncated or corrupted blob, ``"skip"`` to leave it out
      and list it in the report;
    - ``verify_md5``: check each blob's bytes against the Content-MD5 stored with it, when it has
      one (``iotlib capture`` commits one per file; Avro's null codec has no checksum of its own);
      a mismatch is a corrupted blob (default on);
    - ``cache``: a local folder for the Parquet cache (:mod:`iotlib.coldstore.cache`);
    - ``path_format``: Capture's blob-name format, if not Azure's default;
    - ``columns``: only these columns (cheaper to decode and to read from the cache);
    - ``decoder``: force ``"fast"`` or ``"generic"`` (tests, benchmarks); ``workers``: decoding
      threads; ``progress``: tqdm bars.
    """

    container: str | None
    start: datetime | str | None
    end: datetime | str | None
    namespace: str | None
    eventhub: str | None
    partitions: Sequence[str | int] | str | int | None
    decode: Decode | None
    dedupe: bool
    errors: Errors
    verify_md5: bool
    cache: str | os.PathLike[str] | None
    path_format: str | cf.PathFormat
    decoder: Decoder
    workers: int | None
    progress: bool
    columns: Sequence[str] | None


def _utc(t: datetime | str | None, what: str) -> datetime | None:
    if t is None:
        return None
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"{what}={t!r} is not an ISO 8601 time") from None
    if not isinstance(t, datetime):
        raise ConfigurationError(f"{what} must be a datetime or ISO 8601 text, not {type(t).__name__}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class LoadOptions:
    """One load's parameters, checked: what :func:`load_options` makes of :class:`LoadParameters`."""

    start: datetime | None = None
    end: datetime | None = None
    namespace: str | None = None
    eventhub: str | None = None
    partitions: tuple[str, ...] | None = None
    decode: Decode = "json"
    dedupe: bool = True
    errors: Errors = "raise"
    verify_md5: bool = True
    decoder: Decoder = "auto"
    path_format: cf.PathFormat = field(default_factory=cf.PathFormat)
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    progress: bool = False
    columns: tuple[str, ...] | None = None
    container: str | None = None
    cache: Path | None = None

    @property
    def want(self) -> frozenset[str] | None:
        # The time filter and the dedupe need these whatever the caller asked for.
        return frozenset(self.columns) | {"sequence_number", "enqueued_time"} if self.columns is not None else None


def load_options(**parameters: Unpack[LoadParameters]) -> LoadOptions:
    """Check :class:`LoadParameters`; a :class:`ConfigurationError` names the first one wrong."""
    unknown = sorted(set(parameters) - set(LoadParameters.__annotations__))
    if unknown:
        raise ConfigurationError(
            f"unknown load parameter(s) {unknown}; known: {sorted(LoadParameters.__annotations__)}"
        )
    p = parameters
    start, end = _utc(p.get("start"), "start"), _utc(p.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise ConfigurationError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    decode = p.get("decode", "json") or "none"
    if decode not in ("json", "none"):
        raise ConfigurationError(f"decode={decode!r}: use 'json' (thermostat bodies) or None (bodies as bytes)")
    errors = p.get("errors", "raise")
    if errors not in ("raise", "skip"):
        raise ConfigurationError(f"errors={errors!r}: use 'raise' or 'skip'")
    decoder = p.get("decoder", "auto")
    if decoder not in ("auto", "fast", "generic"):
        raise ConfigurationError(f"decoder={decoder!r}: use 'auto', 'fast' or 'generic'")
    partitions = p.get("partitions")
    if isinstance(partitions, (str, int)):
        partitions = [partitions]
    path_format = p.get("path_format", cf.DEFAULT_PATH_FORMAT)
    columns = p.get("columns")
    if columns is not None:
        allowed = list(columns_module.RAW_SCHEMA) + (list(bodies.DECODED_SCHEMA) if decode == "json" else [])
        unknown = [c for c in columns if c not in allowed]
        if unknown:
            raise ConfigurationError(f"columns {unknown} do not exist; choose from {', '.join(allowed)}")
    workers, cache = p.get("workers"), p.get("cache")
    return LoadOptions(
        start=start,
        end=end,
        namespace=p.get("namespace"),
        eventhub=p.get("eventhub"),
        partitions=None if partitions is None else tuple(str(x) for x in partitions),
        decode=decode,
        dedupe=bool(p.get("dedupe", True)),
        errors=errors,
        verify_md5=bool(p.get("verify_md5", True)),
        decoder=decoder,
        path_format=path_format if isinstance(path_format, cf.PathFormat) else cf.PathFormat(path_format),
        workers=workers or max(2, os.cpu_count() or 2),
        progress=bool(p.get("progress", False)),
        columns=None if columns is None else tuple(columns),
        container=p.get("container"),
        cache=None if cache is None else Path(os.fspath(cache)),
    )
