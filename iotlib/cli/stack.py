"""``iotlib up``, ``iotlib down``, ``iotlib status``: the local stack."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the local stack (Azurite, Event Hubs emulator) in the background")
    p.add_argument("--home", type=Path, help="state folder (default: .iotlib here or in a parent)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--blob-port", type=int, default=None, help="Azurite's port (default 10000; 0 = free)")
    p.add_argument("--eventhub-port", type=int, default=None, help="emulator's port (default 5672; 0 = free)")
    p.add_argument(
        "--eventhubs-config",
        type=Path,
        default=None,
        help="the emulator's entities, in the official emulator's Config.json shape",
    )
    p.add_argument(
        "--throughput-units",
        type=int,
        default=None,
        metavar="N",
        help="throttle the emulator like N standard-tier throughput units (default: no limit)",
    )
    p.add_argument(
        "--tls-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the emulator over TLS (AMQP and WebSockets) on PORT (Azure's is 5671; 0 = free), "
        "with a local CA in <home>/tls; clients trust <home>/tls/ca.pem (default: no TLS)",
    )
    p.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the emulator acknowledges events once on disk (the default) or, with --no-fsync, once the "
        "operating system has them (faster for small sends; survives kill -9 but not power loss)",
    )
    p.set_defaults(func=_up)

    p = sub.add_parser("down", help="stop the services `iotlib up` started")
    p.add_argument("--home", type=Path)
    p.set_defaults(func=_down)

    p = sub.add_parser(
        "status", help="show each local service, its address and health (exit status 1 when one is down)"
    )
    p.add_argument("--home", type=Path)
    p.set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    from iotlib.local import stack

    st = stack.up(
        home=args.home,
        host=args.host,
        blob_port=args.blob_port,
        eventhub_port=args.eventhub_port,
        eventhubs_config=args.eventhubs_config,
        throughput_units=args.throughput_units,
        tls_port=args.tls_port,
        fsync=args.fsync,
    )
    for name, svc in st.services.items():
        how = "started" if name in st.started else "already running"
        print(f"# {name:<10} {svc.address:<20} pid {svc.pid:<8} {how}; log: {svc.log}")
        if svc.tls_port is not None:
            ca = st.home / "tls" / "ca.pem"
            print(f"# {'':<10} TLS on {svc.host}:{svc.tls_port}; clients trust {ca} (connection_verify=...)")
    print("# point other shells at this stack with:")
    print(st.settings().exports())
    return 0


def _down(args: argparse.Namespace) -> int:
    from iotlib.local import stack

    stopped = stack.down(args.home)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")
    return 0


def _status(args: argparse.Namespace) -> int:
    from iotlib.local import stack

    report = stack.status(args.home)
    for row in report:
        health = "healthy" if row.healthy else "DOWN"
        pid = row.pid if row.pid is not None else "-"
        print(f"{row.name:<10} {row.address:<20} pid {pid!s:<8} {health:<8} {row.detail}")
    down = [r.name for r in report if not r.healthy]
    if down:
        print(f"down: {', '.join(down)} (start the stack with `iotlib up`)")
        return 1
    return 0
