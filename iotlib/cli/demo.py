"""``iotlib demo``: the whole journey end to end on the local stack, small by default (``--full``: Fabrikam's scale)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the journey end to end on the local stack, at a small scale (what `make demo` runs)",
        description="Simulate (a heat event and faults), send live and sped up while capture and the warm job "
        "run beside the hub, load the cold store back, answer a few analysis questions, show the lag table and "
        "print a short report, its figures saved as PNG under --out: 1,000 devices over 10 minutes, or with "
        "--full Fabrikam's 100,000 devices over 60 minutes. Uses the running local stack, or starts one and "
        "stops it at the end; says which, and what next.",
    )
    p.add_argument("--full", action="store_true", help="Fabrikam's scale: 100,000 devices, 60 minutes")
    p.add_argument("--devices", type=int, default=None, help="devices (default: 1,000; --full: 100,000)")
    p.add_argument("--minutes", type=int, default=None, help="simulated minutes (default: 10; --full: 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--speed", type=float, default=None, help="how much faster than real time to send (default 20; --full: 60)"
    )
    p.add_argument("--out", default="out", help="folder for the figures (PNG; default: out)")
    p.add_argument(
        "--blob-port", type=int, default=None, help="Azurite's port if the demo starts the stack (0 = a free one)"
    )
    p.add_argument(
        "--eventhub-port", type=int, default=None, help="the emulator's port if the demo starts the stack (0 = free)"
    )
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from iotlib.cli import journey as demo

    ports = {"blob_port": args.blob_port, "eventhub_port": args.eventhub_port}
    demo.run(
        devices=args.devices,
        minutes=args.minutes,
        seed=args.seed,
        full=args.full,
        speed=args.speed,
        out=args.out,
        stack_options={k: v for k, v in ports.items() if v is not None},
    )
    return 0
