"""``iotlib ingest`` and ``iotlib simulate`` as a user runs them: subprocesses against the session's stack.

A newcomer's mistakes get one line (the stack not up, a wrong hub, a wrong key, a file that is not
Parquet); live ingest and ``--start now`` simulate from now; Ctrl-C stops a send and reports what
was sent, partition by partition, which the hub confirms.
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clikit
import polars as pl
import pytest

import iotlib
from iotlib import connections, hub
from iotlib.fleet import events

pytestmark = pytest.mark.usefixtures("local_stack")

SMALL = ("--devices", "20", "--duration", "2m", "--no-progress")


def _observed(eventhub_name: str, since: dict[str, hub.PartitionPosition]) -> pl.Series:
    """The event times (the bodies' TimeObserved) of what the hub took after ``since``."""
    read = hub.read(eventhub_name=eventhub_name, since=since)
    return events.decode_bodies(read["body"])["time_observed"]


def _port(connection_string: str) -> str:
    found = re.search(r"localhost:(\d+)", connection_string)
    assert found, connection_string
    return found.group(1)


def test_stack_not_up_is_one_line_naming_the_endpoint() -> None:
    env = clikit.stack_down_environ()
    done = clikit.run("ingest", *SMALL, env=env)
    assert done.returncode == 1
    port = _port(env[connections.EVENTHUB_ENV])
    assert clikit.error_lines(done) == [
        f"iotlib ingest: error: Event Hubs at localhost:{port} does not answer (connection refused): "
        "is the local stack up? Start it with `iotlib up` (`iotlib status` shows where it listens)"
    ]


def test_unknown_hub_names_the_hubs_the_namespace_has(eventhub_name: str) -> None:
    done = clikit.run("ingest", *SMALL, "--eventhub", "x")
    assert done.returncode == 1
    [line] = clikit.error_lines(done)
    assert line.startswith("iotlib ingest: error: event hub 'x' does not exist in namespace 'fabrikam' (it has: ")
    assert "telemetry" in line and "Management connection failed" not in line


def test_wrong_key_is_one_line() -> None:
    conn = iotlib.settings().eventhub_connection_string.replace("SAS_KEY_VALUE", "not-the-key")
    done = clikit.run("ingest", *SMALL, env=clikit.environ(**{connections.EVENTHUB_ENV: conn}))
    assert done.returncode == 1
    [line] = clikit.error_lines(done)
    assert "refused the key 'RootManageSharedAccessKey'" in line
    assert line.count("the signature does not match") == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [("events.csv", b"device_id,time_observed,temperature\nd1,2025-01-06T00:00:00Z,21.5\n"), ("empty.parquet", b"")],
    ids=["csv", "empty"],
)
def test_events_file_that_is_not_parquet_is_named(
    tmp_path: Path, eventhub_name: str, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    done = clikit.run("ingest", "--events", str(path), "--eventhub", eventhub_name)
    assert done.returncode == 1
    assert clikit.error_lines(done) == [
        f"iotlib ingest: error: --events {path} is not a Parquet file (Parquet files begin and end with PAR1): "
        "write one with `iotlib simulate --out FILE.parquet`"
    ]


def test_live_ingest_simulates_from_now(eventhub_name: str) -> None:
    before = hub.positions(eventhub_name=eventhub_name)
    began = datetime.now(UTC).replace(microsecond=0)
    done = clikit.run("ingest", "--mode", "live", "--speed", "60", *SMALL, "--eventhub", eventhub_name)
    assert done.returncode == 0, done.stderr
    observed = _observed(eventhub_name, before)
    assert observed.len() > 0
    # Two simulated minutes from the moment the command started (not the fixed 2025 default).
    assert began - timedelta(seconds=5) <= observed.min() < began + timedelta(minutes=1)
    assert observed.max() < datetime.now(UTC) + timedelta(minutes=2)


def test_start_now_is_accepted_by_replay_and_simulate(tmp_path: Path, eventhub_name: str) -> None:
    before = hub.positions(eventhub_name=eventhub_name)
    began = datetime.now(UTC).replace(microsecond=0)
    done = clikit.run("ingest", "--start", "now", *SMALL, "--eventhub", eventhub_name)
    assert done.returncode == 0, done.stderr
    observed = _observed(eventhub_name, before)
    assert began - timedelta(seconds=5) <= observed.min() and observed.max() < began + timedelta(minutes=3)

    out = tmp_path / "last-ten-minutes.parquet"
    done = clikit.run("simulate", "--devices", "20", "--duration", "10m", "--start", "now-10m", "--out", str(out),
                      "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    times = pl.read_parquet(out)["time_observed"]
    assert times.min() >= began - timedelta(minutes=10, seconds=5) and times.max() < datetime.now(UTC)


@pytest.mark.parametrize("mode", ["replay", "live"])
def test_ctrl_c_stops_the_send_and_reports_what_each_partition_got(eventhub_name: str, mode: str) -> None:
    # An hour of 5,000 devices: minutes of sending, so only the interrupt can end it this soon.
    pace = ["--mode", "live", "--speed", "30"] if mode == "live" else []
    before = hub.positions(eventhub_name=eventhub_name)
    proc = clikit.start("ingest", "--devices", "5000", "--duration", "1h", *pace, "--eventhub", eventhub_name)
    try:
        assert proc.stderr is not None
        assert any(sent > 0 for sent in clikit.progress(proc.stderr)), "no progress before the interrupt"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # a send that ignored the interrupt would take minutes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    sent = int(re.search(r"^sent ([\d,]+) events", out, re.MULTILINE).group(1).replace(",", ""))  # type: ignore[union-attr]
    unsent = int(re.search(r"INTERRUPTED: ([\d,]+) events read but not sent", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert sent > 0 and unsent > 0  # the interrupt ended the send, not its end
    line = re.search(r"^sent per partition: (.*)$", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    reported = {pid: int(n.replace(",", "")) for pid, n in re.findall(r"(\d+): ([\d,]+)", line)}
    assert sum(reported.values()) == sent
    after = hub.positions(eventhub_name=eventhub_name)
    added = {
        pid: after[pid].last_enqueued_sequence_number - before[pid].last_enqueued_sequence_number
        for pid in after
        if after[pid].last_enqueued_sequence_number != before[pid].last_enqueued_sequence_number
    }
    if "given up on" in out:  # a batch in flight was abandoned: the hub may hold it too
        assert all(added.get(pid, 0) >= n for pid, n in reported.items())
    else:
        assert added == {pid: n for pid, n in reported.items() if n}
