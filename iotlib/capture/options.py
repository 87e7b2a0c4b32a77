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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Unpack

from iotlib.capture import format as cf
from iotlib.durations import Duration, to_seconds, to_us
from iotlib.errors import ConfigurationError
from iotlib.hub.consumer import ConsumerOptions, ConsumerParameters, consumer_values

_LOG = logging.getLogger("iotlib.capture")

AZURE_TIME_WINDOW = (60, 900)
AZURE_SIZE_WINDOW = (10 * 1024**2, 500 * 1024**2)
DEFAULT_TIME_WINDOW = 300
DEFAULT_SIZE_WINDOW = 300 * 1024**2
MIN_SIZE_WINDOW = 1024
MIN_FRAME_SIZE = 256
MAX_BLOCKS = 50_000  # committed blocks a block blob may hold
DEFAULT_CONTAINER = "capture"

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


Seconds = Duration
Bytes = int | str


class CaptureParameters(ConsumerParameters, total=False):
    """The keywords a capture writer takes, in their friendly forms (``"300MB"``, ``"5m"``, path text).

    Each is described on :class:`CaptureOptions`; ``namespace`` is the ``{Namespace}`` of blob
    names (default: from the Event Hubs host, ``fabrikam`` for a local emulator).
    """

    namespace: str | None
    container: str
    time_window: Seconds
    size_window: Bytes
    grace: Seconds
    path_format: str | cf.PathFormat
    codec: Literal["null", "deflate"]
    skip_empty_archives: bool
    frame_size: Bytes
    breaker_warn: int
    breaker_trip: int
    breaker_stall: Seconds
    retry_backoff: tuple[float, float]
    hard_error_grace: Seconds
    starting_position_inclusive: bool
    shutdown_timeout: Seconds
    create_container: bool


@dataclass(frozen=True, kw_only=True)
class CaptureOptions(ConsumerOptions):
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
    partition without a checkpoint starts: ``"earliest"``, ``"latest"``, a datetime, a sequence
    number, one of those per partition, or a :func:`iotlib.hub.positions` snapshot to capture only
    what comes after it: see :mod:`iotlib.hub.starting`), ``starting_position_inclusive``,
    ``load_balancing_interval``, ``ownership_expiry``, ``max_batch_size``, ``prefetch``,
    ``max_wait_time`` (:class:`~iotlib.hub.consumer.ConsumerOptions`), ``shutdown_timeout``.
    """

    eventhub_name: str
    namespace: str
    consumer_group: str = "capture"
    container: str = DEFAULT_CONTAINER
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
    starting_position_inclusive: bool = False
    shutdown_timeout: float = 60.0
    create_container: bool = True

    @classmethod
    def create(
        cls, *, eventhub_name: str, default_namespace: str, **options: Unpack[CaptureParameters]
    ) -> CaptureOptions:
        """Options from keyword arguments in their friendly forms (``"300MB"``, ``"5m"``, path text), validated."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(f"unknown capture option(s) {unknown}; known: {sorted(known - {'eventhub_name'})}")
        values: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
        namespace = values.pop("namespace", None) or default_namespace
        if "time_window" in values:
            values["time_window"] = _whole_seconds(values["time_window"])
        if "size_window" in values:
            values["size_window"] = parse_size(values["size_window"], what="size_window")
        if "frame_size" in values:
            values["frame_size"] = parse_size(values["frame_size"], what="frame_size")
        for name in ("grace", "breaker_stall", "hard_error_grace", "shutdown_timeout"):
            if name in values:
                values[name] = to_seconds(values[name], name=name)
        consumer_values(values)
        if "path_format" in values and not isinstance(values["path_format"], cf.PathFormat):
            values["path_format"] = cf.PathFormat(str(values["path_format"]))
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
        self.check_consumer()
        positive = {
            "grace": self.grace, "breaker_stall": self.breaker_stall, "shutdown_timeout": self.shutdown_timeout,
            "retry_backoff[0]": self.retry_backoff[0], "retry_backoff[1]": self.retry_backoff[1],
        }  # fmt: skip
        for name, value in positive.items():
            if not value > 0:
                raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds")
        if self.hard_error_grace < 0:
            raise ConfigurationError(f"hard_error_grace={self.hard_error_grace!r} must be >= 0 seconds")
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


def _whole_seconds(value: Any) -> int:
    us = to_us(value, name="time_window")
    if us % 1_000_000:
        raise ConfigurationError(f"time_window={value!r}: blob names have whole seconds, so the window must too")
    return us // 1_000_000
