"""The local stack: Azurite (Blob storage) and iotlib's Event Hubs emulator, no Azure account.

- :mod:`~iotlib.local.stack` — ``up``, ``down``, ``status``: the two services in the background;
- :mod:`~iotlib.local.state` — what ``up`` recorded (read by :func:`iotlib.settings` too);
- :mod:`~iotlib.local.emulator` — the Event Hubs emulator (an AMQP 1.0 server the unmodified
  azure-eventhub SDK talks to).
"""

from iotlib._lazy import submodules

__getattr__ = submodules(__name__, ["stack", "state", "emulator"])
