"""``iotlib monitor``: consumer-group lag per partition, once or every few seconds."""

from __future__ import annotations

import argparse
import time

from iotlib.cli.arguments import seconds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="show how far each consumer group is behind the hub, per partition")
    p.add_argument(
        "--consumer-group",
        action="append",
        metavar="GROUP[=CONTAINER]",
        default=None,
        help="consumer group and its checkpoint container (default: capture and warm)",
    )
    p.add_argument("--eventhub", default=None, help="event hub name (default IOTLIB_EVENTHUB_NAME or telemetry)")
    p.add_argument(
        "--watch",
        type=seconds,
        default=None,
        metavar="DURATION",
        help="repeat every DURATION (e.g. 5, 5s, 1m) until Ctrl-C",
    )
    p.set_defaults(func=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    import polars as pl

    from iotlib.hub import monitor

    groups: dict[str, str] = {}
    for spec in args.consumer_group or list(monitor.DEFAULT_CHECKPOINTS):
        group, _, container = spec.partition("=")
        groups[group] = container or monitor.DEFAULT_CHECKPOINTS.get(group, "checkpoints")
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_hide_dataframe_shape=True, tbl_width_chars=160):
        while True:
            frame = monitor.lag(groups, eventhub_name=args.eventhub)
            print(
                frame.select(
                    "consumer_group",
                    "partition_id",
                    "last_enqueued_sequence_number",
                    "checkpoint_sequence_number",
                    "unprocessed",
                    "last_enqueued_time",
                    "checkpoint_time",
                    "owner",
                )
            )
            print(monitor.summary(frame))
            if args.watch is None:
                return 0
            time.sleep(args.watch)
