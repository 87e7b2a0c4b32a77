"""``iotlib monitor``: consumer-group lag per partition, once or refreshed in place every few seconds."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from iotlib.cli.arguments import seconds

if TYPE_CHECKING:
    import polars as pl

    from iotlib.hub.lag import LagAlert

#: ANSI: cursor to the top left, then clear to the end of the screen (the table redraws in place).
REDRAW = "\x1b[H\x1b[J"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="show how far each consumer group is behind the hub, per partition",
        description=(
            "Per event hub, consumer group and partition: the last enqueued sequence number and time, the "
            "last checkpointed ones, the events not processed yet, how long the oldest of them has waited, "
            "and events in and out per second since the previous look. It reads the hub's partition "
            "properties and the checkpoint blobs the consumers write, as against Azure."
        ),
        epilog="examples: iotlib monitor   |   iotlib monitor --consumer-group warm --watch 5 --alert-lag 10000",
    )
    p.add_argument(
        "--consumer-group",
        action="append",
        metavar="GROUP[=CONTAINER]",
        default=None,
        help="consumer group and its checkpoint container; repeat for several "
        "(default: capture and warm, in capture-checkpoints and warm-checkpoints)",
    )
    p.add_argument(
        "--eventhub",
        action="append",
        default=None,
        help="event hub name; repeat for several (default IOTLIB_EVENTHUB_NAME or telemetry)",
    )
    p.add_argument(
        "--watch", type=seconds, default=None, metavar="DURATION", help="redraw every DURATION (5, 5s, 1m) until Ctrl-C"
    )
    p.add_argument("--count", type=_positive, default=None, metavar="N", help="with --watch: stop after N looks")
    p.add_argument(
        "--alert-lag",
        type=_positive,
        default=None,
        metavar="EVENTS",
        help="alert when a group's unprocessed events stay above EVENTS for --alert-for",
    )
    p.add_argument("--alert-for", default="1m", metavar="DURATION", help="how long above --alert-lag (default 1m)")
    p.add_argument(
        "--no-lag-time",
        action="store_true",
        help="skip reading each partition's oldest unprocessed event (no 'waited' column)",
    )
    p.set_defaults(func=_monitor)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value is not None else "-"


def _number(value: Any, spec: str = ",") -> str:
    return "-" if value is None else format(value, spec)


def _waited(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def table(frame: pl.DataFrame) -> list[str]:
    """The look as aligned text lines: a row per partition, then a total per consumer group."""
    from iotlib.hub.lag import summary

    head = (
        "hub",
        "group",
        "part",
        "last seq",
        "enqueued",
        "checkpoint",
        "at",
        "unprocessed",
        "waited",
        "in/s",
        "out/s",
        "owner",
    )
    rows: list[tuple[str, ...]] = [head]
    totals = {(r["eventhub"], r["consumer_group"]): r for r in summary(frame).iter_rows(named=True)}
    last_key = None
    for r in frame.iter_rows(named=True):
        key = (r["eventhub"], r["consumer_group"])
        if last_key is not None and key != last_key:
            rows.append(_total(totals[last_key]))
        last_key = key
        rows.append(
            (
                r["eventhub"],
                r["consumer_group"],
                r["partition_id"],
                _number(r["last_enqueued_sequence_number"]),
                _time(r["last_enqueued_time"]),
                _number(r["checkpoint_sequence_number"]),
                _time(r["checkpoint_time"]),
                _number(r["unprocessed"]),
                _waited(r["lag_seconds"]),
                _number(r["enqueued_per_second"], ",.1f"),
                _number(r["processed_per_second"], ",.1f"),
                (r["owner"] or "-")[:8],
            )
        )
    if last_key is not None:
        rows.append(_total(totals[last_key]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return [
        "  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]


def _total(r: dict[str, Any]) -> tuple[str, ...]:
    lost = f"  ({r['lost_to_retention']:,} lost to retention)" if r["lost_to_retention"] else ""
    return (
        "",
        f"{r['consumer_group']} (all)",
        "",
        "",
        "",
        "",
        _time(r["oldest_checkpoint"]),
        _number(r["unprocessed"]) + lost,
        _waited(r["lag_seconds"]),
        _number(r["enqueued_per_second"], ",.1f"),
        _number(r["processed_per_second"], ",.1f"),
        f"{r['owners']} owner(s)",
    )


def render(frame: pl.DataFrame, alerts: Sequence[LagAlert] = (), *, look: int = 1, every: float | None = None) -> str:
    """What ``iotlib monitor`` prints for one look (the journey prints it too)."""
    at = frame["sampled_at"].max() if frame.height else None
    heading = f"look {look} at {_time(at)} UTC"  # type: ignore[arg-type]
    if every is not None:
        heading += f", every {every:g} s (Ctrl-C to stop)"
    lines = [heading, *table(frame)]
    lines += [f"ALERT {a.state} at {_time(a.at)}: {a.message}" for a in alerts]
    return "\n".join(lines)


def _monitor(args: argparse.Namespace) -> int:
    import polars as pl

    from iotlib.hub.lag import LagRule
    from iotlib.hub.monitor import DEFAULT_CHECKPOINTS, LagMonitor

    rule = LagRule(args.alert_lag, for_=args.alert_for) if args.alert_lag is not None else None
    groups = args.consumer_group or list(DEFAULT_CHECKPOINTS)
    monitors: list[LagMonitor] = []
    alerts: list[LagAlert] = []
    in_place = args.watch is not None and sys.stdout.isatty()
    try:
        for name in args.eventhub or [None]:
            monitors.append(
                LagMonitor.from_settings(
                    eventhub_name=name, consumer_groups=groups, rule=rule, lag_time=not args.no_lag_time
                )
            )
        look = 0
        while True:
            started = time.monotonic()
            looks = [m.sample() for m in monitors]
            look += 1
            new = [a for s in looks for a in s.alerts]
            alerts = [*alerts, *new][-5:]  # redrawn in place, the latest few stay on screen
            text = render(pl.concat([s.frame for s in looks]), alerts if in_place else new, look=look, every=args.watch)
            print(REDRAW + text if in_place else text, flush=True)
            if args.watch is None or (args.count is not None and look >= args.count):
                return 0
            if not in_place:
                print(flush=True)
            time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how --watch ends
    finally:
        for m in monitors:
            m.close()
