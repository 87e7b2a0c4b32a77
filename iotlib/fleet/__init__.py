"""The Fabrikam fleet: who sends what, and when.

- :mod:`~iotlib.fleet.scenario` — the device registry (100,000 devices in ``data/``, and the
  original 1,000-device shape);
- :mod:`~iotlib.fleet.simulate`, :mod:`~iotlib.fleet.faults` — seeded, vectorised telemetry,
  staggered or synchronized firmware, faults with ground truth;
- :mod:`~iotlib.fleet.events` — the ``UpdateTemperatureEvent``: JSON bodies, properties, a reason
  for every malformed body;
- :mod:`~iotlib.fleet.delivery` — the hub's view of simulated events (partition, enqueued time,
  sequence number) without a hub;
- :mod:`~iotlib.fleet.hashing` — the counter-based randomness (SplitMix64) both of them draw from;
- :mod:`~iotlib.fleet.scale` — full scale by hand, small in CI and the demo;
- :mod:`~iotlib.fleet.plots` — figures for notebook 01 (imports matplotlib).
"""

from iotlib._lazy import submodules

__getattr__ = submodules(
    __name__, ["scenario", "simulate", "faults", "events", "delivery", "hashing", "scale", "plots"]
)
