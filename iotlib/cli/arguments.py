"""Argument types the commands share."""

from __future__ import annotations

import argparse
import logging
import sys

from iotlib.durations import to_seconds


def seconds(text: str) -> float:
    """A duration on the command line (``90``, ``1.5``, ``90s``, ``2m``): seconds, via :mod:`iotlib.durations`.

    A bad value raises a ``ValueError`` (a ConfigurationError), which argparse reports for the option.
    """
    return to_seconds(text, allow_zero=False)


seconds.__name__ = "duration"  # argparse names the type in its error: "invalid duration value: 'soon'"


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v``: iotlib's own log lines; ``-vv``: the Azure SDKs' too (load balancing, links, retries);
    ``-vvv``: every HTTP request of the storage SDK as well."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-vv: the Azure SDKs too, -vvv: their HTTP requests)",
    )


def configure_logging(verbose: int) -> None:
    """Log to stderr at the level ``-v`` asked for (warnings only without it)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("azure").setLevel(logging.INFO if verbose > 1 else logging.ERROR)
    http = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")  # a dozen lines per request
    http.setLevel(logging.INFO if verbose > 2 else logging.WARNING)
