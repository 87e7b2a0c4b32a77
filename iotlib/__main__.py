"""``python -m iotlib`` is the ``iotlib`` command."""

from iotlib.cli import main

raise SystemExit(main())
