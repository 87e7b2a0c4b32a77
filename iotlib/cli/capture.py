"""``iotlib capture``: capture the hub's consumer group into Blob storage in the Event Hubs Capture format."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from iotlib.cli.arguments import add_verbose, configure_logging, seconds

#: Seconds beyond the shutdown timeout a signalled capture may take before the process ends regardless.
_STOP_MARGIN = 20.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capture",
        help="capture the event hub into Blob storage as Event Hubs Capture (Avro) files",
        description=(
            "Read a consumer group of the event hub and write Blob storage in the exact Event Hubs Capture "
            "format and layout ({Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/"
            "{Second}.avro), at least once: a file's last event is checkpointed only after the file is "
            "committed. Runs until Ctrl-C or SIGTERM, which flush the open windows, then checkpoint. "
            "Connection strings come from iotlib.settings() (the local stack, or the IOTLIB_* variables)."
        ),
    )
    p.add_argument("--eventhub", default=None, help="event hub name (default: IOTLIB_EVENTHUB_NAME or telemetry)")
    p.add_argument("--consumer-group", default="capture", help="consumer group (default capture)")
    p.add_argument("--container", default="capture", help="Blob container for Capture files (default capture)")
    p.add_argument(
        "--checkpoint-container",
        default="capture-checkpoints",
        help="Blob container for checkpoints and ownership (default capture-checkpoints)",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="{Namespace} in blob names (default: from the Event Hubs host; fabrikam for a local emulator)",
    )
    p.add_argument("--time-window", default="300", help="seconds per window, 1-900 (Azure: 60-900; default 300)")
    p.add_argument("--size-window", default="300MB", help="bytes per file, e.g. 300MB (MB = MiB; Azure: 10-500MB)")
    p.add_argument("--grace", default="10", help="seconds after a window's end, without events, before it closes")
    p.add_argument(
        "--codec", default="null", choices=["null", "deflate"], help="Avro codec (Azure: Avro=null, AvroDeflate)"
    )
    p.add_argument("--path-format", default=None, help="blob name format with every placeholder, in any order")
    p.add_argument(
        "--write-empty-archives",
        action="store_true",
        help="write Azure's empty file (header, one empty block) for windows without events (skipEmptyArchives off)",
    )
    p.add_argument("--frame-size", default="64KB", help="bytes of records per Avro block / blob block (default 64KB)")
    p.add_argument("--breaker-warn", type=int, default=200, help="buffered frames that log a warning (default 200)")
    p.add_argument("--breaker-trip", type=int, default=400, help="buffered frames that stall a partition (default 400)")
    p.add_argument("--breaker-stall", default="30", help="seconds between re-checks while stalled (default 30)")
    p.add_argument(
        "--starting-position",
        default="earliest",
        help="where a partition without a checkpoint starts: earliest, latest, an ISO 8601 time or a sequence number",
    )
    p.add_argument("--load-balancing-interval", default="10", help="seconds between ownership renewals (default 10)")
    p.add_argument("--ownership-expiry", default=None, help="seconds before a silent owner's partitions are taken")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--once", action="store_true", help="stop once everything enqueued at the start is stored")
    stop.add_argument(
        "--until-idle",
        type=seconds,
        default=None,
        metavar="DURATION",
        help="stop after this many seconds without events, once every partition is caught up by a live owner "
        "(partitions a killed process held are waited for until its claim expires; exit 1 naming any that are not)",
    )
    p.add_argument("--timeout", type=seconds, default=None, metavar="DURATION", help="stop after this long at most")
    p.add_argument(
        "--shutdown-timeout",
        type=seconds,
        default=30.0,
        metavar="DURATION",
        help="seconds a stop (Ctrl-C, SIGTERM, the end of --once or --until-idle) may spend storing the open windows; "
        "what storage has not taken by then is left for the next run, never checkpointed (default 30)",
    )
    p.add_argument(
        "--reset-checkpoints",
        action="store_true",
        help="delete capture's checkpoints first, so every partition starts again from --starting-position: to "
        "capture again what a deleted container lost (events still stored are skipped, not stored twice)",
    )
    p.add_argument(
        "--events-out", type=Path, default=None, help="append a CaptureFileCreated event (a JSON line) per file written"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-partition lines")
    add_verbose(p)
    p.set_defaults(func=_capture)


def _capture(args: argparse.Namespace) -> int:
    from iotlib.capture import CaptureWriter
    from iotlib.capture.progress import Progress, partition_line
    from iotlib.hub.starting import parse_starting_position

    configure_logging(args.verbose)
    writer = CaptureWriter.from_settings(
        eventhub_name=args.eventhub,
        namespace=args.namespace,
        consumer_group=args.consumer_group,
        container=args.container,
        checkpoint_container=args.checkpoint_container,
        time_window=args.time_window,
        size_window=args.size_window,
        grace=args.grace,
        codec=args.codec,
        path_format=args.path_format,
        skip_empty_archives=not args.write_empty_archives,
        frame_size=args.frame_size,
        breaker_warn=args.breaker_warn,
        breaker_trip=args.breaker_trip,
        breaker_stall=args.breaker_stall,
        starting_position=parse_starting_position(args.starting_position),
        load_balancing_interval=args.load_balancing_interval,
        ownership_expiry=args.ownership_expiry,
        shutdown_timeout=args.shutdown_timeout,
    )
    engine = writer._engine  # noqa: SLF001 - the CLI wires its own per-file and progress hooks
    events_out = open(args.events_out, "a", buffering=1) if args.events_out else None  # noqa: SIM115
    if events_out is not None:

        def on_file(row: Any) -> None:
            events_out.write(json.dumps({"type": "Microsoft.EventHub.CaptureFileCreated", "name": row.name,
                                         "reason": row.reason, "extended": row.extended, "writer": row.writer,
                                         "pid": os.getpid(),
                                         "data": row.to_event_data()}) + "\n")  # fmt: skip

        engine.on_file = on_file

    signals = {"count": 0}
    grace = writer.options.shutdown_timeout

    def stop_now(why: str) -> None:  # what was not stored was not checkpointed: the next run captures it
        print(f"iotlib capture: {why}: stopping without flushing; what was not stored is captured again next run",
              file=sys.stderr, flush=True)  # fmt: skip
        os._exit(130)

    def on_signal(signum: int, _frame: Any) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            stop_now("second signal")
        print(f"iotlib capture: {signal.Signals(signum).name}: storing open windows (at most {grace:g} s), then "
              "stopping (send it again to stop at once)", file=sys.stderr, flush=True)  # fmt: skip
        # Whatever hangs, the process ends: the flush is bounded by the grace, closing by a margin beyond it.
        watchdog = threading.Timer(
            grace + _STOP_MARGIN, stop_now, args=(f"not stopped {grace + _STOP_MARGIN:g} s after the signal",)
        )
        watchdog.daemon = True
        watchdog.start()
        writer.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    progress: Any = None
    if not args.no_progress:
        progress = Progress() if sys.stderr.isatty() else _Lines(partition_line)
    opts = writer.options
    print(
        f"iotlib capture: {opts.eventhub_name} ({opts.consumer_group}) -> container {opts.container!r}, "
        f"windows {opts.time_window}s / {opts.size_window:,} bytes, codec {opts.codec}, namespace {opts.namespace}",
        file=sys.stderr,
        flush=True,
    )
    try:
        report = writer.run(once=args.once, until_idle=args.until_idle, timeout=args.timeout, progress=progress,
                            reset_checkpoints=args.reset_checkpoints)  # fmt: skip
    finally:
        if events_out is not None:
            events_out.close()
    print(report.summary(), flush=True)
    if report.unstored:
        print(f"iotlib capture: {sum(report.unstored.values()):,} events received were not stored when it stopped "
              "(storage did not take them); nothing past what is stored is checkpointed, so the next run captures "
              "them again", file=sys.stderr)  # fmt: skip
    if report.uncheckpointed:
        print(f"iotlib capture: {sum(report.uncheckpointed.values()):,} events were stored but their checkpoint "
              "was not written when it stopped; the next run with the same --time-window finds them stored and "
              "skips them", file=sys.stderr)  # fmt: skip
    return 1 if report.unstored or report.uncheckpointed else 0


class _Lines:
    """Progress for logs and pipes: one compact per-partition line every few seconds."""

    def __init__(self, line: Any, every: float = 2.0) -> None:
        self.line, self.every, self.last = line, every, 0.0

    def __call__(self, report: Any, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.every:
            self.last = now
            print(f"captured {report.events:,} events, {len(report.files)} files | {self.line(report)}",
                  file=sys.stderr, flush=True)  # fmt: skip
