"""The ``iotlib`` command line: one module per job (``iotlib --help`` lists them in the journey's order).

:mod:`~iotlib.cli.journey` is the journey end to end that ``iotlib demo`` and ``make demo`` run.
"""

from iotlib.cli.main import main

__all__ = ["main"]
