"""``iotlib load``: captured events of a time range → one Parquet file (or a hive-partitioned cache)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="load Event Hubs Capture files (Blob container or directory) into Parquet",
        description="Read the Capture Avro files whose windows can hold [--start, --end), decode them "
        "(thermostat JSON bodies by default), drop duplicates and write Parquet. A load that finds no "
        "events says what the store holds instead; names that do not fit the path format are named.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--container", help="Blob container holding the Capture files (connection string from iotlib.settings())"
    )
    where.add_argument(
        "--path",
        "--dir",
        dest="path",
        type=Path,
        help="a local directory holding the Capture layout, or one Capture (Avro) file",
    )
    p.add_argument("--connection-string", help="storage connection string (default: iotlib.settings())")
    p.add_argument(
        "--start", help="events enqueued from this UTC time, ISO 8601 (e.g. 2024-03-01T10:00Z); default: everything"
    )
    p.add_argument("--end", help="events enqueued before this UTC time (exclusive), ISO 8601")
    p.add_argument("--namespace", help="only this Event Hubs namespace")
    p.add_argument("--eventhub", help="only this event hub")
    p.add_argument("--partitions", help="only these partition ids, comma-separated")
    p.add_argument("--path-format", default=None, help="Capture blob-name format if not Azure's default")
    p.add_argument("--no-decode", action="store_true", help="keep bodies as bytes (no JSON columns)")
    p.add_argument("--keep-duplicates", action="store_true", help="do not drop re-captured events")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip truncated/corrupted blobs (listed at the end) instead of failing"
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="one Parquet file (zstd)")
    out.add_argument("--out-dir", type=Path, help="a hive-partitioned Parquet folder (date=YYYY-MM-DD/…)")
    p.set_defaults(func=_load)


def _load(args: argparse.Namespace) -> int:
    import logging
    import sys

    from iotlib import coldstore
    from iotlib.capture import format as cf

    # The loader's warnings (nothing found, names that do not fit) as lines of this command's own.
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setFormatter(logging.Formatter("iotlib load: warning: %(message)s"))
    logging.getLogger("iotlib.coldstore").addHandler(warnings)
    # No source: iotlib.settings()'s storage account.
    source = args.connection_string if args.container else args.path
    df, report = coldstore.load(
        source,
        container=args.container,
        start=args.start,
        end=args.end,
        namespace=args.namespace,
        eventhub=args.eventhub,
        partitions=args.partitions.split(",") if args.partitions else None,
        decode=None if args.no_decode else "json",
        dedupe=not args.keep_duplicates,
        errors="skip" if args.skip_bad else "raise",
        path_format=args.path_format or cf.DEFAULT_PATH_FORMAT,
        progress=True,
        with_report=True,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(args.out, compression="zstd")
        where = str(args.out)
    else:
        files = coldstore.to_parquet(df, args.out_dir, report=report)
        where = f"{args.out_dir} ({len(files)} files)"
    print(report.summary())
    print(f"wrote {df.height:,} events to {where}")
    return 0
