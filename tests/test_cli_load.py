"""``iotlib load`` as a user runs it: subprocesses against the session's Azurite and real Azure Capture files.

Mistakes get one line (the stack not up, a wrong key, a missing container); a load that finds
nothing says what the store holds (an empty container, a range outside the span, a range that
matches the events' own times rather than when the hub enqueued them); names that do not fit the
path format are named; a single Capture file loads by its path.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clikit
import fastavro
import polars as pl
import pytest
from azure.storage.blob import ContainerClient

import iotlib
from iotlib import coldstore, connections
from iotlib.capture import format as cf
from iotlib.coldstore.synthetic import body_json

pytestmark = pytest.mark.usefixtures("local_stack")

#: A simulated day's events (the fixed 2025 default start), enqueued when a replay sent them.
OBSERVED = datetime(2025, 1, 6, 0, 10, tzinfo=UTC)


@pytest.fixture
def container() -> Iterator[ContainerClient]:
    """An empty container of this test's own."""
    client = ContainerClient.from_connection_string(
        iotlib.settings().storage_connection_string, f"cli-load-{uuid.uuid4().hex[:12]}"
    )
    client.create_container()
    try:
        yield client
    finally:
        client.delete_container()


def _warnings(done: clikit.subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in clikit.error_lines(done) if line.startswith("iotlib load: warning: ")]


def _written(done: clikit.subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"^wrote ([\d,]+) events", done.stdout, re.MULTILINE)
    assert found, done.stdout + done.stderr
    return int(found.group(1).replace(",", ""))


def test_stack_not_up_is_one_line_naming_the_endpoint(tmp_path: Path) -> None:
    env = clikit.stack_down_environ()
    done = clikit.run("load", "--container", "capture", "--out", str(tmp_path / "x.parquet"), env=env)
    assert done.returncode == 1
    port = re.search(r"127\.0\.0\.1:(\d+)", env[connections.STORAGE_ENV]).group(1)  # type: ignore[union-attr]
    assert clikit.error_lines(done) == [
        f"iotlib load: error: Blob storage at 127.0.0.1:{port} does not answer (connection refused): "
        "is the local stack up? Start it with `iotlib up` (`iotlib status` shows where it listens)"
    ]


def test_wrong_key_and_missing_container_are_one_line(tmp_path: Path, container: ContainerClient) -> None:
    out = str(tmp_path / "x.parquet")
    wrong = iotlib.settings().storage_connection_string.replace("AccountKey=Eby8", "AccountKey=Abc8")
    done = clikit.run(
        "load", "--container", "capture", "--out", out, env=clikit.environ(**{connections.STORAGE_ENV: wrong})
    )
    assert done.returncode == 1
    [line] = clikit.error_lines(done)
    assert line.startswith("iotlib load: error: Blob storage account 'devstoreaccount1' at ") and "refused" in line

    done = clikit.run("load", "--container", "no-such-container", "--out", out)
    assert done.returncode == 1
    [line] = clikit.error_lines(done)
    assert line.startswith(
        "iotlib load: error: container 'no-such-container' does not exist in storage account 'devstoreaccount1' "
        "(it has: "
    )
    assert container.container_name in line or "…" in line


def test_empty_container_warns_naming_it(tmp_path: Path, container: ContainerClient) -> None:
    done = clikit.run("load", "--container", container.container_name, "--out", str(tmp_path / "x.parquet"))
    assert done.returncode == 0, done.stderr
    [warning] = _warnings(done)
    assert f"container '{container.container_name}'" in warning
    assert warning.endswith("holds no Capture files: nothing has been captured there yet")
    assert _written(done) == 0


