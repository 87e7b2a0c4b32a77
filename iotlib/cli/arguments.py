"""Argument types the commands share."""

from __future__ import annotations

from iotlib.durations import to_seconds


def seconds(text: str) -> float:
    """A duration on the command line (``90``, ``1.5``, ``90s``, ``2m``): seconds, via :mod:`iotlib.durations`.

    A bad value raises a ``ValueError`` (a ConfigurationError), which argparse reports for the option.
    """
    return to_seconds(text, allow_zero=False)


seconds.__name__ = "duration"  # argparse names the type in its error: "invalid duration value: 'soon'"
