"""Blob calls with retry and back-off, and what their failures mean for the capture writer.

Failures fall in four kinds:

- **transient** (connection refused or reset, timeouts, 5xx, 408, 429): retried with
  exponential back-off and jitter, counted in the report; the first failure of a streak and
  the recovery are logged, the retries in between are not.
- **hard** (the container is gone, the key or token is refused): reported once, clearly; still
  retried (an operator may fix it) for ``hard_error_grace`` seconds, then the writer stops
  with a :class:`~iotlib.errors.CaptureError`. Nothing is checkpointed past what is stored, so
  a restart after the fix loses nothing.
- **conflict** (412/409: someone else wrote the blob since we looked) and **broken file** (400
  InvalidBlockList: staged blocks are gone): raised to the caller, which knows what to do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

_LOG = logging.getLogger("iotlib.capture")
T = TypeVar("T")

TRANSIENT, HARD, CONFLICT, NOT_FOUND, BROKEN = "transient", "hard", "conflict", "not found", "broken file"
CONTAINER_GONE = "the container does not exist (deleted while capture was running?)"


class StorageSignal(Exception):  # noqa: N818 - control flow inside the writer, never met by a user
    """What the retrier tells the partition task; the writer turns what it cannot handle into a CaptureError."""


class StorageConflict(StorageSignal):
    """The blob changed (or appeared) since the writer looked: re-read it and decide."""


class BlobMissing(StorageSignal):
    """A blob the writer expected is not there."""


class BrokenFile(StorageSignal):
    """The blob's staged blocks are gone (e.g. storage lost uncommitted blocks): the file must be redone."""


class StorageFatal(StorageSignal):
    """A hard storage error lasted longer than ``hard_error_grace``: the writer stops."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason  # the classified text, e.g. CONTAINER_GONE


def classify(exc: BaseException) -> tuple[str, str]:
    """The kind of a storage failure and a short text for logs."""
    code = getattr(exc, "error_code", None) or ""
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status_code", None)
    if isinstance(exc, (ResourceModifiedError, ResourceExistsError)) or status in (409, 412):
        if code == "ContainerBeingDeleted":
            return HARD, "the container is being deleted"
        return CONFLICT, f"{code or status}"
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        if code == "ContainerNotFound":
            return HARD, CONTAINER_GONE
        return NOT_FOUND, code or "not found"
    if isinstance(exc, ClientAuthenticationError) or status == 403:
        return HARD, f"storage refused the credentials ({code or 'HTTP 403'}): check the storage connection string"
    if (
        isinstance(exc, HttpResponseError)
        and status == 400
        and code in ("InvalidBlockList", "InvalidBlobOrBlock", "InvalidBlockId")
    ):
        return BROKEN, code
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, asyncio.TimeoutError, ConnectionError, OSError)):
        return TRANSIENT, f"{type(exc).__name__}: {_first_line(exc)}"
    if isinstance(exc, HttpResponseError):
        if status is None or status >= 500 or status in (408, 429):
            return TRANSIENT, f"HTTP {status} {code}".strip()
        return HARD, f"HTTP {status} {code}: {_first_line(exc)}".strip()
    if type(exc).__module__.startswith("aiohttp"):
        return TRANSIENT, f"{type(exc).__name__}: {_first_line(exc)}"
    raise exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class Retrier:
    """Runs storage calls for one partition (or the writer), retrying transient and hard failures."""

    def __init__(
        self,
        *,
        where: str,
        backoff: tuple[float, float],
        hard_error_grace: float,
        on_retry: Callable[[str], None],
        report_once: Callable[[str], bool],
    ) -> None:
        self.where = where
        self.first, self.most = backoff
        self.hard_error_grace = hard_error_grace
        self.on_retry = on_retry
        self.report_once = report_once
        self.failing_since: float | None = None
        self.last_error = ""

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        attempt = 0
        hard_since: float | None = None
        while True:
            try:
                result = await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; unknown ones re-raised
                kind, text = classify(exc)
                if kind not in (TRANSIENT, HARD):
                    self.failing_since = None  # storage answered, if only to say no
                if kind == CONFLICT:
                    raise StorageConflict(f"{what}: {text}") from exc
                if kind == NOT_FOUND:
                    raise BlobMissing(f"{what}: {text}") from exc
                if kind == BROKEN:
                    raise BrokenFile(f"{what}: {text}") from exc
                now = time.monotonic()
                self.last_error = text
                if self.failing_since is None:
                    self.failing_since = now
                    if kind == TRANSIENT:
                        _LOG.warning("%s: %s failed (%s); retrying with back-off", self.where, what, text)
                if kind == HARD:
                    hard_since = hard_since or now
                    if self.report_once(f"storage: {text}"):
                        _LOG.error(
                            "storage: %s (first seen on %s, %s). Capture stalls and retries for %.0f s, then stops; "
                            "nothing is checkpointed past what is stored.",
                            text, self.where, what, self.hard_error_grace,
                        )  # fmt: skip
                    if now - hard_since >= self.hard_error_grace:
                        self.failing_since = None
                        raise StorageFatal(
                            f"storage: {text} (for {now - hard_since:.0f} s, on {self.where}, {what})", reason=text
                        ) from exc
                self.on_retry(what)
                delay = min(self.most, self.first * 2**attempt) * random.uniform(0.8, 1.2)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.last_error = ""
            if self.failing_since is not None:
                _LOG.warning(
                    "%s: storage answers again (%s succeeded after %d retries, %.1f s)",
                    self.where, what, attempt, time.monotonic() - self.failing_since,
                )  # fmt: skip
                self.failing_since = None
            return result
