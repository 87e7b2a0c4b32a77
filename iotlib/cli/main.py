"""The ``iotlib`` command line: one subcommand per job, defined in ``iotlib.cli``.

Command modules import the library inside their handlers, so ``iotlib down``
does not pay for importing polars.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from iotlib.errors import IotlibError

# Each module defines register(subparsers) and sets `func` on its parsers.
COMMAND_MODULES = [  # in the journey's order, as `iotlib --help` lists them
    "iotlib.cli.stack",
    "iotlib.cli.emulator",
    "iotlib.cli.simulate",
    "iotlib.cli.devices",
    "iotlib.cli.ingest",
    "iotlib.cli.capture",
    "iotlib.cli.load",
    "iotlib.cli.process",
    "iotlib.cli.monitor",
    "iotlib.cli.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iotlib",
        description="IoT Journey workbench: the Fabrikam telemetry back end, locally or on Azure.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except IotlibError as exc:
        print(f"iotlib {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"iotlib {args.command}: interrupted", file=sys.stderr)
        return 130
