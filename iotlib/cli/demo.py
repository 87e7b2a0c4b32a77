"""``iotlib demo``: the whole journey end to end on the local stack, at a small scale."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the journey end to end on the local stack (what `make demo` runs)")
    p.add_argument("--devices", type=int, default=None, help="devices (default: 1,000 small, 100,000 full)")
    p.add_argument("--minutes", type=int, default=None, help="simulated minutes (default: 10 small, 60 full)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from iotlib.cli import journey as demo

    demo.run(devices=args.devices, minutes=args.minutes, seed=args.seed)
    return 0
