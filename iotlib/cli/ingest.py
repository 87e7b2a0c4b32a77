"""``iotlib ingest``: simulate Fabrikam's devices (or read a simulation) and send them to Event Hubs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from iotlib.cli.simulate import add_simulation_arguments, simulation_from_arguments

if TYPE_CHECKING:
    import polars as pl

    from iotlib.fleet.simulate import Simulation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="send simulated telemetry to Event Hubs (replay as fast as possible, or live at a set speed)",
        description=(
            "Send Fabrikam telemetry to the event hub in IOTLIB_EVENTHUB_CONNECTION_STRING / "
            "IOTLIB_EVENTHUB_NAME (default: the local stack). Events come from a simulation described by "
            "the options below, or from a Parquet file written by `iotlib simulate` (--events). Live mode "
            "simulates from now unless --start says otherwise. Ctrl-C stops within two seconds and prints "
            "what was sent, per partition (exit status 130)."
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
    from iotlib.ingest import IngestClient

    if args.events is None and args.start is None and args.mode == "live":
        args.start = "now"  # live telemetry happens now: event times then sit just before their arrival
    with IngestClient.from_settings(eventhub_name=args.eventhub) as client:
        client.partition_ids()  # the hub is checked before any work: a mistake fails in seconds
        source: pl.DataFrame | Simulation
        source = _read_events(args.events) if args.events is not None else simulation_from_arguments(args)[0]
        report = client.send(
            source,
            mode=args.mode,
            speed=args.speed,
            send_malformed=args.send_malformed,
            max_batch_events=args.max_batch_events,
            progress=not args.no_progress,
        )
    print(report.summary())
    print(f"sent per partition: {report.partition_line()}")
    for failure in (report.rejected + report.failed)[:10]:
        print(f"  {failure.device_id} {failure.time_observed}: {failure.reason}")
    more = len(report.rejected) + len(report.failed) - 10
    if more > 0:
        print(f"  ... and {more:,} more")
    if report.interrupted:
        return 130  # as a shell reports a command stopped by SIGINT
    return 1 if report.failed else 0


def _read_events(path: Path) -> pl.DataFrame:
    """A simulation Parquet file, checked to be one (a CSV or JSON file gets a clear error, not polars')."""
    import polars as pl

    from iotlib.errors import ConfigurationError, ValidationError

    if not path.is_file():
        raise ConfigurationError(f"--events {path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if head != b"PAR1" or tail != b"PAR1" or size < 12:
        raise ValidationError(
            f"--events {path} is not a Parquet file (Parquet files begin and end with PAR1): "
            "write one with `iotlib simulate --out FILE.parquet`"
        )
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars' errors have no common base worth naming here
        raise ValidationError(f"--events {path}: cannot read it as Parquet ({exc})") from None