def _replayed_store(container: ContainerClient, *, enqueued: datetime) -> int:
    """Two partitions' Capture files of events observed on :data:`OBSERVED`'s day, enqueued at ``enqueued``."""
    fmt = cf.PathFormat()
    total = 0
    for partition in ("0", "1"):
        records = [
            cf.capture_record(
                sequence_number=i,
                offset=str(i * 100),
                enqueued_time=enqueued + timedelta(seconds=i),
                body=body_json(f"device-{partition}-{i}", OBSERVED + timedelta(minutes=i), 20.5),
            )
            for i in range(10)
        ]
        name = fmt.name("fabrikam", "telemetry", partition, enqueued)
        container.upload_blob(name, cf.write_capture_file(None, records))
        total += len(records)
    return total


def test_a_range_without_events_says_what_the_store_holds(tmp_path: Path, container: ContainerClient) -> None:
    enqueued = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    events = _replayed_store(container, enqueued=enqueued)
    out = str(tmp_path / "x.parquet")
    name = container.container_name

    frame, report = coldstore.load(iotlib.settings().storage_connection_string, container=name, with_report=True)
    assert frame.height == events and report.warnings == []

    # The range of the events' own (simulated) times: nothing was enqueued then.
    done = clikit.run("load", "--container", name, "--start", "2025-01-06T00:00Z", "--end", "2025-01-06T01:00Z",
                      "--out", out)  # fmt: skip
    assert done.returncode == 0 and _written(done) == 0
    [warning] = _warnings(done)
    window = enqueued.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert warning.startswith(
        f"iotlib load: warning: no events enqueued in [2025-01-06T00:00:00Z, 2025-01-06T01:00:00Z) in container '{name}'"
    )
    assert f"its 2 Capture files have windows starting {window} to {window}" in warning
    assert "select the time the hub enqueued the events" in warning
    assert (
        "the range does match the events' own times (time_observed 2025-01-06T00:10:00Z to 2025-01-06T00:19:00Z"
        in warning
    )

    # A range that matches neither: the span, and no word about the events' own times.
    done = clikit.run("load", "--container", name, "--start", "2020-01-01T00:00Z", "--end", "2020-01-02T00:00Z",
                      "--out", out)  # fmt: skip
    [warning] = _warnings(done)
    assert f"windows starting {window} to {window}" in warning and "own times" not in warning


def test_names_that_do_not_fit_the_format_are_named(tmp_path: Path, real_capture_dir: Path) -> None:
    done = clikit.run("load", "--path", str(real_capture_dir), "--out", str(tmp_path / "x.parquet"))
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in real_capture_dir.iterdir())
    [warning] = _warnings(done)
    assert warning == (
        f"iotlib load: warning: {len(files)} names in directory {real_capture_dir} do not fit the Capture path "
        f"format {cf.DEFAULT_PATH_FORMAT}.avro and were not read, e.g. {files[0]!r}: give the format their names "
        "follow (path_format= / --path-format), or load a single file by its path"
    )


def test_a_single_capture_file_loads_by_its_path(tmp_path: Path, real_capture_dir: Path) -> None:
    def records(path: Path) -> list[dict]:  # type: ignore[type-arg]
        return list(fastavro.reader(io.BytesIO(path.read_bytes())))  # type: ignore[arg-type]

    # The file Azure's 2016 preview ("Event Hubs Archive") wrote, under a name without .avro, by the command line …
    archive = next(p for p in real_capture_dir.iterdir() if p.name.startswith("DXFrance__"))
    out = tmp_path / "one.parquet"
    done = clikit.run("load", "--path", str(archive), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert _written(done) == len(records(archive)) > 0
    assert pl.read_parquet(out)["sequence_number"].to_list() == [r["SequenceNumber"] for r in records(archive)]
    # … and every real file by the library, the same way.
    for path in sorted(real_capture_dir.iterdir()):
        frame = coldstore.load(path)
        assert sorted(frame["sequence_number"].to_list()) == sorted(r["SequenceNumber"] for r in records(path)), path


def test_a_file_that_is_not_avro_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a Capture file\n")
    done = clikit.run("load", "--path", str(path), "--out", str(tmp_path / "x.parquet"))
    assert done.returncode == 1
    [line] = clikit.error_lines(done)
    assert line.startswith(f"iotlib load: error: blob 'notes.txt' in file {path}: ")
