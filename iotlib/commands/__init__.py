"""Subcommands of the ``iotlib`` command line, one module per job."""
