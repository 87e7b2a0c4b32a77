"""Frames in: every public function that takes a frame takes a polars or a pandas DataFrame.

iotlib computes with polars; a pandas frame is converted once at the door (``pl.from_pandas``,
zero-copy where Arrow allows). Results are polars frames (``.to_pandas()`` gives pandas back).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

import polars as pl

from iotlib.errors import ConfigurationError


class PandasFrame(Protocol):
    """A pandas ``DataFrame`` (pandas ships no type information, so it is described by shape)."""

    @property
    def columns(self) -> Any: ...

    def to_numpy(self, *args: Any, **kwargs: Any) -> Any: ...


#: What a function that takes a frame accepts.
Frame: TypeAlias = pl.DataFrame | PandasFrame


def is_pandas(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "pandas" and type(value).__name__ == "DataFrame"


def as_polars(frame: object, *, name: str = "frame") -> pl.DataFrame:
    """``frame`` as a polars DataFrame; a :class:`ConfigurationError` naming ``name`` for anything else."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if is_pandas(frame):
        return pl.from_pandas(frame)
    raise ConfigurationError(f"{name} must be a polars or pandas DataFrame, not {type(frame).__name__}")
