"""Aggregates computed over the events of a window.

An :class:`Agg` names one output column: a statistic of one input column.
Statistics: ``mean``, ``sum``, ``min``, ``max``, ``count``, ``first`` and
``last`` (by time, ties broken by arrival order), ``median`` and percentiles
``p<q>`` (``p95``, ``p99.9``; linear interpolation).

``aggregate(..., exact=True)`` makes sums and means a function of each
window's own values in arrival order only — not of which other windows share
the frame or how it is chunked (polars' grouped float sums are not). The
event-time job and the incremental engine use it so that their results are
bit-for-bit identical whatever the micro-batch boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from iotlib.errors import ConfigurationError

_PCT = re.compile(r"p(\d+(?:\.\d+)?)$")
_SIMPLE = ("mean", "sum", "min", "max", "count", "first", "last", "median")


@dataclass(frozen=True)
class Agg:
    """Output column ``name`` = ``stat`` of input column ``column``."""

    name: str
    stat: str
    column: str

    def __post_init__(self) -> None:
        if self.stat not in _SIMPLE and not _PCT.match(self.stat):
            raise ConfigurationError(
                f"aggregate {self.name!r}: unknown statistic {self.stat!r}; use one of "
                f"{', '.join(_SIMPLE)} or a percentile such as 'p95'"
            )
        if (m := _PCT.match(self.stat)) and not 0 <= float(m.group(1)) <= 100:
            raise ConfigurationError(f"aggregate {self.name!r}: percentile {self.stat!r} is outside 0-100")


def stats(column: str, *names: str) -> tuple[Agg, ...]:
    """``stats("temperature", "mean", "p95")`` → columns ``temperature_mean``, ``temperature_p95``.

    ``count`` is named ``events``.
    """
    if not names:
        names = ("mean", "min", "max", "count", "last")
    return tuple(Agg("events" if s == "count" else f"{column}_{s}", s, column) for s in names)


def columns_of(aggs: Iterable[Agg]) -> list[str]:
    """The input columns the aggregates read."""
    return list(dict.fromkeys(a.column for a in aggs))


def _cumsum_name(column: str) -> str:
    return f"__cs_{column}"


def _expr(a: Agg, *, time: str, order: str | None, exact: bool) -> pl.Expr:
    col = pl.col(a.column)
    keys = [time, order] if order else [time]
    if a.stat == "count":
        out = pl.col(time).count().cast(pl.Int64)
    elif a.stat in ("sum", "mean") and exact:
        total = pl.col(_cumsum_name(a.column)).last()
        out = total if a.stat == "sum" else total / pl.col(time).count()
    elif a.stat == "mean":
        out = col.cast(pl.Float64).mean()
    elif a.stat == "sum":
        out = col.cast(pl.Float64).sum()
    elif a.stat == "min":
        out = col.min()
    elif a.stat == "max":
        out = col.max()
    elif a.stat in ("first", "last"):
        # Placeholder rows (null time) sort away from the end that is read.
        last = a.stat == "last"
        srt = col.sort_by(keys, maintain_order=True, nulls_last=not last)
        out = srt.last() if last else srt.first()
    elif a.stat == "median":
        out = col.cast(pl.Float64).median()
    else:
        pct = _PCT.match(a.stat)
        assert pct is not None  # Agg accepts only the simple stats and pNN
        q = float(pct.group(1)) / 100
        out = col.cast(pl.Float64).quantile(q, interpolation="linear")
    return out.alias(a.name)


def expressions(aggs: Sequence[Agg], *, time: str, order: str | None = None) -> list[pl.Expr]:
    """The aggregates as polars expressions (non-exact sums), e.g. for ``rolling().agg``."""
    return [_expr(a, time=time, order=order, exact=False) for a in aggs]


def aggregate(
    rows: pl.DataFrame | pl.LazyFrame,
    by: Sequence[str],
    aggs: Sequence[Agg],
    *,
    time: str,
    order: str | None = None,
    exact: bool = False,
) -> pl.DataFrame:
    """Group ``rows`` by ``by`` and compute ``aggs``; rows must be in arrival order when ``exact``.

    ``time`` orders ``first``/``last`` (ties by ``order``) and counts (rows with a
    null ``time`` are placeholders and do not count).
    """
    by = list(by)
    if exact:
        summed = columns_of(a for a in aggs if a.stat in ("sum", "mean"))
        if summed:
            rows = rows.with_columns(
                pl.col(c).cast(pl.Float64).cum_sum().over(by).alias(_cumsum_name(c)) for c in summed
            )
    exprs = [_expr(a, time=time, order=order, exact=exact) for a in aggs]
    if isinstance(rows, pl.LazyFrame):
        return rows.group_by(by).agg(exprs).collect()
    return rows.group_by(by).agg(exprs)  # eager: no optimiser pass, cheaper for small frames
