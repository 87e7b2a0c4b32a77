"""``iotlib emulator``: run the local Event Hubs emulator in the foreground."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulator",
        help="run the local Event Hubs emulator (AMQP 1.0) in the foreground; logs go to stderr",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=5672, help="TCP port (default: 5672; 0 = a free one)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the event log lives (default: <iotlib home>/eventhubs)")
    p.add_argument("--config", type=Path, default=None,
                   help="entity config in the official emulator's Config.json shape "
                        "(default: hub 'telemetry', 8 partitions)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_emulator)


def _emulator(args: argparse.Namespace) -> int:
    from iotlib import connections
    from iotlib.emulator.config import EmulatorConfig
    from iotlib.emulator.server import run

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = EmulatorConfig.from_file(args.config) if args.config else EmulatorConfig()
    data_dir = args.data_dir or connections.home() / "eventhubs"
    return run(config, data_dir, host=args.host, port=args.port)
