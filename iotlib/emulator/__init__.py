"""A local Event Hubs emulator: an AMQP 1.0 server that the unmodified azure-eventhub client talks to.

Point the client at it with the official emulator's connection string
(``Endpoint=sb://localhost:<port>;SharedAccessKeyName=RootManageSharedAccessKey;
SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;``): plain TCP, no
Docker, events kept on disk across restarts.

Design choice: a small asyncio AMQP 1.0 stack of iotlib's own (codec,
framing, SASL, sessions, links, flow control) rather than python-qpid-proton.
The azure-eventhub client decodes performatives by field position and cannot
read shortened lists, ``list0`` or described arrays; proton omits trailing
nulls and hides a transfer's message format, which a prototype had to patch
byte by byte. Owning every byte also lets the hot path stay cheap: events are
stored as the producer encoded them and delivered by splicing the service
annotations into their bytes, never decoded and re-encoded in Python.

Modules, one concept each: :mod:`~iotlib.emulator.codec` (AMQP types),
:mod:`~iotlib.emulator.framing` (frames, performatives),
:mod:`~iotlib.emulator.message` (batches, annotation splicing),
:mod:`~iotlib.emulator.log` (durable partition log),
:mod:`~iotlib.emulator.hub` (namespace, hubs, partition keys),
:mod:`~iotlib.emulator.position` (starting positions),
:mod:`~iotlib.emulator.ownership` (owner levels),
:mod:`~iotlib.emulator.auth` (SAS tokens), :mod:`~iotlib.emulator.config`
(``Config.json``), :mod:`~iotlib.emulator.throughput` (throughput units:
ingress refused with ``server-busy`` over budget, egress paced; off by
default), :mod:`~iotlib.emulator.management` (``$cbs``,
``$management``), :mod:`~iotlib.emulator.links`, :mod:`~iotlib.emulator.session`,
:mod:`~iotlib.emulator.connection`, :mod:`~iotlib.emulator.server` and
:mod:`~iotlib.emulator.runner` (start one from Python).
"""

from iotlib.emulator.config import EmulatorConfig, EntityConfig, KeyConfig
from iotlib.emulator.runner import Emulator
from iotlib.emulator.throughput import ThroughputStats

__all__ = ["Emulator", "EmulatorConfig", "EntityConfig", "KeyConfig", "ThroughputStats"]
