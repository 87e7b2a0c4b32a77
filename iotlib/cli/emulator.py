"""``iotlib emulator``: run the local Event Hubs emulator in the foreground."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulator",
        help="run the local Event Hubs emulator (AMQP 1.0) in the foreground; logs go to stderr",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=5672, help="TCP port (default: 5672; 0 = a free one)")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="where the event log lives (default: <iotlib home>/eventhubs)"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="entity config in the official emulator's Config.json shape (default: hub 'telemetry', 8 partitions)",
    )
    p.add_argument(
        "--throughput-units",
        type=_units,
        default=None,
        metavar="N",
        help="meter the namespace as N of Azure's standard-tier throughput units (1,000 events/s "
        "or 1 MiB/s in, 4,096 events/s or 2 MiB/s out each); sends over budget fail with "
        "com.microsoft:server-busy (default: the config's ThroughputUnits, else not metered; "
        "0 = not metered)",
    )
    p.add_argument(
        "--tls-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve AMQP and WebSockets over TLS on PORT (Azure's is 5671; 0 = a free one), with a "
        "certificate from a local CA made under --tls-dir (default: off)",
    )
    p.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="where the local CA and the server certificate live (default: <iotlib home>/tls); "
        "clients trust <tls-dir>/ca.pem",
    )
    p.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="acknowledge an event once it is on disk (survives power loss; the default) or, with "
        "--no-fsync, once the operating system has it (survives kill -9 only; faster for small sends)",
    )
    p.add_argument(
        "--revoked-publishers",
        type=Path,
        default=None,
        metavar="FILE",
        help="the revoked-publisher list the device registry writes, re-read whenever it changes "
        "(default: <iotlib home>/devices/revoked-publishers.json)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_emulator)


def _units(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of throughput units, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (not metered) or more, not {value}")
    return value


def _emulator(args: argparse.Namespace) -> int:
    from iotlib import connections
    from iotlib.devices.revocations import FILE_NAME
    from iotlib.local.emulator.config import EmulatorConfig
    from iotlib.local.emulator.server import run

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = EmulatorConfig.from_file(args.config) if args.config else EmulatorConfig()
    if args.throughput_units is not None:
        config = replace(config, throughput_units=args.throughput_units)
    if args.fsync is not None:
        config = replace(config, fsync=args.fsync)
    data_dir = args.data_dir or connections.home() / "eventhubs"
    tls_dir = args.tls_dir or connections.home() / "tls"
    revoked = args.revoked_publishers or connections.home() / "devices" / FILE_NAME
    return run(
        config,
        data_dir,
        host=args.host,
        port=args.port,
        tls_port=args.tls_port,
        tls_dir=tls_dir,
        revoked_publishers=revoked,
    )
