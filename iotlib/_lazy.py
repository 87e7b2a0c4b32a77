"""Lazy submodule access: ``import iotlib`` then ``iotlib.fleet.simulate.generate(...)`` works.

A package lists its submodules; the first attribute access imports one, so ``import iotlib``
stays cheap (no polars, no Azure SDK) until a stage is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType


def submodules(package: str, names: Iterable[str]) -> Callable[[str], ModuleType]:
    """A module ``__getattr__`` that imports ``package.<name>`` for the listed names."""
    known = frozenset(names)

    def __getattr__(name: str) -> ModuleType:
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
