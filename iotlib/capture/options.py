"""Capture settings: windows, naming, codec, the circuit breaker, retries and load balancing, validated.

Azure's Capture accepts a time window of 60-900 s and a size window of 10-500 MB. This writer
accepts the same ranges and, for local experiments and tests, smaller ones (down to 1 s and
1 KiB), logging once that such a cold store has more, smaller files than Azure would write.
Nothing above Azure's maxima is accepted: readers prune by name assuming a window lasts at
most 900 s. Sizes follow Azure's portal, where "MB" means MiB (the default 300 MB is
314,572,800 bytes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from iotlib.capture import format as cf
from iotlib.errors import ConfigurationError

_LOG = logging.getLogger("iotlib.capture")

AZURE_TIME_WINDOW = (60, 900)
AZURE_SIZE_WINDOW = (10 * 1024**2, 500 * 1024**2)
DEFAULT_TIME_WINDOW = 300
DEFAULT_SIZE_WINDOW = 300 * 1024**2
MIN_SIZE_WINDOW = 1024
MIN_FRAME_SIZE = 256
MAX_BLOCKS = 50_000  # committed blocks a block blob may hold

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip


def parse_size(value: int | str, *, what: str = "size") -> int:
    """Bytes from ``314572800``, ``"300MB"``, ``"300 MiB"``, ``"64KB"`` (MB = MiB, as Azure's portal means it)."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a number of bytes or text like '300MB', not {value!r}")
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigurationError(f"{what} {value!r} is not a size: use bytes or e.g. '300MB', '64KB' (MB = MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_seconds(value: int | float | str | timedelta, *, what: str) -> float:
    """Seconds from a number, a ``timedelta`` or text like ``"300"``, ``"5m"``, ``"2s"``."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be seconds, not {value!r}")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*", str(value))
    if not m:
        raise ConfigurationError(f"{what} {value!r} is not a duration: use seconds or e.g. '300s', '5m'")
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * scale


@dataclass(frozen=True)
class CaptureOptions:
    """Everything a :class:`~iotlib.capture.CaptureWriter` is told; build it with :meth:`create`.

    Windows: ``time_window`` (whole seconds, grid-aligned on enqueued time), ``size_window``
    (bytes), ``grace`` (seconds of wall-clock quiet after a window's end before it is closed
    without a next event). Files: ``container``, ``namespace``, ``path_format``, ``codec``,
    ``skip_empty_archives``, ``frame_size`` (bytes of records per Avro block, which is also one
    blob block). Breaker (per partition, in buffered frames not yet stored): ``breaker_warn``,
    ``breaker_trip``, ``breaker_stall`` (seconds between re-checks while tripped). Storage
    retries: ``retry_backoff`` (first, max seconds), ``hard_error_grace`` (seconds a hard error
    such as a deleted container or a refused key may last before the writer stops).
    Consumer: ``consumer_group``, ``checkpoint_container``, ``starting_position`` (where a
    partition without a checkpoint starts: ``"-1"`` earliest, ``"@latest"``, a datetime, a
    sequence number, a dict per partition, or a :func:`iotlib.hub.positions` snapshot to capture
    only what comes after it), ``load_balancing_interval``,
    ``ownership_expiry``, ``max_batch_size``, ``prefetch``, ``max_wait_time``, ``shutdown_timeout``.
    """

    eventhub_name: str
    namespace: str
    consumer_group: str = "capture"
    container: str = "capture"
    checkpoint_container: str = "capture-checkpoints"
    time_window: int = DEFAULT_TIME_WINDOW
    size_window: int = DEFAULT_SIZE_WINDOW
    grace: float = 10.0
    path_format: cf.PathFormat = field(default_factory=cf.PathFormat)
    codec: str = "null"
    skip_empty_archives: bool = True
    frame_size: int = 64 * 1024
    breaker_warn: int = 200
    breaker_trip: int = 400
    breaker_stall: float = 30.0
    retry_backoff: tuple[float, float] = (0.5, 15.0)
    hard_error_grace: float = 60.0
    starting_position: Any = "-1"
    starting_position_inclusive: Any = False
    load_balancing_interval: float = 10.0
    ownership_expiry: float | None = None
    max_batch_size: int = 300
    prefetch: int = 1000
    max_wait_time: float = 1.0
    shutdown_timeout: float = 60.0
    create_container: bool = True

    @classmethod
    def create(cls, *, eventhub_name: str, namespace: str, **options: Any) -> CaptureOptions:
        """Options from keyword arguments in their friendly forms (``"300MB"``, ``"5m"``, path text), validated."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown capture option(s) {unknown}; known: {sorted(known - {'eventhub_name', 'namespace'})}"
            )
        values = {k: v for k, v in options.items() if v is not None}
        if "time_window" in values:
            values["time_window"] = _whole_seconds(values["time_window"])
        if "size_window" in values:
            values["size_window"] = parse_size(values["size_window"], what="size_window")
        if "frame_size" in values:
            values["frame_size"] = parse_size(values["frame_size"], what="frame_size")
        for name in (
            "grace",
            "breaker_stall",
            "hard_error_grace",
            "load_balancing_interval",
            "ownership_expiry",
            "max_wait_time",
            "shutdown_timeout",
        ):
            if name in values:
                values[name] = parse_seconds(values[name], what=name)
        if "path_format" in values and not isinstance(values["path_format"], cf.PathFormat):
            values["path_format"] = cf.PathFormat(str(values["path_format"]))
        if "starting_position" in values:
            values["starting_position"] = _position(values["starting_position"])
        if "retry_backoff" in values:
            first, most = values["retry_backoff"]
            values["retry_backoff"] = (float(first), float(most))
        opts = cls(eventhub_name=eventhub_name, namespace=namespace, **values)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the first option out of range."""
        lo, hi = AZURE_TIME_WINDOW
        if not isinstance(self.time_window, int) or not 1 <= self.time_window <= hi:
            raise ConfigurationError(
                f"time_window={self.time_window!r}: use whole seconds, at most {hi} (Azure allows {lo}-{hi}; "
                "shorter windows, down to 1 s, are accepted for local experiments)"
            )
        slo, shi = AZURE_SIZE_WINDOW
        if not MIN_SIZE_WINDOW <= self.size_window <= shi:
            raise ConfigurationError(
                f"size_window={self.size_window:,} bytes: use at most {shi:,} (500 MB; Azure allows 10-500 MB; "
                f"down to {MIN_SIZE_WINDOW:,} bytes is accepted for local experiments)"
            )
        if not MIN_FRAME_SIZE <= self.frame_size <= 4 * 1024**2:
            raise ConfigurationError(f"frame_size={self.frame_size:,} bytes: use {MIN_FRAME_SIZE} bytes to 4 MiB")
        if self.codec not in cf.CODECS:
            raise ConfigurationError(
                f"codec={self.codec!r}: use 'null' (Azure's 'Avro', the default) or 'deflate' ('AvroDeflate')"
            )
        if not 1 <= self.breaker_warn < self.breaker_trip:
            raise ConfigurationError(
                f"breaker_warn={self.breaker_warn}, breaker_trip={self.breaker_trip}: need 1 <= warn < trip (frames)"
            )
        positive = {
            "grace": self.grace, "breaker_stall": self.breaker_stall, "load_balancing_interval": self.load_balancing_interval,
            "max_wait_time": self.max_wait_time, "shutdown_timeout": self.shutdown_timeout,
            "retry_backoff[0]": self.retry_backoff[0], "retry_backoff[1]": self.retry_backoff[1],
        }  # fmt: skip
        for name, value in positive.items():
            if not value > 0:
                raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds")
        if self.hard_error_grace < 0:
            raise ConfigurationError(f"hard_error_grace={self.hard_error_grace!r} must be >= 0 seconds")
        if self.ownership_expiry is not None and self.ownership_expiry <= self.load_balancing_interval:
            raise ConfigurationError(
                f"ownership_expiry={self.ownership_expiry} must be longer than load_balancing_interval="
                f"{self.load_balancing_interval} (owners renew once per interval)"
            )
        if not 1 <= self.max_batch_size <= 10_000 or not 1 <= self.prefetch <= 50_000:
            raise ConfigurationError(f"max_batch_size={self.max_batch_size}, prefetch={self.prefetch}: out of range")
        for name in ("container", "checkpoint_container"):
            value = getattr(self, name)
            if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", value or ""):
                raise ConfigurationError(
                    f"{name}={value!r} is not a valid Blob container name (3-63 lower-case letters, digits, single hyphens)"
                )
        if self.container == self.checkpoint_container:
            raise ConfigurationError(
                "container and checkpoint_container must differ (checkpoints are not Capture files)"
            )
        if isinstance(self.starting_position, datetime) and self.starting_position.tzinfo is None:
            raise ConfigurationError("starting_position must be timezone-aware (UTC) when it is a datetime")
        # Names are checked once, here, rather than at the first file.
        self.path_format.name(self.namespace, self.eventhub_name, "0", datetime(2000, 1, 1))

    def notes(self) -> list[str]:
        """Settings outside Azure's ranges (accepted, but a cold store unlike Azure's)."""
        out = []
        lo, _ = AZURE_TIME_WINDOW
        if self.time_window < lo:
            out.append(f"time_window {self.time_window}s is below Azure's minimum of {lo}s")
        slo, _ = AZURE_SIZE_WINDOW
        if self.size_window < slo:
            out.append(f"size_window {self.size_window:,} bytes is below Azure's minimum of {slo:,}")
        return out


def _position(value: Any) -> Any:
    """A :func:`iotlib.hub.positions` snapshot becomes the sequence numbers to start after."""
    if isinstance(value, Mapping):
        return {str(k): getattr(v, "last_enqueued_sequence_number", v) for k, v in value.items()}
    return value


def _whole_seconds(value: Any) -> int:
    seconds = parse_seconds(value, what="time_window")
    if seconds != int(seconds):
        raise ConfigurationError(f"time_window={value!r}: blob names have whole seconds, so the window must too")
    return int(seconds)
