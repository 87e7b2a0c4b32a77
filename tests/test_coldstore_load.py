"""load() on local directories: pruning, robustness, dedupe, schema variants, cache, CLI, pandas."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from coldstore_helpers import AZURE_SCHEMA, AZURE_SCHEMA_NO_NULL, T0, avro_bytes, name, put, record, small_store

from iotlib import coldstore
from iotlib.cli import main
from iotlib.errors import ColdStoreError, ConfigurationError

UTC = UTC
KEY = ["partition_id", "sequence_number"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    small_store(tmp_path, hours=3, partitions=2)
    return tmp_path


def test_one_hour_lists_only_its_hour_folders(store: Path) -> None:
    start = T0 + timedelta(hours=1, minutes=10)
    df, r = coldstore.load(store, start=start, end=start + timedelta(hours=1), with_report=True)
    assert r.prefixes_walked == ["", "fabrikam/", "fabrikam/telemetry/"]
    # 01:10 minus one 900 s window is 00:55: hour 00 too; 02:10 ends in hour 02.
    assert r.prefixes_listed == [f"fabrikam/telemetry/{p}/2024/03/01/{h:02d}/" for p in (0, 1) for h in (0, 1, 2)]
    # A window named 00:55 ends by 01:10 at the latest: listed, but pruned by its name.
    assert name(0, T0 + timedelta(minutes=55)) in r.blobs_pruned
    assert sorted(r.blobs_read) == sorted(
        name(p, T0 + timedelta(minutes=5 * w))
        for p in (0, 1)
        for w in range(12, 26)  # windows 01:00 … 02:05
    )
    assert df["enqueued_time"].min() >= start and df["enqueued_time"].max() < start + timedelta(hours=1)
    assert df.height == 2 * 12 * 5  # one event a minute per partition
    assert df["decode_error"].null_count() == df.height
    assert df.schema["time_observed"] == pl.Datetime("us", "UTC") and df.schema["temperature"] == pl.Float64


def test_narrowing_by_names(store: Path) -> None:
    df, report = coldstore.load(
        store,
        start=T0,
        end=T0 + timedelta(minutes=30),
        namespace="fabrikam",
        eventhub="telemetry",
        partitions=[1],
        with_report=True,
    )
    assert report.prefixes_walked == []  # every folder level was known
    assert report.prefixes_listed == ["fabrikam/telemetry/1/2024/02/29/23/", "fabrikam/telemetry/1/2024/03/01/00/"]
    assert set(df["partition_id"]) == {"1"} and df.height == 30


def test_whole_store_without_range(store: Path) -> None:
    df, report = coldstore.load(store, with_report=True)
    assert df.height == 2 * 36 * 5 and report.prefixes_listed == [""]


def test_other_path_format(tmp_path: Path) -> None:
    fmt = "{Year}-{Month}-{Day}/{Namespace}/{EventHub}/{Hour}/{PartitionId}/{Minute}{Second}"
    for p in (0, 1):
        for w in range(24):
            ws = T0 + timedelta(minutes=5 * w)
            put(
                tmp_path,
                f"{ws:%Y-%m-%d}/ns/hub/{ws:%H}/{p}/{ws:%M%S}.avro",
                avro_bytes([record(w, ws + timedelta(seconds=5))]),
            )
    df, report = coldstore.load(
        tmp_path,
        start=T0 + timedelta(hours=1),
        end=T0 + timedelta(hours=1, minutes=30),
        path_format=fmt,
        with_report=True,
    )
    assert df.height == 2 * 6 and set(df["namespace"]) == {"ns"}
    assert report.prefixes_walked == ["2024-03-01/", "2024-03-01/ns/"]
    assert report.prefixes_listed == ["2024-03-01/ns/hub/00/", "2024-03-01/ns/hub/01/"]


def test_empty_windows_and_variants(tmp_path: Path) -> None:
    put(tmp_path, name(0, T0), avro_bytes([]))  # header-only: an empty window
    put(
        tmp_path,
        name(0, T0 + timedelta(minutes=5)),
        avro_bytes([record(0, T0 + timedelta(minutes=6))], schema=AZURE_SCHEMA_NO_NULL, codec="deflate"),
    )
    extra = json.loads(json.dumps(AZURE_SCHEMA))
    extra["fields"].append({"name": "PartitionKey", "type": ["null", "string"], "default": None})
    put(
        tmp_path,
        name(0, T0 + timedelta(minutes=10)),
        avro_bytes([dict(record(1, T0 + timedelta(minutes=11)), PartitionKey="x")], schema=extra),
    )
    df, report = coldstore.load(tmp_path, with_report=True)
    assert df["sequence_number"].to_list() == [0, 1]
    assert report.empty_blobs == [name(0, T0)]
    assert report.generic_blobs == [name(0, T0 + timedelta(minutes=10))]
    empty = coldstore.load(tmp_path, start=T0, end=T0 + timedelta(minutes=5))
    assert empty.height == 0 and empty.schema == df.schema


def test_dotnet_text_without_milliseconds(tmp_path: Path) -> None:
    t = datetime(2024, 3, 1, 13, 3, 17, 900000, tzinfo=UTC)
    put(tmp_path, name(0, T0 + timedelta(hours=13)), avro_bytes([record(0, t, with_ms=False)]))
    df = coldstore.load(tmp_path)
    assert df["enqueued_time"].item() == t.replace(microsecond=0)  # Azure's text has whole seconds


def test_corrupted_and_truncated_files(store: Path) -> None:
    bad = name(1, T0 + timedelta(minutes=20))
    data = (store / bad).read_bytes()
    (store / bad).write_bytes(data[: len(data) // 2])
    worse = name(0, T0 + timedelta(minutes=25))
    (store / worse).write_bytes(b"this is not avro")
    with pytest.raises(ColdStoreError, match="fabrikam/telemetry/0/2024/03/01/00/25/00.avro"):
        coldstore.load(store, start=T0, end=T0 + timedelta(hours=1))
    df, report = coldstore.load(store, start=T0, end=T0 + timedelta(hours=1), errors="skip", with_report=True)
    skipped = {s.name: s.reason for s in report.skipped}
    assert set(skipped) == {bad, worse}
    assert "truncated" in skipped[bad] and "magic" in skipped[worse]
    assert df.height == 2 * 60 - 10


def test_dedupe_removes_recaptured_events(tmp_path: Path) -> None:
    first = [record(i, T0 + timedelta(seconds=30 * i)) for i in range(10)]
    put(tmp_path, name(0, T0), avro_bytes(first))
    # After a crash the writer replays from its checkpoint (seq 6) into the next window's file.
    second = [record(i, T0 + timedelta(seconds=30 * i)) for i in range(6, 15)]
    put(tmp_path, name(0, T0 + timedelta(minutes=5)), avro_bytes(second))
    put(tmp_path, name(1, T0), avro_bytes(first[:3]))  # same numbers, other partition: not duplicates
    raw = coldstore.load(tmp_path, dedupe=False)
    assert raw.height == 22 and raw.select(pl.struct(KEY).is_duplicated().sum()).item() == 8
    df, report = coldstore.load(tmp_path, with_report=True)
    assert df.height == 18 and report.duplicates_removed == 4
    assert df.filter(pl.col("partition_id") == "0")["sequence_number"].to_list() == list(range(15))


def test_cache_rebuild_matches_a_load_partition_by_partition(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Two partitions, windows on both sides of midnight, a replayed tail in each: the rebuild goes
    # one partition at a time and appends to each date's file, and must keep what load keeps.
    for p in (0, 1):
        first = [record(i, T0 - timedelta(minutes=4) + timedelta(seconds=30 * i), device=f"d{p}") for i in range(10)]
        put(tmp_path, name(p, T0 - timedelta(minutes=5)), avro_bytes(first))
        second = [
            record(i, T0 - timedelta(minutes=4) + timedelta(seconds=30 * i), device=f"d{p}") for i in range(7, 20)
        ]
        put(tmp_path, name(p, T0), avro_bytes(second))
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    loaded, loaded_report = coldstore.load(tmp_path, start=start, end=end, with_report=True)
    cache = tmp_path_factory.mktemp("cache")
    cached, report = coldstore.load(tmp_path, start=start, end=end, cache=cache, with_report=True)
    assert report.cache == "rebuilt: no cache yet" and cached.sort(KEY).equals(loaded.sort(KEY))
    assert (report.events, report.duplicates_removed, report.events_decoded) == (40, 6, 46)
    assert (report.events, report.duplicates_removed) == (loaded_report.events, loaded_report.duplicates_removed)
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.parquet"))
    assert files == ["date=2024-02-29/part-0.parquet", "date=2024-03-01/part-0.parquet"]
    assert coldstore.scan(tmp_path, start=start, end=end, cache=cache).collect().sort(KEY).equals(loaded.sort(KEY))


def test_bad_bodies_are_kept(tmp_path: Path) -> None:
    recs = [
        record(0, T0),
        record(1, T0, raw_body=b"{not json"),
        record(2, T0, raw_body=None),
        record(3, T0, raw_body=b'{"DeviceId":"d","TimeObserved":"yesterday","Temperature":1}'),
    ]
    put(tmp_path, name(0, T0), avro_bytes(recs))
    df, report = coldstore.load(tmp_path, with_report=True)
    assert df.height == 4 and report.decode_errors == 3
    errors = df["decode_error"].to_list()
    assert (
        errors[0] is None
        and errors[1].startswith("invalid JSON")
        and errors[2] == "no body"
        and "RFC 3339" in errors[3]
    )
    assert df["temperature"].to_list()[1:] == [None, None, None]
    nodecode = coldstore.load(tmp_path, decode=None)
    assert "device_id" not in nodecode.columns and nodecode["body"].to_list()[1] == b"{not json"


def test_pandas_backend(store: Path) -> None:
    pdf, report = coldstore.load(store, start=T0, end=T0 + timedelta(minutes=10), backend="pandas", with_report=True)
    assert len(pdf) == 20 and str(pdf["enqueued_time"].dt.tz) == "UTC" and report.events == 20


def test_the_report_is_returned_not_attached(store: Path) -> None:
    """A report on an attribute is lost by the next polars operation: it is returned instead."""
    df = coldstore.load(store, start=T0, end=T0 + timedelta(minutes=10))
    assert isinstance(df, pl.DataFrame) and not hasattr(df, "report")
    frame, report = coldstore.load(store, start=T0, end=T0 + timedelta(minutes=10), with_report=True)
    assert frame.equals(df) and report.events == df.height == 20 and len(report.blobs_read) == 4


def test_scan_and_to_parquet_take_loads_parameters(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    window = {"start": T0, "end": T0 + timedelta(minutes=30), "partitions": ["1"]}
    loaded = coldstore.load(store, **window)
    assert coldstore.scan(store, **window).collect().sort(KEY).equals(loaded.sort(KEY))
    out = tmp_path_factory.mktemp("export")
    assert coldstore.to_parquet(store, out, **window) == ["date=2024-03-01/part-0.parquet"]
    assert coldstore.read_cache(out).height == loaded.height == 30
    with pytest.raises(ConfigurationError, match="unknown load parameter"):
        coldstore.scan(store, strat=T0)  # type: ignore[call-arg]


def test_pandas_frames_export_too(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    pdf = coldstore.load(store, start=T0, end=T0 + timedelta(minutes=10), backend="pandas")
    out = tmp_path_factory.mktemp("pandas-export")
    assert coldstore.to_parquet(pdf, out) == ["date=2024-03-01/part-0.parquet"]
    assert coldstore.read_cache(out).height == len(pdf) == 20


def test_bad_arguments_are_named(store: Path) -> None:
    with pytest.raises(ConfigurationError, match="end"):
        coldstore.load(store, start=T0, end=T0)
    with pytest.raises(ConfigurationError, match="does not exist"):
        coldstore.load(store / "nope")
    with pytest.raises(ConfigurationError, match="decode"):
        coldstore.load(store, decode="xml")  # type: ignore[arg-type]


def test_cache_is_used_while_fresh(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.mktemp("cache")
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=2)
    first, first_report = coldstore.load(store, start=start, end=end, cache=cache, with_report=True)
    assert first_report.cache == "rebuilt: no cache yet"
    again, again_report = coldstore.load(store, start=start, end=end, cache=cache, with_report=True)
    assert again_report.cache.startswith("hit") and again_report.blobs_read == []
    assert again.sort(KEY).equals(first.sort(KEY))
    narrower, narrower_report = coldstore.load(
        store, start=start + timedelta(minutes=30), end=end, cache=cache, with_report=True
    )
    assert narrower_report.cache.startswith("hit") and narrower.height == first.height - 60
    # A new capture file in range makes the cache stale.
    put(store, name(0, T0 + timedelta(minutes=62)), avro_bytes([record(999, T0 + timedelta(minutes=63))]))
    stale, stale_report = coldstore.load(store, start=start, end=end, cache=cache, with_report=True)
    assert stale_report.cache.startswith("rebuilt: 1 new or changed") and stale.height == first.height + 1
    wider, wider_report = coldstore.load(store, start=T0, end=end, cache=cache, with_report=True)
    assert wider_report.cache == "rebuilt: built for a narrower time range"
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.parquet"))
    assert files == ["date=2024-03-01/part-0.parquet"]  # every event is enqueued on 1 March (UTC)


def test_to_parquet_is_hive_partitioned(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    dest = tmp_path_factory.mktemp("export")
    df = coldstore.load(store)
    files = coldstore.to_parquet(
        df.with_columns(building=pl.col("partition_id")), dest, partition_by=("date", "building")
    )
    assert files == ["date=2024-03-01/building=0/part-0.parquet", "date=2024-03-01/building=1/part-0.parquet"]
    back = pl.scan_parquet(str(dest / "**/*.parquet"), hive_partitioning=True).collect()
    assert back.height == df.height and set(back["building"].cast(pl.String)) == {"0", "1"}
    meta = pl.read_parquet_metadata(dest / files[0]) if hasattr(pl, "read_parquet_metadata") else {}
    _ = meta
    import pyarrow.parquet as pq

    assert pq.ParquetFile(dest / files[0]).metadata.row_group(0).column(0).compression == "ZSTD"


def test_cli_load(store: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path_factory.mktemp("cli") / "hour.parquet"
    code = main(
        ["load", "--dir", str(store), "--start", "2024-03-01T01:00Z", "--end", "2024-03-01T02:00Z", "--out", str(out)]
    )
    assert code == 0
    assert pl.read_parquet(out).height == 2 * 60
    printed = capsys.readouterr()
    assert "wrote 120 events" in printed.out and "decoded" in printed.err  # tqdm bars go to stderr
    assert main(["load", "--dir", str(store / "missing"), "--out", str(out)]) == 1
    _ = os


def test_columns_projection(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    cols = ["partition_id", "enqueued_time", "device_id", "temperature"]
    full = coldstore.load(store, start=T0, end=T0 + timedelta(hours=1))
    some = coldstore.load(store, start=T0, end=T0 + timedelta(hours=1), columns=cols)
    assert some.columns == cols and some.equals(full.select(cols))
    cache = tmp_path_factory.mktemp("cache")
    built = coldstore.load(store, start=T0, end=T0 + timedelta(hours=1), columns=cols, cache=cache)
    hit, hit_report = coldstore.load(
        store, start=T0, end=T0 + timedelta(hours=1), columns=cols, cache=cache, with_report=True
    )
    assert hit_report.cache.startswith("hit") and hit.sort(cols[:2]).equals(built.sort(cols[:2]))
    assert coldstore.load(store, start=T0, end=T0 + timedelta(hours=1), cache=cache).columns == full.columns
    with pytest.raises(ConfigurationError, match="colour"):
        coldstore.load(store, columns=["colour"])


def test_scan_is_lazy_over_a_fresh_cache(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.mktemp("scan-cache")
    lf = coldstore.scan(store, cache=cache)
    assert isinstance(lf, pl.LazyFrame)
    assert (cache / "_coldstore.json").exists(), "scan brings the cache up to date first"
    full = coldstore.load(store)
    assert lf.collect().sort(KEY).equals(full.sort(KEY))
    # A lazy query reads what it needs: one partition, two columns.
    part = lf.filter(pl.col("partition_id") == "0").select("sequence_number", "temperature").collect()
    assert part.height == full.filter(pl.col("partition_id") == "0").height and part.width == 2
    # A new capture file makes the next scan rebuild the cache.
    put(store, name(0, T0 + timedelta(minutes=62)), avro_bytes([record(999, T0 + timedelta(minutes=63))]))
    assert coldstore.scan(store, cache=cache).collect().height == full.height + 1
    # Without a cache it is load() handed over lazily; bad options name themselves.
    assert coldstore.scan(store).collect().height == full.height + 1
    with pytest.raises(ConfigurationError, match="unknown load parameter.*colums"):
        coldstore.scan(store, cache=cache, colums=["x"])


def test_synthetic_devices_report_until_the_end() -> None:
    from iotlib.coldstore import synthetic

    hours = 6
    ev = synthetic.thermostat_events(devices=50, start=T0, duration=timedelta(hours=hours), seed=3)
    last = ev.filter(pl.col("time_observed") >= T0 + timedelta(hours=hours, minutes=-1, seconds=-6))
    assert last["device_id"].n_unique() == 50  # a gap is at most 66 s: every device reads in the last 66 s
    per_device = ev.group_by("device_id").len()["len"]
    assert per_device.min() >= hours * 3600 // 66 and per_device.max() <= hours * 3600 // 54 + 1
