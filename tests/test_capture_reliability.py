"""At-least-once under trouble: kill -9, storage outages, two writers sharing a consumer group.

Real emulator (private, over TCP), real Azurite, capture in child processes where a process must
die. The invariant watched throughout: a checkpoint never names an event that is not stored.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from capturekit import (
    CheckpointWatch,
    capture_process,
    captured,
    checkpoints,
    files_log,
    final_files,
    hub_ids,
    log_size,
    private_hub,
    reap_children,
    send,
    simulated,
    stored_events,
    writer_up,
)
from children import wait_for

import iotlib
from iotlib.capture import CaptureWriter
from iotlib.local import stack
from iotlib.local.emulator import Emulator

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_stray_writers() -> Iterator[None]:
    with reap_children():
        yield


def _names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"container": f"cap-{tag}", "checkpoint_container": f"ckpt-{tag}"}


def _cli_args(names: dict[str, str], *extra: str, expiry: str = "2") -> list[str]:
    return [
        "--container", names["container"], "--checkpoint-container", names["checkpoint_container"],
        "--time-window", "2", "--grace", "1", "--frame-size", "1KB",
        "--load-balancing-interval", "0.5", "--ownership-expiry", expiry, *extra,
    ]  # fmt: skip


def test_kill_9_at_random_points_loses_nothing(tmp_path: Path) -> None:
    storage = iotlib.settings().storage_connection_string
    names = _names()
    total = 2400
    rng = random.Random(4)  # seeded: the same kill points every run
    # Each kill comes once the writers have committed a further sixth of the events (give or take),
    # then a moment into whatever the writer is doing: the points follow its progress, not the clock.
    kills = [(int(total * (i + 1 + rng.uniform(-0.3, 0.3)) / 6), rng.uniform(0, 1.5)) for i in range(5)]
    log, events = tmp_path / "capture.log", tmp_path / "files.jsonl"
    with private_hub(4) as hub, CheckpointWatch(storage, **names) as watch:
        frame = simulated(total, seed=11)
        sender = threading.Thread(target=send, args=(hub.connection_string, frame), kwargs={"rate": 150})
        sender.start()
        args = _cli_args(names, "--events-out", str(events))
        proc = capture_process(hub.connection_string, storage, *args, log=log)
        files_before_kill = []
        for committed, moment in kills:
            wait_for(
                lambda n=committed: stored_events(storage, names["container"]) >= n,
                f"{committed} events stored",
                alive=proc,
                log=log,
                every=0.25,
            )
            time.sleep(moment)
            proc.kill()  # SIGKILL: no flush, no release, no goodbye
            assert proc.wait(10) == -signal.SIGKILL
            files_before_kill.append(len(files_log(events)))
            restarted = log_size(log)
            proc = capture_process(hub.connection_string, storage, *args, log=log)
        sender.join()
        # The last writer (started after the last kill) is up and has caught up before it is asked to stop.
        wait_for(lambda: writer_up(log, restarted), "the last writer up", alive=proc, log=log)
        wait_for(
            lambda: stored_events(storage, names["container"]) >= total,
            "every event stored",
            alive=proc,
            log=log,
            every=0.25,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        final = capture_process(hub.connection_string, storage, *args, "--once", log=log)
        assert final.wait(60) == 0, log.read_text()[-3000:]
        expected = hub_ids(hub.connection_string)
    got, duplicates, _ = captured(storage, names["container"])
    assert len(expected) == frame.height
    assert got == expected, f"missing {sorted(expected - got)[:10]}"
    assert duplicates == 0  # a crash alone never leaves a second copy (see iotlib.capture)
    assert watch.samples > 10 and watch.violations == []
    # the kills fell across the run, between files of several windows
    assert files_before_kill == sorted(files_before_kill) and files_before_kill[-1] > files_before_kill[0]
    windows = {row["name"].rsplit("/", 3)[-2:][0] + row["name"][-7:] for row in files_log(events)}
    assert len(windows) >= 5


def test_storage_outage_trips_the_breaker_and_loses_nothing(tmp_path: Path) -> None:
    st = stack.up(home=tmp_path / "stack", blob_port=0, services=("azurite",))  # our own Azurite: we stop it
    try:
        storage = st.settings().storage_connection_string
        port = st.services["azurite"].port
        names = _names()
        with private_hub(4) as hub:
            w = CaptureWriter.from_connection_string(
                hub.connection_string, storage, eventhub_name=hub.eventhub_name, time_window=2, grace=1,
                frame_size=512, breaker_warn=4, breaker_trip=8, breaker_stall=0.5, retry_backoff=(0.1, 1.0),
                load_balancing_interval=1, ownership_expiry=60, max_wait_time=0.5, **names,
            )  # fmt: skip
            outcome: dict = {}
            runner = threading.Thread(target=lambda: outcome.update(report=w.run(timeout=300)))
            frame = simulated(1800, seed=12)
            storage_down = threading.Event()

            def traffic() -> None:  # a third before the outage, the rest once storage is gone
                send(hub.connection_string, frame.head(600), rate=150)
                storage_down.wait(120)
                send(hub.connection_string, frame.slice(600), rate=150)

            sender = threading.Thread(target=traffic)
            with CheckpointWatch(storage, **names) as watch:
                runner.start()
                sender.start()
                wait_for(lambda: w.report is not None and w.report.files, "the writer's first file")
                stack.down(st.home, only=["azurite"])  # storage gone until the breaker trips
                storage_down.set()
                # The breaker can trip on frames held by calls still in flight: wait for a refused one too.
                wait_for(lambda: any(b.state == "tripped" for b in w.report.breaker), "the breaker to trip")
                wait_for(lambda: w.report.retries, "a storage call to fail while Azurite is down")
                stack.up(home=st.home, blob_port=port, services=("azurite",))
                sender.join()
                last = _last_sequence_numbers(hub_ids(hub.connection_string))

                def all_checkpointed() -> bool:
                    return checkpoints(storage, names["checkpoint_container"]) == last

                wait_for(all_checkpointed, "every event checkpointed", every=0.5)
                w.stop()
                runner.join(120)
            report = outcome["report"]
            got, duplicates, _ = captured(storage, names["container"])
            assert got == hub_ids(hub.connection_string) and duplicates == 0
    finally:
        stack.down(st.home)
    states = {(b.partition_id, b.state) for b in report.breaker}
    tripped = {p for p, s in states if s == "tripped"}
    assert tripped and all((p, "resumed") in states for p in tripped)
    assert sum(report.retries.values()) > 0
    assert watch.violations == [] and watch.samples > 5
    peak = max(b.buffered_frames for b in report.breaker)
    assert peak <= 8 + 2  # bounded: receiving stops at the trip level, even within a batch


def test_two_writers_share_partitions_and_hand_them_over(tmp_path: Path) -> None:
    storage = iotlib.settings().storage_connection_string
    names = _names()
    a_log, b_log = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with private_hub(4) as hub, CheckpointWatch(storage, **names) as watch:
        frame = simulated(2100, seed=13)
        done_sending = threading.Event()  # traffic flows until every step below is reached
        sender = threading.Thread(
            target=send, args=(hub.connection_string, frame), kwargs={"rate": 150, "until": done_sending}
        )
        sender.start()
        a = capture_process(hub.connection_string, storage, *_cli_args(names, "--events-out", str(a_log), expiry="6"),
                            log=tmp_path / "a.log")  # fmt: skip
        wait_for(
            lambda: _partitions(files_log(a_log), 0, float("inf")), "A's first file", alive=a, log=tmp_path / "a.log"
        )
        b = capture_process(hub.connection_string, storage, *_cli_args(names, "--events-out", str(b_log), expiry="6"),
                            log=tmp_path / "b.log")  # fmt: skip
        b_started = time.time()
        # while both run, both capture (the client balances the partitions between them) …
        wait_for(lambda: _partitions(files_log(a_log), b_started, float("inf")) and _partitions(files_log(b_log), b_started, float("inf")),
                 "both writers capturing", alive=b, log=tmp_path / "b.log")  # fmt: skip
        a_term = time.time()
        a.send_signal(signal.SIGTERM)  # A stops: flushes, checkpoints, releases its partitions
        assert a.wait(60) == 0, (tmp_path / "a.log").read_text()[-3000:]
        a_stopped = time.time()
        # … and after A stopped, B takes all of them
        wait_for(lambda: _partitions(files_log(b_log), a_stopped, float("inf")) == {"0", "1", "2", "3"},
                 "B capturing every partition", alive=b, log=tmp_path / "b.log")  # fmt: skip
        done_sending.set()
        sender.join()
        expected = hub_ids(hub.connection_string)

        def missing() -> str:  # what a failed wait shows: which events the files named, which storage holds
            named, held = _stored(files_log(a_log) + files_log(b_log)), captured(storage, names["container"])[0]
            return (f"not in any file written: {sorted(expected - named)[:20]} ({len(expected - named)}); "
                    f"not in storage: {sorted(expected - held)[:20]} ({len(expected - held)})")  # fmt: skip

        wait_for(lambda: _stored(files_log(a_log) + files_log(b_log)) >= expected, "B storing the last events",
                 alive=b, log=[tmp_path / "b.log", tmp_path / "a.log"], explain=missing)  # fmt: skip
        b.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0, (tmp_path / "b.log").read_text()[-3000:]
    got, duplicates, _ = captured(storage, names["container"])
    assert got == expected and duplicates == 0
    assert watch.violations == []
    rows_a, rows_b = files_log(a_log), files_log(b_log)
    assert _partitions(rows_a, b_started, a_term) and _partitions(rows_b, b_started, a_term)
    assert _partitions(rows_b, a_stopped, float("inf")) == {"0", "1", "2", "3"}
    # one writer at a time per partition: files follow each other, never overlap, whoever wrote them
    for pid in "0123":
        ranges = sorted((r["data"]["firstSequenceNumber"], r["data"]["lastSequenceNumber"])
                        for r in final_files(rows_a + rows_b) if r["data"]["partitionId"] == pid and r["data"]["eventCount"])  # fmt: skip
        assert all(prev[1] < nxt[0] for prev, nxt in zip(ranges, ranges[1:])), f"partition {pid}: {ranges}"


def _last_sequence_numbers(ids: set[tuple[str, int]]) -> dict[str, int]:
    last: dict[str, int] = {}
    for pid, seq in ids:
        last[pid] = max(seq, last.get(pid, -1))
    return last


def _stored(rows: list[dict]) -> set[tuple[str, int]]:
    """(partition, sequence number) of every event in the committed files."""
    out = set()
    for r in final_files(rows):
        d = r["data"]
        if d["eventCount"]:
            out |= {(d["partitionId"], s) for s in range(d["firstSequenceNumber"], d["lastSequenceNumber"] + 1)}
    return out


def _partitions(rows: list[dict], lo: float, hi: float) -> set[str]:
    """Partitions with a file holding events enqueued within [lo, hi) (epoch seconds)."""
    out = set()
    for r in rows:
        d = r["data"]
        if d["eventCount"] and d["lastEnqueueTime"]:
            first = datetime.fromisoformat(d["firstEnqueueTime"].replace("Z", "+00:00")).timestamp()
            last = datetime.fromisoformat(d["lastEnqueueTime"].replace("Z", "+00:00")).timestamp()
            if first < hi and last >= lo:
                out.add(d["partitionId"])
    return out


def _killed_owner(hub: Emulator, storage: str, names: dict[str, str], log: Path) -> int:
    """A capture that read every event, stored none (a long window) and was killed -9 holding all partitions."""
    sent = send(hub.connection_string, simulated(1200, seed=14))
    args = [*_cli_args(names, expiry="2"), "--time-window", "900"]  # the last --time-window wins
    dead = capture_process(hub.connection_string, storage, *args, log=log)
    wait_for(
        lambda: f"captured {sent:,} events" in log.read_text(),
        f"captured {sent:,} events",
        alive=dead,
        log=log,
        every=0.2,
    )
    dead.kill()
    assert dead.wait(10) == -signal.SIGKILL
    assert captured(storage, names["container"])[0] == set()  # nothing stored, nothing checkpointed
    return sent


def test_until_idle_waits_for_the_partitions_a_killed_capture_held(tmp_path: Path) -> None:
    storage = iotlib.settings().storage_connection_string
    names = _names()
    log = tmp_path / "capture.log"
    with private_hub(4) as hub:
        sent = _killed_owner(hub, storage, names, log)
        # The restart treats the dead owner's claims as valid for 15 s: it may take two partitions from
        # it at once (its fair share), the other two only when the claims expire.
        again = capture_process(hub.connection_string, storage, *_cli_args(names, "--until-idle", "1", expiry="15"),
                                log=log)  # fmt: skip
        assert again.wait(120) == 0, log.read_text()[-3000:]
        expected = hub_ids(hub.connection_string)
    got, duplicates, _ = captured(storage, names["container"])
    assert len(expected) == sent and got == expected and duplicates == 0
    assert "until idle: waiting for partition" in log.read_text()  # it did wait, and said for what


def test_until_idle_names_the_partitions_it_could_not_catch_up(tmp_path: Path) -> None:
    storage = iotlib.settings().storage_connection_string
    names = _names()
    log = tmp_path / "capture.log"
    with private_hub(4) as hub:
        _killed_owner(hub, storage, names, log)
        # Claims valid for 10 minutes: the timeout comes first, with the partitions still held.
        again = capture_process(
            hub.connection_string, storage, *_cli_args(names, "--until-idle", "1", "--timeout", "10", expiry="600"),
            log=log,
        )  # fmt: skip
        assert again.wait(120) == 1, log.read_text()[-3000:]
    error = [line for line in log.read_text().splitlines() if line.startswith("iotlib capture: error:")]
    assert len(error) == 1 and "not caught up by a live owner" in error[0], log.read_text()[-3000:]
    assert "has not renewed its claim" in error[0] and "expires in" in error[0]
    held = {m for m in "0123" if f"partition {m} (" in error[0]}
    assert 1 <= len(held) <= 2  # the restart took its fair share (half) from the dead owner; the rest is named


def test_sigterm_stops_within_its_grace_when_storage_hangs(tmp_path: Path) -> None:
    """Storage frozen (SIGSTOP: connections open, nothing answers) while the breaker holds receiving: the first
    SIGTERM ends capture within its shutdown timeout, saying what it could not store; nothing unstored is
    checkpointed, and the next run captures it."""
    st = stack.up(home=tmp_path / "stack", blob_port=0, services=("azurite",))  # our own Azurite: we freeze it
    azurite = st.services["azurite"].pid
    log = tmp_path / "capture.log"
    try:
        storage = st.settings().storage_connection_string
        names = _names()
        with private_hub(4) as hub:
            sender = threading.Thread(target=send, args=(hub.connection_string, simulated(2000, seed=15)),
                                      kwargs={"rate": 200})  # fmt: skip
            sender.start()
            args = [*_cli_args(names, "--shutdown-timeout", "5", "--breaker-warn", "2", "--breaker-trip", "4"),
                    "--time-window", "900"]  # fmt: skip
            proc = capture_process(hub.connection_string, storage, *args, log=log)
            wait_for(
                lambda: re.search(r"captured [1-9][\d,]* events", log.read_text()),
                "captured events", alive=proc, log=log, every=0.2,
            )  # fmt: skip
            os.kill(azurite, signal.SIGSTOP)
            try:
                wait_for(
                    lambda: _tripped_now(log.read_text()),
                    "circuit breaker TRIPPED",
                    alive=proc,
                    log=log,
                    every=0.2,
                )
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(5 + 60)  # the watchdog would end it at 5 + 20 s; it must end by itself
            finally:
                os.kill(azurite, signal.SIGCONT)
            sender.join()
            text = log.read_text()
            assert code == 1, text[-3000:]
            assert "stopping without flushing" not in text  # not the watchdog, not a second signal
            line = [x for x in text.splitlines() if "events received were not stored when it stopped" in x]
            assert len(line) == 1 and "next run captures them again" in line[0]
            # nothing checkpointed beyond what is stored, and the next run stores the rest
            with CheckpointWatch(storage, **names, every=0.1) as watch:
                while watch.samples < 1:
                    time.sleep(0.1)
            assert watch.violations == []
            # The same windows as the stopped run, as a user restarts it: a file that run committed but
            # could not checkpoint is found and skipped, not stored twice.
            again = [*_cli_args(names, "--once"), "--time-window", "900"]
            final = capture_process(hub.connection_string, storage, *again, log=log)
            assert final.wait(90) == 0, log.read_text()[-3000:]
            got, duplicates, _ = captured(storage, names["container"])
            assert got == hub_ids(hub.connection_string) and len(got) == 2000 and duplicates == 0
    finally:
        stack.down(st.home)


def _tripped_now(log: str) -> bool:
    """Some partition's breaker holds receiving: its last breaker line is a trip. (On a loaded machine
    breakers trip and reset before storage is frozen, so an earlier trip line alone says nothing.)"""
    last: dict[str, str] = {}
    for m in re.finditer(r"partition (\S+): circuit breaker (TRIPPED|reset)", log):
        last[m[1]] = m[2]
    return "TRIPPED" in last.values()
