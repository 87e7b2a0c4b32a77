"""``iotlib devices``: provision, renew, revoke, disable, enable and list devices and their publisher tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

ACTIONS = ("provision", "renew", "revoke", "disable", "enable", "show")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices",
        help="the device identity registry: each device's publisher token, revocation",
        description=(
            "Each device of the fleet registry sends with a publisher token of its own (audience "
            "sb://<namespace>/<hub>/publishers/<device id>, a Send-only policy, an expiry); the local emulator "
            "lets it send only with its own id as partition key, and refuses it once revoked or disabled. The "
            "registry is a SQLite file under the stack's state folder (.iotlib/devices/)."
        ),
        epilog=(
            "examples: iotlib devices provision 4dcc7c2d-296e-446f-a7d6-e4a957a1db88 --expiry 24h   |   "
            "iotlib devices revoke 4dcc7c2d-296e-446f-a7d6-e4a957a1db88 --reason stolen   |   iotlib devices list"
        ),
    )
    p.add_argument("--eventhub", default=None, help="event hub the tokens are for (default IOTLIB_EVENTHUB_NAME)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("provision", "print the device's credentials as JSON (the same ones again while they are valid)"),
        ("renew", "issue the device a new token and print it as JSON"),
        ("revoke", "refuse the device from its next send on (it is compromised)"),
        ("disable", "refuse the device for now (enable undoes it)"),
        ("enable", "accept a disabled device again (a revoked one once its tokens have expired)"),
        ("show", "print the device's state as JSON"),
    ):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("device_id", metavar="DEVICE_ID", help="a device id of the fleet registry")
        if name in ("provision", "renew"):
            a.add_argument("--expiry", default="24h", metavar="DURATION", help="token lifetime (default 24h)")
        if name in ("revoke", "disable"):
            a.add_argument("--reason", default=None, help="why (kept in the registry's history)")
        a.set_defaults(func=_device)
    listing = actions.add_parser("list", help="the registered devices and their states (no tokens)")
    listing.add_argument("--state", choices=["provisioned", "disabled", "revoked"], default=None)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)


def _registry(args: argparse.Namespace) -> Any:
    from iotlib.devices.registry import DeviceRegistry

    return DeviceRegistry(eventhub_name=args.eventhub)


def _device(args: argparse.Namespace) -> int:
    with _registry(args) as registry:
        if args.action in ("provision", "renew"):
            result = getattr(registry, args.action)(args.device_id, expiry=args.expiry)
        elif args.action in ("revoke", "disable"):
            result = getattr(registry, args.action)(args.device_id, reason=args.reason)
        elif args.action == "enable":
            result = registry.enable(args.device_id)
        else:
            result = registry.get(args.device_id)
        print(json.dumps(result.as_json(), indent=2))
        if args.action in ("revoke", "disable", "enable") and not registry.policy.is_local:
            print(
                "note: on Azure, Event Hubs learns of a revoked publisher only through its revokedpublishers "
                "REST API (PUT/DELETE https://<namespace>/<hub>/revokedpublishers/<device id>); iotlib "
                "records the change here and enforces it on the local emulator",
                file=sys.stderr,
            )
    return 0


def _list(args: argparse.Namespace) -> int:
    import polars as pl

    with _registry(args) as registry:
        frame = registry.list(state=args.state)
    if args.json:
        for row in frame.iter_rows(named=True):
            print(json.dumps(row, default=str))
        return 0
    counts = frame.group_by("state").len().sort("state")
    print(", ".join(f"{n:,} {s}" for s, n in counts.iter_rows()) or "no device is registered")
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_width_chars=200, fmt_str_lengths=40):
        if frame.height:
            print(frame)
    return 0
