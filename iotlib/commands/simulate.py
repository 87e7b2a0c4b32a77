"""``iotlib simulate``: write a simulated stretch of Fabrikam telemetry to Parquet."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate Fabrikam devices and write the events to Parquet")
    p.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    raise NotImplementedError("the simulator lands with the foundation issue")
