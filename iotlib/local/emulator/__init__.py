"""A local Event Hubs emulator: an AMQP 1.0 server that the unmodified azure-eventhub client talks to.

Point the client at it with the official emulator's connection string
(``Endpoint=sb://localhost:<port>;SharedAccessKeyName=RootManageSharedAccessKey;
SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;``): plain TCP, no
Docker, events kept on disk across restarts. The same port also takes AMQP
over WebSockets, and ``tls_port`` adds AMQP and WebSockets over TLS with a
locally made certificate, which the official emulator offers neither of.

Design choice: a small asyncio AMQP 1.0 stack of iotlib's own (codec,
framing, SASL, sessions, links, flow control) rather than python-qpid-proton.
The azure-eventhub client decodes performatives by field position and cannot
read shortened lists, ``list0`` or described arrays; proton omits trailing
nulls and hides a transfer's message format, which a prototype had to patch
byte by byte. Owning every byte also lets the hot path stay cheap: events are
stored as the producer encoded them and delivered by splicing the service
annotations into their bytes, never decoded and re-encoded in Python.

Modules, one concept each: :mod:`~iotlib.local.emulator.codec` (AMQP types),
:mod:`~iotlib.local.emulator.performatives` (a field table per performative),
:mod:`~iotlib.local.emulator.framing` (frames, the delivery hot path),
:mod:`~iotlib.local.emulator.message` (batches, annotation splicing),
:mod:`~iotlib.local.emulator.log` (durable partition log),
:mod:`~iotlib.local.emulator.commit` (group commit: write, fsync, then settle),
:mod:`~iotlib.local.emulator.namespace` (namespace, hubs, partition keys),
:mod:`~iotlib.local.emulator.position` (starting positions),
:mod:`~iotlib.local.emulator.ownership` (owner levels),
:mod:`~iotlib.local.emulator.auth` (SAS tokens), :mod:`~iotlib.local.emulator.config`
(``Config.json``), :mod:`~iotlib.local.emulator.throughput` (throughput units:
ingress refused with ``server-busy`` over budget, egress paced; off by
default), :mod:`~iotlib.local.emulator.management` (``$cbs``,
``$management``), :mod:`~iotlib.local.emulator.services` (what links are handed),
:mod:`~iotlib.local.emulator.links`, :mod:`~iotlib.local.emulator.session`,
:mod:`~iotlib.local.emulator.connection`, :mod:`~iotlib.local.emulator.websocket`
(AMQP over WebSockets), :mod:`~iotlib.local.emulator.tls` (the local CA and
certificate), :mod:`~iotlib.local.emulator.server` and
:mod:`~iotlib.local.emulator.runner` (start one from Python).
"""

from iotlib.local.emulator.config import EmulatorConfig, EntityConfig, KeyConfig
from iotlib.local.emulator.runner import Emulator
from iotlib.local.emulator.throughput import ThroughputStats

__all__ = ["Emulator", "EmulatorConfig", "EntityConfig", "KeyConfig", "ThroughputStats"]
