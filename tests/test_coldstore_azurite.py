"""load() against the session's real Azurite: same layout, same pruning, same results as on disk."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from azure.storage.blob import ContainerClient
from coldstore_helpers import T0, avro_bytes, name, put, record, small_store

import iotlib
from iotlib import coldstore
from iotlib.errors import ColdStoreError

KEY = ["partition_id", "sequence_number"]


@pytest.fixture
def container(local_stack: object) -> Iterator[ContainerClient]:
    conn = iotlib.settings().storage_connection_string
    client = ContainerClient.from_connection_string(conn, f"coldstore-{uuid.uuid4().hex[:12]}")
    client.create_container()
    try:
        yield client
    finally:
        client.delete_container()
        client.close()


def test_blob_load_prunes_and_matches_disk(container: ContainerClient, tmp_path: Path) -> None:
    small_store(container, hours=3, partitions=2, codec="deflate")
    small_store(tmp_path, hours=3, partitions=2, codec="deflate")
    start = T0 + timedelta(hours=1, minutes=20)
    df, r = coldstore.load(container, start=start, end=start + timedelta(minutes=30), with_report=True)
    assert r.prefixes_walked == ["", "fabrikam/", "fabrikam/telemetry/"]
    assert r.prefixes_listed == [f"fabrikam/telemetry/{p}/2024/03/01/01/" for p in (0, 1)]
    # 01:20 - 900 s = 01:05: windows 01:10 … 01:45 are downloaded, nothing else.
    assert sorted(r.blobs_read) == sorted(name(p, T0 + timedelta(minutes=5 * w)) for p in (0, 1) for w in range(14, 22))
    assert df.height == 2 * 30
    disk = coldstore.load(tmp_path, start=start, end=start + timedelta(minutes=30))
    assert df.equals(disk)
    by_string = coldstore.load(
        iotlib.settings().storage_connection_string,
        container=container.container_name,
        start=start,
        end=start + timedelta(minutes=30),
    )
    assert by_string.equals(df)


def test_blob_corruption_raise_and_skip(container: ContainerClient) -> None:
    good = [record(i, T0 + timedelta(seconds=20 * i)) for i in range(10)]
    put(container, name(0, T0), avro_bytes(good))
    data = avro_bytes(good)
    bad = name(0, T0 + timedelta(minutes=5))
    put(container, bad, data[: len(data) - 25])
    with pytest.raises(ColdStoreError, match=bad):
        coldstore.load(container)
    df, report = coldstore.load(container, errors="skip", with_report=True)
    assert df.height == 10 and [s.name for s in report.skipped] == [bad]


def test_blob_dedupe_and_parquet_export(container: ContainerClient) -> None:
    recs = [record(i, T0 + timedelta(seconds=20 * i)) for i in range(10)]
    put(container, name(0, T0), avro_bytes(recs))
    put(container, name(0, T0 + timedelta(minutes=5)), avro_bytes(recs[7:]))  # replayed after a crash
    df, report = coldstore.load(container, with_report=True)
    assert df.height == 10 and report.duplicates_removed == 3
    files = coldstore.to_parquet(df, container, prefix="parquet/telemetry")
    assert files == ["parquet/telemetry/date=2024-03-01/part-0.parquet"]
    data = container.download_blob(files[0]).readall()
    assert pl.read_parquet(data).sort(KEY).equals(df.drop("date", strict=False).sort(KEY))
    names = [b.name for b in container.list_blobs(name_starts_with="parquet/")]
    assert "parquet/telemetry/_coldstore.json" in names


def test_missing_container_is_named(local_stack: object) -> None:
    client = ContainerClient.from_connection_string(
        iotlib.settings().storage_connection_string, "no-such-container-here"
    )
    with pytest.raises(ColdStoreError, match="no-such-container-here"):
        coldstore.load(client)


def test_aio_twin_with_an_aio_client(container: ContainerClient) -> None:
    import asyncio

    from azure.storage.blob.aio import ContainerClient as AioContainerClient

    from iotlib.coldstore import aio

    recs = [record(i, T0 + timedelta(seconds=20 * i)) for i in range(6)]
    put(container, name(0, T0), avro_bytes(recs))

    async def go() -> pl.DataFrame:
        async with AioContainerClient.from_connection_string(
            iotlib.settings().storage_connection_string, container.container_name
        ) as client:
            return await aio.load(client, start=T0, end=T0 + timedelta(minutes=1))

    df = asyncio.run(go())
    assert df["sequence_number"].to_list() == [0, 1, 2] and df.equals(
        coldstore.load(container, start=T0, end=T0 + timedelta(minutes=1))
    )
