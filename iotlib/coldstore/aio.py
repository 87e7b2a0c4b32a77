"""The ``async`` twin of :func:`iotlib.coldstore.load`, for code that runs in an event loop.

Loading is CPU-bound work on a thread pool (the compiled decoders release the GIL); the twin runs
it off the event loop with :func:`asyncio.to_thread` so other tasks keep running. It accepts what
``load`` accepts, plus an ``azure.storage.blob.aio.ContainerClient``: the load then uses a sync
client to the same container with the same credential (account key or SAS; an async token
credential cannot be shared — pass a connection string or a sync client instead).
"""

from __future__ import annotations

import asyncio
from typing import Any, Unpack

from iotlib.coldstore.loader import load as _load
from iotlib.coldstore.options import Backend, LoadParameters
from iotlib.errors import ConfigurationError


async def load(source: Any = None, *, backend: Backend = "polars", with_report: bool = False,
               **parameters: Unpack[LoadParameters]) -> Any:  # fmt: skip
    """``await``-able :func:`iotlib.coldstore.load`; same parameters, same result."""
    return await asyncio.to_thread(
        lambda: _load(_sync_source(source), backend=backend, with_report=with_report, **parameters)
    )


def _sync_source(source: Any) -> Any:
    module = type(source).__module__
    if module.startswith("azure.storage.blob.aio"):
        from azure.storage.blob import ContainerClient

        credential = source.credential
        if hasattr(credential, "get_token") and asyncio.iscoroutinefunction(credential.get_token):
            raise ConfigurationError(
                "an aio ContainerClient with an async token credential cannot be read by the sync loader: "
                "pass a connection string, or a sync ContainerClient with a sync credential"
            )
        account_url = source.url[: -len(source.container_name)].rstrip("/")
        return ContainerClient(account_url, source.container_name, credential=credential)
    return source
