"""``iotlib ingest``: simulate Fabrikam's devices (or read a simulation) and send them to Event Hubs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from iotlib.cli.simulate import add_simulation_arguments, simulation_from_arguments

if TYPE_CHECKING:
    from iotlib.fleet.simulate import Simulation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="send simulated telemetry to Event Hubs (replay as fast as possible, or live at a set speed)",
        description=(
            "Send Fabrikam telemetry to the event hub in IOTLIB_EVENTHUB_CONNECTION_STRING / "
            "IOTLIB_EVENTHUB_NAME (default: the local stack). Events come from a simulation described by "
            "the options below, or from a Parquet file written by `iotlib simulate` (--events)."
        ),
    )
    add_simulation_arguments(p)
    p.add_argument("--events", type=Path, default=None, help="send this simulation Parquet file instead")
    p.add_argument(
        "--mode",
        choices=["replay", "live"],
        default="replay",
        help="replay: as fast as the hub takes them; live: paced by sent_at (default replay)",
    )
    p.add_argument("--speed", type=float, default=1.0, help="live mode: times faster than real time (default 1)")
    p.add_argument("--max-batch-events", type=int, default=None, help="cap events per batch (default: fill to size)")
    p.add_argument(
        "--send-malformed",
        action="store_true",
        help="send malformed payloads (the malformed fault) instead of holding them back",
    )
    p.add_argument("--eventhub", default=None, help="event hub name (default IOTLIB_EVENTHUB_NAME or telemetry)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    import polars as pl

    from iotlib.errors import ConfigurationError
    from iotlib.ingest import IngestClient

    if args.events is not None:
        if not args.events.exists():
            raise ConfigurationError(f"--events {args.events}: no such file")
        source: pl.DataFrame | Simulation = pl.read_parquet(args.events)
    else:
        source, _ = simulation_from_arguments(args)
    with IngestClient.from_settings(eventhub_name=args.eventhub) as client:
        report = client.send(
            source,
            mode=args.mode,
            speed=args.speed,
            send_malformed=args.send_malformed,
            max_batch_events=args.max_batch_events,
            progress=not args.no_progress,
        )
    print(report.summary())
    for failure in (report.rejected + report.failed)[:10]:
        print(f"  {failure.device_id} {failure.time_observed}: {failure.reason}")
    more = len(report.rejected) + len(report.failed) - 10
    if more > 0:
        print(f"  ... and {more:,} more")
    return 1 if report.failed else 0
