"""How big a run should be: full scale by hand, small in CI and ``make demo``.

Notebooks and the demo ask ``pick(full=..., small=...)``; the environment
variable ``IOTLIB_SCALE`` (``full`` or ``small``) decides. Unset means full:
a user opening a notebook in JupyterLab gets the real Fabrikam scale, while
``make test`` and ``make demo`` set ``IOTLIB_SCALE=small``.
"""

from __future__ import annotations

import os
from typing import TypeVar

from iotlib.errors import ConfigurationError

SCALE_ENV = "IOTLIB_SCALE"
SCALES = ("full", "small")

T = TypeVar("T")


def current() -> str:
    """The scale in force: ``"full"`` (default) or ``"small"``."""
    value = os.environ.get(SCALE_ENV, "full").strip().lower() or "full"
    if value not in SCALES:
        raise ConfigurationError(f"{SCALE_ENV}={value!r} is not one of {', '.join(SCALES)}")
    return value


def is_small() -> bool:
    return current() == "small"


def pick(*, full: T, small: T) -> T:
    """``small`` when running at small scale, else ``full``."""
    return small if is_small() else full
