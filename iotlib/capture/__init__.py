"""Event Hubs Capture, locally: an at-least-once writer from a consumer group to Blob storage.

Azure's managed Capture exists only in the cloud; this is its twin, to the same format, so a
cold store written here reads like one written by Azure (and :mod:`iotlib.coldstore` reads both).

>>> from iotlib.capture import CaptureWriter
>>> with CaptureWriter.from_settings(time_window=60, container="capture") as writer:  # doctest: +SKIP
...     report = writer.run(once=True)
>>> report.files_frame()                                                          # doctest: +SKIP

``iotlib capture`` is the command line; :mod:`iotlib.capture.aio` the asynchronous twin.

**Format.** Avro object container files exactly as Azure writes them (:mod:`iotlib.capture.format`):
record ``EventData`` of namespace ``Microsoft.ServiceBus.Messaging``, codec ``null`` (Azure's
default ``Avro`` encoding) or ``deflate`` (``AvroDeflate``), ``EnqueuedTimeUtc`` as .NET text,
``SystemProperties`` as Azure's Capture fills them today (partition key when the event had one,
enqueued time in ms), application properties in ``Properties``.

**Windows.** Per partition, a time window (Azure: 60-900 s, default 300; here 1-900 s) and a size
window (Azure: 10-500 MB, default 300 MB; here from 1 KiB), whichever fills first. Time windows lie
on a fixed grid of *enqueued* time (multiples of the window since the epoch), so a replay cuts the
same windows. A window closes when an event of a later window arrives, when it reaches the size
window, or — when no events come — ``grace`` seconds after its end by the wall clock.
``skip_empty_archives`` (default on) skips windows without events; off, each empty window gets the
508-byte file Azure writes (the header and one empty block; from the moment the writer owns the
partition on).

**Names.** ``{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}.avro``
(or the placeholders in another order), zero-padded UTC. A window's file is named by the window's
start; a size cut's continuation by its first event's enqueued second (so a file is cut only once a
later second begins; if that name is taken, the nearest free earlier second in the window, and when
every one is taken, up to 899 s before the window, where a restart also looks for it). A name is
never later than any event in its file, so readers that prune by name stay right. ``{Namespace}`` defaults to the first label of the Event Hubs
host (``mynamespace`` for ``mynamespace.servicebus.windows.net``) and to ``fabrikam`` — the
namespace of iotlib's emulator — for a local emulator, whose host says nothing about it.

**Writing.** Each file is a block blob: the Avro header is its first block, each Avro data block
("frame", ~``frame_size`` of records, cut by size only) another; the block list is committed, with
the file's ``CaptureFileCreated`` fields as blob metadata, when the window closes; *then* its last
event is checkpointed. The sync marker comes from the blob name, so the same events give the same
bytes. A window that goes on after its file was committed early (idle grace, shutdown, restart) is
*extended*: committed again with its old blocks plus new ones.

**At least once.** The checkpoint only ever names an event in a committed blob, so a crash at any
point loses nothing: a restart resumes from the checkpoint. After a (re)start or handover the
writer reads the metadata of the window's existing blobs: events a committed blob already holds
are skipped (a crash between commit and checkpoint leaves no second copy), and the window's last
file is extended rather than duplicated. Commits are conditional (``If-None-Match``/``If-Match``),
so a blob holding other events is never overwritten.

**Duplicates that remain possible** (the same event in two blobs): two writers on one partition at
once — a handover while the previous owner, whose ownership expired (e.g. it stalled longer than
``ownership_expiry``), still commits — where their files do not coincide; a checkpoint store that
lost or rewound checkpoints while files stayed; runs over the same events with different window
options; blobs from other tools without metadata. :func:`iotlib.coldstore.load` removes them (it
keeps one row per ``eventhub``, ``partition_id``, ``sequence_number``).

**Storage trouble.** Transient failures (refused connections, timeouts, 5xx) are retried with
exponential back-off. A per-partition circuit breaker counts frames not yet stored: it warns at
``breaker_warn`` (200), and at ``breaker_trip`` (400) stalls that partition's receiving, re-checking
every ``breaker_stall`` (30 s), until storage takes the backlog below the warning level; so memory
stays bounded and the other partitions carry on. Hard errors (container deleted, key refused) are
logged once; if they last ``hard_error_grace`` (60 s) the writer stops with a
:class:`~iotlib.errors.CaptureError`, having checkpointed nothing it did not store.

**Sharing partitions.** Several writers on one consumer group share the partitions through the
client's load balancing (ownership records in ``checkpoint_container``); when one stops (flushing
and checkpointing first) or dies (its ownership expires after ``ownership_expiry``), the others
take its partitions from their checkpoints.
"""

from iotlib.capture.options import CaptureOptions, parse_size
from iotlib.capture.report import BreakerEvent, CaptureFile, CaptureReport, PartitionStats
from iotlib.capture.writer import CaptureWriter

__all__ = [
    "BreakerEvent",
    "CaptureFile",
    "CaptureOptions",
    "CaptureReport",
    "CaptureWriter",
    "PartitionStats",
    "parse_size",
]
