"""``iotlib process``: the warm path — a consumer group into the SQLite warm store, with alerts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from iotlib.cli.arguments import add_verbose, configure_logging, seconds

if TYPE_CHECKING:
    import polars as pl


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process",
        help="stream a consumer group into the warm store: 5 s building windows, late data, alerts",
        description=(
            "Read a consumer group of the event hub in IOTLIB_EVENTHUB_CONNECTION_STRING / IOTLIB_EVENTHUB_NAME "
            "(default: the local stack), decode and validate each event (malformed ones become dead letters), "
            "join the device registry, update per-building windows on event time with the late-data policy, "
            "raise alerts, and commit it all to a SQLite warm store before checkpointing the hub. "
            "A restart resumes exactly where the warm store left off. Several `iotlib process` on the same "
            "consumer group and warm store share the partitions; one that dies has its partitions taken over."
        ),
        epilog=(
            "examples: iotlib process --until-idle 30   |   iotlib process --once --flush --warm-store /tmp/w.sqlite   |   "
            "iotlib process --late-policy adjust --hot 28:3 --silent 10m"
        ),
    )
    p.add_argument("--consumer-group", default="warm", help="consumer group (default warm)")
    p.add_argument(
        "--checkpoint-container",
        default="warm-checkpoints",
        help="blob container for checkpoints and ownership (default warm-checkpoints; created if missing)",
    )
    p.add_argument("--eventhub", default=None, help="event hub name (default IOTLIB_EVENTHUB_NAME or telemetry)")
    p.add_argument("--warm-store", type=Path, default=None, help="SQLite file (default .iotlib/warm.sqlite)")
    p.add_argument(
        "--starting-position",
        default="earliest",
        help="where partitions the warm store has never seen start: earliest (default), latest, "
        "an ISO 8601 time or a sequence number",
    )
    g = p.add_argument_group("the job")
    g.add_argument("--window", default="5s", help="window size (default 5s, the original's)")
    g.add_argument(
        "--time",
        choices=["event", "arrival"],
        default="event",
        help="window by the devices' clocks (event, default: the original's TIMESTAMP BY TimeObserved) or by "
        "arrival at the hub (arrival: nothing is late; for historical replays)",
    )
    g.add_argument("--hop", default=None, help="hop for hopping windows (default: tumbling)")
    g.add_argument("--out-of-order", default="0s", help="out-of-order tolerance (default 0s)")
    g.add_argument("--late-arrival", default="5s", help="late-arrival tolerance (default 5s)")
    g.add_argument(
        "--late-policy",
        choices=["side_output", "adjust", "drop"],
        default="side_output",
        help="what happens to late events (default side_output)",
    )
    g.add_argument("--clock-ahead", default="5s", help="tolerance for device clocks ahead of the hub (default 5s)")
    g.add_argument("--idle-timeout", default="30s", help="longest a quiet partition holds windows open (default 30s)")
    g.add_argument("--dedupe-horizon", default="2m", help="duplicate detection horizon, or 'off' (default 2m)")
    g.add_argument("--registry", type=Path, default=None, help="registry file (.parquet or .json)")
    g.add_argument(
        "--devices",
        type=int,
        default=None,
        help="a generated registry of this many devices (as `iotlib ingest --devices N`), or the first N of --registry",
    )
    g.add_argument("--registry-seed", type=int, default=0, help="seed of a generated registry (default 0)")
    a = p.add_argument_group("alerts")
    a.add_argument(
        "--hot",
        default="30:3",
        metavar="DEGREES:WINDOWS",
        help="building average above DEGREES for WINDOWS consecutive windows (default 30:3; 'off')",
    )
    a.add_argument(
        "--jump", default="10", metavar="DEGREES", help="a device reading jumps more than DEGREES (default 10; 'off')"
    )
    a.add_argument("--silent", default="5m", metavar="DURATION", help="a device silent for longer (default 5m; 'off')")
    a.add_argument("--alert-eventhub", default=None, help="also send each alert as an event to this hub")
    r = p.add_argument_group("running")
    r.add_argument("--once", action="store_true", help="stop when everything enqueued at the start is stored")
    r.add_argument(
        "--until-idle",
        type=seconds,
        default=None,
        metavar="DURATION",
        help="stop after DURATION (e.g. 30, 30s, 2m) without events",
    )
    r.add_argument(
        "--timeout", type=seconds, default=None, metavar="DURATION", help="stop after DURATION (e.g. 600, 10m)"
    )
    r.add_argument(
        "--flush",
        action="store_true",
        help="at the end, emit the windows still open (end of stream: the warm store is then finished)",
    )
    r.add_argument(
        "--no-heartbeat",
        action="store_true",
        help="do not close windows when nothing arrives (results then depend on arrivals only)",
    )
    r.add_argument(
        "--commit-interval",
        type=seconds,
        default=1.0,
        metavar="DURATION",
        help="time between warm-store commits (default 1 s)",
    )
    r.add_argument("--max-batch-size", type=int, default=500, help="events per received batch (default 500)")
    r.add_argument(
        "--ownership-expiry",
        type=seconds,
        default=None,
        metavar="DURATION",
        help="how long a processor that stopped renewing keeps its partitions before another takes them "
        "(default: the SDK's 60 s)",
    )
    r.add_argument(
        "--load-balancing-interval",
        type=seconds,
        default=10.0,
        metavar="DURATION",
        help="how often processors renew and rebalance partition ownership (default 10 s)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose(r)
    p.set_defaults(func=_process)


def _rules(args: argparse.Namespace) -> list:
    from iotlib.errors import ConfigurationError
    from iotlib.warm.alerts import BuildingTooHot, DeviceSilent, TemperatureJump

    rules: list = []
    if args.hot != "off":
        try:
            degrees, _, windows = args.hot.partition(":")
            rules.append(BuildingTooHot(float(degrees), int(windows or 3)))
        except ValueError:
            raise ConfigurationError(f"--hot takes DEGREES:WINDOWS, e.g. 30:3, got {args.hot!r}") from None
    if args.jump != "off":
        try:
            rules.append(TemperatureJump(float(args.jump)))
        except ValueError:
            raise ConfigurationError(f"--jump takes degrees, e.g. 10, got {args.jump!r}") from None
    if args.silent != "off":
        rules.append(DeviceSilent(args.silent))
    return rules


def _registry(args: argparse.Namespace) -> pl.DataFrame:
    from iotlib.errors import ConfigurationError
    from iotlib.fleet import scenario

    if args.registry is not None:
        registry = scenario.load_registry(args.registry)
        return registry.head(args.devices) if args.devices else registry
    if args.devices is not None:
        if args.devices < 1:
            raise ConfigurationError(f"--devices must be at least 1, got {args.devices}")
        return scenario.build_registry(args.devices, seed=args.registry_seed)
    if args.registry_seed:
        return scenario.build_registry(seed=args.registry_seed)
    return scenario.default_registry()


def _process(args: argparse.Namespace) -> int:
    from iotlib.hub.starting import parse_starting_position
    from iotlib.processing import EventTimePolicy, Hopping, Tumbling
    from iotlib.warm import StreamProcessor

    configure_logging(args.verbose)
    policy = EventTimePolicy(
        out_of_order=args.out_of_order,
        late_arrival=args.late_arrival,
        late_policy=args.late_policy,
        clock_ahead=args.clock_ahead,
        idle_timeout=args.idle_timeout,
        dedupe_horizon=None if args.dedupe_horizon == "off" else args.dedupe_horizon,
    )
    window = Tumbling(args.window) if args.hop is None else Hopping(args.window, args.hop)
    options = dict(
        consumer_group=args.consumer_group,
        checkpoint_container=args.checkpoint_container,
        warm_store=args.warm_store,
        window=window,
        policy=policy,
        alerts=_rules(args),
        alert_eventhub=args.alert_eventhub,
        starting_position=parse_starting_position(args.starting_position),
        heartbeat=not args.no_heartbeat,
        commit_interval=args.commit_interval,
        max_batch_size=args.max_batch_size,
        time="arrival" if args.time == "arrival" else "time_observed",
        ownership_expiry=args.ownership_expiry,
        load_balancing_interval=args.load_balancing_interval,
    )
    if args.eventhub:
        options["eventhub_name"] = args.eventhub
    with StreamProcessor.from_settings(registry=_registry(args), **options) as processor:
        for line in processor.options.describe():
            print(line)
        report = processor.run(once=args.once, until_idle=args.until_idle, timeout=args.timeout, flush=args.flush,
                               progress=not args.no_progress)  # fmt: skip
    print(report.summary())
    return 130 if report.stop_reason == "interrupted" else 0  # as a shell reports Ctrl-C
