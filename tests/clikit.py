"""Running the ``iotlib`` command line as a user does: a subprocess, its output, and its progress.

Each run gets the session's environment (the session stack's connection strings and state folder)
with the overrides a test names, so a case such as "the stack is not up" never depends on the
default ports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import IO

from iotlib import connections
from iotlib.local import stack


def environ(**overrides: str | None) -> dict[str, str]:
    """The session's environment with ``overrides`` (None removes a variable)."""
    env = os.environ.copy()
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``iotlib ARGS``, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "iotlib", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else environ(),
        check=False,
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``iotlib ARGS`` in the background; its stderr carries the progress bar."""
    return subprocess.Popen(
        [sys.executable, "-m", "iotlib", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else environ(),
    )


def progress(stream: IO[str]) -> Iterator[int]:
    """The event counts a tqdm bar reports (``… | 1234/20000 [...]``), as it writes them."""
    bar = re.compile(r"\|\s*(\d+)/\d+ \[")
    for line in stream:  # text mode splits tqdm's carriage returns into lines
        found = bar.search(line)
        if found:
            yield int(found.group(1))


def nothing_listens() -> int:
    """A local port with nothing listening on it: where a stack that is not up would be."""
    return stack.free_port()


def stack_down_environ() -> dict[str, str]:
    """Settings that point at a local stack that is not running (ports nobody listens on)."""
    return environ(
        **{
            connections.EVENTHUB_ENV: connections.eventhub_connection_string("localhost", nothing_listens()),
            connections.STORAGE_ENV: connections.storage_connection_string("127.0.0.1", nothing_listens()),
        }
    )


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command printed on stderr, less progress bars (blank lines and tqdm's)."""
    bar = re.compile(r"\[\d\d:\d\d")  # tqdm's elapsed time, "[00:02<…"
    return [line for line in done.stderr.splitlines() if line.strip() and not bar.search(line)]
