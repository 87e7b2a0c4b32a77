"""A simulated Fabrikam day as a real cold store: Capture Avro files, their Parquet cache, the ground truth.

Replaying 144 million events through a hub and ``iotlib capture`` takes hours, so
:func:`build_day` writes the cold store straight from the simulation, one chunk of time at a
time, never holding the day:

1. :mod:`iotlib.fleet.simulate` generates the readings (with faults);
2. :class:`iotlib.fleet.delivery.DeliveryStream` adds the hub's view — partition (the device
   id is the partition key), enqueued time, sequence number — exactly as
   :func:`~iotlib.fleet.delivery.deliver` models it, chunk by chunk; offsets are modelled as
   byte positions in the partition (each event counts its body plus :data:`EVENT_OVERHEAD`);
3. :class:`iotlib.capture.bulk.BulkCapture` writes the Capture files ``iotlib capture`` would
   write for those events (same windows, names and records; ``tests/test_capture_bulk.py``
   holds them equal byte for byte against the real writer), to a folder or a Blob container;
4. the same events go to the **Parquet cache** — zstd, hive-partitioned by the UTC date of
   ``enqueued_time`` like :func:`iotlib.coldstore.to_parquet`'s, with the columns
   :data:`CACHE_COLUMNS` that :func:`iotlib.coldstore.load` decodes from the Avro files
   (a test holds the two equal) plus ``device_key``, the device's row in the registry; each
   chunk's rows sorted by partition and enqueued time, so a time filter skips most row groups;
5. the simulator's ``fault_*`` columns go to ``truth/``, keyed by partition and sequence
   number, for the events with any fault: what the analysis detectors are scored against.

``build_day`` returns a :class:`SimulatedDay`; a folder that already holds the same day
(same :class:`DaySpec`) is reused as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from iotlib._workspace import Workspace
from iotlib.capture.bulk import BulkCapture
from iotlib.durations import to_timedelta
from iotlib.errors import ConfigurationError
from iotlib.fleet import events as fleet_events
from iotlib.fleet import fastjson, simulate
from iotlib.fleet.delivery import Delivery, DeliveryStream
from iotlib.fleet.scenario import validate_registry

#: A Monday, the simulator's default start.
DEFAULT_DAY = simulate.DEFAULT_START
#: Modelled bytes an event takes in a partition besides its body (AMQP sections, log framing).
EVENT_OVERHEAD = 200
#: Columns of the Parquet cache that :func:`iotlib.coldstore.load` also decodes from the Capture files.
#: The cache adds ``device_key`` (UInt32: the device's row in the day's registry, a small integer to
#: group by instead of GUID text) and ``date`` (from the folder names).
CACHE_COLUMNS = (
    "namespace",
    "eventhub",
    "partition_id",
    "sequence_number",
    "offset",
    "enqueued_time",
    "device_id",
    "time_observed",
    "temperature",
    "decode_error",
)
#: Ground-truth columns kept in ``truth/`` (besides partition_id, sequence_number, device_id, time_observed).
TRUTH_COLUMNS = tuple(c for c in simulate.EVENT_COLUMNS if c.startswith("fault_"))
MANIFEST = "_day.json"
_UTC_US = pl.Datetime("us", "UTC")


def default_faults(registry: pl.DataFrame) -> list[str]:
    """The day's faults, as text (:func:`iotlib.fleet.faults.parse_fault`): something for every detector.

    A heat event in the first two buildings from 09:00 for 4 hours; 0.5 % of sensors stuck from
    06:00; rare one-off spikes; 1 % of device clocks wrong by 1-60 minutes; 0.5 % of devices
    offline for 2 hours (then a burst of buffered readings); duplicate sends and malformed bodies.
    """
    buildings = sorted(registry["building_id"].unique().to_list())[:2]
    return [
        f"heat:buildings={'+'.join(str(b) for b in buildings)},start=9h,duration=4h,rise=12",
        "stuck:fraction=0.005,since=6h",
        "spikes:probability=0.0002,magnitude=15",
        "skew:fraction=0.01,min_skew=1m,max_skew=1h",
        "offline:fraction=0.005,outage=2h,spacing=50ms",
        "duplicates:probability=0.001",
        "malformed:probability=0.0001",
    ]


@dataclass(frozen=True)
class DaySpec:
    """Everything that decides a simulated day's content; a folder holding the same spec is reused."""

    devices: int
    registry_hash: int
    start: str  # ISO 8601 UTC
    duration_seconds: float
    seed: int
    faults: tuple[str, ...]
    temperature_range: tuple[int, int]
    partitions: int
    time_window: int
    codec: str
    namespace: str
    eventhub: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "faults": list(self.faults), "temperature_range": list(self.temperature_range)}


