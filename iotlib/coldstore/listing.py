"""Finding the Capture blobs that can hold a time range, without listing the whole container.

The walk follows the path format one segment (folder level) at a time. A segment whose
placeholders are all known — a given namespace/hub/partition, or the time placeholders down to
the range's granularity (``{YYYY}/{MM}/{DD}/{HH}`` for up to 48 hours) — is enumerated, not
listed. A segment with an unknown name (which partitions exist?) is listed one level deep
(delimiter ``/``). Once nothing below constrains the search, one flat listing of the prefix
finds the files. A one-hour query on the default layout therefore lists ``ns/``, ``ns/hub/``
and, per partition, the hour folder(s) — including the previous hour when the range starts less
than one window (900 s) after the hour, since a file is named by its window's start.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from iotlib.capture import format as cf
from iotlib.coldstore.sources import BlobInfo, LocalFile, Source
from iotlib.durations import EPOCH

_NAME_KEYS = ("Namespace", "EventHub", "PartitionId")


@dataclass(frozen=True)
class Candidate:
    """A listed blob whose name fits the format, and what the name says."""

    info: BlobInfo
    path: cf.BlobPath


@dataclass
class Listing:
    """Result of a pruned listing: blobs to read and blobs listed but outside the range."""

    selected: list[Candidate]
    pruned: list[Candidate]
    foreign: list[str]  # listed names that are not Capture files of this format
    #: Folders the walk passed by because their names do not fit the format's level (``name/``).
    foreign_folders: list[str] = field(default_factory=list)


def granularity(start: datetime, end: datetime) -> str:
    """The finest time placeholder worth enumerating for a range: few prefixes, each small."""
    hours = (end - start).total_seconds() / 3600
    if hours <= 48:
        return "Hour"
    if hours <= 62 * 24:
        return "Day"
    if hours <= 3 * 366 * 24:
        return "Month"
    return "Year"


def find_blobs(
    source: Source,
    fmt: cf.PathFormat,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    namespace: str | None = None,
    eventhub: str | None = None,
    partitions: Sequence[str | int] | None = None,
) -> Listing:
    """List the blobs of ``source`` that can hold events enqueued in ``[start, end)``."""
    if isinstance(source, LocalFile):
        info = source.info()
        return Listing([Candidate(info, single_file_path(source, fmt))], [], [])
    known: dict[str, list[str]] = {}
    if namespace is not None:
        known["Namespace"] = [namespace]
    if eventhub is not None:
        known["EventHub"] = [eventhub]
    if partitions is not None:
        known["PartitionId"] = sorted({str(p) for p in partitions}, key=lambda p: (len(p), p))
    slots: list[dict[str, str]] | None = None
    if start is not None and end is not None:
        slots = cf.time_slots(start, end, granularity=granularity(start, end))
        if not slots:
            return Listing([], [], [])
    combos = _combos(known, slots)
    constrained = set(known) | (set(slots[0]) if slots else set())
    seen: dict[str, BlobInfo] = {}
    passed: list[str] = []
    _walk(source, fmt, 0, "", {}, combos, constrained, seen, passed)

    selected, pruned, foreign = [], [], []
    for name in sorted(seen):
        path = fmt.try_parse(name)
        if path is None:
            foreign.append(name)
            continue
        cand = Candidate(seen[name], path)
        names = {"Namespace": path.namespace, "EventHub": path.eventhub, "PartitionId": path.partition_id}
        if any(names[k] not in v for k, v in known.items()) or not fmt.may_overlap(path, start, end):
            pruned.append(cand)
        else:
            selected.append(cand)
    return Listing(selected, pruned, foreign, passed)


def single_file_path(source: LocalFile, fmt: cf.PathFormat) -> cf.BlobPath:
    """What a lone file's path says, when its last segments fit ``fmt``; else no namespace, hub or partition."""
    tail = "/".join(source.path.resolve().parts[-len(fmt.segments) :])
    path = fmt.try_parse(tail)
    if path is not None:
        return path
    unknown = cast(str, None)  # null columns: the name does not say
    return cf.BlobPath(unknown, unknown, unknown, EPOCH)


def _combos(known: dict[str, list[str]], slots: list[dict[str, str]] | None) -> list[dict[str, str]]:
    names = [[(k, v) for v in vals] for k, vals in known.items()]
    out = []
    for picked in itertools.product(*names):
        for slot in slots or [{}]:
            out.append({**dict(picked), **slot})
    return out


def _consistent(values: dict[str, str], combos: list[dict[str, str]]) -> bool:
    return any(all(c.get(k, v) == v for k, v in values.items()) for c in combos)


def _walk(
    source: Source,
    fmt: cf.PathFormat,
    level: int,
    prefix: str,
    bound: dict[str, str],
    combos: list[dict[str, str]],
    constrained: set[str],
    seen: dict[str, BlobInfo],
    passed: list[str],
) -> None:
    last = len(fmt.segments) - 1
    below = {p for i in range(level, last + 1) for p in fmt.segment_placeholders(i)}
    if level == last or not (below & constrained) - set(bound):
        for info in source.list(prefix):
            seen[info.name] = info
        return
    here = fmt.segment_placeholders(level)
    if all(p in constrained for p in here):
        values: dict[tuple[str, ...], dict[str, str]] = {}
        for c in combos:
            if all(c.get(k, v) == v for k, v in bound.items()):
                proj = {p: c[p] for p in here}
                values[tuple(proj.values())] = proj
        for proj in values.values():
            segment = fmt.segments[level]
            for p, v in proj.items():
                segment = segment.replace("{" + p + "}", v)
            _walk(source, fmt, level + 1, prefix + segment + "/", {**bound, **proj}, combos, constrained, seen, passed)
        return
    dirs, files = source.walk(prefix)
    for info in files:  # a file where the format has a folder: not a Capture file of this format
        seen[info.name] = info
    for d in dirs:
        child = d[len(prefix) :].rstrip("/")
        got = fmt.match_segment(level, child)
        if got is None:
            passed.append(d)
            continue
        got = {k: v for k, v in got.items() if k in constrained}
        merged = {**bound, **got}
        if _consistent(merged, combos):
            _walk(source, fmt, level + 1, d, merged, combos, constrained, seen, passed)


__all__ = ["Candidate", "Listing", "find_blobs", "granularity", "single_file_path"]