@dataclass
class SimulatedDay:
    """A day's cold store on disk: ``capture/`` (Avro, unless written to a container), ``cache/``, ``truth/``."""

    folder: Path
    spec: DaySpec
    registry: pl.DataFrame
    events: int
    files: int
    capture_bytes: int
    seconds: float
    built: bool  # False when an existing folder was reused
    capture_container: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.spec.start)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.spec.duration_seconds)

    @property
    def capture(self) -> Path:
        """The folder of Capture files (when they were written to a folder)."""
        return self.folder / "capture"

    @property
    def cache(self) -> Path:
        """The Parquet cache folder: ``date=YYYY-MM-DD/part-NNNNN.parquet``."""
        return self.folder / "cache"

    @property
    def cache_glob(self) -> str:
        """The cache's files as a glob, for ``pl.scan_parquet``, DuckDB's ``read_parquet`` and friends."""
        return str(self.cache / "**" / "*.parquet")

    def scan(self) -> pl.LazyFrame:
        """The cached events as a LazyFrame (columns :data:`CACHE_COLUMNS`, ``device_key`` and ``date``)."""
        return pl.scan_parquet(self.cache_glob, hive_partitioning=True)

    def truth(self) -> pl.LazyFrame:
        """Ground truth of the events with any fault: partition_id, sequence_number, device_id, time_observed, fault_*."""
        return pl.scan_parquet(str(self.folder / "truth" / "*.parquet"))

    def summary(self) -> str:
        how = f"built in {self.seconds:.0f} s" if self.built else "reused from an earlier build"
        where = f"container {self.capture_container}" if self.capture_container else str(self.capture)
        return (
            f"{self.spec.devices:,} devices, {self.events:,} events from {self.start:%Y-%m-%d %H:%M} UTC for "
            f"{self.spec.duration_seconds / 3600:g} h; {self.files:,} Capture files "
            f"({self.capture_bytes / 2**30:.2f} GiB, codec {self.spec.codec}) in {where}; {how}"
        )

    def remove(self) -> None:
        """Delete the day's folder (Capture files, cache, truth)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def day_folder(registry: pl.DataFrame, *, start: datetime | str = DEFAULT_DAY, seed: int = 0) -> Path:
    """Where a day of ``registry`` is kept unless told otherwise: ``<iotlib home>/days/<devices>-<date>-seed<seed>``.

    The home is the local stack's state folder (``.iotlib``, or ``$IOTLIB_HOME``), so notebooks
    and benchmarks find a day built before and reuse it; :meth:`SimulatedDay.remove` deletes it.
    """
    from iotlib.connections import home

    day = simulate.parse_start(start)
    return home() / "days" / f"{registry.height}-devices-{day:%Y%m%d}-seed{seed}"


def build_day(
    folder: str | os.PathLike[str],
    registry: pl.DataFrame,
    *,
    start: datetime | str = DEFAULT_DAY,
    duration: timedelta | str = "1d",
    seed: int = 0,
    faults: list[str] | None = None,
    temperature_range: tuple[int, int] = (0, 35),
    delivery: Delivery | None = None,
    time_window: int = 300,
    codec: Literal["null", "deflate"] = "deflate",
    namespace: str = "fabrikam",
    eventhub: str = "telemetry",
    capture_to: Any = None,
    progress: bool = True,
    chunk_events: int = 2_000_000,
) -> SimulatedDay:
    """Simulate ``registry``'s devices over ``duration`` and write the cold store under ``folder``.

    ``faults``: text specs (default :func:`default_faults`). ``delivery``: the hub model
    (default: 8 partitions, 20 ms latency, 100 ms jitter). ``time_window`` (s) and ``codec``
    (``"deflate"``, Azure's ``AvroDeflate``: a full day is ~9 GiB instead of ~55 GiB with ``"null"``)
    are the capture settings. ``capture_to``: a ``ContainerClient`` to write the Capture files
    to instead of ``folder/capture``. The Parquet cache and the truth always go to ``folder``.
    """
    registry = validate_registry(registry)
    delivery = delivery or Delivery()
    start_utc = simulate.parse_start(start)
    span = to_timedelta(duration, name="duration")
    fault_texts = tuple(default_faults(registry) if faults is None else faults)
    spec = DaySpec(
        devices=registry.height,
        registry_hash=int(registry.hash_rows().sum()),
        start=start_utc.isoformat(),
        duration_seconds=span.total_seconds(),
        seed=seed,
        faults=fault_texts,
        temperature_range=(int(temperature_range[0]), int(temperature_range[1])),
        partitions=delivery.partitions,
        time_window=time_window,
        codec=codec,
        namespace=namespace,
        eventhub=eventhub,
    )
    root = Path(os.fspath(folder))
    found = _existing(root, spec, registry, capture_to)
    if found is not None:
        return found
    for sub in ("capture", "cache", "truth"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / MANIFEST).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()
    sim = simulate.simulation(
        registry, start=start_utc, duration=span, seed=seed, faults=list(fault_texts),
        temperature_range=temperature_range, chunk_events=chunk_events,
    )  # fmt: skip
    stream = DeliveryStream(sim.ids, delivery, seed=seed, order="partition")
    writer = _ChunkWriter(root, spec, sim.ids)
    bar = _bar(progress, sim.expected_events)
    try:
        with BulkCapture(
            capture_to if capture_to is not None else root / "capture",
            namespace=namespace, eventhub_name=eventhub, time_window=time_window, codec=codec,
        ) as bulk, ThreadPoolExecutor(1, thread_name_prefix="day-encode") as encoder:  # fmt: skip
            # Three stages overlap: simulate and deliver here, encode on `encoder`, store on the writers' threads.
            encoding: Future[None] | None = None
            for ready in _delivered(sim, stream, bar):
                if encoding is not None:
                    encoding.result()
                encoding = encoder.submit(writer.write, ready, bulk)
            if encoding is not None:
                encoding.result()
            writer.close()
        files = bulk.files
    finally:
        writer.close()
        bar.close()
    day = SimulatedDay(
        folder=root, spec=spec, registry=registry, events=writer.events, files=len(files),
        capture_bytes=sum(f.size_in_bytes for f in files), seconds=time.perf_counter() - began, built=True,
        capture_container=getattr(capture_to, "container_name", None), counts=writer.counts,
    )  # fmt: skip
    _write_manifest(day)
    return day


def _delivered(sim: simulate.Simulation, stream: DeliveryStream, bar: Any) -> Any:
    """The simulation's chunks as the hub model delivers them (partition order), then what is left."""
    for chunk in sim:
        yield stream.push(chunk)
        bar.update(chunk.height)
    yield stream.finish()


def open_day(folder: str | os.PathLike[str]) -> SimulatedDay:
    """A day built earlier under ``folder`` (its registry is kept there too)."""
    root = Path(os.fspath(folder))
    path = root / MANIFEST
    if not path.exists():
        raise ConfigurationError(f"{root} holds no simulated day (no {MANIFEST}): build one with build_day()")
    info = json.loads(path.read_text())
    spec = info["spec"]
    spec = DaySpec(**{**spec, "faults": tuple(spec["faults"]), "temperature_range": tuple(spec["temperature_range"])})
    return SimulatedDay(
        folder=root, spec=spec, registry=pl.read_parquet(root / "registry.parquet"), events=info["events"],
        files=info["files"], capture_bytes=info["capture_bytes"], seconds=info["seconds"], built=False,
        capture_container=info.get("capture_container"), counts=info.get("counts", {}),
    )  # fmt: skip


def _existing(root: Path, spec: DaySpec, registry: pl.DataFrame, capture_to: Any) -> SimulatedDay | None:
    if not (root / MANIFEST).exists():
        return None
    try:
        day = open_day(root)
    except (ValueError, KeyError, TypeError, OSError):
        return None
    same_place = day.capture_container == getattr(capture_to, "container_name", None)
    if day.spec != spec or not same_place or not day.registry.equals(registry):
        return None
    return day


def _write_manifest(day: SimulatedDay) -> None:
    day.registry.write_parquet(day.folder / "registry.parquet")
    info = {
        "spec": day.spec.to_json(), "events": day.events, "files": day.files, "capture_bytes": day.capture_bytes,
        "seconds": day.seconds, "capture_container": day.capture_container, "counts": day.counts,
        "written": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    tmp = day.folder / (MANIFEST + ".partial")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(day.folder / MANIFEST)  # the manifest last: a day without one is incomplete


class _ChunkWriter:
    """Delivered chunks (sorted by partition, sequence number) → bodies and offsets → Capture files,
    Parquet cache and truth."""

    def __init__(self, root: Path, spec: DaySpec, ids: list[str]) -> None:
        self.root = root
        self.spec = spec
        self.ids = fastjson.text_buffers(pl.Series(ids, dtype=pl.String))
        self.plain_ids = not pl.Series(ids).str.contains(r'["\\\x00-\x1f]').any()
        self.next_offset = np.zeros(spec.partitions, dtype=np.int64)
        self.workspace = Workspace()
        self._side = ThreadPoolExecutor(1, thread_name_prefix="day-cache")
        self._side_job: Future[None] | None = None
        self.part = 0
        self.events = 0
        self.counts: dict[str, int] = {}

    def write(self, ready: pl.DataFrame, bulk: BulkCapture) -> None:
        """Encode a chunk's Capture records here; its cache and truth files on the side thread."""
        if ready.height == 0:
            return
        codes = ready["device_id"].to_physical().to_numpy()
        partition = ready["partition_id"].cast(pl.Int64).to_numpy()
        body, body_starts = self._bodies(ready, codes)
        offset = self._offsets(partition, np.diff(body_starts) + EVENT_OVERHEAD)
        bulk.write_arrays(
            partition=partition,
            sequence_number=ready["sequence_number"].to_numpy(),
            offset=offset,
            enqueued_ms=ready["enqueued_time"].dt.epoch("ms").to_numpy(),
            key_index=codes,
            keys=self.ids,
            bodies=(body, body_starts),
        )
        broken = ready["fault_malformed"].is_not_null().arg_true().to_list()
        texts = [body[body_starts[i] : body_starts[i + 1]].tobytes() for i in broken]  # the workspace moves on
        self._wait()
        self._side_job = self._side.submit(self._cache_and_truth, ready, offset, broken, texts, self.part)
        self.events += ready.height
        self.part += 1

    def _cache_and_truth(
        self, ready: pl.DataFrame, offset: np.ndarray, broken: list[int], texts: list[bytes], part: int
    ) -> None:
        self._cache(ready.with_columns(pl.Series("offset", offset)), broken, texts, part)
        self._truth(ready, part)

    def _wait(self) -> None:
        if self._side_job is not None:
            job, self._side_job = self._side_job, None
            job.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._side.shutdown()

    def _bodies(self, ready: pl.DataFrame, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The JSON bodies :func:`iotlib.fleet.events.encode_frame` writes, as (bytes, starts)."""
        observed = ready["time_observed"].dt.epoch("us")
        if not self.plain_ids or not fastjson.formats(observed):
            return fastjson.text_buffers(fleet_events.encode_frame(ready))
        broken = ready["fault_malformed"].is_not_null()
        replace = None
        if broken.any():  # the few malformed bodies the slow way
            index = broken.arg_true()
            replace = (index.to_numpy(), fastjson.text_buffers(fleet_events.encode_frame(ready[index])))
        return fastjson.body_buffers(
            codes, self.ids, observed.to_numpy(), ready["temperature"], replace=replace, workspace=self.workspace
        )

    def _offsets(self, partition: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Byte positions in each partition, continuing from the previous chunk (rows sorted by partition)."""
        counts = np.bincount(partition, minlength=self.spec.partitions)
        first = np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        within = np.cumsum(sizes) - sizes  # bytes before each event in the chunk ...
        offset = np.repeat(self.next_offset, counts) + within - within[first]  # ... less earlier partitions'
        self.next_offset += np.bincount(partition, weights=sizes, minlength=self.spec.partitions).astype(np.int64)
        return offset.astype(np.int64)

    def _cache(self, frame: pl.DataFrame, broken: list[int], texts: list[bytes], part: int) -> None:
        """The columns coldstore.load decodes from these events' Capture records."""
        text = frame["temperature"].cast(pl.String)
        cache = frame.select(
            pl.lit(self.spec.namespace).alias("namespace"),
            pl.lit(self.spec.eventhub).alias("eventhub"),
            "partition_id",
            "sequence_number",
            pl.col("offset").cast(pl.String),
            "enqueued_time",
            pl.col("device_id").cast(pl.String),
            pl.col("device_id").to_physical().cast(pl.UInt32).alias("device_key"),
            "time_observed",
            text.cast(pl.Float64).alias("temperature"),  # the body's text, as a reader parses it
            pl.lit(None, pl.String).alias("decode_error"),
        )
        if broken:
            index = pl.Series(broken, dtype=pl.UInt32)
            decoded = fleet_events.decode_bodies(pl.Series(texts, dtype=pl.Binary))
            cache = cache.with_columns(
                cache["device_id"].scatter(index, decoded["device_id"]),
                cache["time_observed"].scatter(index, decoded["time_observed"]),
                cache["temperature"].scatter(index, decoded["temperature"]),
                cache["decode_error"].scatter(index, decoded["error"]),
            )
        dates = cache["enqueued_time"].dt.date()
        for day in dates.unique().sort().to_list():
            rows = cache.filter(dates == day)
            path = self.root / "cache" / f"date={day.isoformat()}" / f"part-{part:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows.write_parquet(
                path, compression="zstd", compression_level=1, statistics=True, row_group_size=256 * 1024
            )
        self.counts["decode_errors"] = self.counts.get("decode_errors", 0) + len(broken)

    def _truth(self, frame: pl.DataFrame, part: int) -> None:
        faulty = pl.any_horizontal(
            *(pl.col(c) for c in TRUTH_COLUMNS if c != "fault_malformed"), pl.col("fault_malformed").is_not_null()
        )
        truth = frame.filter(faulty).select(
            "partition_id", "sequence_number", pl.col("device_id").cast(pl.String), "time_observed", *TRUTH_COLUMNS
        )
        for c in TRUTH_COLUMNS:
            if c != "fault_malformed":
                self.counts[c] = self.counts.get(c, 0) + int(truth[c].sum())
        path = self.root / "truth" / f"part-{part:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        truth.write_parquet(path, compression="zstd")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(progress: bool, total: int) -> Any:
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="event", unit_scale=True, desc="building the day", smoothing=0.1)
